//! Server-side encryption: the S3 request headers for SSE-S3, SSE-KMS and SSE-C.
//!
//! The store encrypts; nothing here touches the bytes. SSE-C keys are held zeroized and never
//! appear in `Debug` output or errors (the SDK redacts the key header in its own logs).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest, Md5};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// How the store should encrypt an object at rest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerSideEncryption {
    /// SSE-S3: `x-amz-server-side-encryption: AES256` (keys managed by the store).
    S3,
    /// SSE-KMS: `x-amz-server-side-encryption: aws:kms` with an optional key id, encryption
    /// context and bucket key setting.
    Kms(SseKms),
    /// SSE-C: the store encrypts with a key the caller sends on every request (PUT, each part,
    /// GET, HEAD, copy source) and does not keep.
    Customer(SseCustomerKey),
}

impl ServerSideEncryption {
    /// The SSE-C key, if this is SSE-C (it must be sent again to read the object).
    pub fn customer_key(&self) -> Option<&SseCustomerKey> {
        match self {
            ServerSideEncryption::Customer(k) => Some(k),
            _ => None,
        }
    }
}

/// The SSE-KMS parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseKms {
    /// The KMS key (id, ARN or alias); `None`: the store's default key (`aws/s3` on AWS).
    pub key_id: Option<String>,
    /// Encryption context; sent as `x-amz-server-side-encryption-context`, base64 of its JSON.
    pub context: BTreeMap<String, String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`; `None`: the bucket's setting.
    pub bucket_key: Option<bool>,
}

impl SseKms {
    /// SSE-KMS with the store's default key.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this KMS key.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// With this encryption context.
    pub fn context(mut self, context: BTreeMap<String, String>) -> Self {
        self.context = context;
        self
    }

    /// With the S3 Bucket Key on or off.
    pub fn bucket_key(mut self, enabled: bool) -> Self {
        self.bucket_key = Some(enabled);
        self
    }

    /// The header value: base64 of the context as JSON; `None` when empty.
    pub(crate) fn context_header(&self) -> Option<String> {
        if self.context.is_empty() {
            return None;
        }
        serde_json::to_string(&self.context)
            .ok()
            .map(|json| B64.encode(json))
    }
}

/// An SSE-C key (AES-256): the base64 key and the base64 MD5 of the key, as S3 wants them in
/// `x-amz-server-side-encryption-customer-key` and `…-key-MD5`. Zeroized on drop; `Debug` shows
/// only the key MD5, which identifies the key without revealing it.
#[derive(Clone)]
pub struct SseCustomerKey {
    key_base64: Zeroizing<String>,
    key_md5: String,
}

/// In constant time (for equal lengths): comparing keys must not tell how much matched.
impl PartialEq for SseCustomerKey {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.key_base64.as_bytes(),
            other.key_base64.as_bytes(),
        )
        .is_ok()
    }
}

impl Eq for SseCustomerKey {}

impl std::fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseCustomerKey")
            .field("algorithm", &Self::ALGORITHM)
            .field("key_md5", &self.key_md5)
            .finish_non_exhaustive()
    }
}

impl SseCustomerKey {
    /// The one algorithm S3 offers for SSE-C.
    pub const ALGORITHM: &'static str = "AES256";

    /// A key of exactly 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        if key.len() != 32 {
            return Err(Error::InvalidConfiguration(format!(
                "an SSE-C key is 32 bytes (AES-256), not {}",
                key.len()
            )));
        }
        Ok(Self {
            key_base64: Zeroizing::new(B64.encode(key)),
            key_md5: B64.encode(Md5::digest(key)),
        })
    }

    /// The base64 MD5 of the key (what S3 stores to check the key on GET; not secret).
    pub fn key_md5(&self) -> &str {
        &self.key_md5
    }

    pub(crate) fn key_base64(&self) -> &str {
        &self.key_base64
    }
}

/// Sets the SSE headers of a PutObject or CreateMultipartUpload (the same setters on both).
macro_rules! apply_sse {
    ($builder:expr, $sse:expr) => {{
        let b = $builder;
        match $sse {
            None => b,
            Some($crate::s3::ServerSideEncryption::S3) => {
                b.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            }
            Some($crate::s3::ServerSideEncryption::Kms(kms)) => b
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(kms.key_id.clone())
                .set_ssekms_encryption_context(kms.context_header())
                .set_bucket_key_enabled(kms.bucket_key),
            Some($crate::s3::ServerSideEncryption::Customer(key)) => {
                $crate::s3::sse::apply_sse_c!(b, Some(key))
            }
        }
    }};
}

/// Sets the SSE-C headers (UploadPart, GetObject, HeadObject, CompleteMultipartUpload).
macro_rules! apply_sse_c {
    ($builder:expr, $key:expr) => {{
        let b = $builder;
        match $key {
            None => b,
            Some(key) => b
                .sse_customer_algorithm($crate::s3::SseCustomerKey::ALGORITHM)
                .sse_customer_key(key.key_base64())
                .sse_customer_key_md5(key.key_md5()),
        }
    }};
}

pub(crate) use {apply_sse, apply_sse_c};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_are_checked_and_never_shown() {
        assert!(SseCustomerKey::new(&[1u8; 16]).is_err());
        let k = SseCustomerKey::new(&[0x41u8; 32]).unwrap_or_else(|e| unreachable!("{e}"));
        let shown = format!("{k:?}");
        assert!(!shown.contains(k.key_base64()), "{shown}");
        assert!(shown.contains(k.key_md5()), "{shown}");
        let sse = format!("{:?}", ServerSideEncryption::Customer(k.clone()));
        assert!(!sse.contains(k.key_base64()), "{sse}");
        // MD5 of 32 × 'A', as `openssl md5 -binary | base64` gives it.
        assert_eq!(k.key_md5(), "UhbdzFjo2t5SVgded/ZC2g==");
    }

    #[test]
    fn the_kms_context_header_is_base64_json() {
        let kms = SseKms::new().context([("a".to_owned(), "b".to_owned())].into());
        assert_eq!(kms.context_header().as_deref(), Some("eyJhIjoiYiJ9"));
        assert_eq!(SseKms::new().context_header(), None);
    }
}
