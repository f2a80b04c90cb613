//! The encrypt + Content-MD5 pipeline without a store: parts of whole frames, numbered 1..n once
//! each, each with the MD5 of its bytes, that concatenate into a message that decrypts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use md5::{Digest, Md5};
use s3_crypto::esdk::pipeline::{encrypt_parts, EncryptedPart, PipelineConfig, PipelineSummary};
use s3_crypto::{AlgorithmSuite, Decryptor, Encryptor, Error};

use crate::{keyring, plaintext};

/// Parts by number: bytes, whether last, plaintext length.
type Parts = BTreeMap<u32, (Vec<u8>, bool, u64)>;

/// Runs the pipeline over `data`; returns the parts and the summary.
fn run(data: &[u8], frame_length: u32, config: &PipelineConfig) -> (Parts, PipelineSummary) {
    let keyring = keyring();
    let encryptor = s3_crypto::esdk::stream::Encryptor::new(&keyring)
        .frame_length(frame_length)
        .encryption_context([("purpose", "pipeline")].into_iter().collect());
    let encryptor = crate::store::block_on(encryptor.begin()).unwrap();
    let parts = Mutex::new(BTreeMap::new());
    let summary = encrypt_parts(encryptor, config, data, |part| {
        let bytes = part.body.as_bytes().to_vec();
        let md5: [u8; 16] = Md5::digest(&bytes).into();
        assert_eq!(
            part.md5, md5,
            "part {}: Content-MD5 of other bytes",
            part.number
        );
        let old = parts
            .lock()
            .unwrap()
            .insert(part.number, (bytes, part.last, part.plaintext_len));
        assert!(old.is_none(), "part {} twice", part.number);
        Ok(())
    })
    .unwrap();
    (parts.into_inner().unwrap(), summary)
}

fn check(data: &[u8], frame_length: u32, config: &PipelineConfig) -> PipelineSummary {
    let (parts, summary) = run(data, frame_length, config);
    let what = format!("{} B, frame {frame_length}, {config:?}", data.len());
    assert_eq!(summary.parts as usize, parts.len(), "{what}");
    assert_eq!(
        parts.keys().copied().collect::<Vec<_>>(),
        (1..=summary.parts).collect::<Vec<_>>(),
        "{what}"
    );
    let lasts: Vec<u32> = parts.iter().filter(|(_, p)| p.1).map(|(n, _)| *n).collect();
    assert_eq!(
        lasts,
        vec![summary.parts],
        "{what}: the last part is the last"
    );
    for (n, (bytes, last, _)) in &parts {
        if !last {
            assert!(
                bytes.len() >= config.get_part_size(),
                "{what}: part {n} short"
            );
        }
    }
    let plain: u64 = parts.values().map(|p| p.2).sum();
    assert_eq!(plain, data.len() as u64, "{what}");
    assert_eq!(summary.plaintext_len, data.len() as u64, "{what}");
    let message: Vec<u8> = parts.into_values().flat_map(|p| p.0).collect();
    assert_eq!(message.len() as u64, summary.message_len, "{what}");
    let (out, header) = Decryptor::new(&keyring())
        .decrypt_to_vec(&message)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out == data, "{what}: plaintext differs");
    assert_eq!(header.frame_length(), frame_length);
    summary
}

#[test]
fn parts_concatenate_into_a_message_that_decrypts() {
    let fl = 1000u32;
    // 10 frames per part: 10 × 1032 = 10320 bytes ≥ 10000.
    let part_size = 10_000;
    let per_part = 10 * fl as usize;
    for threads in [1, 2, 3] {
        for budget in [40_000, 1 << 20] {
            let config = PipelineConfig::new()
                .threads(threads)
                .part_size(part_size)
                .memory_budget(budget)
                .sink_parts(1);
            for size in [
                0,
                1,
                999,
                1000,
                1001,
                per_part - 1,
                per_part,
                per_part + 1,
                3 * per_part,
                7 * per_part + 500,
                40 * per_part + 1,
            ] {
                let summary = check(&plaintext(size), fl, &config);
                let parts = size.div_ceil(per_part).max(1) as u32;
                assert_eq!(summary.parts, parts, "{size} B");
            }
        }
    }
}

#[test]
fn the_budget_sets_the_batch_and_small_budgets_hash_one_part_at_a_time() {
    let fl = 4096;
    let config = PipelineConfig::new()
        .threads(2)
        .part_size(5 << 20)
        .sink_parts(4);
    let plan = config.plan(fl, 200).unwrap();
    assert!(plan.memory() <= 256 << 20);
    assert_eq!(plan.batch_parts, 16, "{plan:?}");
    let small = config
        .clone()
        .memory_budget(32 << 20)
        .plan(fl, 200)
        .unwrap();
    assert_eq!(small.batch_parts, 1, "{small:?}");
    assert!(small.memory() <= 32 << 20);
    let e = config.memory_budget(1 << 20).plan(fl, 200).unwrap_err();
    assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
    // And a run with one part per batch on two threads still produces the message.
    let config = PipelineConfig::new()
        .threads(2)
        .part_size(8192)
        .memory_budget(3 * 8400)
        .sink_parts(1);
    let summary = check(&plaintext(100_000), 1024, &config);
    assert_eq!(summary.plan.batch_parts, 1);
    assert!(summary.parts > 10);
}

/// The part buffers never take more than the memory budget (the measured high-water mark of the
/// buffers that exist at once), for budgets from one part per thread to more than the input needs,
/// with a sink that keeps its last `sink_parts` parts as uploads in flight do, and is slow, so
/// that the workers run ahead as far as the budget lets them.
#[test]
fn part_buffers_stay_within_the_memory_budget() {
    let fl = 1024u32;
    // (part size, budget, threads, parts held by the sink)
    for (part_size, budget, threads, sink_parts) in [
        (8192, 3 * 8400, 2, 1),
        (8192, 5 * 8400, 2, 2),
        (8192, 40 * 8400, 2, 4),
        (8192, 40 * 8400, 3, 4),
        (20_000, 12 * 21_000, 1, 3),
        (20_000, 200_000, 4, 2),
        (20_000, 1 << 30, 2, 4),
    ] {
        let config = PipelineConfig::new()
            .threads(threads)
            .part_size(part_size)
            .memory_budget(budget)
            .sink_parts(sink_parts);
        let what = format!("{config:?}");
        let keyring = keyring();
        let encryptor = crate::store::block_on(
            s3_crypto::esdk::stream::Encryptor::new(&keyring)
                .frame_length(fl)
                .begin(),
        )
        .unwrap();
        let data = plaintext(120 * part_size + 77);
        let held = Mutex::new(VecDeque::<EncryptedPart>::new());
        let summary = encrypt_parts(encryptor, &config, &data[..], |part| {
            std::thread::sleep(std::time::Duration::from_micros(300));
            let mut held = held.lock().unwrap();
            held.push_back(part);
            if held.len() > sink_parts {
                held.pop_front();
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        drop(held);
        let plan = summary.plan;
        assert!(summary.parts >= 100, "{what}: {} parts", summary.parts);
        assert!(
            summary.peak_memory <= budget,
            "{what}: {} bytes of part buffers at once, over the budget of {budget}",
            summary.peak_memory
        );
        assert!(summary.peak_memory <= plan.memory(), "{what}: {plan:?}");
        // The gauge measures: the first batch of buffers existed at once.
        assert!(
            summary.peak_memory >= plan.batch_parts * plan.part_capacity,
            "{what}: peak {} with {plan:?}",
            summary.peak_memory
        );
    }
}

#[test]
fn a_sink_error_stops_the_pipeline_with_that_error() {
    let keyring = keyring();
    let encryptor =
        crate::store::block_on(Encryptor::new(&keyring).frame_length(100).begin()).unwrap();
    let config = PipelineConfig::new()
        .threads(2)
        .part_size(1000)
        .memory_budget(1 << 20);
    let data = plaintext(1 << 20);
    let e = encrypt_parts(encryptor, &config, &data[..], |part| {
        if part.number == 7 {
            Err(Error::InvalidConfiguration("sink full".into()))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(e.to_string().contains("sink full"), "{e}");
}

struct FailingReader(usize);

impl std::io::Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_read_error_is_reported() {
    let keyring = keyring();
    let encryptor =
        crate::store::block_on(Encryptor::new(&keyring).frame_length(100).begin()).unwrap();
    let config = PipelineConfig::new().threads(2).part_size(1000);
    let e = encrypt_parts(encryptor, &config, FailingReader(5000), |_| Ok(())).unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.to_string().contains("disk on fire")),
        "{e}"
    );
}

#[test]
fn signed_suites_are_refused() {
    let keyring = keyring();
    let encryptor = crate::store::block_on(
        Encryptor::new(&keyring)
            .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
            .begin(),
    )
    .unwrap();
    let e = encrypt_parts(encryptor, &PipelineConfig::new(), &b"x"[..], |_| Ok(())).unwrap_err();
    assert!(matches!(e, Error::UnsupportedAlgorithmSuite(0x0578)), "{e}");
}
