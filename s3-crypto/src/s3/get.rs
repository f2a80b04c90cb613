//! Reading objects: GetObject (streamed, the ETag checked where it is an MD5), HeadObject and
//! CopyObject.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use md5::{Digest, Md5};

use super::sse::{apply_sse, apply_sse_c};
use super::{s3_error, ServerSideEncryption, SseCustomerKey};
use crate::error::{Error, Result};

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

    /// Reads the whole body of an object that must be at most `max` bytes (`what` names it in the
    /// error): [`Error::ObjectTooLarge`] before any of the body is read when the store announces
    /// more, else as soon as the bytes received pass `max`. Memory: at most `max` plus one chunk.
    pub async fn read_all_limited(mut self, max: u64, what: &'static str) -> Result<Vec<u8>> {
        let too_large = |object: &Self| Error::ObjectTooLarge {
            what,
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            max,
        };
        if self
            .content_length
            .is_some_and(|len| u64::try_from(len).map_or(true, |len| len > max))
        {
            return Err(too_large(&self));
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if (out.len() + chunk.len()) as u64 > max {
                return Err(too_large(&self));
            }
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
    layout_fits(parts, first, size, total)
}

/// Whether `parts` parts, the first of `first` bytes and the others of `size` but the last (at most
/// `size`), make `total`. The count comes from the ETag and the sizes from HEAD: a hostile store's
/// numbers must not overflow (no layout then, so no check against it).
fn layout_fits(parts: u32, first: u64, size: u64, total: u64) -> Option<(u64, u64)> {
    let n = u64::from(parts);
    let before_last = n.checked_sub(2)?.checked_mul(size)?.checked_add(first)?;
    (first > 0 && size > 0 && before_last < total && total <= before_last.checked_add(size)?)
        .then_some((first, size))
}

pub(crate) fn lower_case(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
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
pub(crate) fn parse_etag(etag: &str) -> Option<([u8; 16], Option<u32>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_part_count_or_size_gives_no_layout_instead_of_overflowing() {
        let mib = 1 << 20;
        assert_eq!(
            layout_fits(3, 5 * mib, 5 * mib, 12 * mib),
            Some((5 * mib, 5 * mib))
        );
        assert_eq!(layout_fits(3, 5 * mib, 5 * mib, 16 * mib), None);
        assert_eq!(layout_fits(4_000_000_000, 5 * mib, 1 << 40, 100), None);
        assert_eq!(layout_fits(u32::MAX, u64::MAX, u64::MAX, u64::MAX), None);
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
    fn copy_source_keys_are_percent_encoded() {
        assert_eq!(encode_key("a b/c+d.txt"), "a%20b/c%2Bd.txt");
    }
}
