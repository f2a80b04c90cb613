//! The cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext)
//! and GenerateRandom. A key's material seals under its current version and opens under the version
//! a blob names; a key in a custom key store runs in its token instead.

use zeroize::Zeroizing;

use super::custom_key_stores::in_token;
use super::keys::check_usable;
use super::validate::{
    check_algorithm, check_dry_run, check_range, context, refuse_recipient, required,
};
use super::{Kms, SYMMETRIC_DEFAULT};
use crate::api::*;
use crate::blob::{self, BlobHeader};
use crate::context::EncryptionContext;
use crate::error::{KmsError, Result};
use crate::ids::Accepts;
use crate::material;
use crate::store::StoredKeyState;

/// Largest plaintext Encrypt accepts.
pub const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob Decrypt and ReEncrypt accept.
pub const MAX_CIPHERTEXT_BLOB: usize = 6144;

impl Kms {
    /// Seals under the current version of a key named by any identifier form, with a fresh salt.
    async fn seal(
        &self,
        raw: &str,
        ctx: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, String)> {
        let mut salt = [0u8; blob::SALT_LEN];
        material::random_bytes(&mut salt)?;
        self.seal_with(raw, ctx, plaintext, salt).await
    }

    /// [`Kms::seal`] with a salt drawn by the caller (GenerateDataKey draws it with the data key).
    async fn seal_with(
        &self,
        raw: &str,
        ctx: &EncryptionContext,
        plaintext: &[u8],
        salt: [u8; blob::SALT_LEN],
    ) -> Result<(Vec<u8>, String)> {
        let id = self.resolve(raw, Accepts::KeyOrAlias, true).await?;
        let key = self.loaded(&id).await?;
        // A key in a custom key store (unless pending deletion, refused below) runs in its token.
        if key.record.custom_key_store_id.is_some()
            && key.record.state != StoredKeyState::PendingDeletion
        {
            let token = self.token_of(&key).await?;
            check_usable(&key.record, &key.arn)?;
            let header = blob::token_header(&id);
            let aad = blob::token_aad(&header, ctx);
            let (label, plaintext) = (key.arn.clone(), Zeroizing::new(plaintext.to_vec()));
            let sealed = in_token(token, move |t| t.encrypt(&label, &aad, &plaintext)).await?;
            return Ok((blob::token_blob(&header, &sealed), key.arn.clone()));
        }
        check_usable(&key.record, &key.arn)?;
        let version = key.materials.len();
        let material = key
            .materials
            .last()
            .ok_or_else(|| KmsError::Internal("Key has no material.".into()))?;
        let header = BlobHeader {
            key_id: id,
            version: version as u32,
        };
        Ok((
            blob::seal_with_salt(header, material, ctx, plaintext, salt)?,
            key.arn.clone(),
        ))
    }

    /// Opens a blob; `expected` is the optional KeyId of the request.
    async fn open_blob(
        &self,
        blob_bytes: &[u8],
        expected: Option<&str>,
        ctx: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, String)> {
        if blob_bytes.is_empty() || blob_bytes.len() > MAX_CIPHERTEXT_BLOB {
            return Err(KmsError::constraint(
                "...",
                "ciphertextBlob",
                &format!("Member must have length between 1 and {MAX_CIPHERTEXT_BLOB}"),
            ));
        }
        let header = blob::parse_header(blob_bytes)?;
        // The blob's key first: a blob that names no key is InvalidCiphertextException whatever
        // the request's KeyId names, so a forged blob cannot probe which keys or aliases exist.
        let key = match self.loaded(&header.key_id).await {
            Ok(k) => k,
            Err(KmsError::NotFound(_)) => {
                return Err(KmsError::InvalidCiphertext(
                    "The ciphertext refers to a KMS key that does not exist in this account and region.".into(),
                ))
            }
            Err(e) => return Err(e),
        };
        if let Some(raw) = expected {
            let want = self.resolve(raw, Accepts::KeyOrAlias, true).await?;
            if want != header.key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify the KMS key that encrypted the ciphertext.".into(),
                ));
            }
        }
        let arn = key.arn.clone();
        // A key in a custom key store (unless pending deletion, refused below) runs in its token.
        if key.record.custom_key_store_id.is_some()
            && key.record.state != StoredKeyState::PendingDeletion
        {
            let token = self.token_of(&key).await?;
            check_usable(&key.record, &arn)?;
            let (header_bytes, sealed) = blob::split_token_blob(blob_bytes)?;
            let aad = blob::token_aad(header_bytes, ctx);
            let (label, sealed) = (arn.clone(), sealed.to_vec());
            let plaintext = in_token(token, move |t| t.decrypt(&label, &aad, &sealed)).await?;
            return Ok((plaintext, arn));
        }
        // A version this node has not loaded: the key was rotated on another node since this one
        // cached it. Read it again rather than refuse a ciphertext the service has just returned.
        // The version is the caller's to write: a forged one costs two store reads (the material
        // already unwrapped is reused), as a blob naming an unknown key costs one.
        let key = if header.version as usize > key.materials.len() {
            self.load_key(&header.key_id, Some(&key)).await?
        } else {
            key
        };
        check_usable(&key.record, &arn)?;
        let material = (header.version as usize)
            .checked_sub(1)
            .and_then(|i| key.materials.get(i))
            .ok_or_else(|| {
                KmsError::InvalidCiphertext(
                    "The ciphertext names a key version that does not exist.".into(),
                )
            })?;
        Ok((blob::open(blob_bytes, material, ctx)?, arn))
    }

    /// Encrypt: at most 4096 bytes, under the key's current material version.
    pub async fn encrypt(&self, req: EncryptRequest) -> Result<EncryptResponse> {
        let key_id = required(req.key_id, "keyId")?;
        // Zeroized when dropped, whichever way this returns.
        let plaintext = required(req.plaintext, "plaintext")?;
        if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
            return Err(KmsError::constraint(
                "...",
                "plaintext",
                &format!("Member must have length between 1 and {MAX_ENCRYPT_PLAINTEXT}"),
            ));
        }
        check_algorithm(req.encryption_algorithm.as_deref())?;
        self.check_grant_tokens(req.grant_tokens.as_deref()).await?;
        let ctx = context(req.encryption_context)?;
        let (ciphertext_blob, key_id) = self.seal(&key_id, &ctx, &plaintext).await?;
        check_dry_run(req.dry_run)?;
        Ok(EncryptResponse {
            ciphertext_blob,
            key_id,
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    /// Decrypt: the blob names its key; KeyId, when given, must match it.
    pub async fn decrypt(&self, req: DecryptRequest) -> Result<DecryptResponse> {
        refuse_recipient(req.recipient.as_ref())?;
        let blob_bytes = required(req.ciphertext_blob, "ciphertextBlob")?;
        check_algorithm(req.encryption_algorithm.as_deref())?;
        self.check_grant_tokens(req.grant_tokens.as_deref()).await?;
        let ctx = context(req.encryption_context)?;
        let (plaintext, key_id) = self
            .open_blob(&blob_bytes, req.key_id.as_deref(), &ctx)
            .await?;
        check_dry_run(req.dry_run)?;
        Ok(DecryptResponse {
            key_id,
            plaintext: plaintext.into(),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    /// ReEncrypt: decrypts and encrypts again, server-side, under the destination key.
    pub async fn re_encrypt(&self, req: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let blob_bytes = required(req.ciphertext_blob, "ciphertextBlob")?;
        let dest = required(req.destination_key_id, "destinationKeyId")?;
        check_algorithm(req.source_encryption_algorithm.as_deref())?;
        check_algorithm(req.destination_encryption_algorithm.as_deref())?;
        self.check_grant_tokens(req.grant_tokens.as_deref()).await?;
        let src_ctx = context(req.source_encryption_context)?;
        let dst_ctx = context(req.destination_encryption_context)?;
        let (plaintext, source_key_id) = self
            .open_blob(&blob_bytes, req.source_key_id.as_deref(), &src_ctx)
            .await?;
        let (ciphertext_blob, key_id) = self.seal(&dest, &dst_ctx, &plaintext).await?;
        check_dry_run(req.dry_run)?;
        Ok(ReEncryptResponse {
            ciphertext_blob,
            source_key_id,
            key_id,
            source_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            destination_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    async fn data_key(
        &self,
        req: GenerateDataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyResponse> {
        refuse_recipient(req.recipient.as_ref())?;
        let key_id = required(req.key_id, "keyId")?;
        self.check_grant_tokens(req.grant_tokens.as_deref()).await?;
        let len = match (req.key_spec.as_deref(), req.number_of_bytes) {
            (Some(_), Some(_)) => {
                return Err(KmsError::Validation(
                    "Please specify either number of bytes or key spec, not both.".into(),
                ))
            }
            (None, None) => {
                return Err(KmsError::Validation(
                    "Please specify either number of bytes or key spec.".into(),
                ))
            }
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (Some(s), None) => {
                return Err(KmsError::constraint(
                    s,
                    "keySpec",
                    "Member must satisfy enum value set: [AES_256, AES_128]",
                ))
            }
            (None, Some(n)) => {
                check_range(n, 1, 1024, "numberOfBytes")?;
                n as usize
            }
        };
        let ctx = context(req.encryption_context)?;
        // One draw from the CSPRNG for the data key and the blob's salt.
        let mut random = Zeroizing::new(vec![0u8; len + blob::SALT_LEN]);
        material::random_bytes(&mut random)?;
        let mut salt = [0u8; blob::SALT_LEN];
        salt.copy_from_slice(&random[len..]);
        let plaintext = Zeroizing::new(random[..len].to_vec());
        let (ciphertext_blob, key_id) = self.seal_with(&key_id, &ctx, &plaintext, salt).await?;
        check_dry_run(req.dry_run)?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob,
            plaintext: with_plaintext.then(|| plaintext.into()),
            key_id,
        })
    }

    /// GenerateDataKey: a random data key, in plaintext and encrypted under the KMS key.
    pub async fn generate_data_key(
        &self,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse> {
        self.data_key(req, true).await
    }

    /// GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key_without_plaintext(
        &self,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse> {
        self.data_key(req, false).await
    }

    /// GenerateRandom: 1 to 1024 bytes.
    pub async fn generate_random(
        &self,
        req: GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse> {
        refuse_recipient(req.recipient.as_ref())?;
        let n = required(req.number_of_bytes, "numberOfBytes")?;
        check_range(n, 1, 1024, "numberOfBytes")?;
        if let Some(store_id) = &req.custom_key_store_id {
            let plaintext = self.random_from_store(store_id, n as usize).await?;
            return Ok(GenerateRandomResponse {
                plaintext: plaintext.into(),
            });
        }
        let mut plaintext = Zeroizing::new(vec![0u8; n as usize]);
        material::random_bytes(&mut plaintext)?;
        Ok(GenerateRandomResponse {
            plaintext: plaintext.into(),
        })
    }
}
