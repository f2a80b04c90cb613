//! The S3 transport: PutObject, multipart upload, GetObject, HeadObject and CopyObject against any
//! S3-compatible endpoint, through a caller-configured [`aws_sdk_s3::Client`] (endpoint URL,
//! path-style or virtual-hosted addressing, region and credentials are the client's business;
//! [`S3ClientBuilder`] makes one from the standard AWS configuration).
//!
//! - **Integrity.** Every PutObject and UploadPart carries `Content-MD5` of the exact bytes sent.
//!   A store that answers `BadDigest` or `InvalidDigest` (the bytes were damaged on the way), and
//!   a transient failure (timeout, connection, 5xx, `SlowDown`), is retried with exponential
//!   backoff ([`RetryPolicy`]); when the store keeps rejecting the digest the failure is
//!   [`Error::ContentDigestMismatch`]. An answer whose ETag is an MD5 (the answer names no SSE-KMS
//!   and no SSE-C) must be the MD5 sent; another one is retried the same way, then
//!   [`Error::StoredDigestMismatch`] (a PutObject has then replaced the object all the same).
//!   Downloads check the ETag where it is an MD5 of the body or
//!   an MD5 of the parts' MD5s (`…-N`, parts of equal size but the last); not for SSE-KMS and
//!   SSE-C objects, whose ETags are something else.
//! - **Your client's configuration.** Writes (PutObject, UploadPart, AbortMultipartUpload) are
//!   retried by [`RetryPolicy`] alone: the client's retry configuration is turned off for them, so
//!   that retries do not multiply. A client with a read timeout gives an upload request more: its
//!   body's time at [`UPLOAD_FLOOR_RATE`]. Other requests (CreateMultipartUpload,
//!   CompleteMultipartUpload, GetObject, HeadObject) keep the client's own retries.
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
mod get;
mod multipart;
pub(crate) mod sse;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use crate::error::{Error, Result};
use crate::md5::content_md5;
#[cfg(feature = "kms")]
pub use client::S3ClientBuilder;
pub(crate) use get::lower_case;
pub use get::{
    copy_object, get_object, get_object_with, head_object, EtagCheck, Object, ObjectHead,
};
pub use multipart::{MultipartUpload, PartUpload};
use sse::apply_sse;
pub use sse::{ServerSideEncryption, SseCustomerKey, SseKms};
pub use tokio_util::sync::CancellationToken;
pub use upload::{part_size_for, put_stream};
pub(crate) use upload::{upload_stream, Undone};

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

/// How a failed request is retried: `attempts` in all, waiting `initial_backoff`, then twice as
/// long each time, at most `max_backoff`; each wait scaled by a random factor in [0.5, 1), and a
/// throttling answer (`SlowDown`, …) waited for at least a second whatever `max_backoff` says.
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
    /// Retries of each request. PutObject, UploadPart and AbortMultipartUpload are retried by this
    /// policy alone: the client's own retry configuration is turned off for them.
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

    pub(crate) fn sse_c(&self) -> Option<&SseCustomerKey> {
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
    let out = send_with_retry(
        "PutObject",
        bucket,
        key,
        &options.retry,
        || {
            let request = client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_md5(md5)
                .set_metadata(metadata.clone())
                .body(ByteStream::from(body.clone()));
            apply_sse!(request, options.sse.as_ref())
                .customize()
                .config_override(one_attempt(client, body.len()))
                .send()
        },
        |out| etag_confirms(out, md5),
    )
    .await?;
    Ok(out.e_tag().map(str::to_owned))
}

/// Sends a request built by `send` until it succeeds, fails for good, or `policy.attempts` are
/// spent: the one retry loop of every write (digest mismatches and transient failures, with
/// exponential backoff). `send` must build its request with [`one_attempt`], so that the SDK's own
/// retries do not multiply these. `stored` judges a success: `Err(etag)` when the store's ETag
/// says it stored other bytes than were sent, which is retried as a digest mismatch.
pub(crate) async fn send_with_retry<T, E, R, F, Fut>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    policy: &RetryPolicy,
    mut send: F,
    stored: impl Fn(&T) -> std::result::Result<(), String>,
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
            Ok(out) => match stored(&out) {
                Ok(()) => return Ok(out),
                Err(etag) => {
                    failed += 1;
                    if failed >= attempts {
                        return Err(Error::StoredDigestMismatch {
                            request: operation.to_owned(),
                            etag,
                            attempts,
                        });
                    }
                    tokio::time::sleep(jittered(policy.backoff(failed))).await;
                    continue;
                }
            },
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
        // Throttled: at least a second, as the SDK's own retries wait for throttling errors.
        let wait = jittered(policy.backoff(failed));
        let wait = if is_throttling(&err) {
            wait.max(Duration::from_secs(1))
        } else {
            wait
        };
        tokio::time::sleep(wait).await;
    }
}

/// `wait` scaled by a random factor in [0.5, 1): parts retried together do not retry in step.
fn jittered(wait: Duration) -> Duration {
    let mut b = [0u8; 2];
    let unit = match crate::random::fill(&mut b) {
        Ok(()) => f64::from(u16::from_le_bytes(b)) / 65_536.0,
        Err(_) => 0.5,
    };
    wait.mul_f64(0.5 + unit / 2.0)
}

/// The configuration override of a request sent through [`send_with_retry`] by `client` with a
/// body of `body_len` bytes: one attempt, as that loop does the retrying (the SDK's standard
/// retries inside it sent 3 × 3 requests); and the client's read timeout, whose clock starts when
/// the request is sent (so it includes the body), lengthened as [`upload_read_timeout`] says.
pub(crate) fn one_attempt(
    client: &aws_sdk_s3::Client,
    body_len: usize,
) -> aws_sdk_s3::config::Builder {
    let mut config = aws_sdk_s3::config::Builder::new()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
    if let Some(timeouts) = client.config().timeout_config() {
        if let Some(base) = timeouts.read_timeout() {
            config = config.timeout_config(
                timeouts
                    .to_builder()
                    .read_timeout(upload_read_timeout(base, body_len))
                    .build(),
            );
        }
    }
    config
}

/// The slowest upload a read timeout allows for: 32 KiB/s per request in flight.
pub const UPLOAD_FLOOR_RATE: u64 = 32 * 1024;

/// `base` plus `body_len` at [`UPLOAD_FLOOR_RATE`], rounded up to a whole number of `base`s (the
/// SDK keeps a connection pool per distinct timeout: parts of one size share one); `base` alone
/// for a body that takes under an eighth of it.
fn upload_read_timeout(base: Duration, body_len: usize) -> Duration {
    let base_ms = base.as_millis().max(1);
    let sending_ms =
        u128::try_from(body_len).unwrap_or(u128::MAX) * 1000 / u128::from(UPLOAD_FLOOR_RATE);
    // A body sent in under an eighth of the base needs no more time (and no second pool).
    if sending_ms < base_ms / 8 {
        return base;
    }
    let bases = 1 + sending_ms.div_ceil(base_ms);
    Duration::from_millis(u64::try_from(bases.saturating_mul(base_ms)).unwrap_or(u64::MAX))
}

/// What a PutObject or UploadPart answer says of what the store stored.
pub(crate) trait StoredAnswer {
    fn e_tag(&self) -> Option<&str>;
    fn server_side_encryption(&self) -> Option<&aws_sdk_s3::types::ServerSideEncryption>;
    fn sse_customer_algorithm(&self) -> Option<&str>;
}

macro_rules! stored_answer {
    ($($output:ty),*) => {$(
        impl StoredAnswer for $output {
            fn e_tag(&self) -> Option<&str> {
                self.e_tag()
            }
            fn server_side_encryption(&self) -> Option<&aws_sdk_s3::types::ServerSideEncryption> {
                self.server_side_encryption()
            }
            fn sse_customer_algorithm(&self) -> Option<&str> {
                self.sse_customer_algorithm()
            }
        }
    )*};
}
stored_answer!(
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::operation::upload_part::UploadPartOutput
);

/// Whether an answer's ETag confirms the bytes whose `Content-MD5` was `content_md5`: `Err` with
/// the ETag when it is an MD5 and another one. Only where S3 makes the ETag the body's MD5: the
/// answer says no SSE-KMS (`server_side_encryption` absent or `AES256`; a bucket's default
/// encryption counts, whatever the request asked) and no SSE-C. An ETag of a store's own scheme is
/// not judged, as on download.
pub(crate) fn etag_confirms(
    answer: &impl StoredAnswer,
    content_md5: &str,
) -> std::result::Result<(), String> {
    let etag_is_md5 = answer
        .server_side_encryption()
        .is_none_or(|s| s.as_str() == "AES256")
        && answer.sse_customer_algorithm().is_none();
    let etag = answer.e_tag();
    match etag.filter(|_| etag_is_md5).and_then(get::parse_etag) {
        Some((digest, None)) if crate::md5::content_md5_header(&digest) != content_md5 => {
            Err(etag.unwrap_or_default().to_owned())
        }
        _ => Ok(()),
    }
}

/// The HTTP status of a raw response, for telling transient failures apart.
pub(crate) trait HttpStatus {
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
                || is_throttling(e)
                || matches!(
                    s.err().code(),
                    // A clock the store finds skewed: the SDK learns the skew from the answer,
                    // and the next attempt is signed with the corrected time.
                    Some(
                        "RequestTimeout"
                            | "RequestTimeoutException"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "RequestTimeTooSkewed"
                            | "RequestExpired"
                    )
                )
        }
        _ => false,
    }
}

/// A throttling answer (the codes the SDK's own retry classifier treats as such,
/// `aws_runtime::retries::classifiers::THROTTLING_ERRORS`).
fn is_throttling<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|s| s.code()),
        Some(
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "RequestThrottledException"
                | "TooManyRequestsException"
                | "ProvisionedThroughputExceededException"
                | "TransactionInProgressException"
                | "RequestLimitExceeded"
                | "BandwidthLimitExceeded"
                | "LimitExceededException"
                | "RequestThrottled"
                | "PriorRequestNotComplete"
                | "EC2ThrottledException"
        )
    )
}

fn is_digest_error<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|s| s.code()),
        Some("BadDigest" | "InvalidDigest")
    )
}

pub(crate) fn s3_error<E, R>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: SdkError<E, R>,
) -> Error
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
    fn jitter_keeps_a_wait_between_half_and_all_of_it() {
        let wait = Duration::from_millis(800);
        let waits: Vec<Duration> = (0..64).map(|_| jittered(wait)).collect();
        assert!(
            waits.iter().all(|w| *w >= wait / 2 && *w < wait),
            "{waits:?}"
        );
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(40), Duration::from_secs(5));
    }

    #[test]
    fn an_upload_waits_the_read_timeout_plus_its_body_at_the_floor_rate() {
        let minute = Duration::from_secs(60);
        assert_eq!(upload_read_timeout(minute, 0), minute);
        assert_eq!(upload_read_timeout(minute, 1), minute);
        // Under 7.5 s at the floor rate: the base alone; from there, whole bases on top.
        assert_eq!(upload_read_timeout(minute, 7 * 32 * 1024), minute);
        assert_eq!(upload_read_timeout(minute, 8 * 32 * 1024), 2 * minute);
        assert_eq!(upload_read_timeout(minute, 61 * 32 * 1024), 3 * minute);
        // 8 MiB at 32 KiB/s is 256 s: five minutes on top of the one.
        assert_eq!(upload_read_timeout(minute, 8 << 20), 6 * minute);
        assert_eq!(
            upload_read_timeout(Duration::from_secs(1), 64 * 1024),
            Duration::from_secs(3)
        );
        assert!(upload_read_timeout(minute, usize::MAX) > Duration::from_secs(1 << 40));
    }

    #[test]
    fn an_etag_confirms_the_upload_only_when_it_is_the_md5_sent() {
        use aws_sdk_s3::operation::put_object::PutObjectOutput;
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        let judge = |etag: &str, sse: Option<Sse>, sse_c: Option<&str>| {
            let answer = PutObjectOutput::builder()
                .e_tag(etag)
                .set_server_side_encryption(sse)
                .set_sse_customer_algorithm(sse_c.map(str::to_owned))
                .build();
            etag_confirms(&answer, &content_md5(b"abc"))
        };
        let abc = "\"900150983cd24fb0d6963f7d28e17f72\"";
        let other = "\"d41d8cd98f00b204e9800998ecf8427e\"";
        assert_eq!(judge(abc, None, None), Ok(()));
        assert_eq!(judge(abc, Some(Sse::Aes256), None), Ok(()));
        assert_eq!(judge(other, None, None), Err(other.to_owned()));
        assert_eq!(judge(other, Some(Sse::Aes256), None), Err(other.to_owned()));
        // Not judged: the answer says SSE-KMS (asked for, or the bucket's default) or SSE-C; a
        // store's own scheme; a multipart form.
        assert_eq!(judge(other, Some(Sse::AwsKms), None), Ok(()));
        assert_eq!(judge(other, Some(Sse::AwsKmsDsse), None), Ok(()));
        assert_eq!(judge(other, None, Some("AES256")), Ok(()));
        assert_eq!(judge("\"v1-xyz\"", None, None), Ok(()));
        assert_eq!(
            judge("\"d41d8cd98f00b204e9800998ecf8427e-2\"", None, None),
            Ok(())
        );
        let no_etag = PutObjectOutput::builder().build();
        assert_eq!(etag_confirms(&no_etag, &content_md5(b"abc")), Ok(()));
    }
}
