//! Rough single-thread throughput of encrypt and decrypt per frame length and suite:
//! `cargo run --release -p s3-crypto --example throughput [MiB]`. The criterion benches in
//! `benches/` are the reference; this is a quick look for choosing the default frame length.

use std::io::{self, Read};
use std::time::Instant;

use s3_crypto::{AlgorithmSuite, Decryptor, Encryptor, RawAesKeyring};

/// An endless source of a fixed byte pattern, cut at `left` bytes.
struct Pattern {
    left: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(0x61);
        self.left -= n as u64;
        Ok(n)
    }
}

fn main() -> Result<(), s3_crypto::Error> {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let keyring = RawAesKeyring::new("bench", "key", &[1u8; 32])?;
    println!("{mib} MiB, one thread");
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for frame in [4 << 10, 64 << 10, 256 << 10, 1 << 20] {
            let encryptor = Encryptor::new(&keyring).suite(suite).frame_length(frame);
            let t = Instant::now();
            encryptor.encrypt(Pattern { left: len }, io::sink())?;
            let enc = t.elapsed().as_secs_f64();
            let mut message = Vec::with_capacity(len as usize + (1 << 20));
            encryptor.encrypt(Pattern { left: len }, &mut message)?;
            let t = Instant::now();
            Decryptor::new(&keyring).decrypt(&message[..], io::sink())?;
            let dec = t.elapsed().as_secs_f64();
            println!(
                "suite {:#06x} frame {:>7}: encrypt {:5.2} GB/s, decrypt {:5.2} GB/s",
                suite.id(),
                frame,
                len as f64 / enc / 1e9,
                len as f64 / dec / 1e9
            );
        }
    }
    Ok(())
}
