//! The S3 Encryption Client's side of the keyrings: each object has exactly one wrapped data key,
//! bound to the content algorithm (so that a V3 object's key cannot be replayed under a V2
//! layout). [`AesKeyring`] (CSE-C, `AES/GCM` wrapping) is the S3EC's own; CSE-KMS is the shared
//! [`KmsKeyring`](crate::KmsKeyring), whose `kms+context` and legacy `kms` wrapping are here.
//! Both implement the one [`Keyring`] trait's object methods.

use aws_lc_rs::aead;
use zeroize::Zeroizing;

use super::algorithms::{ContentAlgorithm, WrappingAlgorithm, DATA_KEY_LEN};
use super::metadata::ContentMetadata;
use crate::data_key::{aes_wrapping_key, DataKey, Keyring, KeyringFuture, WrappedDataKey};
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};

/// The encryption context key under which KMS-wrapped data keys name their content algorithm.
pub const CEK_ALG_CONTEXT_KEY: &str = "aws:x-amz-cek-alg";
/// The encryption context key of legacy (`kms` wrapping) objects.
pub const KMS_CMK_ID_CONTEXT_KEY: &str = "kms_cmk_id";

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
    materials_description: EncryptionContext,
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
        Ok(Self {
            key: aes_wrapping_key(wrapping_key, "an AES wrapping key")?,
            materials_description: EncryptionContext::new(),
        })
    }

    /// Sets the materials description stored with every object this keyring encrypts.
    pub fn with_materials_description(mut self, description: impl Into<EncryptionContext>) -> Self {
        self.materials_description = description.into();
        self
    }

    fn wrap(
        &self,
        algorithm: ContentAlgorithm,
        context: &EncryptionContext,
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

    fn unwrap(&self, metadata: &ContentMetadata, context: &EncryptionContext) -> Result<DataKey> {
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
fn refuse_context(context: &EncryptionContext) -> Result<()> {
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

impl Keyring for AesKeyring {
    fn on_encrypt_object<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        Box::pin(async move { self.wrap(algorithm, encryption_context) })
    }

    fn on_decrypt_object<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a EncryptionContext,
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
    caller: &EncryptionContext,
) -> Result<EncryptionContext> {
    if caller.get(CEK_ALG_CONTEXT_KEY).is_some() {
        return Err(Error::InvalidEncryptionContext(format!(
            "{CEK_ALG_CONTEXT_KEY} is reserved for the S3 Encryption Client"
        )));
    }
    let mut context = caller.clone();
    context.insert(CEK_ALG_CONTEXT_KEY, algorithm.binding());
    Ok(context)
}

/// Checks a `kms+context` object's stored encryption context against what the caller expects,
/// as the official clients do: the stored context without the client's own keys must equal the
/// caller's exactly. Also checks that `aws:x-amz-cek-alg` names the object's content algorithm
/// (KMS then authenticates that value, so a key cannot move between V2 and V3 objects).
pub fn check_kms_encryption_context(
    metadata: &ContentMetadata,
    caller: &EncryptionContext,
) -> Result<()> {
    if caller.get(CEK_ALG_CONTEXT_KEY).is_some() {
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
// KMS (CSE-KMS): the shared keyring, wrapping with `kms+context` as the official clients do

#[cfg(feature = "kms")]
mod kms {
    use super::{check_kms_encryption_context, kms_encryption_context};
    use crate::data_key::{DataKey, WrappedDataKey};
    use crate::encryption_context::EncryptionContext;
    use crate::error::{Error, Result};
    use crate::kms::{quote, DataKeySize, KmsArn, KmsKeyring, Mode};
    use crate::s3ec::algorithms::{ContentAlgorithm, WrappingAlgorithm, DATA_KEY_LEN};
    use crate::s3ec::metadata::ContentMetadata;

    impl KmsKeyring {
        /// S3 Encryption Client objects: also decrypt those whose data key uses the legacy `kms`
        /// wrapping (never with a caller encryption context).
        pub fn with_legacy_wrapping(mut self, enabled: bool) -> Self {
            self.legacy_wrapping = enabled;
            self
        }

        /// `GenerateDataKey` (AES_256) with the first key id, the caller's encryption context plus
        /// `aws:x-amz-cek-alg`.
        pub(crate) async fn generate_object_key(
            &self,
            algorithm: ContentAlgorithm,
            caller: &EncryptionContext,
        ) -> Result<WrappedDataKey> {
            let key_id =
                match self.key_ids() {
                    [key_id] => key_id,
                    [] => {
                        return Err(Error::InvalidConfiguration(
                            "a discovery KMS keyring cannot encrypt: configure key ids".into(),
                        ))
                    }
                    _ => return Err(Error::InvalidConfiguration(
                        "an S3 Encryption Client object has one wrapped data key: give one KMS key"
                            .into(),
                    )),
                };
            let context = kms_encryption_context(algorithm, caller)?;
            let (data_key, _, blob) = self
                .generate_data_key(key_id, DataKeySize::Aes256, &context)
                .await?;
            Ok(WrappedDataKey {
                data_key,
                encrypted_data_key: blob,
                wrapping: WrappingAlgorithm::KmsContext,
                context,
            })
        }

        /// `Decrypt` with the stored context: with the configured key (strict; several are tried
        /// in turn), or with the key the blob names (discovery), which the filter must then allow.
        pub(crate) async fn decrypt_object_key(
            &self,
            metadata: &ContentMetadata,
            caller: &EncryptionContext,
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
            let key_ids: Vec<Option<&str>> = match self.mode() {
                Mode::Strict(keys) => keys.iter().map(|k| Some(k.as_str())).collect(),
                Mode::Discovery(_) => vec![None],
            };
            // Every key's failure is kept: the one that matters may not be the last.
            let mut errors = Vec::new();
            for key_id in key_ids {
                match self.decrypt_with(key_id, metadata).await {
                    Ok(data_key) => return Ok(data_key),
                    Err(e) => errors.push(e),
                }
            }
            match errors.len() {
                1 => Err(errors.remove(0)),
                n => Err(Error::Keyring(format!(
                    "all {n} KMS keys failed: {}",
                    errors
                        .iter()
                        .map(|e| {
                            let e = e.to_string();
                            e.strip_prefix("keyring failure: ").unwrap_or(&e).to_owned()
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                ))),
            }
        }

        /// One `Decrypt` of the object's data key: with `key_id` (strict; when it is a key ARN,
        /// KMS must answer with that key), or with the key the blob names (discovery; the filter
        /// must allow it).
        async fn decrypt_with(
            &self,
            key_id: Option<&str>,
            metadata: &ContentMetadata,
        ) -> Result<DataKey> {
            let blob = &metadata.encrypted_data_key;
            let (data_key, named) = self
                .decrypt(key_id, blob, DATA_KEY_LEN, &metadata.context)
                .await?;
            if let Some(key_id) = key_id.filter(|k| KmsArn::parse_key_arn(k).is_some()) {
                if named != key_id {
                    return Err(Error::Keyring(format!(
                        "KMS Decrypt with {key_id} answered with key {}",
                        quote(named.as_bytes())
                    )));
                }
            }
            if !self.discovery_allows(&named) {
                return Err(Error::Keyring(format!(
                    "the object's data key is under KMS key {named}, which the discovery filter \
                     does not allow"
                )));
            }
            Ok(data_key)
        }
    }
}
