//! The S3 transport: single-request PutObject and GetObject against any S3-compatible endpoint,
//! through a caller-configured [`aws_sdk_s3::Client`] (endpoint URL, path-style or virtual-hosted
//! addressing, region and credentials are the client's business).
//!
//! Every PutObject and UploadPart carries `Content-MD5` of the exact bytes sent. A store that answers `BadDigest`
//! or `InvalidDigest` (the bytes were damaged on the way) is sent the request again, up to
//! [`PUT_ATTEMPTS`] times in all, and then the failure is reported as
//! [`Error::ContentDigestMismatch`]. Downloads check the ETag against the MD5 of the bytes
//! received where the ETag is a plain MD5 (not for multipart, SSE-KMS or SSE-C objects, whose
//! ETags are something else).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest, Md5};

use crate::error::{Error, Result};

pub mod framed;
pub mod pipeline;

/// How many times a PutObject is sent when the store reports a digest mismatch.
pub const PUT_ATTEMPTS: u32 = 3;

/// `Content-MD5` of `bytes`: the base64 of their MD5.
pub fn content_md5(bytes: &[u8]) -> String {
    B64.encode(Md5::digest(bytes))
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
    let md5 = content_md5(&body);
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let body = bytes::Bytes::from(body);
    for _ in 0..PUT_ATTEMPTS {
        let sent = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_md5(&md5)
            .set_metadata((!metadata.is_empty()).then(|| metadata.clone()))
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        match sent {
            Ok(out) => return Ok(out.e_tag().map(str::to_owned)),
            Err(e) if is_digest_error(&e) => continue,
            Err(e) => return Err(s3_error("PutObject", bucket, key, e)),
        }
    }
    Err(Error::ContentDigestMismatch {
        attempts: PUT_ATTEMPTS,
    })
}

/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// The most parts one upload may have.
pub const MAX_PARTS: i32 = 10_000;

/// A multipart upload in progress. Parts go up with their `Content-MD5`, one at a time
/// ([`upload_part`](Self::upload_part)) or concurrently (each [`PartUpload`] from
/// [`next_part`](Self::next_part) is `'static` and can be spawned); on any failure the caller calls
/// [`abort`](Self::abort) so that no parts stay behind.
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
        let metadata: HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let out = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_metadata((!metadata.is_empty()).then_some(metadata))
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
            }),
            next_number: 1,
            parts: Vec::new(),
        })
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

    /// CompleteMultipartUpload with the parts recorded, in part-number order.
    pub async fn complete(mut self) -> Result<()> {
        self.parts.sort_by_key(|p| p.part_number());
        let t = &self.target;
        if self.parts.len() != usize::try_from(self.next_number - 1).unwrap_or(usize::MAX) {
            return Err(Error::InvalidConfiguration(
                "completing a multipart upload with parts missing".into(),
            ));
        }
        let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts))
            .build();
        t.client
            .complete_multipart_upload()
            .bucket(&t.bucket)
            .key(&t.key)
            .upload_id(&t.upload_id)
            .multipart_upload(parts)
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &t.bucket, &t.key, e))?;
        Ok(())
    }

    /// AbortMultipartUpload: the store drops the parts uploaded so far.
    pub async fn abort(self) -> Result<()> {
        let t = &self.target;
        t.client
            .abort_multipart_upload()
            .bucket(&t.bucket)
            .key(&t.key)
            .upload_id(&t.upload_id)
            .send()
            .await
            .map_err(|e| s3_error("AbortMultipartUpload", &t.bucket, &t.key, e))?;
        Ok(())
    }
}

impl PartUpload {
    /// UploadPart with its `Content-MD5`, retried on a digest mismatch as [`put_object`] is.
    pub async fn send(self, body: Vec<u8>) -> Result<aws_sdk_s3::types::CompletedPart> {
        let t = &self.target;
        let md5 = content_md5(&body);
        let body = bytes::Bytes::from(body);
        for _ in 0..PUT_ATTEMPTS {
            let sent = t
                .client
                .upload_part()
                .bucket(&t.bucket)
                .key(&t.key)
                .upload_id(&t.upload_id)
                .part_number(self.number)
                .content_md5(&md5)
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    return Ok(aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(self.number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build())
                }
                Err(e) if is_digest_error(&e) => continue,
                Err(e) => return Err(s3_error("UploadPart", &t.bucket, &t.key, e)),
            }
        }
        Err(Error::ContentDigestMismatch {
            attempts: PUT_ATTEMPTS,
        })
    }
}

/// An object as GetObject returns it: user metadata, and the body still to be read.
#[derive(Debug)]
pub struct Object {
    /// User metadata (keys without `x-amz-meta-`, lower-case as S3 returns them).
    pub metadata: BTreeMap<String, String>,
    /// The body length S3 announced.
    pub content_length: Option<i64>,
    body: ByteStream,
    /// The MD5 the ETag claims, when it is a plain MD5 of the body, and the MD5 of what arrived
    /// (computed only then).
    etag_md5: Option<([u8; 16], Md5)>,
}

impl Object {
    /// The next piece of the body; `None` at the end, after checking the ETag where it is an MD5.
    pub async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                if let Some((_, md5)) = &mut self.etag_md5 {
                    md5.update(&chunk);
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(Error::S3 {
                operation: "GetObject",
                message: format!("reading the body failed: {}", DisplayErrorContext(&e)),
            }),
            None => {
                if let Some((expected, md5)) = self.etag_md5.take() {
                    let got: [u8; 16] = md5.finalize().into();
                    if got != expected {
                        return Err(Error::S3 {
                            operation: "GetObject",
                            message: "the body received does not match its ETag (MD5)".into(),
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
}

/// GetObject. `Ok(None)` if there is no such key.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Object>> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(s3_error("GetObject", bucket, key, e)),
    };
    let server_side = out
        .server_side_encryption()
        .is_some_and(|s| s.as_str() != "AES256")
        || out.sse_customer_algorithm().is_some();
    let etag_md5 = if server_side {
        None
    } else {
        out.e_tag().and_then(md5_etag)
    };
    Ok(Some(Object {
        metadata: out
            .metadata()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        content_length: out.content_length(),
        body: out.body,
        etag_md5: etag_md5.map(|m| (m, Md5::new())),
    }))
}

/// The MD5 in an ETag that is one (`"<32 hex digits>"`); multipart ETags (`…-N`) are not.
fn md5_etag(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
    R: std::fmt::Debug,
{
    let message = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {} (s3://{bucket}/{key})",
                e.code().unwrap_or("UnknownError"),
                e.message().unwrap_or("(no message)")
            )
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
    fn only_plain_md5_etags_are_checked() {
        assert_eq!(
            md5_etag("\"900150983cd24fb0d6963f7d28e17f72\"").map(|m| m[0]),
            Some(0x90)
        );
        assert_eq!(md5_etag("\"900150983cd24fb0d6963f7d28e17f72-3\""), None);
        assert_eq!(md5_etag("\"xyz\""), None);
        assert_eq!(md5_etag("\"zz0150983cd24fb0d6963f7d28e17f72\""), None);
    }
}
