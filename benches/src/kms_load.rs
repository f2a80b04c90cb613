//! `kms-load`: a load driver for AWS-KMS-compatible endpoints (envelope, moto, ...).
//!
//! Every worker is a tokio task that owns one HTTP/1.1 keep-alive connection and signs
//! every request afresh with SigV4 (`kms_server::sigv4::KmsSigner`, which keeps the day's signing key as the AWS SDKs do), as a real
//! client would. Per-request latency is recorded in microseconds; after the run the
//! samples of all workers are merged and reported per (operation, concurrency).

use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hyper::body::Bytes;
use tokio::net::TcpStream;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Upper bound for a single request (connect + send + full response).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "kms-load",
    about = "Load driver for AWS-KMS-compatible endpoints (SigV4-signed JSON 1.1 over HTTP/1.1)"
)]
struct Args {
    /// Endpoint URL (http:// only), e.g. http://127.0.0.1:4599
    #[arg(long, default_value = "http://127.0.0.1:4599")]
    endpoint: String,
    /// AWS shared credentials file to read the access key from.
    #[arg(long, conflicts_with_all = ["access_key_id", "secret_access_key"])]
    credentials_file: Option<String>,
    /// Profile (section) in the credentials file.
    #[arg(long, default_value = "envelope")]
    profile: String,
    /// Access key id (instead of --credentials-file).
    #[arg(long, requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// Secret access key (instead of --credentials-file).
    #[arg(long, requires = "access_key_id")]
    secret_access_key: Option<String>,
    /// Signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Comma-separated list of concurrencies (connections / in-flight requests).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Measured seconds per (operation, concurrency).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before each measurement (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Comma-separated operations: GenerateDataKey, Decrypt, TagResource (writes one tag of the
    /// key), CreateKey (writes a key per call: a 10 s run makes thousands).
    #[arg(long, value_delimiter = ',', default_value = "GenerateDataKey,Decrypt")]
    ops: Vec<String>,
    /// Tokio worker threads for the driver (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Use this key instead of creating one.
    #[arg(long)]
    key_id: Option<String>,
    /// Encryption context for GenerateDataKey and Decrypt, as comma-separated `k=v` pairs.
    #[arg(long, value_delimiter = ',', value_name = "K=V")]
    encryption_context: Vec<String>,
    /// Label for the target in the output (e.g. envelope, moto).
    #[arg(long, default_value = "server")]
    label: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Comma-separated flood sizes: beside the measured stream, this many extra connections send
    /// requests that fail authentication as fast as they are answered (0 = no flood). Each
    /// (operation, concurrency) is measured once per flood size, in this order.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    flood: Vec<usize>,
    /// What the flood sends: `bad-signature` (a known access key, a wrong secret: the server
    /// verifies each signature) or `unknown-key` (an access key the server does not know).
    #[arg(long, default_value = "bad-signature")]
    flood_kind: String,
    /// Only measure the driver's own signing cost: sign N GenerateDataKey requests
    /// (no I/O, no server needed) and print the time per request.
    #[arg(long, value_name = "N")]
    sign_bench: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GenerateDataKey,
    Decrypt,
    /// A write: one tag on the benchmark key, set again and again (the key row locked, the tags
    /// counted and upserted in one transaction, the key's cache entries forgotten).
    TagResource,
    /// A write under the per-account keys quota: each call makes a key (count and insert in one
    /// transaction).
    CreateKey,
}

impl Op {
    fn parse(s: &str) -> Res<Op> {
        match s.trim() {
            "GenerateDataKey" => Ok(Op::GenerateDataKey),
            "Decrypt" => Ok(Op::Decrypt),
            "TagResource" => Ok(Op::TagResource),
            "CreateKey" => Ok(Op::CreateKey),
            other => Err(format!(
                "unsupported op {other:?} (GenerateDataKey, Decrypt, TagResource, CreateKey)"
            )
            .into()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Op::GenerateDataKey => "GenerateDataKey",
            Op::Decrypt => "Decrypt",
            Op::TagResource => "TagResource",
            Op::CreateKey => "CreateKey",
        }
    }
}

/// Everything a worker needs to build and sign a request; shared read-only.
struct Target {
    addr: SocketAddr,
    host: String,
    signer: kms_server::sigv4::KmsSigner,
    first_error_printed: AtomicBool,
}

/// A prepared request: target header and body are fixed, the signature is not.
struct Call {
    target: &'static str,
    body: Bytes,
}

impl Call {
    fn new(op_name: &str, body: String) -> Res<Call> {
        let target: &'static str = match op_name {
            "CreateKey" => "TrentService.CreateKey",
            "GenerateDataKey" => "TrentService.GenerateDataKey",
            "Decrypt" => "TrentService.Decrypt",
            "TagResource" => "TrentService.TagResource",
            other => return Err(format!("no target for {other}").into()),
        };
        Ok(Call {
            target,
            body: Bytes::from(body),
        })
    }
}

enum CallError {
    /// Non-200 response: status and body.
    Status(u16, Bytes),
    /// Connection, protocol or timeout failure; the connection is dropped.
    Transport(String),
}

/// One keep-alive HTTP/1.1 connection, spoken directly: the request is formatted into one buffer
/// and written with one call, the response read until its Content-Length is complete. A load
/// generator should cost as little as possible beside the server it measures (like wrk); hyper's
/// client adds a connection task and a channel hop per request, which doubled the driver's CPU.
struct RawConn {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

async fn connect(addr: SocketAddr) -> Res<RawConn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(RawConn {
        stream,
        out: Vec::with_capacity(2048),
        inbuf: Vec::with_capacity(8192),
    })
}

/// Writes a freshly signed request for `call` into `out`.
fn build_request(t: &Target, call: &Call, out: &mut Vec<u8>) {
    use std::io::Write;
    let now = time::OffsetDateTime::now_utc();
    let [(_, date), (_, auth)] = t.signer.sign(&t.host, call.target, &call.body, now);
    out.clear();
    let _ = write!(
        out,
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amz-target: {}\r\n\
         x-amz-date: {date}\r\nauthorization: {auth}\r\ncontent-length: {}\r\n\r\n",
        t.host,
        call.target,
        call.body.len()
    );
    out.extend_from_slice(&call.body);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a response head: (status, content length if given, connection kept open).
fn parse_head(head: &[u8]) -> Result<(u16, Option<usize>, bool), CallError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| CallError::Transport("non-UTF-8 response head".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CallError::Transport(format!("bad status line {status_line:?}")))?;
    let mut length = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("connection") {
                keep_alive = v.eq_ignore_ascii_case("keep-alive")
                    || (keep_alive && !v.eq_ignore_ascii_case("close"));
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(CallError::Transport(
                    "chunked responses are not supported by kms-load".into(),
                ));
            }
        }
    }
    Ok((status, length, keep_alive))
}

impl RawConn {
    /// Reads what the socket has into `inbuf`; 0 at end of stream.
    async fn read_more(&mut self, chunk: &mut [u8]) -> Result<usize, CallError> {
        use tokio::io::AsyncReadExt;
        let n = self
            .stream
            .read(chunk)
            .await
            .map_err(|e| CallError::Transport(format!("receive: {e}")))?;
        self.inbuf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Sends `out` and reads one response. Returns (status, body, connection reusable).
    async fn round_trip(&mut self) -> Result<(u16, Bytes, bool), CallError> {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| CallError::Transport(format!("send: {e}")))?;
        self.inbuf.clear();
        let mut chunk = [0u8; 8192];
        let (head_end, status, length, keep_alive) = loop {
            if let Some(i) = find(&self.inbuf, b"\r\n\r\n") {
                let (status, length, keep_alive) = parse_head(&self.inbuf[..i])?;
                break (i + 4, status, length, keep_alive);
            }
            if self.read_more(&mut chunk).await? == 0 {
                return Err(CallError::Transport(
                    "connection closed before the response".into(),
                ));
            }
        };
        loop {
            let have = self.inbuf.len() - head_end;
            if length.is_some_and(|l| have >= l) {
                break;
            }
            if self.read_more(&mut chunk).await? == 0 {
                if length.is_none() {
                    break; // body delimited by close
                }
                return Err(CallError::Transport("connection closed mid-body".into()));
            }
        }
        let end = length.map_or(self.inbuf.len(), |l| head_end + l);
        let body = Bytes::copy_from_slice(&self.inbuf[head_end..end]);
        Ok((status, body, keep_alive && length.is_some()))
    }
}

/// One signed request over `conn` (reconnecting if needed). Returns the response body.
///
/// No per-request timer (that would be a timer-wheel entry per request on the driver's
/// core); a hung request is bounded by the worker-level deadline in [`worker`].
async fn call_once(
    t: &Target,
    conn: &mut Option<RawConn>,
    call: &Call,
) -> Result<Bytes, CallError> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => connect(t.addr)
            .await
            .map_err(|e| CallError::Transport(format!("connect: {e}")))?,
    };
    build_request(t, call, &mut c.out);
    let (status, body, reusable) = c.round_trip().await?;
    if reusable {
        *conn = Some(c);
    }
    if status == 200 {
        Ok(body)
    } else {
        Err(CallError::Status(status, body))
    }
}

/// A call bounded by [`REQUEST_TIMEOUT`] (setup only).
async fn call_with_timeout(
    t: &Target,
    conn: &mut Option<RawConn>,
    call: &Call,
) -> Result<Bytes, CallError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call_once(t, conn, call)).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Transport(format!(
            "timed out after {}s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

fn describe(e: &CallError) -> String {
    match e {
        CallError::Status(s, b) => format!("HTTP {s}: {}", String::from_utf8_lossy(b)),
        CallError::Transport(m) => m.clone(),
    }
}

/// A setup call: must succeed; returns the parsed JSON response.
async fn setup_call(t: &Target, call: &Call) -> Res<serde_json::Value> {
    let mut conn = None;
    let body = call_with_timeout(t, &mut conn, call)
        .await
        .map_err(|e| format!("{} failed: {}", call.target, describe(&e)))?;
    Ok(serde_json::from_slice(&body)?)
}

#[derive(Default)]
struct WorkerResult {
    /// Latencies of successful requests, microseconds.
    latencies_us: Vec<u32>,
    errors: u64,
    last_done: Option<Instant>,
}

async fn worker(
    t: Arc<Target>,
    call: Arc<Call>,
    measure_from: Instant,
    end: Instant,
) -> WorkerResult {
    let mut res = WorkerResult {
        latencies_us: Vec::with_capacity(1 << 16),
        ..Default::default()
    };
    // One timer per worker instead of one per request: requests still in flight
    // REQUEST_TIMEOUT after the end of the run count as errors.
    let deadline = tokio::time::Instant::from_std(end + REQUEST_TIMEOUT);
    let hung = tokio::time::timeout_at(
        deadline,
        worker_loop(&t, &call, measure_from, end, &mut res),
    )
    .await
    .is_err();
    if hung {
        res.errors += 1;
        if !t.first_error_printed.swap(true, Ordering::Relaxed) {
            eprintln!(
                "kms-load: first error ({}): request still pending {}s after the run ended",
                call.target,
                REQUEST_TIMEOUT.as_secs()
            );
        }
    }
    res
}

async fn worker_loop(
    t: &Target,
    call: &Call,
    measure_from: Instant,
    end: Instant,
    res: &mut WorkerResult,
) {
    let mut conn = None;
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let outcome = call_once(t, &mut conn, call).await;
        let done = Instant::now();
        let measured = start >= measure_from;
        match outcome {
            Ok(_) => {
                if measured {
                    let us = done.duration_since(start).as_micros();
                    res.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Err(e) => {
                if measured {
                    res.errors += 1;
                }
                if !t.first_error_printed.swap(true, Ordering::Relaxed) {
                    eprintln!("kms-load: first error ({}): {}", call.target, describe(&e));
                }
                if matches!(e, CallError::Transport(_)) {
                    // Do not spin if the server is gone.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if measured {
            res.last_done = Some(done);
        }
    }
}

struct Report {
    label: String,
    op: Op,
    concurrency: usize,
    threads: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    rps: f64,
    p50_us: u32,
    p99_us: u32,
    max_us: u32,
    flood: usize,
    /// Flood requests answered per second (all refused, as they must be).
    flood_rps: f64,
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run_one(
    args: &Args,
    t: &Arc<Target>,
    op: Op,
    call: &Arc<Call>,
    concurrency: usize,
    flood: Option<(&Arc<Target>, usize)>,
) -> Res<Report> {
    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let flood_size = flood.map_or(0, |(_, n)| n);
    let refused = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = flood
        .into_iter()
        .flat_map(|(ft, n)| (0..n).map(move |_| ft.clone()))
        .map(|ft| {
            let (call, refused) = (call.clone(), refused.clone());
            tokio::spawn(flood_worker(ft, call, measure_from, end, refused))
        })
        .collect();
    let handles: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(t.clone(), call.clone(), measure_from, end)))
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut last_done = None;
    for h in handles {
        let r = h.await?;
        all.extend_from_slice(&r.latencies_us);
        errors += r.errors;
        last_done = last_done.max(r.last_done);
    }
    for f in flooders {
        f.await?;
    }
    all.sort_unstable();
    let seconds = last_done
        .map(|d| d.duration_since(measure_from).as_secs_f64())
        .filter(|s| *s > 0.0)
        .unwrap_or(args.duration);
    let ok = all.len() as u64;
    Ok(Report {
        label: args.label.clone(),
        op,
        concurrency,
        threads: args.threads,
        requests: ok + errors,
        errors,
        seconds,
        rps: ok as f64 / seconds,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
        max_us: all.last().copied().unwrap_or(0),
        flood: flood_size,
        flood_rps: refused.load(Ordering::Relaxed) as f64 / args.duration,
    })
}

/// One flooding connection: sends `call` signed by the flood's signer (which the server must
/// refuse) as fast as it is answered, and counts the refusals answered in the measured window.
async fn flood_worker(
    t: Arc<Target>,
    call: Arc<Call>,
    measure_from: Instant,
    end: Instant,
    refused: Arc<AtomicU64>,
) {
    let deadline = tokio::time::Instant::from_std(end + REQUEST_TIMEOUT);
    let _ = tokio::time::timeout_at(deadline, async {
        let mut conn = None;
        while Instant::now() < end {
            let outcome = call_once(&t, &mut conn, &call).await;
            let now = Instant::now();
            match outcome {
                Err(CallError::Status(400, _)) if now >= measure_from && now < end => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(CallError::Status(400, _)) => {}
                Ok(_) => {
                    eprintln!("kms-load: a flood request was accepted; the flood is not forged");
                    return;
                }
                Err(e) => {
                    if !t.first_error_printed.swap(true, Ordering::Relaxed) {
                        eprintln!("kms-load: first flood error: {}", describe(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .await;
}

fn read_credentials(path: &str, profile: &str) -> Res<(String, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut in_section = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            in_section = name == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(i), Some(s)) => Ok((i, s)),
        _ => Err(format!(
            "profile [{profile}] in {path} lacks aws_access_key_id/aws_secret_access_key"
        )
        .into()),
    }
}

/// Returns (socket address, host header value) for an http:// endpoint.
async fn parse_endpoint(endpoint: &str) -> Res<(SocketAddr, String)> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or("only http:// endpoints are supported")?;
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    if authority.is_empty() {
        return Err("endpoint has no host".into());
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(with_port.as_str())
        .await?
        .next()
        .ok_or_else(|| format!("cannot resolve {with_port}"))?;
    Ok((addr, authority))
}

fn print_table_header() {
    println!(
        "{:<12} {:<16} {:>5} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>6} {:>10}",
        "target",
        "op",
        "conc",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "flood",
        "flood/s"
    );
}

fn print_row(r: &Report) {
    let ms = |us: u32| f64::from(us) / 1000.0;
    println!(
        "{:<12} {:<16} {:>5} {:>9} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>6} {:>10.0}",
        r.label,
        r.op.name(),
        r.concurrency,
        r.requests,
        r.errors,
        r.rps,
        ms(r.p50_us),
        ms(r.p99_us),
        ms(r.max_us),
        r.flood,
        r.flood_rps
    );
}

fn flood_kind_label(flood: usize) -> &'static str {
    if flood == 0 {
        "none"
    } else {
        FLOOD_KIND.get().copied().unwrap_or("")
    }
}

/// The flood kind, for the JSON lines.
static FLOOD_KIND: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn print_json(r: &Report) {
    let v = serde_json::json!({
        "target": r.label,
        "op": r.op.name(),
        "concurrency": r.concurrency,
        "threads": r.threads,
        "requests": r.requests,
        "errors": r.errors,
        "seconds": r.seconds,
        "rps": r.rps,
        "p50_us": r.p50_us,
        "p99_us": r.p99_us,
        "max_us": r.max_us,
        "flood": r.flood,
        "flood_kind": flood_kind_label(r.flood),
        "flood_rps": r.flood_rps,
    });
    println!("{v}");
}

/// Time signing alone and a whole signed request build.
fn sign_bench(t: &Target, n: u32) -> Res<()> {
    let body = r#"{"KeyId":"00000000-0000-0000-0000-000000000000","KeySpec":"AES_256"}"#;
    let call = Call::new("GenerateDataKey", body.to_string())?;
    let n = n.max(1);
    let start = Instant::now();
    for _ in 0..n {
        let signed = t.signer.sign(
            &t.host,
            call.target,
            &call.body,
            time::OffsetDateTime::now_utc(),
        );
        std::hint::black_box(signed);
    }
    let sign = start.elapsed() / n;
    let start = Instant::now();
    let mut out = Vec::with_capacity(2048);
    for _ in 0..n {
        build_request(t, &call, &mut out);
        std::hint::black_box(&out);
    }
    let build = start.elapsed() / n;
    println!(
        "sign: {:.2} us/request; signed request build: {:.2} us/request ({n} iterations)",
        sign.as_secs_f64() * 1e6,
        build.as_secs_f64() * 1e6
    );
    Ok(())
}

async fn run(args: Args) -> Res<()> {
    let ops = args
        .ops
        .iter()
        .map(|s| Op::parse(s))
        .collect::<Res<Vec<_>>>()?;
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err("--concurrency needs positive integers".into());
    }
    let times_ok = args.duration.is_finite()
        && args.warmup.is_finite()
        && args.duration > 0.0
        && args.warmup >= 0.0
        && args.duration + args.warmup < 1e9;
    if !times_ok {
        return Err("--duration must be > 0 and --warmup >= 0".into());
    }
    let (access_key_id, secret) = match (
        &args.credentials_file,
        &args.access_key_id,
        &args.secret_access_key,
    ) {
        (Some(f), _, _) => read_credentials(f, &args.profile)?,
        (None, Some(i), Some(s)) => (i.clone(), s.clone()),
        _ => return Err(
            "give --credentials-file F [--profile P] or --access-key-id X --secret-access-key Y"
                .into(),
        ),
    };
    let (addr, host) = parse_endpoint(&args.endpoint).await?;
    let target = Arc::new(Target {
        addr,
        host,
        signer: kms_server::sigv4::KmsSigner::new(&access_key_id, &secret, &args.region),
        first_error_printed: AtomicBool::new(false),
    });

    if let Some(n) = args.sign_bench {
        sign_bench(&target, n)?;
        return Ok(());
    }

    let key_id = match &args.key_id {
        Some(k) => k.clone(),
        None => {
            let body = serde_json::json!({"Description": "kms-load benchmark key"}).to_string();
            let v = setup_call(&target, &Call::new("CreateKey", body)?).await?;
            v.pointer("/KeyMetadata/KeyId")
                .and_then(|k| k.as_str())
                .ok_or("CreateKey response lacks KeyMetadata.KeyId")?
                .to_string()
        }
    };
    eprintln!(
        "kms-load: {} ({}) using KeyId {key_id}",
        args.label, args.endpoint
    );

    let mut context = serde_json::Map::new();
    for pair in &args.encryption_context {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("--encryption-context {pair:?}: expected K=V"))?;
        context.insert(k.to_string(), v.into());
    }
    let mut gdk_body = serde_json::json!({"KeyId": key_id, "KeySpec": "AES_256"});
    if !context.is_empty() {
        gdk_body["EncryptionContext"] = context.clone().into();
    }
    let gdk_body = gdk_body.to_string();
    let gdk = Arc::new(Call::new("GenerateDataKey", gdk_body)?);
    let mut decrypt = None;
    if ops.contains(&Op::Decrypt) {
        let v = setup_call(&target, &gdk).await?;
        let blob = v
            .get("CiphertextBlob")
            .and_then(|b| b.as_str())
            .ok_or("GenerateDataKey response lacks CiphertextBlob")?;
        let mut body = serde_json::json!({"CiphertextBlob": blob});
        if !context.is_empty() {
            body["EncryptionContext"] = context.clone().into();
        }
        let body = body.to_string();
        decrypt = Some(Arc::new(Call::new("Decrypt", body)?));
    }

    // The flood signs with a secret the server does not hold for its access key id.
    let (flood_key, flood_secret, kind) = match args.flood_kind.as_str() {
        "bad-signature" => (access_key_id.clone(), format!("{secret}x"), "bad-signature"),
        "unknown-key" => (
            "AKIAFLOODFLOODFLOOD0".to_string(),
            secret.clone(),
            "unknown-key",
        ),
        other => return Err(format!("--flood-kind {other}: bad-signature or unknown-key").into()),
    };
    let _ = FLOOD_KIND.set(kind);
    let flood_target = Arc::new(Target {
        addr: target.addr,
        host: target.host.clone(),
        signer: kms_server::sigv4::KmsSigner::new(&flood_key, &flood_secret, &args.region),
        first_error_printed: AtomicBool::new(false),
    });
    if !args.json {
        print_table_header();
    }
    let tag = Arc::new(Call::new(
        "TagResource",
        serde_json::json!({"KeyId": key_id, "Tags": [{"TagKey": "bench", "TagValue": "v"}]})
            .to_string(),
    )?);
    let create = Arc::new(Call::new(
        "CreateKey",
        serde_json::json!({"Description": "kms-load CreateKey"}).to_string(),
    )?);
    for &op in &ops {
        let call = match op {
            Op::GenerateDataKey => &gdk,
            Op::Decrypt => decrypt.as_ref().ok_or("decrypt call not prepared")?,
            Op::TagResource => &tag,
            Op::CreateKey => &create,
        };
        for &c in &args.concurrency {
            for &f in &args.flood {
                let flood = (f > 0).then_some((&flood_target, f));
                let r = run_one(&args, &target, op, call, c, flood).await?;
                if args.json {
                    print_json(&r);
                } else {
                    print_row(&r);
                }
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args))
}
