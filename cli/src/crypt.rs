//! `envelope encrypt` and `envelope decrypt`: files and streams in the AWS Encryption SDK message
//! format, through s3-crypto.
//!
//! Output to a file goes to a temporary file beside the destination, renamed over it only after the
//! whole message (every frame, the final frame, the signature) has verified; on any failure no output
//! file exists. Output to stdout (`-o -`) streams: after a failure, stdout may hold the plaintext of
//! the regular frames that verified before the failing one (never the final frame), and the exit
//! status is non-zero — discard it.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use s3_crypto::{
    AlgorithmSuite, CommitmentPolicy, Decryptor, EncryptionContext, Encryptor, Header, Keyring,
    MultiKeyring, RawAesKeyring, ReadAt,
};
use zeroize::Zeroizing;

use crate::{io_err, CliError};

/// Keyring options shared by encrypt and decrypt.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// KMS key: key id, key ARN, alias name or alias ARN (repeatable; the first generates the data
    /// key, each wraps it). On decrypt: the keys allowed to decrypt (each resolved to its key ARN).
    #[arg(long = "key", value_name = "KEY")]
    kms_keys: Vec<String>,
    #[command(flatten)]
    discovery: DiscoveryArgs,
    /// KMS endpoint (else AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL, then AWS's).
    #[arg(long, value_name = "URL", env = "ENVELOPE_KMS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Profile of the shared AWS config and credentials files.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// AWS region of the KMS calls.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Seconds a KMS call may wait for its answer to begin; 0 waits for ever.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0,
          value_parser = crate::s3::parse_read_timeout)]
    read_timeout: f64,
    /// File with a raw AES wrapping key (16, 24 or 32 bytes, raw or base64).
    #[arg(long, value_name = "FILE", requires = "key_name")]
    raw_key_file: Option<PathBuf>,
    /// Name of the raw key (stored in the message; must match on decrypt).
    #[arg(long, value_name = "NAME", requires = "raw_key_file")]
    key_name: Option<String>,
    /// Namespace of the raw key (the ESDK's key provider id).
    #[arg(long, value_name = "NAMESPACE", default_value = "envelope")]
    key_namespace: String,
}

/// KMS discovery on decrypt (`envelope decrypt`, and downloads of `envelope s3 cp`): the key is
/// the one the encrypted data key names, optionally limited to some accounts.
#[derive(Args, Debug)]
pub struct DiscoveryArgs {
    /// Decrypt: use whichever KMS key the message names (limit it with --discovery-account).
    #[arg(long)]
    pub discovery: bool,
    /// Decrypt with --discovery: only keys of this AWS account (repeatable).
    #[arg(long, value_name = "ACCOUNT", requires = "discovery")]
    discovery_account: Vec<String>,
    /// Partition of --discovery-account.
    #[arg(
        long,
        value_name = "PARTITION",
        default_value = "aws",
        requires = "discovery_account"
    )]
    discovery_partition: String,
}

impl DiscoveryArgs {
    /// `None` without `--discovery`; with it, the filter of a discovery keyring (`None`: every
    /// key; else the accounts' keys only).
    pub(crate) fn filter(&self) -> Result<Option<Option<s3_crypto::DiscoveryFilter>>, CliError> {
        if !self.discovery {
            return Ok(None);
        }
        if self.discovery_account.is_empty() {
            return Ok(Some(None));
        }
        let filter = s3_crypto::DiscoveryFilter::new(
            &self.discovery_partition,
            self.discovery_account.clone(),
        )
        .map_err(crypto_err)?;
        Ok(Some(Some(filter)))
    }
}

/// Algorithm suites envelope writes (both key-committing).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Suite {
    /// 0x0478: AES-256-GCM, HKDF-SHA512, key commitment (default).
    #[value(name = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", alias = "0x0478")]
    Committing,
    /// 0x0578: the same, signed with ECDSA P-384 (readers cannot forge messages; serial, slower).
    #[value(
        name = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
        alias = "0x0578"
    )]
    CommittingSigned,
}

/// `envelope encrypt`.
#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Input file, or - for standard input.
    input: PathBuf,
    /// Output file, or - for standard output.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    /// Encryption context pair, k=v (repeatable); stored in the message, authenticated.
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Algorithm suite.
    #[arg(long, value_enum, default_value = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY")]
    suite: Suite,
    /// Frame length in bytes (plaintext per frame).
    #[arg(long, value_name = "BYTES", default_value_t = s3_crypto::DEFAULT_FRAME_LENGTH,
          value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    frame_size: u32,
    #[command(flatten)]
    common: CommonArgs,
}

/// `envelope decrypt`.
#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// Input file, or - for standard input.
    input: PathBuf,
    /// Output file, or - for standard output.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
    /// Encryption context pair the message must carry, k=v (repeatable).
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Also decrypt messages of format version 1 (no key commitment), as older ESDKs wrote them.
    #[arg(long)]
    allow_non_committing: bool,
    /// Refuse messages with more encrypted data keys than this.
    #[arg(long, value_name = "N", default_value_t = s3_crypto::DEFAULT_MAX_ENCRYPTED_DATA_KEYS)]
    max_data_keys: usize,
    /// Refuse messages whose frames (or non-framed body) are longer than this many bytes, before
    /// reading them: decryption holds a frame in memory.
    #[arg(long, value_name = "BYTES", default_value_t = s3_crypto::DEFAULT_MAX_BUFFERED_CONTENT)]
    max_frame_length: u64,
    /// Decrypt only this byte range of the plaintext: FIRST-LAST (inclusive), FIRST- or -SUFFIX, as
    /// HTTP's Range header. Reads only the frames that hold it (input must be a file; framed,
    /// unsigned messages).
    #[arg(long, value_name = "RANGE")]
    range: Option<s3_crypto::ByteRange>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Options of both directions.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Write the message's metadata (suite, context, data keys) as JSON to FILE, or - for stderr.
    #[arg(long, value_name = "FILE")]
    metadata_output: Option<PathBuf>,
    /// Threads sealing or opening frames (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

impl CommonArgs {
    fn threads(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

pub(crate) fn read_wrapping_key(path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    read_key_file(path, &[16, 24, 32], "an AES key: 16, 24 or 32 bytes")
}

/// A KMS client's configuration: endpoint (else the AWS variables), profile, region.
pub(crate) fn kms_builder(
    endpoint_url: Option<&str>,
    profile: Option<&str>,
    region: Option<&str>,
) -> s3_crypto::KmsClientBuilder {
    let mut builder = s3_crypto::KmsClientBuilder::new();
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    if let Some(p) = profile {
        builder = builder.profile(p);
    }
    if let Some(r) = region {
        builder = builder.region(r);
    }
    builder
}

/// A key file: `sizes` bytes, raw or base64 (`what` names it in the error).
pub(crate) fn read_key_file(
    path: &Path,
    sizes: &[usize],
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let raw = Zeroizing::new(
        std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?,
    );
    crate::decode_key(&raw, sizes).ok_or_else(|| {
        CliError::Usage(format!(
            "{} does not hold {what}, raw or base64",
            path.display()
        ))
    })
}

async fn keyring(args: &KeyArgs, decrypting: bool) -> Result<Box<dyn Keyring>, CliError> {
    let mut keyrings: Vec<Box<dyn Keyring>> = Vec::new();
    if args.discovery.discovery && !decrypting {
        return Err(CliError::Usage(
            "--discovery is for decrypt; encrypt needs --key".into(),
        ));
    }
    if !args.kms_keys.is_empty() || args.discovery.discovery {
        let client = kms_builder(
            args.endpoint_url.as_deref(),
            args.profile.as_deref(),
            args.region.as_deref(),
        )
        .read_timeout(crate::s3::read_timeout_of(args.read_timeout))
        .build()
        .await
        .map_err(crypto_err)?;
        if !args.kms_keys.is_empty() {
            // On decrypt only a key ARN names the key: the others are resolved first, as for
            // `envelope s3 cp` downloads.
            let keyring = if decrypting {
                s3_crypto::KmsKeyring::with_key_arns(client.clone(), args.kms_keys.clone()).await
            } else {
                s3_crypto::KmsKeyring::new(client.clone(), args.kms_keys.clone())
            };
            keyrings.push(Box::new(keyring.map_err(crypto_err)?));
        }
        if let Some(filter) = args.discovery.filter()? {
            keyrings.push(Box::new(s3_crypto::KmsKeyring::discovery(client, filter)));
        }
    }
    if let (Some(file), Some(name)) = (&args.raw_key_file, &args.key_name) {
        let key = read_wrapping_key(file)?;
        keyrings.push(Box::new(
            RawAesKeyring::new(&args.key_namespace, name, &key).map_err(crypto_err)?,
        ));
    }
    match keyrings.len() {
        0 => Err(CliError::Usage(
            "no key given: use --key KMS_KEY, or --raw-key-file FILE --key-name NAME".into(),
        )),
        1 => keyrings
            .pop()
            .ok_or_else(|| CliError::Usage("no key".into())),
        _ => {
            let generator = keyrings.remove(0);
            Ok(Box::new(
                MultiKeyring::new(Some(generator), keyrings).map_err(crypto_err)?,
            ))
        }
    }
}

fn crypto_err(e: s3_crypto::Error) -> CliError {
    CliError::Usage(e.to_string())
}

fn context_of(pairs: &[(String, String)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

pub(crate) fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn open_file(path: &Path) -> Result<std::fs::File, CliError> {
    std::fs::File::open(path).map_err(io_err(format!("cannot open {}", path.display())))
}

/// What is read: a regular file, which the workers read at their own offsets (`pread`), or a stream
/// (stdin, a pipe, a device), read in order, unbuffered (frames are read straight into their
/// buffers; decryption adds a small buffer for the header fields).
enum Input {
    File(FileInput),
    Stream(Box<dyn Read + Send>),
}

/// A regular input file and its length when opened; a progress bar, if any, advances with each read.
struct FileInput {
    file: std::fs::File,
    len: u64,
    bar: Option<ProgressBar>,
}

impl FileInput {
    fn advance(&self, n: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }
}

impl ReadAt for FileInput {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = ReadAt::read_at(&self.file, buf, offset)?;
        self.advance(n);
        Ok(n)
    }
}

impl Read for &FileInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (&self.file).read(buf)?;
        self.advance(n);
        Ok(n)
    }
}

impl Seek for &FileInput {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        (&self.file).seek(pos)
    }
}

/// Opens the input, with a progress bar on standard error when it is a terminal, `quiet` is off
/// and the input is large or of unknown length (stdin).
fn open_input(path: &Path, quiet: bool) -> Result<(Input, Option<ProgressBar>), CliError> {
    if is_dash(path) {
        let bar = progress_bar(None, quiet);
        let stdin: Box<dyn Read + Send> = match &bar {
            Some(bar) => Box::new(bar.wrap_read(std::io::stdin())),
            None => Box::new(std::io::stdin()),
        };
        return Ok((Input::Stream(stdin), bar));
    }
    let file = open_file(path)?;
    let meta = file
        .metadata()
        .map_err(io_err(format!("cannot read {}", path.display())))?;
    let bar = progress_bar(Some(meta.len()).filter(|_| meta.is_file()), quiet);
    if !meta.is_file() {
        let stream: Box<dyn Read + Send> = match &bar {
            Some(bar) => Box::new(bar.wrap_read(file)),
            None => Box::new(file),
        };
        return Ok((Input::Stream(stream), bar));
    }
    let input = FileInput {
        file,
        len: meta.len(),
        bar: bar.clone(),
    };
    Ok((Input::File(input), bar))
}

/// Inputs below this size finish too fast for a progress bar to be of use.
const PROGRESS_MIN_LEN: u64 = 32 << 20;

pub(crate) fn progress_bar(len: Option<u64>, quiet: bool) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() || len.is_some_and(|l| l < PROGRESS_MIN_LEN) {
        return None;
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .ok()?,
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {binary_bytes} {binary_bytes_per_sec}").ok()?,
        ),
    };
    Some(bar)
}

/// Output buffering: small writes (header, small frames) are gathered, frames of this size or more
/// go straight through (`BufWriter` passes on writes at least its capacity without copying).
const OUTPUT_BUFFER: usize = 64 << 10;

/// How much of an output file is written before its write-back is started.
const WRITE_BEHIND_BYTES: u64 = 8 << 20;

/// A file written in order that starts the write-back of its pages every [`WRITE_BEHIND_BYTES`],
/// while the rest is still being encrypted or decrypted, so that the fsync before the rename finds
/// little left to do. Measured on this project's 2-CPU VM, 1 GiB into a new file on ext4: write
/// then fsync 0.99 s; the same with the write-back started every 8 MiB 0.53 s. On Linux this is
/// `posix_fadvise(POSIX_FADV_DONTNEED)` over the range just written (rustix, no `unsafe`): the
/// kernel starts writing the range's dirty pages back and keeps them cached, as they are still
/// dirty or under write-back when it looks (any already clean are dropped: their bytes are on
/// disk). `sync_file_range` would say it more directly, but has no safe binding in the crates we
/// build on. Elsewhere this is a plain file.
struct WriteBehind<'f> {
    /// Buffered for small writes; a batch of frames goes to one `writev`.
    inner: BufWriter<&'f std::fs::File>,
    /// Bytes taken so far (a few may still be in `inner`'s buffer: their range is hinted early).
    written: u64,
    started: u64,
}

impl<'f> WriteBehind<'f> {
    fn new(file: &'f std::fs::File) -> Self {
        Self {
            inner: BufWriter::with_capacity(OUTPUT_BUFFER, file),
            written: 0,
            started: 0,
        }
    }

    fn took(&mut self, n: usize) {
        self.written += n as u64;
        if self.written - self.started >= WRITE_BEHIND_BYTES {
            // Only a hint: a refusal costs nothing but the overlap (the fsync still syncs all).
            #[cfg(target_os = "linux")]
            let _ = rustix::fs::fadvise(
                *self.inner.get_ref(),
                self.started,
                std::num::NonZeroU64::new(self.written - self.started),
                rustix::fs::Advice::DontNeed,
            );
            self.started = self.written;
        }
    }
}

impl Write for WriteBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.took(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.took(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where output goes: stdout, an existing device or pipe (written directly, as stdout is), or a
/// temporary file renamed into place on success.
pub(crate) enum Sink {
    Stdout,
    Device(std::fs::File),
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
        force: bool,
    },
}

impl Sink {
    pub(crate) fn open(dest: &Path, input: &Path, force: bool) -> Result<Self, CliError> {
        if is_dash(dest) {
            return Ok(Sink::Stdout);
        }
        // A character device or a FIFO (/dev/null, a named pipe) is written to, never replaced:
        // renaming a temporary file over it would destroy it.
        if let Ok(meta) = std::fs::metadata(dest) {
            if !meta.is_file() && !meta.is_dir() {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .map_err(io_err(format!("cannot open {}", dest.display())))?;
                return Ok(Sink::Device(f));
            }
        }
        if !is_dash(input) && same_file(input, dest) {
            return Err(CliError::Usage(format!(
                "{} is both input and output",
                dest.display()
            )));
        }
        if dest.exists() && !force {
            return Err(CliError::Usage(format!(
                "{} exists; use --force to overwrite it",
                dest.display()
            )));
        }
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".envelope-partial-")
            .tempfile_in(&dir)
            .map_err(io_err(format!(
                "cannot create a temporary file in {}",
                dir.display()
            )))?;
        Ok(Sink::File {
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// Runs `f` on the output (blocking I/O, off the async runtime's worker), then flushes.
    fn write_blocking<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Write) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        tokio::task::block_in_place(|| {
            let mut out = self.writer()?;
            let value = f(&mut out)?;
            out.flush().map_err(io_err("cannot write the output"))?;
            Ok(value)
        })
    }

    /// The output for async writers (S3 downloads), buffered; flush it before
    /// [`commit`](Self::commit).
    pub(crate) fn async_writer(
        &mut self,
    ) -> Result<Box<dyn tokio::io::AsyncWrite + Unpin + Send>, CliError> {
        let file = |f: &std::fs::File| {
            f.try_clone()
                .map(tokio::fs::File::from_std)
                .map_err(io_err("cannot open the output"))
        };
        let out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match self {
            Sink::Stdout => Box::new(async_stdio(std::io::stdout())?),
            Sink::Device(f) => Box::new(file(f)?),
            Sink::File { tmp, .. } => Box::new(file(tmp.as_file())?),
        };
        Ok(Box::new(tokio::io::BufWriter::with_capacity(
            OUTPUT_BUFFER,
            out,
        )))
    }

    fn writer(&mut self) -> Result<Box<dyn Write + '_>, CliError> {
        Ok(match self {
            Sink::Stdout => Box::new(BufWriter::with_capacity(
                OUTPUT_BUFFER,
                std::io::stdout().lock(),
            )),
            Sink::Device(f) => Box::new(BufWriter::with_capacity(OUTPUT_BUFFER, f)),
            Sink::File { tmp, .. } => Box::new(WriteBehind::new(tmp.as_file())),
        })
    }

    /// Makes the output visible: fsync and rename for a file.
    pub(crate) fn commit(self) -> Result<(), CliError> {
        match self {
            Sink::Stdout => std::io::stdout()
                .flush()
                .map_err(io_err("cannot write to standard output")),
            Sink::Device(_) => Ok(()),
            Sink::File { tmp, dest, force } => {
                tmp.as_file()
                    .sync_all()
                    .map_err(io_err("cannot sync the output"))?;
                let done = if force {
                    tmp.persist(&dest)
                } else {
                    tmp.persist_noclobber(&dest)
                };
                done.map(|_| ()).map_err(|e| CliError::Io {
                    context: format!("cannot move the output into place at {}", dest.display()),
                    source: e.error,
                })
            }
        }
    }
}

/// Standard input or output as an async file: a duplicate of its descriptor, whose reads and writes
/// tokio runs on its blocking pool (as its own `io-std` does; that feature would rebuild tokio).
#[cfg(unix)]
pub(crate) fn async_stdio(stream: impl std::os::fd::AsFd) -> Result<tokio::fs::File, CliError> {
    let fd = stream
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_err("cannot use standard input/output"))?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

#[cfg(not(unix))]
pub(crate) fn async_stdio<T>(_: T) -> Result<tokio::fs::File, CliError> {
    Err(CliError::Usage(
        "streaming S3 objects through standard input/output needs a Unix system".into(),
    ))
}

/// Removes the progress bar from the terminal.
pub(crate) fn finish_bar(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn metadata_json(mode: &str, header: &Header, input: &Path, output: &Path) -> serde_json::Value {
    serde_json::json!({
        "mode": mode,
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "header": {
            "message_format_version": header.format_version(),
            "algorithm_suite": format!("0x{:04X}", header.suite().id()),
            "message_id": STANDARD.encode(header.message_id()),
            "encryption_context": header.encryption_context().iter().collect::<std::collections::BTreeMap<_, _>>(),
            "encrypted_data_keys": header.encrypted_data_keys().iter().map(|k| serde_json::json!({
                "key_provider_id": k.provider_id,
                "key_provider_info": STANDARD.encode(&k.provider_info),
            })).collect::<Vec<_>>(),
            "content_type": match header.content_type() {
                s3_crypto::ContentType::Framed => "framed",
                s3_crypto::ContentType::NonFramed => "non-framed",
            },
            "frame_length": header.frame_length(),
        }
    })
}

fn write_metadata(common: &CommonArgs, json: serde_json::Value) -> Result<(), CliError> {
    let Some(path) = &common.metadata_output else {
        return Ok(());
    };
    let text = format!("{}\n", serde_json::to_string(&json).unwrap_or_default());
    if is_dash(path) {
        eprint!("{text}");
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io_err(format!(
            "cannot write metadata to {}",
            path.display()
        )))
}

/// `envelope encrypt`.
pub async fn encrypt(args: EncryptArgs) -> Result<(), CliError> {
    let keyring = keyring(&args.keys, false).await?;
    let mut sink = Sink::open(&args.output, &args.input, args.common.force)?;
    let (input, bar) = open_input(&args.input, args.common.quiet)?;
    let suite = match args.suite {
        Suite::Committing => AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        Suite::CommittingSigned => AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    };
    let message = Encryptor::new(keyring.as_ref())
        .suite(suite)
        .frame_length(args.frame_size)
        .encryption_context(context_of(&args.context))
        .begin()
        .await
        .map_err(|e| CliError::Usage(format!("encrypt failed: {e}")))?;
    let header = message.header().clone();
    let threads = args.common.threads();
    let written = sink.write_blocking(|out| {
        match input {
            Input::File(file) => message.encrypt_at_parallel(&file, 0, file.len, out, threads),
            Input::Stream(stream) => message.encrypt_stream_parallel(stream, out, threads),
        }
        .map_err(|e| CliError::Usage(format!("encrypt failed: {e}")))
    });
    finish_bar(bar);
    let written = written?;
    sink.commit()?;
    write_metadata(
        &args.common,
        metadata_json("encrypt", &header, &args.input, &args.output),
    )?;
    if !args.common.quiet && !is_dash(&args.output) {
        eprintln!(
            "envelope: encrypted {written} bytes into {}",
            args.output.display()
        );
    }
    Ok(())
}

/// `envelope decrypt`.
pub async fn decrypt(args: DecryptArgs) -> Result<(), CliError> {
    let keyring = keyring(&args.keys, true).await?;
    if args.range.is_some() && is_dash(&args.input) {
        return Err(CliError::Usage(
            "--range needs an input file (it seeks to the frames of the range), not standard input"
                .into(),
        ));
    }
    let mut sink = Sink::open(&args.output, &args.input, args.common.force)?;
    let streamed_to = match sink {
        Sink::Stdout => Some("standard output".to_string()),
        Sink::Device(_) => Some(args.output.display().to_string()),
        Sink::File { .. } => None,
    };
    let fail = |e: s3_crypto::Error| {
        CliError::Usage(match &streamed_to {
            Some(to) => {
                format!("decrypt failed: {e}; what was written to {to} is incomplete: discard it")
            }
            None => format!("decrypt failed: {e}; no output written"),
        })
    };
    let policy = if args.allow_non_committing {
        CommitmentPolicy::RequireEncryptAllowDecrypt
    } else {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    };
    let decryptor = Decryptor::new(keyring.as_ref())
        .commitment_policy(policy)
        .max_encrypted_data_keys(args.max_data_keys)
        .max_buffered_content(args.max_frame_length)
        .required_context(context_of(&args.context));
    let header = if let Some(range) = args.range {
        let input = BufReader::with_capacity(1 << 16, open_file(&args.input)?);
        let message = decryptor.begin(input).await.map_err(fail)?;
        sink.write_blocking(|out| {
            let (header, _, _) = message.decrypt_range_to(range, out).map_err(fail)?;
            Ok(header)
        })?
    } else {
        let (input, bar) = open_input(&args.input, args.common.quiet)?;
        let threads = args.common.threads();
        let header = match input {
            Input::File(file) => {
                match decryptor
                    .begin(BufReader::with_capacity(1 << 16, &file))
                    .await
                {
                    Ok(message) => sink.write_blocking(|out| {
                        message
                            .decrypt_at_parallel(&file, out, threads)
                            .map_err(fail)
                    }),
                    Err(e) => Err(fail(e)),
                }
            }
            Input::Stream(stream) => {
                match decryptor
                    .begin(BufReader::with_capacity(1 << 16, stream))
                    .await
                {
                    Ok(message) => sink.write_blocking(|out| {
                        message.decrypt_to_parallel(out, threads).map_err(fail)
                    }),
                    Err(e) => Err(fail(e)),
                }
            }
        };
        finish_bar(bar);
        header?
    };
    sink.commit()?;
    write_metadata(
        &args.common,
        metadata_json("decrypt", &header, &args.input, &args.output),
    )?;
    if !args.common.quiet && !is_dash(&args.output) {
        eprintln!("envelope: decrypted into {}", args.output.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes through the write-behind reaches the file unchanged, in writes of every size
    /// across several 8 MiB marks, and the write-back is started at each mark.
    #[test]
    fn write_behind_keeps_every_byte() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 * WRITE_BEHIND_BYTES as usize + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        {
            let mut out = WriteBehind::new(&file);
            let mut rest = &data[..];
            for size in [1, 65_564, 7, 1 << 20, 4 << 20, 3, 9 << 20]
                .into_iter()
                .cycle()
            {
                if rest.is_empty() {
                    break;
                }
                let n = size.min(rest.len());
                if size % 2 == 1 {
                    out.write_all(&rest[..n]).unwrap();
                } else {
                    // As the pipeline writes a batch: one vectored write of several frames.
                    let (a, b) = rest[..n].split_at(n / 3);
                    let mut left = n;
                    while left > 0 {
                        let done = n - left;
                        let slices = if done < a.len() {
                            [std::io::IoSlice::new(&a[done..]), std::io::IoSlice::new(b)]
                        } else {
                            [
                                std::io::IoSlice::new(&[]),
                                std::io::IoSlice::new(&b[done - a.len()..]),
                            ]
                        };
                        left -= out.write_vectored(&slices).unwrap();
                    }
                }
                rest = &rest[n..];
            }
            out.flush().unwrap();
            assert_eq!(out.written, data.len() as u64);
            // Started at each mark crossed: never a whole mark behind at the end.
            assert!(out.written - out.started < WRITE_BEHIND_BYTES);
        }
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        assert!(back == data, "the file differs from what was written");
    }
}
