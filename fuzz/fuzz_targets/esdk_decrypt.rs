//! Any bytes as an AWS Encryption SDK message (header, frames, footer), decrypted with the golden
//! vectors' keys at the default limits (`DEFAULT_MAX_BUFFERED_CONTENT`,
//! `DEFAULT_MAX_ENCRYPTED_DATA_KEYS`) and the commitment policy that reads every suite: the
//! sequential path, the parallel path and the positioned parallel path must never panic and must
//! agree (same error, same bytes written); a range of a message that decrypts whole is that slice
//! of it; a header that parses is written back (`Header::to_bytes`) as the bytes it came from.
//!
//! Seed corpus: `s3-crypto/tests/testdata/*.bin` (valid messages of every suite and the `fail_`
//! cases).
#![no_main]

use std::io::Cursor;

use envelope_fuzz::{block_on, esdk_keyring};
use libfuzzer_sys::fuzz_target;
use s3_crypto::{ByteRange, CommitmentPolicy, Decryptor};

fuzz_target!(|message: &[u8]| {
    let keyring = esdk_keyring();
    let dec =
        Decryptor::new(&keyring).commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    // Parse then write: a header that reads is written back as the bytes it was read from.
    if let Ok(m) = block_on(dec.begin(message)) {
        assert!(message.starts_with(&m.header().to_bytes()));
    }
    let mut sequential = Vec::new();
    let r1 = dec.decrypt(message, &mut sequential).map(|_| ());
    let mut parallel = Vec::new();
    let r2 = block_on(dec.begin(message))
        .and_then(|m| m.decrypt_to_parallel(&mut parallel, 2))
        .map(|_| ());
    assert_eq!(format!("{r1:?}"), format!("{r2:?}"));
    assert!(sequential == parallel);
    let mut positioned = Vec::new();
    let r3 = block_on(dec.begin(Cursor::new(message)))
        .and_then(|m| m.decrypt_at_parallel(message, &mut positioned, 2))
        .map(|_| ());
    assert_eq!(format!("{r1:?}"), format!("{r3:?}"));
    assert!(sequential == positioned);
    if r1.is_ok() {
        let range = ByteRange::Inclusive {
            first: 3,
            last: 700,
        };
        let mut out = Vec::new();
        if let Ok(m) = block_on(dec.begin(Cursor::new(message))) {
            if let Ok((_, r, total)) = m.decrypt_range_to(range, &mut out) {
                assert_eq!(total, sequential.len() as u64);
                assert!(out == sequential[r.start as usize..r.end as usize]);
            }
        }
    }
});
