//! The KMS keyring on AWS Encryption SDK messages, as the ESDK specifies it
//! (`framework/aws-kms/aws-kms-keyring.md` and `aws-kms-discovery-keyring.md`): the [`Keyring`]
//! side of [`KmsKeyring`], whose KMS calls live in `kms.rs`.
//!
//! Each encrypted data key is exactly what the ESDK's KMS keyring writes: key provider id `aws-kms`,
//! key provider info the key ARN that KMS returned (UTF-8), ciphertext the KMS `CiphertextBlob`.

use aws_sdk_kms::primitives::Blob;

use crate::data_key::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials};
use crate::error::{Error, Result};
use crate::kms::{quote, DataKeySize, KmsArn, KmsKeyring, Mode, Op, KMS_PROVIDER_ID};

impl KmsKeyring {
    pub(crate) async fn wrap(
        &self,
        mut materials: EncryptionMaterials,
    ) -> Result<EncryptionMaterials> {
        let keys = match self.mode() {
            Mode::Strict(keys) => keys,
            Mode::Discovery(_) => {
                return Err(Error::InvalidConfiguration(
                    "a discovery KMS keyring cannot encrypt: configure key ids".into(),
                ))
            }
        };
        let context = &materials.encryption_context;
        let mut keys = keys.iter();
        let data_key = match &materials.data_key {
            Some(k) => k.clone(),
            None => {
                let Some(generator) = keys.next() else {
                    return Err(Error::InvalidConfiguration(
                        "a KMS keyring needs at least one key id".into(),
                    ));
                };
                let len = DataKeySize::Bytes(materials.suite.data_key_len());
                let (data_key, key_id, ciphertext) =
                    self.generate_data_key(generator, len, context).await?;
                let op = Op::new("GenerateDataKey", generator);
                let edk = edk(&op, key_id, Some(Blob::new(ciphertext)))?;
                materials.data_key = Some(data_key.clone());
                materials.encrypted_data_keys.push(edk);
                data_key
            }
        };
        for key_id in keys {
            let (named, blob) = self.encrypt(key_id, &data_key, context).await?;
            let edk = edk(&Op::new("Encrypt", key_id), named, blob)?;
            materials.encrypted_data_keys.push(edk);
        }
        Ok(materials)
    }

    pub(crate) async fn unwrap_key(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        if materials.data_key.is_some() {
            return Ok(materials);
        }
        let len = materials.suite.data_key_len();
        let context = &materials.encryption_context;
        let mut errors = Vec::new();
        for edk in edks {
            if edk.provider_id != KMS_PROVIDER_ID {
                continue;
            }
            // As the spec says: an `aws-kms` EDK that does not name a key ARN fails the keyring.
            let arn_str = std::str::from_utf8(&edk.provider_info)
                .ok()
                .filter(|s| KmsArn::parse_key_arn(s).is_some())
                .ok_or_else(|| {
                    Error::Keyring(format!(
                        "an aws-kms encrypted data key names {}, which is not a KMS key ARN",
                        quote(&edk.provider_info)
                    ))
                })?;
            let matches = match self.mode() {
                Mode::Strict(keys) => keys.iter().any(|k| k == arn_str),
                Mode::Discovery(None) => true,
                Mode::Discovery(Some(filter)) => {
                    KmsArn::parse(arn_str).is_some_and(|arn| filter.allows(&arn))
                }
            };
            if !matches {
                continue;
            }
            match self.decrypt_named(arn_str, edk, len, context).await {
                Ok(data_key) => {
                    materials.data_key = Some(data_key);
                    return Ok(materials);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        match errors.len() {
            0 => Ok(materials),
            1 => Err(Error::Keyring(strip_prefix(&errors[0]))),
            n => Err(Error::Keyring(format!(
                "all {n} KMS-wrapped data keys failed: {}",
                errors
                    .iter()
                    .map(|e| strip_prefix(e))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// Decrypt of an encrypted data key with the key ARN it names; KMS must answer with that key.
    async fn decrypt_named(
        &self,
        arn: &str,
        edk: &EncryptedDataKey,
        len: usize,
        context: &crate::EncryptionContext,
    ) -> Result<crate::DataKey> {
        let (data_key, key_id) = self
            .decrypt(Some(arn), &edk.ciphertext, len, context)
            .await?;
        if key_id != arn {
            return Err(Op::new("Decrypt", arn).bad_response(&format!(
                "KeyId {} instead of the requested key",
                quote(key_id.as_bytes())
            )));
        }
        Ok(data_key)
    }
}

/// Builds the encrypted data key from a GenerateDataKey or Encrypt response, checking that KMS named
/// a key ARN.
fn edk(op: &Op, key_id: Option<String>, blob: Option<Blob>) -> Result<EncryptedDataKey> {
    let key_id = key_id.ok_or_else(|| op.bad_response("no KeyId"))?;
    if KmsArn::parse_key_arn(&key_id).is_none() {
        return Err(op.bad_response(&format!(
            "KeyId {}, which is not a key ARN",
            quote(key_id.as_bytes())
        )));
    }
    let ciphertext = blob
        .ok_or_else(|| op.bad_response("no CiphertextBlob"))?
        .into_inner();
    if ciphertext.is_empty() || ciphertext.len() > usize::from(u16::MAX) {
        return Err(op.bad_response("a CiphertextBlob of unusable length"));
    }
    Ok(EncryptedDataKey {
        provider_id: KMS_PROVIDER_ID.to_owned(),
        provider_info: key_id.into_bytes(),
        ciphertext,
    })
}

/// `keyring failure: …` nests badly when errors are collected; keep the inner text.
fn strip_prefix(s: &str) -> String {
    s.strip_prefix("keyring failure: ").unwrap_or(s).to_owned()
}
