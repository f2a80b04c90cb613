//! The KMS ciphertext blob, both versions, as Decrypt and ReEncrypt receive it: any bytes must parse
//! or be refused with InvalidCiphertextException, never panic; and parse ∘ write is the identity.
//!
//! - Version 1: the header read back rebuilds the blob's first 21 bytes; a blob that opens under the
//!   golden vectors' material (`kms-core/tests/testdata`, with either of their contexts) is written
//!   again, byte for byte, by `seal_with_salt` from what was read (same header, salt, plaintext).
//! - Version 2: `split_token_blob` then `token_blob` gives back the same bytes.
//! - The other direction: the input as a plaintext, sealed, reads back as the header it was sealed
//!   with and opens to the same plaintext, and to nothing under another context.
//!
//! Seed corpus: the `blob` of every `kms-core/tests/testdata/*.json`.
#![no_main]

use std::collections::BTreeMap;

use kms_core::blob::{self, BlobHeader, BLOB_VERSION, HEADER_LEN, TOKEN_BLOB_VERSION};
use kms_core::{EncryptionContext, KeyMaterial, KmsError};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fn contexts() -> [EncryptionContext; 2] {
    let golden: BTreeMap<String, String> = [("purpose", "test"), ("app", "envelope")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    [
        EncryptionContext::default(),
        EncryptionContext::new(golden).unwrap(),
    ]
}

fuzz_target!(|data: &[u8]| {
    let material = KeyMaterial::from_slice(&[0x11; 32]).unwrap();
    let contexts = contexts();
    match blob::parse_header(data) {
        Ok(h) => {
            let mut head = vec![data[0]];
            head.extend_from_slice(h.key_id.as_bytes());
            head.extend_from_slice(&h.version.to_be_bytes());
            assert_eq!(head[..], data[..21]);
            if data[0] == BLOB_VERSION {
                for ctx in &contexts {
                    if let Ok(pt) = blob::open(data, &material, ctx) {
                        let salt: [u8; 32] = data[21..HEADER_LEN].try_into().unwrap();
                        let again = blob::seal_with_salt(h, &material, ctx, &pt, salt).unwrap();
                        assert_eq!(again, data);
                    }
                }
                assert!(blob::split_token_blob(data).is_err());
            } else {
                assert_eq!(data[0], TOKEN_BLOB_VERSION);
                if let Ok((header, sealed)) = blob::split_token_blob(data) {
                    let header: [u8; blob::TOKEN_HEADER_LEN] = header.try_into().unwrap();
                    assert_eq!(header, blob::token_header(&h.key_id));
                    assert_eq!(blob::token_blob(&header, sealed), data);
                }
                assert!(blob::open(data, &material, &contexts[0]).is_err());
            }
        }
        Err(e) => {
            assert!(matches!(e, KmsError::InvalidCiphertext(_)), "{e:?}");
            assert!(blob::split_token_blob(data).is_err());
            for ctx in &contexts {
                assert!(blob::open(data, &material, ctx).is_err());
            }
        }
    }
    // Write, then parse: the input as a plaintext (KMS takes at most 4 KiB).
    let pt = &data[..data.len().min(4096)];
    let mut id = [0u8; 16];
    for (i, b) in pt.iter().take(16).enumerate() {
        id[i] = *b;
    }
    let header = BlobHeader {
        key_id: Uuid::from_bytes(id),
        version: pt.len() as u32 + 1,
    };
    let sealed = blob::seal(header, &material, &contexts[1], pt).unwrap();
    assert_eq!(sealed.len(), pt.len() + blob::OVERHEAD);
    assert_eq!(blob::parse_header(&sealed).unwrap(), header);
    assert_eq!(
        blob::open(&sealed, &material, &contexts[1]).unwrap()[..],
        pt[..]
    );
    assert!(blob::open(&sealed, &material, &contexts[0]).is_err());
});
