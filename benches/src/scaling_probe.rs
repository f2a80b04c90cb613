//! How well this machine scales AES-256-GCM from one thread to two, with and without the copy that
//! a file encryption makes.
//!
//! `envelope encrypt` reads each frame out of the page cache (a kernel copy from memory that is not
//! in any cache) and seals it in place. This probe does the same work without files, syscalls or the
//! frame pipeline, so that its 2-thread/1-thread ratio is the ceiling for the CLI's on this machine:
//!
//! - `aes`: each thread seals one chunk-sized buffer (1 MiB by default) over and over;
//! - `copy`: each thread copies its half of a 1 GiB buffer into that buffer, chunk by chunk;
//! - `copy+aes`: the copy, then the seal of each chunk, which is what a frame costs.
//!
//! The three are run in turn, 1 and 2 threads interleaved, `--runs` times; medians are printed.
//!
//! ```text
//! cargo run --release -p benches --bin scaling-probe -- --runs 9
//! ```

use std::time::Instant;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Repetitions of each measurement (medians are reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Size of the source buffer in MiB (larger than the last-level cache).
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Bytes copied and sealed at a time, in KiB (a frame, or a batch of frames).
    #[arg(long, default_value_t = 1024)]
    chunk_kib: usize,
}

const MIB: usize = 1 << 20;

#[derive(Clone, Copy)]
enum Work {
    Aes,
    Copy,
    CopyAes,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Aes => "aes",
            Work::Copy => "copy",
            Work::CopyAes => "copy+aes",
        }
    }
}

type Res<T> = Result<T, aws_lc_rs::error::Unspecified>;

/// Runs `work` over `source` split between `threads`; returns seconds.
fn once(work: Work, source: &[u8], threads: usize, chunk: usize) -> Res<f64> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32])?);
    let per = source.len() / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for part in source.chunks(per) {
            let key = &key;
            handles.push(s.spawn(move || -> Res<()> {
                let mut buf = vec![0u8; chunk];
                let mut tag_sum = 0u8;
                for (i, chunk) in part.chunks(chunk).enumerate() {
                    let n = chunk.len();
                    if !matches!(work, Work::Aes) {
                        buf[..n].copy_from_slice(chunk);
                    }
                    if !matches!(work, Work::Copy) {
                        let mut nonce = [0u8; 12];
                        nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        let tag = key.seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::empty(),
                            &mut buf[..n],
                        )?;
                        tag_sum ^= tag.as_ref()[0];
                    }
                }
                std::hint::black_box((tag_sum, &buf));
                Ok(())
            }));
        }
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err(aws_lc_rs::error::Unspecified)))
    })?;
    Ok(start.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Res<()> {
    let args = Args::parse();
    let source: Vec<u8> = (0..args.mib * MIB).map(|i| (i * 31 + 7) as u8).collect();
    let gb = source.len() as f64 / 1e9;
    let chunk = args.chunk_kib.max(1) * 1024;
    println!("| work | 1 thread GB/s | 2 threads GB/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for work in [Work::Aes, Work::Copy, Work::CopyAes] {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        once(work, &source, 1, chunk)?;
        for r in 0..args.runs {
            // Interleaved, in alternating order, so a drift of the host hits both alike.
            if r % 2 == 0 {
                one.push(once(work, &source, 1, chunk)?);
                two.push(once(work, &source, 2, chunk)?);
            } else {
                two.push(once(work, &source, 2, chunk)?);
                one.push(once(work, &source, 1, chunk)?);
            }
        }
        let (t1, t2) = (median(&mut one), median(&mut two));
        println!(
            "| {} | {:.2} | {:.2} | {:.2}× |",
            work.name(),
            gb / t1,
            gb / t2,
            t1 / t2
        );
    }
    Ok(())
}
