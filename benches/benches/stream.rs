//! Whole messages in memory: encrypt and decrypt 64 MiB into a null sink, by frame length, at 1 and
//! 2 threads, for the unsigned committing suite (0x0478); and the signed suite (0x0578) at the
//! default frame length, for what its serial SHA-384 and ECDSA cost. This is the measurement behind
//! the default frame length (`DEFAULT_FRAME_LENGTH`) and the CLI's default suite.
//!
//! ```text
//! cargo bench -p benches --bench stream                        # a few minutes
//! cargo bench -p benches --bench stream -- 'encrypt/0478'      # a filter
//! ```
//!
//! Results: the README's performance section.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is the failure report

mod common;

use std::time::Duration;

use common::block_on;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use s3_crypto::{AlgorithmSuite, Decryptor, Encryptor, RawAesKeyring};

const FRAMES: [(u32, &str); 6] = [
    (4 << 10, "4KiB"),
    (16 << 10, "16KiB"),
    (64 << 10, "64KiB"),
    (256 << 10, "256KiB"),
    (1 << 20, "1MiB"),
    (4 << 20, "4MiB"),
];

/// 64 MiB under `cargo bench`; 1 MiB in criterion's test mode (a debug `cargo test --all-targets`).
fn input_len() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        64 << 20
    } else {
        1 << 20
    }
}

fn cases() -> Vec<(AlgorithmSuite, u32, String)> {
    let unsigned = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    let signed = AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384;
    let mut cases: Vec<_> = FRAMES
        .iter()
        .map(|&(fl, label)| (unsigned, fl, format!("0478/{label}")))
        .collect();
    cases.push((signed, 64 << 10, "0578/64KiB".into()));
    cases
}

fn bench_stream(c: &mut Criterion) {
    let keyring = RawAesKeyring::new("bench", "stream", &[0x42; 32]).unwrap();
    let plaintext: Vec<u8> = (0..input_len()).map(|i| (i * 131 + 7) as u8).collect();
    for op in ["encrypt", "decrypt"] {
        let mut group = c.benchmark_group(op);
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            .sample_size(10)
            .throughput(Throughput::BytesDecimal(plaintext.len() as u64));
        for (suite, fl, label) in cases() {
            let encryptor = Encryptor::new(&keyring).suite(suite).frame_length(fl);
            let message = encryptor.encrypt_to_vec(&plaintext).unwrap();
            let decryptor = Decryptor::new(&keyring);
            assert!(decryptor.decrypt_to_vec(&message).unwrap().0 == plaintext);
            for threads in [1usize, 2] {
                let id = BenchmarkId::new(&label, format!("{threads}t"));
                group.bench_function(id, |b| match op {
                    "encrypt" => b.iter(|| {
                        let m = block_on(encryptor.begin()).unwrap();
                        m.encrypt_stream_parallel(&plaintext[..], std::io::sink(), threads)
                            .unwrap()
                    }),
                    _ => b.iter(|| {
                        let m = block_on(decryptor.begin(&message[..])).unwrap();
                        m.decrypt_to_parallel(std::io::sink(), threads).unwrap()
                    }),
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
