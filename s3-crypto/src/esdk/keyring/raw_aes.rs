//! The raw AES keyring: a customer-supplied AES key wraps the data key with AES-GCM, the serialized
//! encryption context as AAD (as the AWS Encryption SDK specifies it).

use aws_lc_rs::aead;
use zeroize::Zeroizing;

use crate::data_key::{
    aes_wrapping_key, DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring,
    KeyringFuture,
};
use crate::error::{Error, Result};

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u32 = 128;

/// A keyring holding one AES key (128, 192 or 256 bits), identified by a key namespace (stored as
/// the key provider id) and a key name (stored at the start of the key provider info).
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: aead::LessSafeKey,
}

impl std::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RawAesKeyring {
    /// A keyring for `wrapping_key` (16, 24 or 32 bytes). The namespace must not start with
    /// `aws-kms` (reserved for KMS keyrings).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        wrapping_key: &[u8],
    ) -> Result<Self> {
        let namespace = namespace.into();
        let name = name.into();
        if namespace.starts_with("aws-kms") {
            return Err(Error::InvalidConfiguration(
                "a raw AES key namespace must not start with `aws-kms`".into(),
            ));
        }
        if namespace.len() > usize::from(u16::MAX)
            || name.len() > usize::from(u16::MAX) - 8 - IV_LEN
        {
            return Err(Error::InvalidConfiguration(
                "key namespace or name too long".into(),
            ));
        }
        let key = aes_wrapping_key(wrapping_key, "a raw AES wrapping key")?;
        Ok(Self {
            namespace,
            name,
            key,
        })
    }

    fn wrap(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let aad = materials.encryption_context.serialize()?;
        let data_key = match &materials.data_key {
            Some(k) => k.clone(),
            None => {
                let k = DataKey::generate(materials.suite.data_key_len())?;
                materials.data_key = Some(k.clone());
                k
            }
        };
        let mut iv = [0u8; IV_LEN];
        crate::random::fill(&mut iv)?;
        let mut ciphertext = data_key.as_bytes().to_vec();
        let tag = self.key.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(&aad),
            &mut ciphertext,
        )?;
        ciphertext.extend_from_slice(tag.as_ref());
        let mut provider_info = Vec::with_capacity(self.name.len() + 8 + IV_LEN);
        provider_info.extend_from_slice(self.name.as_bytes());
        provider_info.extend_from_slice(&TAG_BITS.to_be_bytes());
        provider_info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        provider_info.extend_from_slice(&iv);
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        });
        Ok(())
    }

    /// The IV, if this encrypted data key is one of ours with the wrapping parameters we use.
    fn our_iv<'e>(&self, edk: &'e EncryptedDataKey) -> Option<&'e [u8]> {
        if edk.provider_id != self.namespace {
            return None;
        }
        let info = edk.provider_info.strip_prefix(self.name.as_bytes())?;
        if info.len() != 8 + IV_LEN
            || info[..4] != TAG_BITS.to_be_bytes()
            || info[4..8] != (IV_LEN as u32).to_be_bytes()
        {
            return None;
        }
        Some(&info[8..])
    }

    fn unwrap_key(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        if materials.data_key.is_some() {
            return Ok(());
        }
        let aad = materials.encryption_context.serialize()?;
        for edk in edks {
            let Some(iv) = self.our_iv(edk) else { continue };
            let Ok(iv) = <[u8; IV_LEN]>::try_from(iv) else {
                continue;
            };
            if edk.ciphertext.len() != materials.suite.data_key_len() + TAG_LEN {
                continue;
            }
            let mut buf = Zeroizing::new(edk.ciphertext.clone());
            if let Ok(plain) = self.key.open_in_place(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(&aad),
                &mut buf,
            ) {
                materials.data_key = Some(DataKey::new(plain.to_vec()));
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Keyring for RawAesKeyring {
    fn on_encrypt<'a>(
        &'a self,
        mut materials: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            self.wrap(&mut materials)?;
            Ok(materials)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut materials: DecryptionMaterials,
        encrypted_data_keys: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            self.unwrap_key(&mut materials, encrypted_data_keys)?;
            Ok(materials)
        })
    }
}
