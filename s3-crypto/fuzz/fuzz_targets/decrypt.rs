//! Any bytes as a message, decrypted with the test keys (tests/testdata's): the sequential path,
//! the parallel path, the positioned parallel path and a byte range must never panic, must agree
//! with each other, and whatever
//! the sequential path wrote before failing must be a prefix of what it writes for the intact
//! message (checked by the agreement with the parallel path and by the integration tests).
//!
//! Seed corpus: `s3-crypto/tests/testdata/*.bin`.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use s3_crypto::{ByteRange, CommitmentPolicy, Decryptor, Keyring, MultiKeyring, RawAesKeyring};

fn keyring() -> MultiKeyring {
    let keys: [(&str, Vec<u8>); 3] = [
        ("raw-aes-256", (0u8..32).collect()),
        ("raw-aes-192", (100u8..124).collect()),
        ("raw-aes-128", (200u8..216).collect()),
    ];
    let children = keys
        .iter()
        .map(|(name, key)| {
            Box::new(RawAesKeyring::new("envelope-test", *name, key).unwrap()) as Box<dyn Keyring>
        })
        .collect();
    MultiKeyring::new(None, children).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a raw AES keyring never waits"),
    }
}

fuzz_target!(|message: &[u8]| {
    let keyring = keyring();
    let dec = Decryptor::new(&keyring)
        .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
        .max_buffered_content(1 << 20);
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
    // A range of a message that decrypts whole must be that slice of it.
    if r1.is_ok() {
        let range = ByteRange::Inclusive { first: 3, last: 700 };
        let mut out = Vec::new();
        if let Ok(m) = block_on(dec.begin(Cursor::new(message))) {
            if let Ok((_, r, total)) = m.decrypt_range_to(range, &mut out) {
                assert_eq!(total, sequential.len() as u64);
                assert!(out == sequential[r.start as usize..r.end as usize]);
            }
        }
    }
});
