//! The AES-256-GCM core: seal and open at 4 KiB, 64 KiB, 1 MiB and 8 MiB, one core.
//!
//! Side by side, same run:
//!
//! - `aws-lc-rs` (what envelope ships), `ring` and `aes-gcm` (RustCrypto): the bare primitive,
//!   in place, tag detached, with a 72-byte AAD (the length of a framed-body AAD);
//! - `s3-crypto`'s frame path, the code envelope actually runs per frame: `FrameKey::seal_frame`
//!   (allocates the serialized frame), `FrameKey::seal_in_place` (what `encrypt_stream` and the
//!   parallel pipeline run: input read straight into a reused `FrameBuffer`, sealed there) and
//!   `FrameKey::open_frame` (in place).
//!
//! Open benches decrypt a fresh copy of the ciphertext each time; the copy is made outside the
//! timed region (`iter_batched_ref`). The nonce is fixed: fine for a benchmark, never for real use.
//!
//! ```text
//! cargo bench -p benches --bench aes_core                      # everything, a few minutes
//! cargo bench -p benches --bench aes_core -- 'seal/.*/8MiB'    # a filter
//! ```
//!
//! Results and the machine they were measured on: `benches/AES_CORE.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is the failure report

mod common;

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use common::block_on;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use s3_crypto::{Encryptor, FrameBuffer, FrameKind, MessageEncryptor, RawAesKeyring};

const SIZES: [(usize, &str); 4] = [
    (4 << 10, "4KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (8 << 20, "8MiB"),
];
const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 12] = [0x24; 12];
/// A framed-body AAD is message id (32) ‖ "AWSKMSEncryptionClient Frame" (28) ‖ seq (4) ‖ len (8).
const AAD: [u8; 72] = [0x5a; 72];
const TAG_LEN: usize = 16;

/// All sizes under `cargo bench`; without `--bench` (criterion's test mode, e.g. `cargo test
/// --all-targets` in a debug build) the two small ones, so that a test run stays short.
fn sizes() -> &'static [(usize, &'static str)] {
    if std::env::args().any(|a| a == "--bench") {
        &SIZES
    } else {
        &SIZES[..2]
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

fn aws_lc_key() -> aws_lc_rs::aead::LessSafeKey {
    use aws_lc_rs::aead;
    aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &KEY).unwrap())
}

fn ring_key() -> ring::aead::LessSafeKey {
    use ring::aead;
    ring::aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &KEY).unwrap())
}

fn rustcrypto_key() -> Aes256Gcm {
    Aes256Gcm::new_from_slice(&KEY).unwrap()
}

fn aws_lc_seal(key: &aws_lc_rs::aead::LessSafeKey, buf: &mut [u8]) -> [u8; TAG_LEN] {
    use aws_lc_rs::aead::{Aad, Nonce};
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(NONCE), Aad::from(&AAD), buf)
        .unwrap();
    tag.as_ref().try_into().unwrap()
}

fn ring_seal(key: &ring::aead::LessSafeKey, buf: &mut [u8]) -> [u8; TAG_LEN] {
    use ring::aead::{Aad, Nonce};
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(NONCE), Aad::from(&AAD), buf)
        .unwrap();
    tag.as_ref().try_into().unwrap()
}

fn rustcrypto_seal(key: &Aes256Gcm, buf: &mut [u8]) -> [u8; TAG_LEN] {
    let tag = key
        .encrypt_inout_detached(&NONCE.into(), &AAD, buf.into())
        .unwrap();
    tag.into()
}

/// `ciphertext ‖ tag` → plaintext length.
fn aws_lc_open(key: &aws_lc_rs::aead::LessSafeKey, ct_tag: &mut [u8]) -> usize {
    use aws_lc_rs::aead::{Aad, Nonce};
    key.open_in_place(Nonce::assume_unique_for_key(NONCE), Aad::from(&AAD), ct_tag)
        .unwrap()
        .len()
}

fn ring_open(key: &ring::aead::LessSafeKey, ct_tag: &mut [u8]) -> usize {
    use ring::aead::{Aad, Nonce};
    key.open_in_place(Nonce::assume_unique_for_key(NONCE), Aad::from(&AAD), ct_tag)
        .unwrap()
        .len()
}

fn rustcrypto_open(key: &Aes256Gcm, ct_tag: &mut [u8]) -> usize {
    let (ct, tag) = ct_tag.split_at_mut(ct_tag.len() - TAG_LEN);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().unwrap();
    key.decrypt_inout_detached(&NONCE.into(), &AAD, ct.into(), &tag.into())
        .unwrap();
    ct.len()
}

/// Polls a future that never waits (the raw AES keyring's) to completion.
/// A message being encrypted with the default suite (0x0478), for its `FrameKey`.
fn message_encryptor() -> MessageEncryptor {
    let keyring = RawAesKeyring::new("bench", "aes-core", &KEY).unwrap();
    block_on(Encryptor::new(&keyring).begin()).unwrap()
}

/// `seal(x) ‖ tag` for one implementation, checked to open again, and equal across the three.
fn sealed(pt: &[u8]) -> Vec<u8> {
    let mut reference = None;
    for seal in [
        |b: &mut [u8]| aws_lc_seal(&aws_lc_key(), b),
        |b: &mut [u8]| ring_seal(&ring_key(), b),
        |b: &mut [u8]| rustcrypto_seal(&rustcrypto_key(), b),
    ] {
        let mut ct = pt.to_vec();
        let tag = seal(&mut ct);
        ct.extend_from_slice(&tag);
        match &reference {
            None => reference = Some(ct),
            Some(r) => assert!(*r == ct, "the implementations disagree"),
        }
    }
    let ct_tag = reference.unwrap();
    for open in [
        |b: &mut [u8]| aws_lc_open(&aws_lc_key(), b),
        |b: &mut [u8]| ring_open(&ring_key(), b),
        |b: &mut [u8]| rustcrypto_open(&rustcrypto_key(), b),
    ] {
        let mut buf = ct_tag.clone();
        assert_eq!(open(&mut buf), pt.len());
        assert!(buf[..pt.len()] == *pt, "open did not round-trip");
    }
    ct_tag
}

fn bench_seal(c: &mut Criterion) {
    let aws_lc = aws_lc_key();
    let ring = ring_key();
    let rustcrypto = rustcrypto_key();
    let message = message_encryptor();
    let frame_key = message.frame_key();

    let mut group = c.benchmark_group("seal");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for &(len, label) in sizes() {
        let pt = plaintext(len);
        group.throughput(Throughput::BytesDecimal(len as u64));
        let mut buf = pt.clone();
        group.bench_function(BenchmarkId::new("aws-lc-rs", label), |b| {
            b.iter(|| aws_lc_seal(&aws_lc, black_box(&mut buf)))
        });
        group.bench_function(BenchmarkId::new("ring", label), |b| {
            b.iter(|| ring_seal(&ring, black_box(&mut buf)))
        });
        group.bench_function(BenchmarkId::new("aes-gcm", label), |b| {
            b.iter(|| rustcrypto_seal(&rustcrypto, black_box(&mut buf)))
        });
        group.bench_function(BenchmarkId::new("s3-crypto seal_frame", label), |b| {
            b.iter(|| {
                frame_key
                    .seal_frame(1, FrameKind::Regular, black_box(&pt))
                    .unwrap()
            })
        });
        let mut frame = FrameBuffer::new(len);
        frame.set_plaintext(&pt).unwrap();
        group.bench_function(BenchmarkId::new("s3-crypto seal_in_place", label), |b| {
            b.iter(|| {
                frame_key
                    .seal_in_place(1, FrameKind::Regular, black_box(&mut frame))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let aws_lc = aws_lc_key();
    let ring = ring_key();
    let rustcrypto = rustcrypto_key();
    let message = message_encryptor();
    let frame_key = message.frame_key();

    let mut group = c.benchmark_group("open");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for &(len, label) in sizes() {
        let pt = plaintext(len);
        let ct_tag = sealed(&pt);
        group.throughput(Throughput::BytesDecimal(len as u64));
        group.bench_function(BenchmarkId::new("aws-lc-rs", label), |b| {
            b.iter_batched_ref(
                || ct_tag.clone(),
                |buf| aws_lc_open(&aws_lc, buf),
                BatchSize::LargeInput,
            )
        });
        group.bench_function(BenchmarkId::new("ring", label), |b| {
            b.iter_batched_ref(
                || ct_tag.clone(),
                |buf| ring_open(&ring, buf),
                BatchSize::LargeInput,
            )
        });
        group.bench_function(BenchmarkId::new("aes-gcm", label), |b| {
            b.iter_batched_ref(
                || ct_tag.clone(),
                |buf| rustcrypto_open(&rustcrypto, buf),
                BatchSize::LargeInput,
            )
        });

        let frame = frame_key.seal_frame(1, FrameKind::Regular, &pt).unwrap();
        let (iv, body) = frame[4..].split_at(12);
        let mut check = body.to_vec();
        let opened = frame_key
            .open_frame(1, FrameKind::Regular, iv, &mut check)
            .unwrap();
        assert!(*opened == *pt, "open_frame did not round-trip");
        group.bench_function(BenchmarkId::new("s3-crypto open_frame", label), |b| {
            b.iter_batched_ref(
                || body.to_vec(),
                |buf| {
                    frame_key
                        .open_frame(1, FrameKind::Regular, iv, buf)
                        .unwrap()
                        .len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_seal, bench_open);
criterion_main!(benches);
