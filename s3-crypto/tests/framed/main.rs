//! The upload pipeline and framed objects: multi-buffer MD5 against `md-5` (property tests), the
//! encrypt + Content-MD5 pipeline, and framed objects through a real S3-compatible store (Garage,
//! started by `scripts/garage.sh`; skipped without it, required when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

#[path = "../common/garage.rs"]
mod garage_store;
mod md5;
mod pipeline;
mod sse;
mod store;

/// A deterministic plaintext that differs from frame to frame.
pub fn plaintext(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 7 + 3 + i / 4093) % 256) as u8)
        .collect()
}

pub fn keyring() -> s3_crypto::RawAesKeyring {
    s3_crypto::RawAesKeyring::new("envelope-test", "framed", &[0x42u8; 32]).unwrap()
}
