//! Framed objects: an AWS Encryption SDK message (framed, key-committing suite 0x0478, unsigned)
//! stored as an S3 object, for what the S3 Encryption Client's format cannot do: parallel
//! encrypted multipart uploads, and authenticated ranged GETs.
//!
//! The object's bytes are exactly the message `envelope encrypt` writes to a file, so a plain
//! download decrypts with `envelope decrypt` or the AWS Encryption SDK CLI. The object metadata
//! marks it ([`FORMAT_KEY`] = [`FORMAT_FRAMED`]) and records the frame length and the header
//! length; these are hints for `envelope s3 head` and for ranged reads, never trusted for security
//! (the header and every frame authenticate themselves).
//!
//! **Upload** ([`put_framed_object`]): the [pipeline](super::pipeline) seals parts of whole frames
//! on `threads` threads and hashes them together for `Content-MD5`; parts go up `concurrency` at a
//! time. An object that fits in one part is one PutObject. On any failure the multipart upload is
//! aborted, so no parts stay behind.
//!
//! **Download** ([`get_framed_object`]): the whole object streams through the decryptor, which
//! writes frames only after they verify and holds the final frame back until the end of the
//! message has verified; so, as for files, only `Ok` says the output is complete (see
//! [`stream`](crate::stream)). **A byte range** reads only the header, the final frame (which
//! authenticates the plaintext length, so a truncated or extended object fails) and the frames the
//! range touches, each with a ranged GET; each frame verifies before any of its bytes is written.
//!
//! **Server-side encryption** ([`PutOptions::sse`]) goes on the object as for any other upload
//! (see [`s3`](super)): SSE-S3 or SSE-KMS on the PutObject or CreateMultipartUpload, an SSE-C key
//! on every request of the upload; reading an SSE-C object needs the key again
//! ([`GetOptions::sse_customer_key`]), on each GET of a whole or ranged read.
//!
//! ```no_run
//! # async fn example(client: aws_sdk_s3::Client) -> Result<(), s3_crypto::Error> {
//! use s3_crypto::s3::framed::{get_framed_object, put_framed_object, GetOptions, PutOptions};
//! use s3_crypto::{ByteRange, RawAesKeyring};
//!
//! let keyring = RawAesKeyring::new("my-namespace", "my-key", &[7u8; 32])?;
//! let input = tokio::fs::File::open("big.bin").await?;
//! put_framed_object(&client, "bucket", "big.bin", &keyring, &PutOptions::new(), input).await?;
//!
//! let mut out = Vec::new();
//! let range = Some(ByteRange::Inclusive { first: 1000, last: 1999 });
//! get_framed_object(&client, "bucket", "big.bin", &keyring, &GetOptions::new().range(range), &mut out)
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::pipeline::{encrypt_parts, EncryptedPart, PipelineConfig, DEFAULT_MEMORY_BUDGET};
use super::sse::apply_sse_c;
use super::{
    get_object_with, put_object_hashed, s3_error, MultipartUpload, Object, PartUpload,
    PutOptions as S3PutOptions, ServerSideEncryption, SseCustomerKey, MAX_PARTS, MIN_PART_SIZE,
};
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::md5::content_md5_header;
use crate::message::frame::{
    final_frame_len, regular_frame_len, BodyLayout, FrameKind, FINAL_FRAME_MARKER,
};
use crate::message::header::{ContentType, Header, HeaderLimits};
use crate::message::reader::Input;
use crate::message::suite::{IV_LEN, TAG_LEN};
use crate::policy::{DEFAULT_FRAME_LENGTH, DEFAULT_MAX_ENCRYPTED_DATA_KEYS};
use crate::range::ByteRange;
use crate::stream::{Decryptor, Encryptor};

/// The metadata key (`x-amz-meta-envelope-format`) that marks a framed object.
pub const FORMAT_KEY: &str = "envelope-format";
/// Its value: an AWS Encryption SDK message, framed.
pub const FORMAT_FRAMED: &str = "esdk-framed";
/// The metadata key holding the frame length (a hint; the header has the real one).
pub const FRAME_LENGTH_KEY: &str = "envelope-frame-length";
/// The metadata key holding the header length in bytes (a hint for ranged reads).
pub const HEADER_LENGTH_KEY: &str = "envelope-header-length";

/// The first ranged GET of a ranged read asks for this many bytes, enough for any usual header.
const HEADER_GUESS: u64 = 16 * 1024;
/// Headers longer than this are refused on ranged reads.
const MAX_HEADER: u64 = 1 << 20;

/// How a framed object is written.
#[derive(Clone, Debug)]
pub struct PutOptions {
    encryption_context: EncryptionContext,
    frame_length: u32,
    part_size: usize,
    concurrency: usize,
    threads: usize,
    memory: Memory,
    expected_size: Option<u64>,
    sse: Option<ServerSideEncryption>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PutOptions {
    /// No encryption context, [`DEFAULT_FRAME_LENGTH`], 8 MiB parts, 4 uploads at once, 2 threads,
    /// a 256 MiB memory budget.
    pub fn new() -> Self {
        Self {
            encryption_context: EncryptionContext::new(),
            frame_length: DEFAULT_FRAME_LENGTH,
            part_size: 8 << 20,
            concurrency: 4,
            threads: 2,
            memory: Memory::Bytes(DEFAULT_MEMORY_BUDGET),
            expected_size: None,
            sse: None,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Server-side encryption as well: the store encrypts the (already encrypted) object at rest.
    /// Its headers go on the PutObject or CreateMultipartUpload; an SSE-C key also on every
    /// UploadPart and the CompleteMultipartUpload, and it is needed again to read the object
    /// ([`GetOptions::sse_customer_key`]).
    pub fn sse(mut self, sse: Option<ServerSideEncryption>) -> Self {
        self.sse = sse;
        self
    }

    /// The options of the S3 requests: server-side encryption (the retry policy is the default).
    fn s3_options(&self) -> S3PutOptions {
        S3PutOptions {
            sse: self.sse.clone(),
            ..S3PutOptions::default()
        }
    }

    /// A token that stops the upload when cancelled (Ctrl-C): the multipart upload is aborted and
    /// the put returns [`Error::Cancelled`], as [`put_stream`](super::put_stream) does. Dropping
    /// the put's future instead would leave the parts uploaded so far behind.
    pub fn cancel_on(mut self, token: tokio_util::sync::CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The encryption context (bound to the message; keys starting with `aws-crypto-` are reserved).
    pub fn encryption_context(mut self, context: EncryptionContext) -> Self {
        self.encryption_context = context;
        self
    }

    /// The frame length: the plaintext bytes of each frame, the unit of a ranged read.
    pub fn frame_length(mut self, frame_length: u32) -> Self {
        self.frame_length = frame_length;
        self
    }

    /// The least bytes per part but the last (at least [`MIN_PART_SIZE`]); parts hold whole
    /// frames, so they are up to one frame longer. Grown for large [`expected_size`]s so that
    /// an upload stays within [`MAX_PARTS`].
    ///
    /// [`expected_size`]: Self::expected_size
    pub fn part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size;
        self
    }

    /// How many parts upload at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Threads that seal and hash parts.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The bytes all part buffers together may take (default 256 MiB); see
    /// [`pipeline`](super::pipeline) for how it is used.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory = Memory::Bytes(bytes);
        self
    }

    /// A memory budget of `parts` part buffers, whatever size parts grow to (instead of
    /// [`memory_budget`](Self::memory_budget)): with `concurrency + 1`, an upload holds at most
    /// about part size × (concurrency + 1), as [`put_stream`](super::put_stream) does, at the cost
    /// of hashing one part at a time per thread.
    pub fn memory_parts(mut self, parts: usize) -> Self {
        self.memory = Memory::Parts(parts.max(1));
        self
    }

    /// The input's length, if known (a file): the part size grows so that the upload needs at most
    /// [`MAX_PARTS`] parts.
    pub fn expected_size(mut self, bytes: Option<u64>) -> Self {
        self.expected_size = bytes;
        self
    }

    /// The part size used for an input of `expected_size` bytes.
    fn effective_part_size(&self) -> Result<usize> {
        if self.part_size < MIN_PART_SIZE || self.part_size > super::MAX_PART_SIZE {
            return Err(Error::InvalidConfiguration(format!(
                "part size {} is outside S3's range of {MIN_PART_SIZE} to {} bytes",
                self.part_size,
                super::MAX_PART_SIZE
            )));
        }
        let Some(size) = self.expected_size else {
            return Ok(self.part_size);
        };
        // Message bytes: the plaintext plus 32 bytes per frame, plus the header and final frame.
        let frames = size / u64::from(self.frame_length.max(1)) + 1;
        let message = size + 32 * frames + 64 * 1024;
        let needed = message.div_ceil(MAX_PARTS as u64);
        let needed = usize::try_from(needed).unwrap_or(usize::MAX);
        if needed > super::MAX_PART_SIZE {
            return Err(Error::InvalidConfiguration(format!(
                "{size} bytes do not fit in {MAX_PARTS} parts of at most {} bytes",
                super::MAX_PART_SIZE
            )));
        }
        Ok(self.part_size.max(needed))
    }
}

/// The memory budget of an upload's part buffers.
#[derive(Clone, Copy, Debug)]
enum Memory {
    /// At most this many bytes.
    Bytes(usize),
    /// At most this many part buffers.
    Parts(usize),
}

/// What an upload wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutSummary {
    /// Plaintext bytes read.
    pub plaintext_len: u64,
    /// Object bytes written (the message).
    pub object_len: u64,
    /// Parts uploaded (1: a single PutObject).
    pub parts: u32,
    /// Parts hashed together per batch, and the memory the part buffers could take at most.
    pub batch_parts: usize,
    /// The most bytes the part buffers could take.
    pub memory: usize,
    /// The most bytes the part buffers took at once (measured; at most `memory`).
    pub peak_memory: usize,
}

/// The metadata that marks a framed object.
pub fn framed_metadata(frame_length: u32, header_len: usize) -> BTreeMap<String, String> {
    [
        (FORMAT_KEY, FORMAT_FRAMED.to_owned()),
        (FRAME_LENGTH_KEY, frame_length.to_string()),
        (HEADER_LENGTH_KEY, header_len.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Whether object metadata (keys without `x-amz-meta-`) marks a framed object.
pub fn is_framed(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get(FORMAT_KEY).map(String::as_str) == Some(FORMAT_FRAMED)
}

/// Encrypts `input` (of any length, known or not) into a framed object at `s3://bucket/key`. See
/// the [module documentation](self).
pub async fn put_framed_object<R>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &PutOptions,
    input: R,
) -> Result<PutSummary>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let input = tokio_util::io::SyncIoBridge::new(input);
    put_framed_object_from_reader(client, bucket, key, keyring, options, input).await
}

/// [`put_framed_object`] from a blocking reader (a [`std::fs::File`]: the pipeline's threads
/// read it directly, with vectored reads into the frames' places).
pub async fn put_framed_object_from_reader<R>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &PutOptions,
    input: R,
) -> Result<PutSummary>
where
    R: Read + Send + 'static,
{
    let part_size = options.effective_part_size()?;
    let encryptor = Encryptor::new(keyring)
        .frame_length(options.frame_length)
        .encryption_context(options.encryption_context.clone())
        .begin()
        .await?;
    let header_len = encryptor.header().to_bytes().len();
    let config = PipelineConfig::new()
        .threads(options.threads)
        .part_size(part_size)
        .sink_parts(options.concurrency);
    let budget = match options.memory {
        Memory::Bytes(bytes) => bytes,
        Memory::Parts(parts) => config
            .clone()
            .memory_budget(usize::MAX)
            .plan(options.frame_length, header_len)?
            .part_capacity
            .saturating_mul(parts),
    };
    let config = config.memory_budget(budget);
    let plan = config.plan(options.frame_length, header_len)?;
    let metadata = framed_metadata(options.frame_length, header_len);
    let s3_options = options.s3_options();

    let (tx, rx) = tokio::sync::mpsc::channel::<EncryptedPart>(options.concurrency);
    let pipeline = tokio::task::spawn_blocking(move || {
        encrypt_parts(encryptor, &config, input, |part| {
            tx.blocking_send(part).map_err(|_| Error::S3 {
                operation: "UploadPart",
                message: "the upload stopped".into(),
            })
        })
    });
    let mut uploader = Uploader {
        cancel: options.cancel.clone(),
        client,
        bucket,
        key,
        metadata: &metadata,
        s3_options: &s3_options,
        concurrency: options.concurrency,
        multipart: None,
        uploads: JoinSet::new(),
        pending: BTreeMap::new(),
        next: 1,
    };
    let outcome = match uploader.run(rx).await {
        // Not waiting for the pipeline: it may be blocked reading (a terminal), and it stops by
        // itself once it finds the receiver gone.
        Err(e) => Err(e),
        Ok(()) => match pipeline.await {
            Err(e) => Err(Error::InvalidConfiguration(format!(
                "the encryption pipeline failed: {e}"
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(summary))
                if uploader.pending.is_empty() && uploader.next == summary.parts + 1 =>
            {
                Ok(summary)
            }
            Ok(Ok(_)) => Err(Error::InvalidConfiguration(
                "a part never reached the upload".into(),
            )),
        },
    };
    match outcome {
        Ok(summary) => {
            if let Some(multipart) = uploader.multipart.take() {
                multipart.complete().await?;
            }
            Ok(PutSummary {
                plaintext_len: summary.plaintext_len,
                object_len: summary.message_len,
                parts: summary.parts,
                batch_parts: plan.batch_parts,
                memory: plan.memory(),
                peak_memory: summary.peak_memory,
            })
        }
        Err(e) => {
            uploader.uploads.shutdown().await;
            if let Some(multipart) = uploader.multipart.take() {
                // The original error is what the caller needs; a failed abort is reported beside it.
                if let Err(abort) = multipart.abort().await {
                    return Err(Error::S3 {
                        operation: "AbortMultipartUpload",
                        message: format!("{abort} (after: {e})"),
                    });
                }
            }
            Err(e)
        }
    }
}

/// The async side of an upload: parts from the pipeline, in any order, go up in order,
/// `concurrency` at a time.
struct Uploader<'a> {
    cancel: tokio_util::sync::CancellationToken,
    client: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
    metadata: &'a BTreeMap<String, String>,
    s3_options: &'a S3PutOptions,
    concurrency: usize,
    multipart: Option<MultipartUpload>,
    uploads: JoinSet<Result<aws_sdk_s3::types::CompletedPart>>,
    pending: BTreeMap<u32, EncryptedPart>,
    next: u32,
}

impl Uploader<'_> {
    /// Uploads the parts `rx` brings until it closes and every started upload is done. Parts
    /// still pending then (a gap: the pipeline failed) are the caller's to report.
    async fn run(&mut self, mut rx: tokio::sync::mpsc::Receiver<EncryptedPart>) -> Result<()> {
        let mut open = true;
        loop {
            tokio::select! {
                part = rx.recv(), if open => match part {
                    Some(part) => {
                        self.pending.insert(part.number, part);
                        self.start_ready().await?;
                    }
                    None => open = false,
                },
                Some(done) = self.uploads.join_next(), if !self.uploads.is_empty() => {
                    let part = done.map_err(|e| Error::S3 {
                        operation: "UploadPart",
                        message: format!("the upload task failed: {e}"),
                    })??;
                    if let Some(m) = &mut self.multipart {
                        m.part_done(part);
                    }
                    self.start_ready().await?;
                }
                _ = self.cancel.cancelled(), if open || !self.uploads.is_empty() => {
                    return Err(Error::Cancelled);
                }
                else => return Ok(()),
            }
        }
    }

    /// Starts the uploads of the parts that are next in order, while fewer than `concurrency` run.
    async fn start_ready(&mut self) -> Result<()> {
        while self.uploads.len() < self.concurrency {
            let Some(part) = self.pending.remove(&self.next) else {
                return Ok(());
            };
            self.next += 1;
            if part.number == 1 && part.last {
                // The whole object is one part: one PutObject.
                let (client, bucket, key) = (
                    self.client.clone(),
                    self.bucket.to_owned(),
                    self.key.to_owned(),
                );
                let metadata = self.metadata.clone();
                let s3_options = self.s3_options.clone();
                self.uploads.spawn(async move {
                    put_hashed(&client, &bucket, &key, part, &metadata, &s3_options).await?;
                    Ok(aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .build())
                });
                continue;
            }
            if self.multipart.is_none() {
                self.multipart = Some(
                    MultipartUpload::create_with(
                        self.client,
                        self.bucket,
                        self.key,
                        self.metadata,
                        self.s3_options,
                    )
                    .await?,
                );
            }
            let Some(multipart) = self.multipart.as_mut() else {
                return Err(Error::InvalidConfiguration("no multipart upload".into()));
            };
            let upload = multipart.next_part()?;
            self.uploads.spawn(upload_hashed(upload, part));
        }
        Ok(())
    }
}

/// UploadPart with the `Content-MD5` the pipeline computed, through the one retry loop of
/// [`PartUpload::send`]. The part's buffer goes back to the pipeline when the request is done.
async fn upload_hashed(
    upload: PartUpload,
    part: EncryptedPart,
) -> Result<aws_sdk_s3::types::CompletedPart> {
    let md5 = content_md5_header(&part.md5);
    upload
        .send_hashed(bytes::Bytes::from_owner(part.body), &md5)
        .await
}

/// PutObject of a one-part object with the `Content-MD5` the pipeline computed.
async fn put_hashed(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    part: EncryptedPart,
    metadata: &BTreeMap<String, String>,
    options: &S3PutOptions,
) -> Result<()> {
    let md5 = content_md5_header(&part.md5);
    let body = bytes::Bytes::from_owner(part.body);
    put_object_hashed(client, bucket, key, body, &md5, metadata, options)
        .await
        .map(|_| ())
}

/// How a framed object is read.
#[derive(Clone, Debug)]
pub struct GetOptions {
    required_context: EncryptionContext,
    threads: usize,
    range: Option<ByteRange>,
    sse_c: Option<SseCustomerKey>,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl GetOptions {
    /// The whole object, no required encryption context, 2 threads.
    pub fn new() -> Self {
        Self {
            required_context: EncryptionContext::new(),
            threads: 2,
            range: None,
            sse_c: None,
        }
    }

    /// The SSE-C key of an object stored with SSE-C (sent on every GET); `None`: not SSE-C.
    pub fn sse_customer_key(mut self, key: Option<SseCustomerKey>) -> Self {
        self.sse_c = key;
        self
    }

    /// Pairs the message's encryption context must contain.
    pub fn required_context(mut self, context: EncryptionContext) -> Self {
        self.required_context = context;
        self
    }

    /// Threads that open frames (whole-object reads).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Only these plaintext bytes (`None`: all).
    pub fn range(mut self, range: Option<ByteRange>) -> Self {
        self.range = range;
        self
    }
}

/// What a download wrote.
#[derive(Clone, Debug)]
pub struct GetSummary {
    /// The verified message header.
    pub header: Header,
    /// The plaintext bytes written (the whole plaintext, or the resolved range).
    pub written: Range<u64>,
    /// The plaintext length of the whole object.
    pub plaintext_len: u64,
    /// The object metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Decrypts the framed object (or any AWS Encryption SDK message stored as an object) at
/// `s3://bucket/key` to `output`: all of it, or the byte range of `options`. See the
/// [module documentation](self) for what `output` may hold after an error.
pub async fn get_framed_object<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    match options.range {
        Some(range) => get_range(client, bucket, key, keyring, options, range, output).await,
        None => get_whole(client, bucket, key, keyring, options, output).await,
    }
}

fn no_such_key(bucket: &str, key: &str) -> Error {
    Error::S3 {
        operation: "GetObject",
        message: format!("NoSuchKey: no such object (s3://{bucket}/{key})"),
    }
}

/// Parses a header from the start of `bytes`: `Ok(None)` if more bytes are needed.
fn parse_header(bytes: &[u8]) -> Result<Option<Header>> {
    let mut rest = bytes;
    let limits = HeaderLimits {
        max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
        allow_non_committing: true,
    };
    match Header::read(&mut Input::new(&mut rest), limits) {
        Ok(header) => Ok(Some(header)),
        Err(Error::Truncated(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn get_whole<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    mut output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    let object = get_object_with(client, bucket, key, options.sse_c.as_ref())
        .await?
        .ok_or_else(|| no_such_key(bucket, key))?;
    let metadata = object.metadata.clone();
    // Buffer the header, so that reading it below never blocks on the network.
    let mut head = Vec::new();
    let mut body = Some(object);
    while let Some(object) = body.as_mut() {
        if parse_header(&head)?.is_some() {
            break;
        }
        match object.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            // The decryptor reports the truncated header.
            None => body = None,
        }
        if head.len() as u64 > MAX_HEADER + (1 << 20) {
            return Err(Error::MalformedHeader("header longer than 1 MiB"));
        }
    }
    let reader = ObjectReader {
        buffered: bytes::Bytes::from(head),
        object: body,
        handle: tokio::runtime::Handle::current(),
    };
    let decryptor = Decryptor::new(keyring)
        .required_context(options.required_context.clone())
        .begin(reader)
        .await?;
    let threads = options.threads;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let decrypting = tokio::task::spawn_blocking(move || {
        // Every decryption path flushes its output once, at the end, after the final frame.
        let writer = ChannelWriter {
            tx,
            pending: Vec::with_capacity(CHANNEL_CHUNK),
        };
        decryptor.decrypt_to_parallel(writer, threads)
    });
    let mut written = 0u64;
    let mut write_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = output.write_all(&chunk).await {
            write_error = Some(e);
            break;
        }
        written += chunk.len() as u64;
    }
    drop(rx);
    let decrypted = decrypting
        .await
        .map_err(|e| Error::InvalidConfiguration(format!("the decryption task failed: {e}")))?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let header = decrypted?;
    output.flush().await?;
    Ok(GetSummary {
        header,
        written: 0..written,
        plaintext_len: written,
        metadata,
    })
}

/// The object body as a blocking reader (for the decryptor, on a blocking thread): bytes already
/// received (the rest of the last chunk, not copied), then the rest of the body (`None`: it has
/// ended), which it waits for on `handle`.
struct ObjectReader {
    buffered: bytes::Bytes,
    object: Option<Object>,
    handle: tokio::runtime::Handle,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.buffered.is_empty() {
            let Some(object) = self.object.as_mut() else {
                return Ok(0);
            };
            match self.handle.block_on(object.next_chunk()) {
                Ok(Some(chunk)) => self.buffered = chunk,
                Ok(None) => self.object = None,
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.buffered.len());
        buf[..n].copy_from_slice(&self.buffered[..n]);
        self.buffered.advance(n);
        Ok(n)
    }
}

/// Plaintext the decryptor hands to the async writer at a time.
const CHANNEL_CHUNK: usize = 1 << 20;

/// Plaintext from the blocking decryptor to the async writer, gathered into chunks of
/// [`CHANNEL_CHUNK`] (one copy; each chunk is sent, not copied again).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    pending: Vec<u8>,
}

impl ChannelWriter {
    fn send_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHANNEL_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "output closed"))
    }
}

impl Write for ChannelWriter {
    /// Takes what fits in the chunk (never growing it: `write_all` comes back for the rest) and
    /// sends the chunk once full.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHANNEL_CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHANNEL_CHUNK {
            self.send_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_pending()
    }
}

/// A ranged GetObject of bytes `range` (half-open): the body, the object's length and metadata.
async fn get_bytes(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sse_c: Option<&SseCustomerKey>,
    range: Range<u64>,
) -> Result<(ByteStream, u64, BTreeMap<String, String>)> {
    let request = client.get_object().bucket(bucket).key(key).range(format!(
        "bytes={}-{}",
        range.start,
        range.end - 1
    ));
    let out = match apply_sse_c!(request, sse_c).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Err(no_such_key(bucket, key))
        }
        Err(e) => return Err(s3_error("GetObject", bucket, key, e)),
    };
    let total = out
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok())
        .ok_or_else(|| Error::S3 {
            operation: "GetObject",
            message: format!("no object length in the Content-Range answer (s3://{bucket}/{key})"),
        })?;
    let expected = range.end.min(total).saturating_sub(range.start);
    if out.content_length() != Some(expected as i64) {
        return Err(Error::S3 {
            operation: "GetObject",
            message: format!(
                "asked for {expected} bytes of s3://{bucket}/{key}, the store announced {:?}",
                out.content_length()
            ),
        });
    }
    let metadata = super::lower_case(out.metadata());
    Ok((out.body, total, metadata))
}

/// Reads exactly `buf.len()` bytes of a body.
async fn fill(body: &mut ByteStream, carry: &mut bytes::Bytes, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if carry.is_empty() {
            *carry = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    return Err(Error::S3 {
                        operation: "GetObject",
                        message: format!("reading the body failed: {e}"),
                    })
                }
                None => return Err(Error::Truncated("the object ends inside a frame")),
            };
        }
        let n = carry.len().min(buf.len() - filled);
        buf[filled..filled + n].copy_from_slice(&carry[..n]);
        carry.advance(n);
        filled += n;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn get_range<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    range: ByteRange,
    mut output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    let sse_c = options.sse_c.as_ref();
    // 1. The header (one request, more only for an unusually long header).
    let (mut body, object_len, metadata) =
        get_bytes(client, bucket, key, sse_c, 0..HEADER_GUESS).await?;
    let mut head = body
        .collect()
        .await
        .map_err(|e| Error::S3 {
            operation: "GetObject",
            message: format!("reading the body failed: {e}"),
        })?
        .to_vec();
    let header = loop {
        if let Some(header) = parse_header(&head)? {
            break header;
        }
        let have = head.len() as u64;
        if have >= object_len {
            return Err(Error::Truncated("inside the header"));
        }
        if have >= MAX_HEADER {
            return Err(Error::MalformedHeader("header longer than 1 MiB"));
        }
        let (more, _, _) =
            get_bytes(client, bucket, key, sse_c, have..(2 * have).min(object_len)).await?;
        body = more;
        head.extend_from_slice(
            &body
                .collect()
                .await
                .map_err(|e| Error::S3 {
                    operation: "GetObject",
                    message: format!("reading the body failed: {e}"),
                })?
                .to_vec(),
        );
    };
    let body_start = header.to_bytes().len() as u64;
    let decryptor = Decryptor::new(keyring)
        .required_context(options.required_context.clone())
        .begin(&head[..body_start as usize])
        .await?;
    let header = decryptor.header().clone();
    if header.suite.signature().is_some() {
        return Err(Error::RangeOfSignedMessage);
    }
    if header.content_type != ContentType::Framed {
        return Err(Error::InvalidConfiguration(
            "a byte range of a non-framed message: download it whole".into(),
        ));
    }
    let frame_key = decryptor.frame_key();

    // 2. The geometry: k regular frames and a final frame of f bytes fill the body exactly.
    let fl = header.frame_length;
    let stride = regular_frame_len(fl);
    let layout = object_len
        .checked_sub(body_start)
        .and_then(|body| BodyLayout::of(body, fl))
        .ok_or(Error::Truncated("the message ends before its final frame"))?;
    let (regular_frames, final_len) = (layout.regular_frames, layout.final_len);
    let final_sequence = layout.final_sequence();
    let total = layout.plaintext_len(fl);

    // 3. The final frame, first: it authenticates the plaintext length.
    let final_start = body_start + regular_frames * stride;
    let final_bytes = final_frame_len(final_len as u32);
    let mut final_frame = vec![0u8; final_bytes as usize];
    if final_start + final_bytes <= head.len() as u64 {
        final_frame
            .copy_from_slice(&head[final_start as usize..(final_start + final_bytes) as usize]);
    } else {
        let (mut b, _, _) = get_bytes(
            client,
            bucket,
            key,
            sse_c,
            final_start..final_start + final_bytes,
        )
        .await?;
        fill(&mut b, &mut bytes::Bytes::new(), &mut final_frame).await?;
    }
    let final_plaintext = open_final(frame_key, final_sequence, final_len, &mut final_frame)?;

    // 4. The frames the range touches, in one request, each verified before it is written.
    let r = range.resolve_or_err(total)?;
    let fl64 = u64::from(fl);
    let (first, last) = (r.start / fl64 + 1, (r.end - 1) / fl64 + 1);
    let last_regular = last.min(regular_frames);
    let mut frame = vec![0u8; stride as usize];
    if first <= last_regular {
        let from = body_start + (first - 1) * stride;
        let to = body_start + last_regular * stride;
        let (mut b, _, _) = if to <= head.len() as u64 {
            (
                ByteStream::from(head[from as usize..to as usize].to_vec()),
                0,
                BTreeMap::new(),
            )
        } else {
            get_bytes(client, bucket, key, sse_c, from..to).await?
        };
        let mut carry = bytes::Bytes::new();
        for sequence in first..=last_regular {
            fill(&mut b, &mut carry, &mut frame).await?;
            let plaintext = open_regular(frame_key, sequence as u32, &mut frame)?;
            let frame_start = (sequence - 1) * fl64;
            let a = r.start.saturating_sub(frame_start) as usize;
            let z = (r.end - frame_start).min(fl64) as usize;
            output.write_all(&plaintext[a..z]).await?;
        }
    }
    if last > regular_frames {
        let frame_start = regular_frames * fl64;
        let a = r.start.saturating_sub(frame_start) as usize;
        let z = (r.end - frame_start) as usize;
        output.write_all(&final_plaintext[a..z]).await?;
    }
    output.flush().await?;
    Ok(GetSummary {
        header,
        written: r,
        plaintext_len: total,
        metadata,
    })
}

/// Opens regular frame `sequence` laid out in `frame` (`seq ‖ IV ‖ ciphertext ‖ tag`); returns its
/// plaintext.
fn open_regular<'a>(
    frame_key: &crate::FrameKey,
    sequence: u32,
    frame: &'a mut [u8],
) -> Result<&'a [u8]> {
    let (seq, rest) = frame.split_at_mut(4);
    let found = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
    if found == FINAL_FRAME_MARKER {
        return Err(Error::MalformedBody("a final frame before the last frame"));
    }
    if found != sequence {
        return Err(Error::FrameSequence {
            expected: sequence,
            found,
        });
    }
    let (iv, body) = rest.split_at_mut(IV_LEN);
    Ok(frame_key.open_frame(sequence, FrameKind::Regular, iv, body)?)
}

/// Opens the final frame laid out in `frame`, which must be frame `sequence` of `len` bytes.
fn open_final(
    frame_key: &crate::FrameKey,
    sequence: u32,
    len: u64,
    frame: &mut [u8],
) -> Result<Vec<u8>> {
    const NO_FINAL: &str = "the message ends before its final frame";
    let (fields, body) = frame.split_at_mut(4 + 4 + IV_LEN + 4);
    let field =
        |i: usize| u32::from_be_bytes([fields[i], fields[i + 1], fields[i + 2], fields[i + 3]]);
    if field(0) != FINAL_FRAME_MARKER || u64::from(field(4 + 4 + IV_LEN)) != len {
        return Err(Error::Truncated(NO_FINAL));
    }
    if field(4) != sequence {
        return Err(Error::FrameSequence {
            expected: sequence,
            found: field(4),
        });
    }
    if body.len() != len as usize + TAG_LEN {
        return Err(Error::Truncated(NO_FINAL));
    }
    let iv = fields[8..8 + IV_LEN].to_vec();
    Ok(frame_key
        .open_frame(sequence, FrameKind::Final, &iv, body)?
        .to_vec())
}
