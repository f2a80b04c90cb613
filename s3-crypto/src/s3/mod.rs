//! The S3 transport: PutObject, multipart upload, GetObject, HeadObject and CopyObject against any
//! S3-compatible endpoint, through a caller-configured [`aws_sdk_s3::Client`] (endpoint URL,
//! path-style or virtual-hosted addressing, region and credentials are the client's business;
//! [`S3ClientBuilder`] makes one from the standard AWS configuration).
//!
//! - **Integrity.** Every PutObject and UploadPart carries `Content-MD5` of the exact bytes sent.
//!   A store that answers `BadDigest` or `InvalidDigest` (the bytes were damaged on the way), and
//!   a transient failure (timeout, connection, 5xx, `SlowDown`), is retried with exponential
//!   backoff ([`RetryPolicy`]); when the store keeps rejecting the digest the failure is
//!   [`Error::ContentDigestMismatch`]. Downloads check the ETag where it is an MD5 of the body or
//!   an MD5 of the parts' MD5s (`…-N`, parts of equal size but the last); not for SSE-KMS and
//!   SSE-C objects, whose ETags are something else.
//! - **Streaming.** [`put_stream`] reads an [`AsyncRead`](tokio::io::AsyncRead) one part at a
//!   time: input that ends within the first part goes up in one PutObject, anything longer as a
//!   multipart upload of parts sent concurrently, memory within part size × (concurrency + 1).
//!   On any failure, or when [`PutOptions::cancel`] fires, the multipart upload is aborted so no
//!   parts are left behind.
//! - **Server-side encryption**: [`ServerSideEncryption`] on PUT, multipart (SSE-C on every part),
//!   GET, HEAD and copy.
//!
//! ```no_run
//! # async fn example(client: aws_sdk_s3::Client) -> Result<(), s3_crypto::Error> {
//! use s3_crypto::s3::{get_object_with, put_stream, PutOptions, ServerSideEncryption, SseCustomerKey};
//!
//! let key = SseCustomerKey::new(&[7u8; 32])?;
//! let options = PutOptions::default()
//!     .sse(ServerSideEncryption::Customer(key.clone()))
//!     .concurrency(4);
//! let mut input = tokio::fs::File::open("big.bin").await?;
//! put_stream(&client, "bucket", "big.bin", &mut input, &Default::default(), &options).await?;
//! let object = get_object_with(&client, "bucket", "big.bin", Some(&key)).await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "kms")]
mod client;
pub(crate) mod sse;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest, Md5};

use crate::error::{Error, Result};
#[cfg(feature = "kms")]
pub use client::S3ClientBuilder;
use sse::{apply_sse, apply_sse_c};
pub use sse::{ServerSideEncryption, SseCustomerKey, SseKms};
pub use tokio_util::sync::CancellationToken;
pub(crate) use upload::upload_stream;
pub use upload::{part_size_for, put_stream};

pub mod framed;
pub mod pipeline;

/// How many times a request is sent, by default, when the store reports a digest mismatch or a
/// transient failure.
pub const PUT_ATTEMPTS: u32 = 3;

/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// The most parts one upload may have.
pub const MAX_PARTS: i32 = 10_000;
/// The part size [`PutOptions`] starts from.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// `Content-MD5` of `bytes`: the base64 of their MD5.
pub fn content_md5(bytes: &[u8]) -> String {
    B64.encode(Md5::digest(bytes))
}

/// How a failed request is retried: `attempts` in all, waiting `initial_backoff`, then twice as
/// long each time, at most `max_backoff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Requests sent at most (≥ 1).
    pub attempts: u32,
    /// The first wait.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: PUT_ATTEMPTS,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// `attempts` requests at most, with the default backoff.
    pub fn attempts(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            ..Self::default()
        }
    }

    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Options of an upload: server-side encryption, part size, concurrency, retries, cancellation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PutOptions {
    /// Server-side encryption requested from the store.
    pub sse: Option<ServerSideEncryption>,
    /// Part size in bytes ([`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`]); grown as needed (see
    /// [`part_size_for`]) so that an upload needs at most [`MAX_PARTS`] parts.
    pub part_size: usize,
    /// Parts uploaded at once (≥ 1).
    pub concurrency: usize,
    /// Retries of each request.
    pub retry: RetryPolicy,
    /// The input's length when known (a file): the part size is chosen from it up front.
    /// Unknown (stdin), parts double in size every 1,000 parts.
    pub expected_size: Option<u64>,
    /// Cancels the upload (Ctrl-C): in-flight requests are dropped, a multipart upload is
    /// aborted, and the upload fails with [`Error::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            sse: None,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            expected_size: None,
            cancel: None,
        }
    }
}

impl PutOptions {
    /// With server-side encryption.
    pub fn sse(mut self, sse: ServerSideEncryption) -> Self {
        self.sse = Some(sse);
        self
    }
    /// With this part size.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }
    /// With this many parts in flight.
    pub fn concurrency(mut self, parts: usize) -> Self {
        self.concurrency = parts;
        self
    }
    /// With this retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// The input is `bytes` long.
    pub fn expected_size(mut self, bytes: u64) -> Self {
        self.expected_size = Some(bytes);
        self
    }
    /// Cancelled by `token`.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    fn sse_c(&self) -> Option<&SseCustomerKey> {
        self.sse
            .as_ref()
            .and_then(ServerSideEncryption::customer_key)
    }
}

fn to_hash_map(metadata: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Uploads `body` with `metadata` (user metadata, keys without `x-amz-meta-`) in one PutObject
/// with its `Content-MD5`. Returns the ETag.
pub async fn put_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<String>> {
    put_object_with(client, bucket, key, body, metadata, &PutOptions::default()).await
}

/// [`put_object`] with server-side encryption and a retry policy from `options`.
pub async fn put_object_with(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    metadata: &BTreeMap<String, String>,
    options: &PutOptions,
) -> Result<Option<String>> {
    let md5 = content_md5(&body);
    put_object_hashed(client, bucket, key, body.into(), &md5, metadata, options).await
}

/// PutObject of `body` whose `Content-MD5` header value is already known (the upload pipeline
/// hashes parts together), with the retry loop, SSE and metadata of [`put_object_with`].
pub(crate) async fn put_object_hashed(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: bytes::Bytes,
    md5: &str,
    metadata: &BTreeMap<String, String>,
    options: &PutOptions,
) -> Result<Option<String>> {
    let metadata = to_hash_map(metadata);
    let out = send_with_retry("PutObject", bucket, key, &options.retry, || {
        let request = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_md5(md5)
            .set_metadata(metadata.clone())
            .body(ByteStream::from(body.clone()));
        apply_sse!(request, options.sse.as_ref()).send()
    })
    .await?;
    Ok(out.e_tag().map(str::to_owned))
}

/// Sends a request built by `send` until it succeeds, fails for good, or `policy.attempts` are
/// spent: the one retry loop of every write (digest mismatches and transient failures, with
/// exponential backoff).
async fn send_with_retry<T, E, R, F, Fut>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    policy: &RetryPolicy,
    mut send: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let attempts = policy.attempts.max(1);
    let mut failed = 0;
    loop {
        let err = match send().await {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        failed += 1;
        let digest = is_digest_error(&err);
        if !(digest || is_transient(&err)) {
            return Err(s3_error(operation, bucket, key, err));
        }
        if failed >= attempts {
            return Err(if digest {
                Error::ContentDigestMismatch { attempts }
            } else {
                let e = s3_error(operation, bucket, key, err);
                match e {
                    Error::S3 { operation, message } => Error::S3 {
                        operation,
                        message: format!("{message} (gave up after {attempts} attempts)"),
                    },
                    other => other,
                }
            });
        }
        tokio::time::sleep(policy.backoff(failed)).await;
    }
}

/// The HTTP status of a raw response, for telling transient failures apart.
trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

fn is_transient<E: ProvideErrorMetadata, R: HttpStatus>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            s.raw().status() >= 500
                || matches!(
                    s.err().code(),
                    Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
                )
        }
        _ => false,
    }
}

/// A multipart upload in progress. Parts go up with their `Content-MD5` (and the SSE-C key, when
/// the upload has one), one at a time ([`upload_part`](Self::upload_part)) or concurrently (each
/// [`PartUpload`] from [`next_part`](Self::next_part) is `'static` and can be spawned); on any
/// failure the caller calls [`abort`](Self::abort) so that no parts stay behind.
#[derive(Debug)]
pub struct MultipartUpload {
    target: Arc<Target>,
    next_number: i32,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
}

#[derive(Debug)]
struct Target {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    sse_c: Option<SseCustomerKey>,
    retry: RetryPolicy,
}

/// One part to upload: [`send`](Self::send) it, then hand the result to
/// [`MultipartUpload::part_done`].
#[derive(Debug)]
pub struct PartUpload {
    target: Arc<Target>,
    number: i32,
}

impl MultipartUpload {
    /// CreateMultipartUpload with `metadata` (keys without `x-amz-meta-`).
    pub async fn create(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        Self::create_with(client, bucket, key, metadata, &PutOptions::default()).await
    }

    /// CreateMultipartUpload with the server-side encryption and retry policy of `options`
    /// (which every part then uses).
    pub async fn create_with(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        metadata: &BTreeMap<String, String>,
        options: &PutOptions,
    ) -> Result<Self> {
        let request = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_metadata(to_hash_map(metadata));
        let out = apply_sse!(request, options.sse.as_ref())
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", bucket, key, e))?;
        let upload_id = out.upload_id().ok_or_else(|| Error::S3 {
            operation: "CreateMultipartUpload",
            message: format!("no UploadId in the answer (s3://{bucket}/{key})"),
        })?;
        Ok(Self {
            target: Arc::new(Target {
                client: client.clone(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
                sse_c: options.sse_c().cloned(),
                retry: options.retry,
            }),
            next_number: 1,
            parts: Vec::new(),
        })
    }

    /// The upload id the store gave.
    pub fn upload_id(&self) -> &str {
        &self.target.upload_id
    }

    /// Numbers the next part (from 1; at most [`MAX_PARTS`]).
    pub fn next_part(&mut self) -> Result<PartUpload> {
        if self.next_number > MAX_PARTS {
            return Err(Error::InvalidConfiguration(format!(
                "more than {MAX_PARTS} parts: choose a larger part size"
            )));
        }
        let number = self.next_number;
        self.next_number += 1;
        Ok(PartUpload {
            target: self.target.clone(),
            number,
        })
    }

    /// Records an uploaded part.
    pub fn part_done(&mut self, part: aws_sdk_s3::types::CompletedPart) {
        self.parts.push(part);
    }

    /// Uploads the next part and records it.
    pub async fn upload_part(&mut self, body: Vec<u8>) -> Result<()> {
        let part = self.next_part()?.send(body).await?;
        self.part_done(part);
        Ok(())
    }

    /// CompleteMultipartUpload with the parts recorded, in part-number order. If that fails, the
    /// upload is aborted (so no parts stay behind) and the completion error returned.
    pub async fn complete(mut self) -> Result<()> {
        match self.complete_parts().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.abort().await;
                Err(e)
            }
        }
    }

    async fn complete_parts(&mut self) -> Result<()> {
        let mut parts = self.parts.clone();
        parts.sort_by_key(|p| p.part_number());
        let t = &self.target;
        if parts.len() != usize::try_from(self.next_number - 1).unwrap_or(usize::MAX) {
            return Err(Error::InvalidConfiguration(
                "completing a multipart upload with parts missing".into(),
            ));
        }
        let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let request = t
            .client
            .complete_multipart_upload()
            .bucket(&t.bucket)
            .key(&t.key)
            .upload_id(&t.upload_id)
            .multipart_upload(parts);
        apply_sse_c!(request, t.sse_c.as_ref())
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &t.bucket, &t.key, e))?;
        Ok(())
    }

    /// AbortMultipartUpload: the store drops the parts uploaded so far.
    pub async fn abort(self) -> Result<()> {
        let t = &self.target;
        send_with_retry("AbortMultipartUpload", &t.bucket, &t.key, &t.retry, || {
            t.client
                .abort_multipart_upload()
                .bucket(&t.bucket)
                .key(&t.key)
                .upload_id(&t.upload_id)
                .send()
        })
        .await?;
        Ok(())
    }
}

impl PartUpload {
    /// The part number (from 1).
    pub fn number(&self) -> i32 {
        self.number
    }

    /// UploadPart with its `Content-MD5` (and the upload's SSE-C key), retried as [`put_object`] is.
    pub async fn send(self, body: Vec<u8>) -> Result<aws_sdk_s3::types::CompletedPart> {
        let md5 = content_md5(&body);
        self.send_hashed(body.into(), &md5).await
    }

    /// [`send`](Self::send) of a body whose `Content-MD5` header value is already known (the
    /// upload pipeline hashes parts together).
    pub(crate) async fn send_hashed(
        self,
        body: bytes::Bytes,
        md5: &str,
    ) -> Result<aws_sdk_s3::types::CompletedPart> {
        let t = &self.target;
        let out = send_with_retry("UploadPart", &t.bucket, &t.key, &t.retry, || {
            let request = t
                .client
                .upload_part()
                .bucket(&t.bucket)
                .key(&t.key)
                .upload_id(&t.upload_id)
                .part_number(self.number)
                .content_md5(md5)
                .body(ByteStream::from(body.clone()));
            apply_sse_c!(request, t.sse_c.as_ref()).send()
        })
        .await
        .map_err(|e| match e {
            Error::S3 { operation, message } => Error::S3 {
                operation,
                message: format!("part {}: {message}", self.number),
            },
            other => other,
        })?;
        Ok(aws_sdk_s3::types::CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

/// What the ETag of an object says about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtagCheck {
    /// The ETag is the MD5 of the body; checked at the end of the body.
    Md5,
    /// The ETag is the MD5 of the MD5s of `parts` parts of `part_size` bytes (the first may be of
    /// another size, as a framed object's, which carries the message header; the last shorter);
    /// checked at the end of the body.
    MultipartMd5 {
        /// Parts.
        parts: u32,
        /// Bytes of each part but the last.
        part_size: u64,
    },
    /// Not checked: the ETag is not an MD5 (SSE-KMS, SSE-C, a store's own scheme, parts of
    /// unequal size), or a range was read.
    Unchecked,
}

/// An object as GetObject returns it: user metadata, and the body still to be read.
#[derive(Debug)]
pub struct Object {
    /// User metadata (keys without `x-amz-meta-`, lower-case as S3 returns them).
    pub metadata: BTreeMap<String, String>,
    /// The body length S3 announced.
    pub content_length: Option<i64>,
    /// The ETag.
    pub e_tag: Option<String>,
    /// What the ETag check does.
    pub etag_check: EtagCheck,
    body: ByteStream,
    verifier: Option<EtagVerifier>,
    bucket: String,
    key: String,
}

/// Hashes the body as it arrives: one MD5 for a plain ETag; per part, then over the part
/// digests, for a multipart one.
#[derive(Debug)]
struct EtagVerifier {
    expected: [u8; 16],
    /// Bytes of each part after the first (`None`: a single-part ETag).
    part_size: Option<u64>,
    /// Bytes of the first part; `None` once it is hashed.
    first_part: Option<u64>,
    current: Md5,
    in_part: u64,
    part_digests: Md5,
}

impl EtagVerifier {
    fn update(&mut self, mut chunk: &[u8]) {
        let Some(part_size) = self.part_size else {
            self.current.update(chunk);
            return;
        };
        while !chunk.is_empty() {
            let this_part = self.first_part.unwrap_or(part_size);
            let room = usize::try_from(this_part - self.in_part).unwrap_or(usize::MAX);
            let n = room.min(chunk.len());
            self.current.update(&chunk[..n]);
            self.in_part += n as u64;
            chunk = &chunk[n..];
            if self.in_part == this_part {
                let done = std::mem::take(&mut self.current).finalize();
                self.part_digests.update(done);
                self.in_part = 0;
                self.first_part = None;
            }
        }
    }

    fn verify(mut self) -> bool {
        let got: [u8; 16] = match self.part_size {
            None => self.current.finalize().into(),
            Some(_) => {
                if self.in_part > 0 {
                    let last = std::mem::take(&mut self.current).finalize();
                    self.part_digests.update(last);
                }
                self.part_digests.finalize().into()
            }
        };
        got == self.expected
    }
}

impl Object {
    /// The next piece of the body; `None` at the end, after checking the ETag where it is an MD5.
    pub async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                if let Some(v) = &mut self.verifier {
                    v.update(&chunk);
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(Error::S3 {
                operation: "GetObject",
                message: format!(
                    "reading the body of s3://{}/{} failed: {}",
                    self.bucket,
                    self.key,
                    DisplayErrorContext(&e)
                ),
            }),
            None => {
                if let Some(v) = self.verifier.take() {
                    if !v.verify() {
                        return Err(Error::EtagMismatch {
                            bucket: self.bucket.clone(),
                            key: self.key.clone(),
                            etag: self.e_tag.clone().unwrap_or_default(),
                        });
                    }
                }
                Ok(None)
            }
        }
    }

    /// Reads the whole body.
    pub async fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Streams the body into `output` (the ETag is checked before the last write returns).
    pub async fn copy_to<W: tokio::io::AsyncWrite + Unpin>(
        mut self,
        output: &mut W,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt as _;
        let mut n = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            output.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        output.flush().await?;
        Ok(n)
    }
}

/// GetObject. `Ok(None)` if there is no such key.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Object>> {
    get_object_with(client, bucket, key, None).await
}

/// GetObject of an object stored with SSE-C (`sse_c`: its key) or without. `Ok(None)` if there is
/// no such key.
pub async fn get_object_with(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sse_c: Option<&SseCustomerKey>,
) -> Result<Option<Object>> {
    let request = client.get_object().bucket(bucket).key(key);
    let out = match apply_sse_c!(request, sse_c).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(s3_error("GetObject", bucket, key, e)),
    };
    let server_side = out
        .server_side_encryption()
        .is_some_and(|s| s.as_str() != "AES256")
        || out.sse_customer_algorithm().is_some();
    let e_tag = out.e_tag().map(str::to_owned);
    let total = out.content_length().and_then(|l| u64::try_from(l).ok());
    let (etag_check, verifier) = match (server_side, e_tag.as_deref().and_then(parse_etag)) {
        (false, Some((md5, None))) => (EtagCheck::Md5, Some((md5, None))),
        (false, Some((md5, Some(parts)))) => {
            match multipart_layout(client, bucket, key, sse_c, parts, total).await {
                Some((first_part, part_size)) => (
                    EtagCheck::MultipartMd5 { parts, part_size },
                    Some((md5, Some((first_part, part_size)))),
                ),
                None => (EtagCheck::Unchecked, None),
            }
        }
        _ => (EtagCheck::Unchecked, None),
    };
    Ok(Some(Object {
        metadata: lower_case(out.metadata()),
        content_length: out.content_length(),
        e_tag,
        etag_check,
        body: out.body,
        verifier: verifier.map(|(expected, sizes)| EtagVerifier {
            expected,
            part_size: sizes.map(|(_, size)| size),
            first_part: sizes.map(|(first, _)| first),
            current: Md5::new(),
            in_part: 0,
            part_digests: Md5::new(),
        }),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    }))
}

/// The sizes of the first part and of the parts after it of a multipart object, from HEADs of
/// parts 1 and 2, when every part but the first and the last has the second's size (as every
/// uploader here and the AWS tools make them; a framed object's first part also holds the message
/// header); `None` when that cannot be so.
async fn multipart_layout(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sse_c: Option<&SseCustomerKey>,
    parts: u32,
    total: Option<u64>,
) -> Option<(u64, u64)> {
    let part_len = |number: i32| async move {
        let request = client
            .head_object()
            .bucket(bucket)
            .key(key)
            .part_number(number);
        let head = apply_sse_c!(request, sse_c).send().await.ok()?;
        u64::try_from(head.content_length()?).ok()
    };
    let first = part_len(1).await?;
    let total = total?;
    if parts < 2 {
        return (first == total).then_some((first, first.max(1)));
    }
    let size = if parts == 2 {
        // The second part is the last: any size up to this one.
        first.max(total.checked_sub(first)?)
    } else {
        part_len(2).await?
    };
    let n = u64::from(parts);
    let before_last = first + (n - 2) * size;
    (first > 0 && size > 0 && before_last < total && total <= before_last + size)
        .then_some((first, size))
}

fn lower_case(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// An object's HeadObject answer: what is stored, without the body.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ObjectHead {
    /// User metadata (keys without `x-amz-meta-`, lower-case).
    pub metadata: BTreeMap<String, String>,
    /// The stored length.
    pub content_length: Option<i64>,
    /// The ETag.
    pub e_tag: Option<String>,
    /// `x-amz-server-side-encryption` (`AES256`, `aws:kms`, …).
    pub server_side_encryption: Option<String>,
    /// The SSE-KMS key.
    pub sse_kms_key_id: Option<String>,
    /// Whether an S3 Bucket Key is used.
    pub bucket_key_enabled: Option<bool>,
    /// The SSE-C algorithm, for an SSE-C object.
    pub sse_customer_algorithm: Option<String>,
    /// The SSE-C key MD5, for an SSE-C object.
    pub sse_customer_key_md5: Option<String>,
}

/// HeadObject (with the SSE-C key for an SSE-C object). `Ok(None)` if there is no such key.
pub async fn head_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sse_c: Option<&SseCustomerKey>,
) -> Result<Option<ObjectHead>> {
    let request = client.head_object().bucket(bucket).key(key);
    let out = match apply_sse_c!(request, sse_c).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
        Err(e) => return Err(s3_error("HeadObject", bucket, key, e)),
    };
    Ok(Some(ObjectHead {
        metadata: lower_case(out.metadata()),
        content_length: out.content_length(),
        e_tag: out.e_tag().map(str::to_owned),
        server_side_encryption: out.server_side_encryption().map(|s| s.as_str().to_owned()),
        sse_kms_key_id: out.ssekms_key_id().map(str::to_owned),
        bucket_key_enabled: out.bucket_key_enabled(),
        sse_customer_algorithm: out.sse_customer_algorithm().map(str::to_owned),
        sse_customer_key_md5: out.sse_customer_key_md5().map(str::to_owned),
    }))
}

/// CopyObject within the store, keeping the user metadata (so an S3 Encryption Client object
/// stays readable; its instruction file, if it has one, is not copied). `source_sse_c`: the SSE-C
/// key of the source; `sse`: the server-side encryption of the copy.
pub async fn copy_object(
    client: &aws_sdk_s3::Client,
    (source_bucket, source_key): (&str, &str),
    (bucket, key): (&str, &str),
    source_sse_c: Option<&SseCustomerKey>,
    sse: Option<&ServerSideEncryption>,
) -> Result<Option<String>> {
    let mut request = client
        .copy_object()
        .copy_source(format!("{source_bucket}/{}", encode_key(source_key)))
        .bucket(bucket)
        .key(key)
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy);
    if let Some(k) = source_sse_c {
        request = request
            .copy_source_sse_customer_algorithm(SseCustomerKey::ALGORITHM)
            .copy_source_sse_customer_key(k.key_base64())
            .copy_source_sse_customer_key_md5(k.key_md5());
    }
    let out = apply_sse!(request, sse)
        .send()
        .await
        .map_err(|e| s3_error("CopyObject", bucket, key, e))?;
    Ok(out
        .copy_object_result()
        .and_then(|r| r.e_tag())
        .map(str::to_owned))
}

/// Percent-encodes a key for `x-amz-copy-source` (keeping `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An ETag that is an MD5 (`"<32 hex>"`) or an MD5 of part MD5s (`"<32 hex>-N"`): the digest, and
/// N for the latter.
fn parse_etag(etag: &str) -> Option<([u8; 16], Option<u32>)> {
    let etag = etag.trim_matches('"');
    let (hex, parts) = match etag.split_once('-') {
        Some((hex, n)) => (hex, Some(n.parse::<u32>().ok().filter(|n| *n >= 1)?)),
        None => (etag, None),
    };
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((out, parts))
}

fn is_digest_error<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|s| s.code()),
        Some("BadDigest" | "InvalidDigest")
    )
}

fn s3_error<E, R>(operation: &'static str, bucket: &str, key: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let message = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match e.code() {
                Some(code) => format!(
                    "{code}: {} (s3://{bucket}/{key})",
                    e.message().unwrap_or("(no message)")
                ),
                // A HEAD answer has no body, so no error code: the status is all there is.
                None => format!(
                    "HTTP {} with no error code (s3://{bucket}/{key})",
                    service.raw().status()
                ),
            }
        }
        _ => format!("s3://{bucket}/{key}: {}", DisplayErrorContext(&err)),
    };
    Error::S3 { operation, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_md5() {
        // RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn md5_and_multipart_etags_are_recognised() {
        assert_eq!(
            parse_etag("\"900150983cd24fb0d6963f7d28e17f72\"").map(|(m, n)| (m[0], n)),
            Some((0x90, None))
        );
        assert_eq!(
            parse_etag("\"900150983cd24fb0d6963f7d28e17f72-3\"").map(|(m, n)| (m[0], n)),
            Some((0x90, Some(3)))
        );
        assert_eq!(parse_etag("\"900150983cd24fb0d6963f7d28e17f72-0\""), None);
        assert_eq!(parse_etag("\"900150983cd24fb0d6963f7d28e17f72-x\""), None);
        assert_eq!(parse_etag("\"xyz\""), None);
        assert_eq!(parse_etag("\"zz0150983cd24fb0d6963f7d28e17f72\""), None);
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        let body: Vec<u8> = (0..25u8).collect();
        let mut digests = Vec::new();
        for part in body.chunks(10) {
            digests.extend_from_slice(&Md5::digest(part));
        }
        let expected: [u8; 16] = Md5::digest(&digests).into();
        let verifier = || EtagVerifier {
            expected,
            part_size: Some(10),
            first_part: Some(10),
            current: Md5::new(),
            in_part: 0,
            part_digests: Md5::new(),
        };
        // Chunks that straddle part boundaries.
        let mut v = verifier();
        for chunk in body.chunks(7) {
            v.update(chunk);
        }
        assert!(v.verify());
        let mut v = verifier();
        v.update(&body[..24]);
        v.update(&[99]);
        assert!(!v.verify());
        // A first part of another size (a framed object's holds the message header).
        let mut digests = Vec::new();
        for part in [&body[..13], &body[13..21], &body[21..]] {
            digests.extend_from_slice(&Md5::digest(part));
        }
        let expected: [u8; 16] = Md5::digest(&digests).into();
        let mut v = EtagVerifier {
            expected,
            part_size: Some(8),
            first_part: Some(13),
            current: Md5::new(),
            in_part: 0,
            part_digests: Md5::new(),
        };
        for chunk in body.chunks(3) {
            v.update(chunk);
        }
        assert!(v.verify());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(40), Duration::from_secs(5));
    }

    #[test]
    fn copy_source_keys_are_percent_encoded() {
        assert_eq!(encode_key("a b/c+d.txt"), "a%20b/c%2Bd.txt");
    }
}
