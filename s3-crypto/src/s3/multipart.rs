//! Multipart uploads: CreateMultipartUpload, UploadPart with `Content-MD5` through the one retry
//! loop, Complete and Abort.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;

use super::get::parse_etag;
use super::sse::{apply_sse, apply_sse_c};
use super::{
    etag_confirms, head_object, one_attempt, s3_error, send_with_retry, to_hash_map, PutOptions,
    RetryPolicy, SseCustomerKey, MAX_PARTS,
};
use crate::error::{Error, Result};
use crate::md5::{content_md5, md5, to_hex};

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
    /// (the parts and the abort then use both; CreateMultipartUpload itself keeps the client's own
    /// retries).
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
    /// upload is aborted (so no parts stay behind) and the completion error returned; except when
    /// an earlier attempt completed it and only its answer was lost: the store no longer knows the
    /// upload (ListParts: NoSuchUpload) and the object's ETag is the MD5 of these parts' ETags,
    /// `-N`; then `Ok`. (That judging needs `s3:ListMultipartUploadParts` and `s3:GetObject`;
    /// without them the error stands.)
    pub async fn complete(mut self) -> Result<()> {
        match self.complete_parts().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.abort().await;
                Err(e)
            }
        }
    }

    pub(super) async fn complete_parts(&mut self) -> Result<()> {
        let mut parts = self.parts.clone();
        parts.sort_by_key(|p| p.part_number());
        let t = &self.target;
        if parts.len() != usize::try_from(self.next_number - 1).unwrap_or(usize::MAX) {
            return Err(Error::InvalidConfiguration(
                "completing a multipart upload with parts missing".into(),
            ));
        }
        let expected = expected_etag(&parts);
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
        let Err(e) = apply_sse_c!(request, t.sse_c.as_ref()).send().await else {
            return Ok(());
        };
        // A completion that landed but whose answer was lost (its retry then finds no upload):
        // the upload is gone, and the object's ETag is the MD5 of exactly these parts' MD5s.
        let error = s3_error("CompleteMultipartUpload", &t.bucket, &t.key, e);
        match expected {
            Some(expected) if self.upload_is_gone().await => match self.etag().await {
                Ok(Some(etag)) if etag.trim_matches('"').eq_ignore_ascii_case(&expected) => Ok(()),
                Ok(_) => Err(error),
                Err(head) => Err(Error::S3 {
                    operation: "CompleteMultipartUpload",
                    message: format!(
                        "{error}; the upload is gone (an earlier attempt may have completed it), \
                         but whether the object is it could not be told ({head})"
                    ),
                }),
            },
            _ => Err(error),
        }
    }

    /// Whether the store no longer knows the upload (ListParts answers NoSuchUpload): it was
    /// completed or aborted.
    async fn upload_is_gone(&self) -> bool {
        let t = &self.target;
        let listed = t
            .client
            .list_parts()
            .bucket(&t.bucket)
            .key(&t.key)
            .upload_id(&t.upload_id)
            .max_parts(1)
            .customize()
            .config_override(one_attempt(&t.client, 0))
            .send()
            .await;
        listed
            .err()
            .and_then(|e| e.into_service_error().meta().code().map(str::to_owned))
            .is_some_and(|code| code == "NoSuchUpload")
    }

    /// The object's ETag now, in one attempt (this runs while completing, which Ctrl-C does not
    /// interrupt: it must not take the SDK's retries on top).
    async fn etag(&self) -> Result<Option<String>> {
        let t = &self.target;
        let once = aws_sdk_s3::Client::from_conf(
            t.client
                .config()
                .to_builder()
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
                .build(),
        );
        Ok(head_object(&once, &t.bucket, &t.key, t.sse_c.as_ref())
            .await?
            .and_then(|h| h.e_tag))
    }

    /// AbortMultipartUpload: the store drops the parts uploaded so far.
    pub async fn abort(self) -> Result<()> {
        let t = &self.target;
        send_with_retry(
            "AbortMultipartUpload",
            &t.bucket,
            &t.key,
            &t.retry,
            || {
                t.client
                    .abort_multipart_upload()
                    .bucket(&t.bucket)
                    .key(&t.key)
                    .upload_id(&t.upload_id)
                    .customize()
                    .config_override(one_attempt(&t.client, 0))
                    .send()
            },
            |_| Ok(()),
        )
        .await?;
        Ok(())
    }
}

/// The ETag S3 gives the object these parts make: the MD5 of the parts' ETags (as 16 bytes each),
/// `-N`; `None` when a part's ETag is not 32 hex digits (a store's own scheme). The parts' ETags
/// are their MD5s, or (SSE-KMS, SSE-C) other digests that identify them as well.
fn expected_etag(parts: &[aws_sdk_s3::types::CompletedPart]) -> Option<String> {
    let mut digests = Vec::with_capacity(parts.len() * 16);
    for part in parts {
        match part.e_tag().and_then(parse_etag) {
            Some((digest, None)) => digests.extend_from_slice(&digest),
            _ => return None,
        }
    }
    Some(format!("{}-{}", to_hex(&md5(&digests)), parts.len()))
}

impl PartUpload {
    /// The part number (from 1).
    pub fn number(&self) -> i32 {
        self.number
    }

    /// UploadPart with its `Content-MD5` (and the upload's SSE-C key), retried as [`put_object`](super::put_object) is.
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
        let out = send_with_retry(
            "UploadPart",
            &t.bucket,
            &t.key,
            &t.retry,
            || {
                let request = t
                    .client
                    .upload_part()
                    .bucket(&t.bucket)
                    .key(&t.key)
                    .upload_id(&t.upload_id)
                    .part_number(self.number)
                    .content_md5(md5)
                    .body(ByteStream::from(body.clone()));
                apply_sse_c!(request, t.sse_c.as_ref())
                    .customize()
                    .config_override(one_attempt(&t.client, body.len()))
                    .send()
            },
            |out| etag_confirms(out, md5),
        )
        .await
        .map_err(|e| match e {
            Error::S3 { operation, message } => Error::S3 {
                operation,
                message: format!("part {}: {message}", self.number),
            },
            Error::StoredDigestMismatch {
                request,
                etag,
                attempts,
            } => Error::StoredDigestMismatch {
                request: format!("{request} (part {})", self.number),
                etag,
                attempts,
            },
            other => other,
        })?;
        Ok(aws_sdk_s3::types::CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::CompletedPart;

    fn part(n: i32, etag: &str) -> CompletedPart {
        CompletedPart::builder().part_number(n).e_tag(etag).build()
    }

    #[test]
    fn the_expected_etag_is_the_md5_of_the_part_md5s_and_their_count() {
        // Parts "abc" and "": MD5(900150…72 ‖ d41d8c…7e), by Python's hashlib.
        let parts = [
            part(1, "\"900150983cd24fb0d6963f7d28e17f72\""),
            part(2, "\"d41d8cd98f00b204e9800998ecf8427e\""),
        ];
        assert_eq!(
            expected_etag(&parts).as_deref(),
            Some("fdf1fdf1567f6942ffe1743f1e72301e-2")
        );
        // A part whose ETag is not an MD5 (SSE-KMS, a store's own): nothing to expect.
        assert_eq!(expected_etag(&[parts[0].clone(), part(2, "\"v2\"")]), None);
    }
}
