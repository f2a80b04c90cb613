//! `upload-bench`: the encrypt + Content-MD5 upload pipeline (`s3_crypto::esdk::pipeline`) over a
//! file, into a null sink or into an S3-compatible store (a framed object, parts uploaded
//! concurrently). Prints one line of results; `benches/run-upload-bench.sh` runs it beside
//! `md5sum` of the same file, under `/usr/bin/time -v` for the peak memory.
//!
//! ```text
//! upload-bench --file F --threads 2 --sink null
//! upload-bench --file F --threads 2 --sink s3      # ENVELOPE_TEST_S3_* name the store
//! ```

use std::error::Error;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use s3_crypto::esdk::pipeline::{encrypt_parts, PipelineConfig};
use s3_crypto::esdk::s3::{put_framed_object_from_reader, PutOptions};
use s3_crypto::{Encryptor, RawAesKeyring};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sink {
    /// Parts are dropped once sealed and hashed (their buffers go back to the pool).
    Null,
    /// Parts go to the store named by ENVELOPE_TEST_S3_* (as `scripts/garage.sh` writes them).
    S3,
}

#[derive(Parser, Debug)]
#[command(
    name = "upload-bench",
    about = "The encrypt + Content-MD5 upload pipeline over a file"
)]
struct Args {
    /// The input file (read through the page cache).
    #[arg(long)]
    file: std::path::PathBuf,
    /// Threads that seal and hash parts.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Where the parts go.
    #[arg(long, value_enum, default_value_t = Sink::Null)]
    sink: Sink,
    /// Least bytes per part.
    #[arg(long, default_value_t = 5 << 20)]
    part_size: usize,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = 64 << 10)]
    frame_length: u32,
    /// Bytes all part buffers may take.
    #[arg(long, default_value_t = 256 << 20)]
    memory_budget: usize,
    /// Parts uploading at once (also the parts the null sink is assumed to hold).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

fn main() -> Res<()> {
    let args = Args::parse();
    let keyring = RawAesKeyring::new("bench", "upload", &[0x11u8; 32])?;
    let size = std::fs::metadata(&args.file)?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started;
    let (parts, batch, memory) = match args.sink {
        Sink::Null => {
            let encryptor = runtime.block_on(
                Encryptor::new(&keyring)
                    .frame_length(args.frame_length)
                    .begin(),
            )?;
            let config = PipelineConfig::new()
                .threads(args.threads)
                .part_size(args.part_size)
                .memory_budget(args.memory_budget)
                .sink_parts(args.concurrency);
            let input = std::fs::File::open(&args.file)?;
            started = Instant::now();
            let summary = encrypt_parts(encryptor, &config, input, |part| {
                std::hint::black_box(&part.md5);
                Ok(())
            })?;
            (
                summary.parts,
                summary.plan.batch_parts,
                summary.plan.memory(),
            )
        }
        Sink::S3 => {
            let var = |name: &str| {
                std::env::var(name).map_err(|_| {
                    format!("{name} is not set (scripts/garage.sh start DIR writes DIR/env)")
                })
            };
            let config = aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new(
                    std::env::var("ENVELOPE_TEST_S3_REGION").unwrap_or_else(|_| "garage".into()),
                ))
                .endpoint_url(var("ENVELOPE_TEST_S3_ENDPOINT")?)
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    var("ENVELOPE_TEST_S3_ACCESS_KEY_ID")?,
                    var("ENVELOPE_TEST_S3_SECRET_ACCESS_KEY")?,
                    None,
                    None,
                    "bench",
                ))
                .build();
            let client = aws_sdk_s3::Client::from_conf(config);
            let bucket = var("ENVELOPE_TEST_S3_BUCKET")?;
            let key = format!("upload-bench/{}", std::process::id());
            let options = PutOptions::new()
                .frame_length(args.frame_length)
                .part_size(args.part_size)
                .threads(args.threads)
                .concurrency(args.concurrency)
                .memory_budget(args.memory_budget)
                .expected_size(Some(size));
            let input = std::fs::File::open(&args.file)?;
            started = Instant::now();
            let summary = runtime.block_on(put_framed_object_from_reader(
                &client, &bucket, &key, &keyring, &options, input,
            ))?;
            let elapsed = started.elapsed();
            runtime.block_on(client.delete_object().bucket(&bucket).key(&key).send())?;
            return report(
                &args,
                size,
                elapsed,
                summary.parts,
                summary.batch_parts,
                summary.memory,
            );
        }
    };
    report(&args, size, started.elapsed(), parts, batch, memory)
}

fn report(
    args: &Args,
    size: u64,
    elapsed: std::time::Duration,
    parts: u32,
    batch: usize,
    memory: usize,
) -> Res<()> {
    let secs = elapsed.as_secs_f64();
    println!(
        "sink={:?} threads={} bytes={size} seconds={secs:.3} GB/s={:.3} parts={parts} batch_parts={batch} buffer_budget_MiB={}",
        args.sink,
        args.threads,
        size as f64 / secs / 1e9,
        memory >> 20,
    );
    Ok(())
}
