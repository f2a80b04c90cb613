//! Content-MD5 of 16 parts: multi-buffer `md5-many` (`s3_crypto::md5::md5_parts`) beside one
//! `md-5` stream per part, at part lengths of 64 KiB and 1 MiB; and 32 parts of 1 MiB (md5-many's
//! two interleaved chains of 16 lanes on AVX-512).
//!
//! ```text
//! cargo bench -p benches --bench md5
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is the failure report

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use s3_crypto::md5::{md5, md5_parts};

fn parts(count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| (0..len).map(|j| (j * 131 + i * 7) as u8).collect())
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("md5");
    for (count, len, name) in [
        (16, 64 << 10, "16x64KiB"),
        (16, 1 << 20, "16x1MiB"),
        (32, 1 << 20, "32x1MiB"),
    ] {
        let data = parts(count, len);
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        group.throughput(Throughput::Bytes((count * len) as u64));
        group.bench_with_input(BenchmarkId::new("md5-many", name), &slices, |b, s| {
            b.iter(|| md5_parts(s))
        });
        group.bench_with_input(BenchmarkId::new("md-5", name), &slices, |b, s| {
            b.iter(|| s.iter().map(|p| md5(p)).collect::<Vec<_>>())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
