//! S3 Encryption Client objects as a download reads them: the object's user metadata (with S3's
//! RFC 2047 encoding of non-ASCII values, `=?UTF-8?B?…?=` / `=?UTF-8?Q?…?=`), the instruction file
//! and the body. Any of them must parse or be refused, never panic.
//!
//! - Even first byte: the fields are read as an object (metadata, then the instruction file when the
//!   metadata asks for one) and decrypted with a CSE-C AES key under the policy that reads V2 and
//!   V3; what parses is written back (`to_object_metadata`) and parses to the same metadata.
//! - Odd first byte, differential: the body encrypted (V3, or V2 when bit 1 is set) with a fuzzed
//!   materials description reads back the same metadata and decrypts to the body from the object
//!   metadata, from the instruction-file split, and from metadata whose values S3 has RFC 2047
//!   Q-encoded.
//!
//! Input: the first byte, then fields split at 0xff: the body, the instruction file, then metadata
//! as `key=value`. Seed corpus: `s3-crypto/tests/testdata/s3ec/*.json` with their bodies.
#![no_main]

use std::collections::BTreeMap;

use envelope_fuzz::fields;
use libfuzzer_sys::fuzz_target;
use s3_crypto::s3ec::{
    keys, AesKeyring, ContentMetadata, MetadataLookup, ObjectDecryptor, ObjectEncryptor,
};
use s3_crypto::CommitmentPolicy;

const KEY: [u8; 32] = [7; 32];

/// Each byte as `=XX`: what S3 returns for a value with non-ASCII characters, Q-encoded.
fn q_encode(value: &str) -> String {
    let mut out = String::from("=?UTF-8?Q?");
    for b in value.bytes() {
        out.push_str(&format!("={b:02X}"));
    }
    out.push_str("?=");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest);
    let body = f.first().copied().unwrap_or_default();
    let instruction_file = f.get(1).copied().unwrap_or_default();
    let metadata: BTreeMap<String, String> = f
        .iter()
        .skip(2)
        .map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();

    if mode & 1 == 0 {
        let keyring = AesKeyring::new(&KEY).unwrap();
        let md = match ContentMetadata::from_object_metadata(&metadata) {
            Ok(MetadataLookup::Complete(md)) => md,
            Ok(MetadataLookup::NeedsInstructionFile) => {
                match ContentMetadata::from_instruction_file(&metadata, instruction_file) {
                    Ok(md) => md,
                    Err(_) => return,
                }
            }
            Ok(_) | Err(_) => return,
        };
        if let Ok(written) = md.to_object_metadata() {
            match ContentMetadata::from_object_metadata(&written) {
                Ok(MetadataLookup::Complete(again)) => assert_eq!(again, md),
                other => panic!("{other:?}"),
            }
        }
        let _ = ObjectDecryptor::new(&keyring)
            .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
            .decrypt_to_vec(&md, body);
        return;
    }

    // The differential: the materials description is the metadata pairs, which must be US-ASCII.
    let description: BTreeMap<String, String> = metadata
        .into_iter()
        .filter(|(k, v)| k.is_ascii() && v.is_ascii())
        .take(4)
        .collect();
    let keyring = AesKeyring::new(&KEY)
        .unwrap()
        .with_materials_description(description);
    let policy = if mode & 2 == 0 {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    };
    let (sealed, md) = ObjectEncryptor::new(&keyring)
        .commitment_policy(policy)
        .encrypt_to_vec(body)
        .unwrap();
    let dec = ObjectDecryptor::new(&keyring).commitment_policy(if mode & 2 == 0 {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    } else {
        CommitmentPolicy::RequireEncryptAllowDecrypt
    });
    let object = md.to_object_metadata().unwrap();
    let MetadataLookup::Complete(read) = ContentMetadata::from_object_metadata(&object).unwrap()
    else {
        panic!("complete metadata asks for an instruction file");
    };
    assert_eq!(read, md);
    assert!(dec.decrypt_to_vec(&read, &sealed).unwrap() == body);
    // What S3 returns for a JSON value it had to encode (one with non-ASCII characters).
    let encoded: BTreeMap<String, String> = object
        .iter()
        .map(|(k, v)| {
            let json = [
                keys::MAT_DESC_V3,
                keys::MATDESC,
                keys::ENCRYPTION_CONTEXT_V3,
            ];
            let v = if json.contains(&k.as_str()) {
                q_encode(v)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert_eq!(
        ContentMetadata::from_object_metadata(&encoded).unwrap(),
        MetadataLookup::Complete(md.clone())
    );
    let (object_part, file) = md.to_instruction_file().unwrap();
    assert_eq!(
        ContentMetadata::from_object_metadata(&object_part).unwrap(),
        MetadataLookup::NeedsInstructionFile
    );
    let from_file = ContentMetadata::from_instruction_file(&object_part, file.as_bytes()).unwrap();
    assert_eq!(from_file, md);
    if let Some(last) = sealed.len().checked_sub(1) {
        let mut tampered = sealed.clone();
        tampered[last] ^= 1;
        assert!(dec.decrypt_to_vec(&md, &tampered).is_err());
    }
});
