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
//! [`stream`](super::stream)). **A byte range** reads only the header, the final frame (which
//! authenticates the plaintext length, so a truncated or extended object fails) and the frames the
//! range touches, each with a ranged GET; each frame verifies before any of its bytes is written.
//!
//! **Server-side encryption** ([`PutOptions::sse`]) goes on the object as for any other upload
//! (see [`s3`](crate::s3)): SSE-S3 or SSE-KMS on the PutObject or CreateMultipartUpload, an SSE-C key
//! on every request of the upload; reading an SSE-C object needs the key again
//! ([`GetOptions::sse_customer_key`]), on each GET of a whole or ranged read.
//!
//! ```no_run
//! # async fn example(client: aws_sdk_s3::Client) -> Result<(), s3_crypto::Error> {
//! use s3_crypto::esdk::s3::{get_framed_object, put_framed_object, GetOptions, PutOptions};
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
use std::io::Read;
use std::ops::Range;

use tokio::io::AsyncRead;
use tokio::task::JoinSet;

use super::pipeline::{encrypt_parts, EncryptedPart, PipelineConfig, DEFAULT_MEMORY_BUDGET};
use crate::data_key::Keyring;
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::esdk::message::header::Header;
use crate::esdk::stream::Encryptor;
use crate::esdk::DEFAULT_FRAME_LENGTH;
use crate::md5::content_md5_header;
use crate::range::ByteRange;
use crate::s3::{
    put_object_hashed, MultipartUpload, PartUpload, PutOptions as S3PutOptions,
    ServerSideEncryption, SseCustomerKey, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE,
};

mod get;

pub use get::get_framed_object;

/// The metadata key (`x-amz-meta-envelope-format`) that marks a framed object.
pub const FORMAT_KEY: &str = "envelope-format";
/// Its value: an AWS Encryption SDK message, framed.
pub const FORMAT_FRAMED: &str = "esdk-framed";
/// The metadata key holding the frame length (a hint; the header has the real one).
pub const FRAME_LENGTH_KEY: &str = "envelope-frame-length";
/// The metadata key holding the header length in bytes (a hint for ranged reads).
pub const HEADER_LENGTH_KEY: &str = "envelope-header-length";

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
    /// the put returns [`Error::Cancelled`], as [`put_stream`](crate::s3::put_stream) does. Dropping
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
    /// about part size × (concurrency + 1), as [`put_stream`](crate::s3::put_stream) does, at the cost
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
        if self.part_size < MIN_PART_SIZE || self.part_size > MAX_PART_SIZE {
            return Err(Error::InvalidConfiguration(format!(
                "part size {} is outside S3's range of {MIN_PART_SIZE} to {} bytes",
                self.part_size, MAX_PART_SIZE
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
        if needed > MAX_PART_SIZE {
            return Err(Error::InvalidConfiguration(format!(
                "{size} bytes do not fit in {MAX_PARTS} parts of at most {} bytes",
                MAX_PART_SIZE
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
    max_buffered_content: u64,
    memory_budget: usize,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl GetOptions {
    /// The whole object, no required encryption context, 2 threads, frames up to
    /// [`DEFAULT_MAX_BUFFERED_CONTENT`](crate::DEFAULT_MAX_BUFFERED_CONTENT), frame buffers
    /// within [`DEFAULT_FRAME_MEMORY`](crate::esdk::DEFAULT_FRAME_MEMORY).
    pub fn new() -> Self {
        Self {
            required_context: EncryptionContext::new(),
            threads: 2,
            range: None,
            sse_c: None,
            max_buffered_content: crate::esdk::DEFAULT_MAX_BUFFERED_CONTENT,
            memory_budget: crate::esdk::DEFAULT_FRAME_MEMORY,
        }
    }

    /// The longest frame to accept (plaintext bytes): an object whose header announces longer
    /// frames is refused with [`Error::ContentTooLarge`] before any frame is read, whole or by range.
    pub fn max_buffered_content(mut self, max: u64) -> Self {
        self.max_buffered_content = max;
        self
    }

    /// The bytes of frame buffers a whole-object read holds at once, whatever the thread count
    /// (at least one frame); see [`Decryptor::memory_budget`](crate::Decryptor::memory_budget).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
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
