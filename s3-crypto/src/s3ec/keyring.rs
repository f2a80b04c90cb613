//! Keyrings of the S3 Encryption Client: each object has exactly one wrapped data key, bound to the
//! content algorithm (so that a V3 object's key cannot be replayed under a V2 layout).

use std::collections::BTreeMap;

use aws_lc_rs::aead;
use zeroize::Zeroizing;

use super::algorithms::{ContentAlgorithm, WrappingAlgorithm, DATA_KEY_LEN};
use super::metadata::ContentMetadata;
use crate::error::{Error, Result};
use crate::keyring::{DataKey, KeyringFuture};

/// The encryption context key under which KMS-wrapped data keys name their content algorithm.
pub const CEK_ALG_CONTEXT_KEY: &str = "aws:x-amz-cek-alg";
/// The encryption context key of legacy (`kms` wrapping) objects.
pub const KMS_CMK_ID_CONTEXT_KEY: &str = "kms_cmk_id";

/// A fresh data key and its wrapped form, as a keyring returns it on encrypt.
#[derive(Debug)]
#[non_exhaustive]
pub struct WrappedDataKey {
    /// The plaintext data key.
    pub data_key: DataKey,
    /// The wrapped data key to store.
    pub encrypted_data_key: Vec<u8>,
    /// How it is wrapped.
    pub wrapping: WrappingAlgorithm,
    /// The context to store beside it (KMS encryption context, or materials description).
    pub context: BTreeMap<String, String>,
}

impl WrappedDataKey {
    /// What a keyring returns (for keyrings written outside this crate).
    pub fn new(
        data_key: DataKey,
        encrypted_data_key: Vec<u8>,
        wrapping: WrappingAlgorithm,
        context: BTreeMap<String, String>,
    ) -> Self {
        Self {
            data_key,
            encrypted_data_key,
            wrapping,
            context,
        }
    }
}

/// Makes and unwraps the one data key of an S3 Encryption Client object.
pub trait S3Keyring: Send + Sync {
    /// Generates a data key for `algorithm` and wraps it. `encryption_context` is the caller's
    /// (KMS keyrings bind and store it; raw keyrings refuse a non-empty one).
    fn generate<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a BTreeMap<String, String>,
    ) -> KeyringFuture<'a, WrappedDataKey>;

    /// Unwraps the data key of an object. `encryption_context` is what the caller expects the
    /// object to have been encrypted with.
    fn unwrap_key<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a BTreeMap<String, String>,
    ) -> KeyringFuture<'a, DataKey>;
}

// ------------------------------------------------------------------------------------------------
// AES/GCM (CSE-C)

const WRAP_IV_LEN: usize = 12;
const WRAP_TAG_LEN: usize = 16;

/// A customer-supplied AES key (CSE-C) wrapping data keys with `AES/GCM`, as the S3 Encryption
/// Client's AES keyring: the stored key is IV (12 random bytes) ‖ AES-GCM(data key) ‖ tag, with
/// the content algorithm's name (`115` or `AES/GCM/NoPadding`) as AAD. An optional materials
/// description is stored (`x-amz-m` / `x-amz-matdesc`) but not authenticated, as in the official
/// clients.
pub struct AesKeyring {
    key: aead::LessSafeKey,
    materials_description: BTreeMap<String, String>,
}

impl std::fmt::Debug for AesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesKeyring")
            .field("materials_description", &self.materials_description)
            .finish_non_exhaustive()
    }
}

impl AesKeyring {
    /// A keyring for `wrapping_key` (16, 24 or 32 bytes).
    pub fn new(wrapping_key: &[u8]) -> Result<Self> {
        let alg = match wrapping_key.len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            32 => &aead::AES_256_GCM,
            n => {
                return Err(Error::InvalidConfiguration(format!(
                    "an AES wrapping key is 16, 24 or 32 bytes, not {n}"
                )))
            }
        };
        Ok(Self {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(alg, wrapping_key)?),
            materials_description: BTreeMap::new(),
        })
    }

    /// Sets the materials description stored with every object this keyring encrypts.
    pub fn with_materials_description(mut self, description: BTreeMap<String, String>) -> Self {
        self.materials_description = description;
        self
    }

    fn wrap(
        &self,
        algorithm: ContentAlgorithm,
        context: &BTreeMap<String, String>,
    ) -> Result<WrappedDataKey> {
        refuse_context(context)?;
        let data_key = DataKey::generate(DATA_KEY_LEN)?;
        let mut iv = [0u8; WRAP_IV_LEN];
        crate::random::fill(&mut iv)?;
        let mut sealed = data_key.as_bytes().to_vec();
        self.key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(algorithm.binding().as_bytes()),
            &mut sealed,
        )?;
        let mut encrypted_data_key = iv.to_vec();
        encrypted_data_key.extend_from_slice(&sealed);
        Ok(WrappedDataKey {
            data_key,
            encrypted_data_key,
            wrapping: WrappingAlgorithm::AesGcm,
            context: self.materials_description.clone(),
        })
    }

    fn unwrap(
        &self,
        metadata: &ContentMetadata,
        context: &BTreeMap<String, String>,
    ) -> Result<DataKey> {
        refuse_context(context)?;
        if metadata.wrapping != WrappingAlgorithm::AesGcm {
            return Err(Error::Keyring(format!(
                "the object's data key is wrapped with {}, not AES/GCM",
                metadata.wrapping.name()
            )));
        }
        let edk = &metadata.encrypted_data_key;
        if edk.len() != WRAP_IV_LEN + DATA_KEY_LEN + WRAP_TAG_LEN {
            return Err(Error::InvalidS3ecMetadata(format!(
                "an AES/GCM-wrapped data key has {} bytes, not {}",
                edk.len(),
                WRAP_IV_LEN + DATA_KEY_LEN + WRAP_TAG_LEN
            )));
        }
        let (iv, sealed) = edk.split_at(WRAP_IV_LEN);
        let iv: [u8; WRAP_IV_LEN] = iv.try_into().map_err(|_| Error::Crypto)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(metadata.content_algorithm().binding().as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::NoDataKeyDecrypted { count: 1 })?;
        Ok(DataKey::new(plain.to_vec()))
    }
}

/// Raw keyrings have no encryption context (the official clients ignore one, with a warning;
/// ignoring it silently would let a caller believe it is bound).
fn refuse_context(context: &BTreeMap<String, String>) -> Result<()> {
    if context.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidConfiguration(
            "an encryption context needs a KMS keyring; an AES keyring stores a materials \
             description instead"
                .into(),
        ))
    }
}

impl S3Keyring for AesKeyring {
    fn generate<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a BTreeMap<String, String>,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        Box::pin(async move { self.wrap(algorithm, encryption_context) })
    }

    fn unwrap_key<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a BTreeMap<String, String>,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(async move { self.unwrap(metadata, encryption_context) })
    }
}

// ------------------------------------------------------------------------------------------------
// Encryption context rules of `kms+context`, shared with test keyrings

/// The KMS encryption context for a new object: the caller's, plus `aws:x-amz-cek-alg` naming the
/// content algorithm (which the caller may not set).
pub fn kms_encryption_context(
    algorithm: ContentAlgorithm,
    caller: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if caller.contains_key(CEK_ALG_CONTEXT_KEY) {
        return Err(Error::InvalidEncryptionContext(format!(
            "{CEK_ALG_CONTEXT_KEY} is reserved for the S3 Encryption Client"
        )));
    }
    let mut context = caller.clone();
    context.insert(CEK_ALG_CONTEXT_KEY.into(), algorithm.binding().into());
    Ok(context)
}

/// Checks a `kms+context` object's stored encryption context against what the caller expects,
/// as the official clients do: the stored context without the client's own keys must equal the
/// caller's exactly. Also checks that `aws:x-amz-cek-alg` names the object's content algorithm
/// (KMS then authenticates that value, so a key cannot move between V2 and V3 objects).
pub fn check_kms_encryption_context(
    metadata: &ContentMetadata,
    caller: &BTreeMap<String, String>,
) -> Result<()> {
    if caller.contains_key(CEK_ALG_CONTEXT_KEY) {
        return Err(Error::InvalidEncryptionContext(format!(
            "{CEK_ALG_CONTEXT_KEY} is reserved for the S3 Encryption Client"
        )));
    }
    let expected = metadata.content_algorithm().binding();
    match metadata.context.get(CEK_ALG_CONTEXT_KEY) {
        Some(v) if v == expected => {}
        Some(_) => {
            return Err(Error::EncryptionContextMismatch(format!(
                "the object's {CEK_ALG_CONTEXT_KEY} does not name its content algorithm"
            )))
        }
        None => {
            return Err(Error::EncryptionContextMismatch(format!(
                "the object's encryption context has no {CEK_ALG_CONTEXT_KEY}"
            )))
        }
    }
    let mut stored = metadata.context.clone();
    stored.remove(CEK_ALG_CONTEXT_KEY);
    stored.remove(KMS_CMK_ID_CONTEXT_KEY);
    if &stored != caller {
        return Err(Error::EncryptionContextMismatch(
            "the encryption context given does not match the object's".into(),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// KMS (CSE-KMS)

#[cfg(feature = "kms")]
pub use kms::KmsKeyring;

#[cfg(feature = "kms")]
mod kms {
    use std::collections::{BTreeMap, HashMap};
    use std::future::Future;

    use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::DataKeySpec;
    use zeroize::Zeroizing;

    use super::{check_kms_encryption_context, kms_encryption_context, S3Keyring, WrappedDataKey};
    use crate::error::{Error, Result};
    use crate::keyring::{DataKey, KeyringFuture};
    use crate::s3ec::algorithms::{ContentAlgorithm, WrappingAlgorithm, DATA_KEY_LEN};
    use crate::s3ec::metadata::ContentMetadata;

    /// Data keys from a KMS-compatible key service (envelope's endpoint or AWS KMS), wrapped with
    /// `kms+context` as the official clients do: `GenerateDataKey` (AES_256) with the caller's
    /// encryption context plus `aws:x-amz-cek-alg`; `Decrypt` with the stored context and the
    /// configured key id.
    ///
    /// Legacy `kms` wrapping (no encryption context) is decrypted only after
    /// [`with_legacy_wrapping`](Self::with_legacy_wrapping), and never with a caller context.
    #[derive(Clone)]
    pub struct KmsKeyring {
        client: aws_sdk_kms::Client,
        key_id: String,
        legacy_wrapping: bool,
        runtime: Option<tokio::runtime::Handle>,
    }

    impl std::fmt::Debug for KmsKeyring {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("KmsKeyring")
                .field("key_id", &self.key_id)
                .field("legacy_wrapping", &self.legacy_wrapping)
                .finish_non_exhaustive()
        }
    }

    impl KmsKeyring {
        /// A keyring for one KMS key (key id, key ARN, alias or alias ARN), called through
        /// `client` (see [`KmsClientBuilder`](crate::KmsClientBuilder)).
        pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Result<Self> {
            let key_id = key_id.into();
            if key_id.is_empty() {
                return Err(Error::InvalidConfiguration(
                    "a KMS keyring needs a key id".into(),
                ));
            }
            Ok(Self {
                client,
                key_id,
                legacy_wrapping: false,
                runtime: tokio::runtime::Handle::try_current().ok(),
            })
        }

        /// Also decrypt objects whose data key uses the legacy `kms` wrapping.
        pub fn with_legacy_wrapping(mut self, enabled: bool) -> Self {
            self.legacy_wrapping = enabled;
            self
        }

        /// The tokio runtime to run calls on when used outside one (the blocking API).
        pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
            self.runtime = Some(runtime);
            self
        }

        async fn run<T, F>(&self, call: F) -> Result<T>
        where
            F: Future<Output = Result<T>> + Send + 'static,
            T: Send + 'static,
        {
            crate::keyring::kms::run_on_runtime(self.runtime.as_ref(), call).await
        }

        async fn generate_key(
            &self,
            algorithm: ContentAlgorithm,
            caller: &BTreeMap<String, String>,
        ) -> Result<WrappedDataKey> {
            let context = kms_encryption_context(algorithm, caller)?;
            let request = self
                .client
                .generate_data_key()
                .key_id(&self.key_id)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(to_hash_map(&context)));
            let key_id = self.key_id.clone();
            let out = self
                .run(async move {
                    request
                        .send()
                        .await
                        .map_err(|e| sdk_error("GenerateDataKey", &key_id, e))
                })
                .await?;
            let plaintext = Zeroizing::new(
                out.plaintext
                    .ok_or_else(|| bad_response("GenerateDataKey", "no Plaintext"))?
                    .into_inner(),
            );
            if plaintext.len() != DATA_KEY_LEN {
                return Err(bad_response(
                    "GenerateDataKey",
                    "a data key of the wrong length",
                ));
            }
            let blob = out
                .ciphertext_blob
                .ok_or_else(|| bad_response("GenerateDataKey", "no CiphertextBlob"))?
                .into_inner();
            Ok(WrappedDataKey {
                data_key: DataKey::new(plaintext.to_vec()),
                encrypted_data_key: blob,
                wrapping: WrappingAlgorithm::KmsContext,
                context,
            })
        }

        async fn decrypt_key(
            &self,
            metadata: &ContentMetadata,
            caller: &BTreeMap<String, String>,
        ) -> Result<DataKey> {
            match metadata.wrapping {
                WrappingAlgorithm::KmsContext => check_kms_encryption_context(metadata, caller)?,
                WrappingAlgorithm::Kms => {
                    if !self.legacy_wrapping {
                        return Err(Error::UnsupportedS3ecAlgorithm(
                            "the legacy `kms` wrapping needs an explicit opt-in \
                             (KmsKeyring::with_legacy_wrapping)"
                                .into(),
                        ));
                    }
                    if !caller.is_empty() {
                        return Err(Error::EncryptionContextMismatch(
                            "an object with the legacy `kms` wrapping has no encryption context"
                                .into(),
                        ));
                    }
                }
                other => {
                    return Err(Error::Keyring(format!(
                        "the object's data key is wrapped with {}, not by KMS",
                        other.name()
                    )))
                }
            }
            let request = self
                .client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(Blob::new(metadata.encrypted_data_key.clone()))
                .set_encryption_context(
                    (!metadata.context.is_empty()).then(|| to_hash_map(&metadata.context)),
                );
            let key_id = self.key_id.clone();
            let out = self
                .run(async move {
                    request
                        .send()
                        .await
                        .map_err(|e| sdk_error("Decrypt", &key_id, e))
                })
                .await?;
            let plaintext = Zeroizing::new(
                out.plaintext
                    .ok_or_else(|| bad_response("Decrypt", "no Plaintext"))?
                    .into_inner(),
            );
            if plaintext.len() != DATA_KEY_LEN {
                return Err(bad_response("Decrypt", "a data key of the wrong length"));
            }
            Ok(DataKey::new(plaintext.to_vec()))
        }
    }

    fn to_hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn sdk_error<E, R>(op: &str, key: &str, err: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                Error::Keyring(format!(
                    "KMS refused: {}: {} ({op} with {key})",
                    e.code().unwrap_or("UnknownError"),
                    e.message().unwrap_or("(no message)")
                ))
            }
            _ => Error::Keyring(format!(
                "KMS {op} with {key} failed: {}",
                DisplayErrorContext(&err)
            )),
        }
    }

    fn bad_response(op: &str, what: &str) -> Error {
        Error::Keyring(format!("KMS {op} returned {what}"))
    }

    impl S3Keyring for KmsKeyring {
        fn generate<'a>(
            &'a self,
            algorithm: ContentAlgorithm,
            encryption_context: &'a BTreeMap<String, String>,
        ) -> KeyringFuture<'a, WrappedDataKey> {
            Box::pin(self.generate_key(algorithm, encryption_context))
        }

        fn unwrap_key<'a>(
            &'a self,
            metadata: &'a ContentMetadata,
            encryption_context: &'a BTreeMap<String, String>,
        ) -> KeyringFuture<'a, DataKey> {
            Box::pin(self.decrypt_key(metadata, encryption_context))
        }
    }
}
