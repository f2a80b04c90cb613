//! `envelope s3 cp` and `envelope s3 head`: objects in an S3-compatible store, encrypted on the
//! client (the S3 Encryption Client's V3 or V2 format, or framed: the AWS Encryption SDK message
//! format) and optionally by the store (SSE), through `s3_crypto::s3ec` and `s3_crypto::esdk::s3`
//! (the formats' objects) over `s3_crypto::s3` (the transport). One upload and one download path
//! serve every format; only the encrypting put and the decrypting get differ.
//!
//! Downloads to a file go to a temporary file renamed into place only after the whole object
//! (GCM tag, ETag) has verified; to standard output they stream, holding back the last 64 KiB
//! until the object has authenticated (an error means: discard what was written). Ctrl-C during
//! an upload aborts it (no parts left in the store) and exits 130; during a download to a file it
//! removes the temporary file and exits 130.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use s3_crypto::esdk::s3 as framed;
use s3_crypto::s3::{
    CancellationToken, PutOptions, ServerSideEncryption, SseCustomerKey, SseKms,
    DEFAULT_CONCURRENCY, MAX_PART_SIZE, MIN_PART_SIZE,
};
use s3_crypto::s3ec::{self, AesKeyring, MetadataStorage, ObjectDecryptor, ObjectEncryptor};
use s3_crypto::{CommitmentPolicy, EncryptionContext, Keyring, KmsKeyring, RawAesKeyring};
use tokio::io::AsyncRead;

use crate::crypt::{
    async_stdio, finish_bar, is_dash, parse_pair, progress_bar, read_key_file, DiscoveryArgs, Sink,
};
use crate::{io_err, CliError};

mod head;

/// `envelope s3 …`.
// Parsed once per run; boxing the arguments would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum S3Command {
    /// Copy a local file or stream to or from S3: encrypt, then upload; or download, then decrypt.
    Cp(CpArgs),
    /// Print an object's encryption metadata (client-side format, algorithm, wrapping, key,
    /// context; server-side encryption) as JSON, without decrypting it.
    Head(HeadArgs),
}

/// Where the S3 requests go.
#[derive(Args, Debug)]
pub struct ConnectionArgs {
    /// S3 endpoint (else AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then AWS S3 for the region).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Path-style addressing (host/bucket/key) instead of virtual-hosted (bucket.host/key); most
    /// self-hosted stores need it.
    #[arg(long)]
    path_style: bool,
    /// AWS region (S3 and KMS).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Profile of the shared AWS config and credentials files.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Seconds to wait for an answer to begin once a request is sent (S3 and KMS; an upload
    /// waits longer by its size, allowing 32 KiB/s); 0 waits for ever. A store that never
    /// answers then fails the request, which is retried, instead of hanging the copy.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_read_timeout)]
    read_timeout: f64,
}

impl ConnectionArgs {
    fn read_timeout(&self) -> Option<Duration> {
        read_timeout_of(self.read_timeout)
    }
}

/// `--read-timeout`'s seconds as the clients take them (0: none).
pub(crate) fn read_timeout_of(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

pub(crate) fn parse_read_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0 (for ever) to 86400".into()),
    }
}

/// Client-side encryption keys.
#[derive(Args, Debug)]
pub struct S3KeyArgs {
    /// KMS key (key id, ARN, alias) that wraps the data key (CSE-KMS).
    #[arg(long = "key", value_name = "KMS_KEY", conflicts_with = "raw_key_file")]
    kms_key: Option<String>,
    #[command(flatten)]
    discovery: DiscoveryArgs,
    /// File with an AES wrapping key, 16, 24 or 32 bytes raw or base64 (CSE-C).
    #[arg(long, value_name = "FILE")]
    raw_key_file: Option<PathBuf>,
    /// KMS endpoint (else AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL, then AWS KMS).
    #[arg(long, value_name = "URL")]
    kms_endpoint_url: Option<String>,
    /// Encryption context pair, k=v (repeatable; KMS keys only). On download the object's
    /// context must be exactly this.
    #[arg(long = "context", value_name = "K=V", value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

/// Object formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// S3 Encryption Client V3 (key-committing; what the official clients write by default).
    V3,
    /// S3 Encryption Client V2 (AES-GCM without key commitment; for older readers).
    V2,
    /// Framed (AWS Encryption SDK message): parallel parts and authenticated byte ranges.
    Framed,
}

/// Server-side encryption modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sse {
    /// SSE-S3: the store encrypts with keys it manages (AES256).
    S3,
    /// SSE-KMS: the store encrypts with a KMS key (--sse-kms-key-id, else its default).
    Kms,
    /// SSE-C: the store encrypts with the key in --sse-c-key-file, sent on every request.
    C,
}

/// `envelope s3 cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Source: a local file, - for standard input, or s3://bucket/key.
    src: String,
    /// Destination: s3://bucket/key, or a local file, or - for standard output.
    dst: String,
    #[command(flatten)]
    keys: S3KeyArgs,
    /// Object format: on upload, what is written (default v3); on download, what is expected
    /// (default: found from the object's metadata; V3 and V2 are read alike).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Upload: put the key material in an instruction file (KEY.instruction) instead of the
    /// object's metadata.
    #[arg(long)]
    instruction_file: bool,
    /// Download: also read V2 objects, which do not commit to their data key.
    #[arg(long)]
    allow_non_committing: bool,
    /// Server-side encryption as well.
    #[arg(long, value_enum)]
    sse: Option<Sse>,
    /// SSE-KMS key id (with --sse kms).
    #[arg(long, value_name = "KEY")]
    sse_kms_key_id: Option<String>,
    /// SSE-KMS encryption context pair, k=v (repeatable; with --sse kms).
    #[arg(long, value_name = "K=V", value_parser = parse_pair)]
    sse_kms_context: Vec<(String, String)>,
    /// SSE-KMS: turn the S3 Bucket Key on (true) or off (false).
    #[arg(long, value_name = "BOOL")]
    sse_bucket_key: Option<bool>,
    /// File with the SSE-C key: 32 bytes, raw or base64 (with --sse c; needed again to download).
    #[arg(long, value_name = "FILE")]
    sse_c_key_file: Option<PathBuf>,
    /// Part size of a multipart upload, bytes or with a suffix (5MiB to 5GiB; grown so that at
    /// most 10,000 parts are needed).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB")]
    part_size: usize,
    /// Parts uploaded at once. Memory: about part size × (concurrency + 1).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Download only this byte range of the plaintext (framed objects only).
    #[arg(long, value_name = "RANGE")]
    range: Option<s3_crypto::ByteRange>,
    /// Download of a framed object: refuse one whose frames are longer than this many bytes, before
    /// reading any (decryption holds whole frames in memory; envelope writes 64 KiB frames, other
    /// AWS Encryption SDK producers may write longer ones).
    #[arg(long, value_name = "BYTES", default_value_t = s3_crypto::DEFAULT_MAX_BUFFERED_CONTENT)]
    max_frame_length: u64,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Overwrite the local destination if it exists.
    #[arg(long)]
    force: bool,
    /// Print nothing but errors (no progress bar).
    #[arg(short, long)]
    quiet: bool,
}

/// `envelope s3 head`.
#[derive(Args, Debug)]
pub struct HeadArgs {
    /// The object: s3://bucket/key.
    object: String,
    /// File with the SSE-C key of an SSE-C object.
    #[arg(long, value_name = "FILE")]
    sse_c_key_file: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct S3Url {
    bucket: String,
    key: String,
}

impl S3Url {
    fn parse(s: &str) -> Option<Result<Self, CliError>> {
        let rest = s.strip_prefix("s3://")?;
        Some(match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(CliError::Usage(format!(
                "{s}: expected s3://BUCKET/KEY (a key is needed; no directory copies)"
            ))),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 8MiB or 16777216, got '{s}'"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let bytes = n
        .checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
        return Err(format!(
            "{bytes} bytes: S3 takes parts of 5MiB ({MIN_PART_SIZE}) to 5GiB ({MAX_PART_SIZE})"
        ));
    }
    Ok(bytes)
}

/// `envelope s3 …`.
pub async fn s3(cmd: S3Command) -> Result<(), CliError> {
    match cmd {
        S3Command::Cp(args) => cp(args).await,
        S3Command::Head(args) => head::head(args).await,
    }
}

fn s3_err(e: s3_crypto::Error) -> CliError {
    match e {
        s3_crypto::Error::Cancelled => CliError::Interrupted("nothing was done"),
        e => CliError::Usage(e.to_string()),
    }
}

async fn s3_client(c: &ConnectionArgs) -> Result<aws_sdk_s3::Client, CliError> {
    let mut b = s3_crypto::s3::S3ClientBuilder::new()
        .path_style(c.path_style)
        .read_timeout(c.read_timeout());
    if let Some(url) = &c.endpoint_url {
        b = b.endpoint_url(url);
    }
    if let Some(r) = &c.region {
        b = b.region(r);
    }
    if let Some(p) = &c.profile {
        b = b.profile(p);
    }
    let client = b.build().await.map_err(s3_err)?;
    Ok(fault_injection::wrap(client))
}

fn context_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

fn context_of(pairs: &[(String, String)]) -> EncryptionContext {
    EncryptionContext::from_iter(pairs.iter().cloned())
}

fn sse_c_key(file: Option<&Path>) -> Result<Option<SseCustomerKey>, CliError> {
    let Some(file) = file else { return Ok(None) };
    let key = read_key_file(file, &[32], "an SSE-C key: 32 bytes")?;
    Ok(Some(SseCustomerKey::new(&key).map_err(s3_err)?))
}

fn server_side(args: &CpArgs) -> Result<Option<ServerSideEncryption>, CliError> {
    let kms_options = args.sse_kms_key_id.is_some()
        || !args.sse_kms_context.is_empty()
        || args.sse_bucket_key.is_some();
    if kms_options && args.sse != Some(Sse::Kms) {
        return Err(CliError::Usage(
            "--sse-kms-key-id, --sse-kms-context and --sse-bucket-key need --sse kms".into(),
        ));
    }
    if args.sse_c_key_file.is_some() && args.sse != Some(Sse::C) {
        return Err(CliError::Usage(
            "--sse-c-key-file needs --sse c (and the same key again to download)".into(),
        ));
    }
    Ok(match args.sse {
        None => None,
        Some(Sse::S3) => Some(ServerSideEncryption::S3),
        Some(Sse::Kms) => {
            let mut kms = SseKms::new().context(context_map(&args.sse_kms_context));
            if let Some(id) = &args.sse_kms_key_id {
                kms = kms.key_id(id);
            }
            if let Some(b) = args.sse_bucket_key {
                kms = kms.bucket_key(b);
            }
            Some(ServerSideEncryption::Kms(kms))
        }
        Some(Sse::C) => {
            let key = sse_c_key(args.sse_c_key_file.as_deref())?.ok_or_else(|| {
                CliError::Usage("--sse c needs --sse-c-key-file FILE (32 bytes)".into())
            })?;
            Some(ServerSideEncryption::Customer(key))
        }
    })
}

/// A token cancelled by Ctrl-C (SIGINT) or SIGTERM. The handlers are installed before this
/// returns (not when a task first runs): from then on these signals no longer kill the process,
/// so whatever it creates afterwards (a temporary file) is cleaned up on the way out.
fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                t.cancel();
            });
            return token;
        }
    }
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

async fn cp(args: CpArgs) -> Result<(), CliError> {
    match (S3Url::parse(&args.src), S3Url::parse(&args.dst)) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "both SRC and DST are in S3: envelope s3 cp copies between a local file and S3 \
             (re-encrypting a copy would need both keys; `aws s3 cp` copies ciphertext as is)"
                .into(),
        )),
        (None, None) => Err(CliError::Usage(
            "neither SRC nor DST is an s3://BUCKET/KEY: for local files use envelope encrypt"
                .into(),
        )),
        (None, Some(dst)) => upload(&args, dst?).await,
        (Some(src), None) => download(&args, src?).await,
    }
}

/// The raw AES key's name in a framed object (the AWS Encryption SDK message records it, and
/// `envelope decrypt --raw-key-file FILE --key-name s3` needs it to decrypt a plain download).
const FRAMED_RAW_KEY_NAME: &str = "s3";

/// The keyring of a transfer in `format`. `--discovery` (downloads): the KMS key the object's
/// encrypted data key names, within `--discovery-account`. `--raw-key-file`: for framed objects a
/// raw AES keyring (namespace `envelope`, name [`FRAMED_RAW_KEY_NAME`]), for S3 Encryption Client
/// objects its AES keyring. `--key`: the KMS key, strict; on a download a key id or alias is
/// resolved to its key ARN first (`DescribeKey`), so that only that key's data keys are opened.
/// [`key_refusals`] has checked the combinations of options.
async fn keyring(
    args: &CpArgs,
    format: Format,
    downloading: bool,
) -> Result<Box<dyn Keyring>, CliError> {
    let keys = &args.keys;
    let framed = format == Format::Framed;
    if let Some(filter) = keys.discovery.filter()? {
        let client = kms_client(keys, &args.connection)
            .build()
            .await
            .map_err(s3_err)?;
        return Ok(Box::new(KmsKeyring::discovery(client, filter)));
    }
    if let Some(file) = &keys.raw_key_file {
        if framed {
            let key = crate::crypt::read_wrapping_key(file)?;
            return Ok(Box::new(
                RawAesKeyring::new("envelope", FRAMED_RAW_KEY_NAME, &key).map_err(s3_err)?,
            ));
        }
        if !keys.context.is_empty() {
            return Err(CliError::Usage(
                "--context is for KMS keys (--key); a raw AES key has no encryption context".into(),
            ));
        }
        let key = crate::crypt::read_wrapping_key(file)?;
        return Ok(Box::new(AesKeyring::new(&key).map_err(s3_err)?));
    }
    let Some(kms_key) = &keys.kms_key else {
        return Err(CliError::Usage(if framed {
            "no key given: use --key KMS_KEY or --raw-key-file FILE".into()
        } else {
            "no key given: use --key KMS_KEY (CSE-KMS) or --raw-key-file FILE (CSE-C)".into()
        }));
    };
    let client = kms_client(keys, &args.connection)
        .build()
        .await
        .map_err(s3_err)?;
    let keyring = if downloading {
        KmsKeyring::with_key_arns(client, [kms_key.clone()]).await
    } else {
        KmsKeyring::new(client, [kms_key.clone()])
    };
    Ok(Box::new(keyring.map_err(s3_err)?))
}

/// The key options a transfer refuses, checked first (before any network call or key file read):
/// `--discovery` is for downloads, and names no key of its own.
fn key_refusals(args: &CpArgs, downloading: bool) -> Result<(), CliError> {
    let keys = &args.keys;
    if !keys.discovery.discovery {
        return Ok(());
    }
    if !downloading {
        return Err(CliError::Usage(
            "--discovery is for downloads (the object names its KMS key); an upload needs --key"
                .into(),
        ));
    }
    if keys.kms_key.is_some() || keys.raw_key_file.is_some() {
        return Err(CliError::Usage(
            "--discovery takes the KMS key the object names; give it instead of --key or \
             --raw-key-file"
                .into(),
        ));
    }
    Ok(())
}

/// The KMS client's configuration: `--kms-endpoint-url`, `--profile`, `--region`.
fn kms_client(keys: &S3KeyArgs, connection: &ConnectionArgs) -> s3_crypto::KmsClientBuilder {
    crate::crypt::kms_builder(
        keys.kms_endpoint_url.as_deref(),
        connection.profile.as_deref(),
        connection.region.as_deref(),
    )
    .read_timeout(connection.read_timeout())
}

/// What framed objects do not do.
fn framed_refusals(args: &CpArgs) -> Result<(), CliError> {
    if args.instruction_file {
        return Err(CliError::Usage(
            "--instruction-file is for S3 Encryption Client objects (v3, v2)".into(),
        ));
    }
    Ok(())
}

/// `cp FILE|- s3://…`: one path for every format, which decides only how the bytes are encrypted
/// and put ([`Put::framed`], [`Put::object`]).
async fn upload(args: &CpArgs, dst: S3Url) -> Result<(), CliError> {
    key_refusals(args, false)?;
    if args.range.is_some() {
        return Err(CliError::Usage(
            "--range selects part of an object to download; it does not apply to uploads".into(),
        ));
    }
    if args.allow_non_committing {
        return Err(CliError::Usage(
            "--allow-non-committing is for downloads; to write V2 objects use --format v2".into(),
        ));
    }
    let format = args.format.unwrap_or(Format::V3);
    if format == Format::Framed {
        framed_refusals(args)?;
    }
    let sse = server_side(args)?;
    let keyring = keyring(args, format, false).await?;
    let client = s3_client(&args.connection).await?;
    let put = Put {
        args,
        dst: &dst,
        client: &client,
        keyring: keyring.as_ref(),
        sse,
        src: Path::new(&args.src),
    };
    let n = match format {
        Format::Framed => put.framed().await?,
        Format::V3 | Format::V2 => put.object(format).await?,
    };
    if !args.quiet {
        let framed = if format == Format::Framed {
            " (framed)"
        } else {
            ""
        };
        eprintln!("envelope: encrypted {n} bytes into {dst}{framed}");
    }
    Ok(())
}

/// One upload, whatever its format.
struct Put<'a> {
    args: &'a CpArgs,
    dst: &'a S3Url,
    client: &'a aws_sdk_s3::Client,
    keyring: &'a dyn Keyring,
    sse: Option<ServerSideEncryption>,
    src: &'a Path,
}

impl Put<'_> {
    /// What a failed upload says.
    fn error(&self, e: s3_crypto::Error) -> CliError {
        match e {
            s3_crypto::Error::Cancelled => {
                CliError::Interrupted("the upload was aborted; nothing was stored")
            }
            e => CliError::Usage(format!("upload to {} failed: {e}", self.dst)),
        }
    }

    /// A framed object: a regular file is read by the pipeline's threads. Returns the plaintext
    /// length.
    async fn framed(self) -> Result<u64, CliError> {
        let args = self.args;
        let dst = self.dst;
        let mut options = framed::PutOptions::new()
            .sse(self.sse.clone())
            .encryption_context(context_of(&args.keys.context))
            .part_size(args.part_size)
            .concurrency(usize::from(args.concurrency))
            // The bound --concurrency documents: the parts in flight and the one being sealed.
            .memory_parts(usize::from(args.concurrency) + 1)
            .cancel_on(cancel_on_signal());
        let done = if is_dash(self.src) {
            let stdin = async_stdio(std::io::stdin())?;
            framed::put_framed_object(
                self.client,
                &dst.bucket,
                &dst.key,
                self.keyring,
                &options,
                stdin,
            )
            .await
        } else {
            let file = std::fs::File::open(self.src)
                .map_err(io_err(format!("cannot open {}", self.src.display())))?;
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            options = options.expected_size(len);
            let bar = progress_bar(len, args.quiet);
            let input: Box<dyn std::io::Read + Send> = match &bar {
                Some(bar) => Box::new(bar.wrap_read(file)),
                None => Box::new(file),
            };
            let done = framed::put_framed_object_from_reader(
                self.client,
                &dst.bucket,
                &dst.key,
                self.keyring,
                &options,
                input,
            )
            .await;
            finish_bar(bar);
            done
        };
        done.map(|summary| summary.plaintext_len)
            .map_err(|e| self.error(e))
    }

    /// An S3 Encryption Client object (V3, or V2 with `--format v2`). Returns the plaintext length.
    async fn object(self, format: Format) -> Result<u64, CliError> {
        let args = self.args;
        let dst = self.dst;
        let (input, len): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = if is_dash(self.src) {
            (Box::new(async_stdio(std::io::stdin())?), None)
        } else {
            let f = tokio::fs::File::open(self.src)
                .await
                .map_err(io_err(format!("cannot open {}", self.src.display())))?;
            let len = f
                .metadata()
                .await
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            (Box::new(f), len)
        };
        let bar = progress_bar(len, args.quiet);
        let mut input: Box<dyn AsyncRead + Unpin + Send> = match &bar {
            Some(bar) => Box::new(bar.wrap_async_read(input)),
            None => input,
        };
        let policy = match format {
            Format::V2 => CommitmentPolicy::ForbidEncryptAllowDecrypt,
            _ => CommitmentPolicy::RequireEncryptRequireDecrypt,
        };
        let encryptor = ObjectEncryptor::new(self.keyring)
            .commitment_policy(policy)
            .encryption_context(context_of(&args.keys.context));
        let mut options = PutOptions::default()
            .part_size(args.part_size)
            .concurrency(usize::from(args.concurrency))
            .cancel(cancel_on_signal());
        if let Some(sse) = self.sse.clone() {
            options = options.sse(sse);
        }
        if let Some(len) = len {
            options = options.expected_size(len);
        }
        let storage = if args.instruction_file {
            MetadataStorage::InstructionFile
        } else {
            MetadataStorage::ObjectMetadata
        };
        let done = s3ec::put_encrypted_object_stream(
            self.client,
            &dst.bucket,
            &dst.key,
            &encryptor,
            &mut input,
            storage,
            &options,
        )
        .await;
        finish_bar(bar);
        done.map(|(n, _)| n).map_err(|e| self.error(e))
    }
}

/// `cp s3://… FILE|-`: one path for every format (found from the object's metadata unless
/// `--format` says), which decides only how the object is got and decrypted.
async fn download(args: &CpArgs, src: S3Url) -> Result<(), CliError> {
    key_refusals(args, true)?;
    // Before the output's temporary file exists: a signal from now on removes it.
    let cancel = cancel_on_signal();
    let sse_c = download_sse_c(args)?;
    // The client and HEAD of format detection, kept for the download (one client, one HEAD).
    let mut probed = None;
    let format = match args.format {
        Some(format) => format,
        None => {
            // A refused HEAD (an SSE-C object without its key) is reported as it is, rather than
            // taken for "not framed"; a missing object is left to the GET to report.
            let client = s3_client(&args.connection).await?;
            let head = s3_crypto::s3::head_object(&client, &src.bucket, &src.key, sse_c.as_ref())
                .await
                .map_err(|e| download_error(e, &src, &args.dst, false, sse_c.is_some()))?;
            let framed = head
                .as_ref()
                .is_some_and(|h| framed::is_framed(&h.metadata));
            probed = Some((client, head));
            // V3 and V2 objects are read alike.
            if framed {
                Format::Framed
            } else {
                Format::V3
            }
        }
    };
    if format == Format::Framed {
        framed_refusals(args)?;
    } else {
        if args.range.is_some() {
            return Err(CliError::Usage(
                "--range needs a framed object: an S3 Encryption Client (V3/V2) object has one GCM \
                 tag over the whole object, so a byte range cannot be authenticated without \
                 downloading all of it; download the whole object and cut the range locally"
                    .into(),
            ));
        }
        if args.instruction_file {
            return Err(CliError::Usage(
                "--instruction-file is for uploads; downloads find the instruction file themselves"
                    .into(),
            ));
        }
    }
    let keyring = keyring(args, format, true).await?;
    let (client, head) = match probed {
        Some((client, head)) => (client, Some(head)),
        None => (s3_client(&args.connection).await?, None),
    };
    let dest = Path::new(&args.dst);
    let mut sink = Sink::open(dest, Path::new("-"), args.force)?;
    let streamed = !matches!(sink, Sink::File { .. });
    // A progress bar for a whole S3 Encryption Client object (a framed download writes frames as
    // they verify, in bursts; a range is small).
    let len = if format == Format::Framed
        || args.quiet
        || !std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        None
    } else {
        let head = match head {
            Some(head) => head,
            None => s3_crypto::s3::head_object(&client, &src.bucket, &src.key, sse_c.as_ref())
                .await
                .ok()
                .flatten(),
        };
        head.and_then(|h| h.content_length)
            .and_then(|l| u64::try_from(l).ok())
    };
    let bar = len.and_then(|l| progress_bar(Some(l), args.quiet));
    let writer = sink.async_writer()?;
    let mut writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &bar {
        Some(bar) => Box::new(bar.wrap_async_write(writer)),
        None => writer,
    };
    let get = async {
        match format {
            Format::Framed => {
                let options = framed::GetOptions::new()
                    .required_context(context_of(&args.keys.context))
                    .max_buffered_content(args.max_frame_length)
                    .range(args.range)
                    .sse_customer_key(sse_c.clone());
                framed::get_framed_object(
                    &client,
                    &src.bucket,
                    &src.key,
                    keyring.as_ref(),
                    &options,
                    &mut writer,
                )
                .await
                .map(|summary| summary.plaintext_len)
            }
            Format::V3 | Format::V2 => {
                let policy = if args.allow_non_committing {
                    CommitmentPolicy::RequireEncryptAllowDecrypt
                } else {
                    CommitmentPolicy::RequireEncryptRequireDecrypt
                };
                let decryptor = ObjectDecryptor::new(keyring.as_ref())
                    .commitment_policy(policy)
                    .encryption_context(context_of(&args.keys.context));
                s3ec::get_decrypted_object_with(
                    &client,
                    &src.bucket,
                    &src.key,
                    &decryptor,
                    &mut writer,
                    sse_c.as_ref(),
                )
                .await
            }
        }
    };
    let done = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(s3_crypto::Error::Cancelled),
        r = get => r,
    };
    drop(writer);
    finish_bar(bar);
    let n = done.map_err(|e| download_error(e, &src, &args.dst, streamed, sse_c.is_some()))?;
    sink.commit()?;
    if !args.quiet && !is_dash(dest) {
        eprintln!(
            "envelope: decrypted {n} bytes from {src} into {}",
            dest.display()
        );
    }
    Ok(())
}

/// The SSE-C key of a download (`--sse-c-key-file`; `--sse c` may be given too, `--sse s3|kms`
/// are refused: the store decrypts those by itself).
fn download_sse_c(args: &CpArgs) -> Result<Option<SseCustomerKey>, CliError> {
    match args.sse {
        None | Some(Sse::C) => sse_c_key(args.sse_c_key_file.as_deref()),
        Some(_) => Err(CliError::Usage(
            "--sse s3|kms is for uploads (the store decrypts those by itself); to download an \
             SSE-C object give --sse-c-key-file"
                .into(),
        )),
    }
}

/// What a failed download says: whether what was written (to stdout or a device) must be
/// discarded, or nothing was written (a file: its temporary file is gone). `sse_c_given`: whether
/// an SSE-C key was sent.
fn download_error(
    e: s3_crypto::Error,
    src: &S3Url,
    dst: &str,
    streamed: bool,
    sse_c_given: bool,
) -> CliError {
    let hint = sse_c_hint(&e, sse_c_given);
    match e {
        s3_crypto::Error::Cancelled if streamed => {
            CliError::Interrupted("what was written is incomplete: discard it")
        }
        s3_crypto::Error::Cancelled => CliError::Interrupted("no output written"),
        e if streamed => CliError::Usage(format!(
            "download of {src} failed: {e}{hint}; what was written to {dst} is incomplete: \
             discard it"
        )),
        e => CliError::Usage(format!(
            "download of {src} failed: {e}{hint}; no output written"
        )),
    }
}

/// What to check when the store refuses a read the way it refuses one without the object's SSE-C
/// key or with another key (S3: 400 InvalidRequest without it, 403 AccessDenied with a wrong one;
/// Garage: 400 InvalidRequest for both; a HEAD has only the status). The same answers have other
/// causes, hence "if".
fn sse_c_hint(e: &s3_crypto::Error, sse_c_given: bool) -> &'static str {
    let refused = matches!(
        e,
        s3_crypto::Error::S3 { operation: "GetObject" | "HeadObject", message }
            if ["InvalidRequest:", "AccessDenied:", "HTTP 400 ", "HTTP 403 "]
                .iter()
                .any(|start| message.starts_with(start))
    );
    match (refused, sse_c_given) {
        (false, _) => "",
        (true, false) => {
            " (if the object is stored with SSE-C, give its key: --sse-c-key-file FILE; a 403 also \
             comes from credentials, permissions, or a clock far off, which a HEAD cannot say)"
        }
        (true, true) => " (check that --sse-c-key-file holds the key the object was stored with)",
    }
}

/// Test hooks that damage or lose S3 traffic (debug builds only).
#[path = "s3_faults.rs"]
mod fault_injection;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_and_sizes_parse() {
        assert!(S3Url::parse("/tmp/x").is_none());
        assert_eq!(
            S3Url::parse("s3://b/k/x.bin").and_then(Result::ok),
            Some(S3Url {
                bucket: "b".into(),
                key: "k/x.bin".into()
            })
        );
        assert!(matches!(S3Url::parse("s3://b"), Some(Err(_))));
        assert!(matches!(S3Url::parse("s3://b/"), Some(Err(_))));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("5242880"), Ok(5 << 20));
        assert!(parse_size("1MiB").is_err());
        assert!(parse_size("6GiB").is_err());
        assert!(parse_size("8 parsecs").is_err());
        assert_eq!(s3_crypto::s3::DEFAULT_PART_SIZE, 8 << 20);
    }

    #[test]
    fn refused_reads_hint_at_the_sse_c_key() {
        let refused = |code: &str| s3_crypto::Error::S3 {
            operation: "GetObject",
            message: format!("{code}: Bad request (s3://b/k)"),
        };
        assert!(sse_c_hint(&refused("InvalidRequest"), false).contains("give its key"));
        assert!(sse_c_hint(&refused("AccessDenied"), true).contains("holds the key"));
        assert_eq!(sse_c_hint(&refused("NoSuchBucket"), false), "");
        let head = s3_crypto::Error::S3 {
            operation: "HeadObject",
            message: "HTTP 400 with no error code (s3://b/k)".into(),
        };
        assert!(sse_c_hint(&head, false).contains("give its key"));
        assert_eq!(sse_c_hint(&s3_crypto::Error::TamperedObject, true), "");
    }
}
