//! The S3 Encryption Client's content and wrapping algorithms, and the key derivation of the
//! key-committing suite.

use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::data_key::DataKey;
use crate::error::{Error, Result};
use crate::esdk::message::kdf::Len;

/// Length of the data key of every suite this module reads or writes (AES-256).
pub const DATA_KEY_LEN: usize = 32;
/// Length of the Message ID (the HKDF salt) of the key-committing suite.
pub const MESSAGE_ID_LEN: usize = 28;
/// Length of the key commitment of the key-committing suite.
pub const COMMITMENT_LEN: usize = 28;

/// How the object content is encrypted (`x-amz-cek-alg` in the V2 layout, `x-amz-c` in V3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentAlgorithm {
    /// `ALG_AES_256_GCM_IV12_TAG16_NO_KDF` (suite 0x0072): AES-256-GCM under the data key, a random
    /// 96-bit IV, no AAD. Written in the V2 layout. Does not commit to its key.
    AesGcm,
    /// `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY` (suite 0x0073): a content key and a key commitment
    /// derived with HKDF-SHA512 from the data key and a random 224-bit Message ID; AES-256-GCM with
    /// an IV of twelve 0x01 bytes and the suite id as AAD. Written in the V3 layout. The default.
    AesGcmCommitKey,
}

impl ContentAlgorithm {
    /// The algorithm suite id of the specification.
    pub fn suite_id(self) -> u16 {
        match self {
            Self::AesGcm => 0x0072,
            Self::AesGcmCommitKey => 0x0073,
        }
    }

    /// Whether the suite commits to its data key.
    pub fn is_committing(self) -> bool {
        matches!(self, Self::AesGcmCommitKey)
    }

    /// The name the metadata stores: `AES/GCM/NoPadding` (V2) or `115` (V3, the suite id in decimal).
    pub fn metadata_name(self) -> &'static str {
        match self {
            Self::AesGcm => "AES/GCM/NoPadding",
            Self::AesGcmCommitKey => "115",
        }
    }

    /// What key-wrapping binds the data key to: the value of `aws:x-amz-cek-alg` in a KMS
    /// encryption context, and the AAD of the `AES/GCM` wrapping. The same string as
    /// [`metadata_name`](Self::metadata_name).
    pub(crate) fn binding(self) -> &'static str {
        self.metadata_name()
    }
}

/// How the data key is wrapped (`x-amz-wrap-alg` in V2, `x-amz-w` in V3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WrappingAlgorithm {
    /// `AES/GCM` (V3 `02`): a customer-supplied AES key wraps the data key with AES-GCM; the
    /// stored key is IV (12 bytes) ‖ ciphertext ‖ tag, the AAD the content algorithm's name.
    AesGcm,
    /// `kms+context` (V3 `12`): KMS GenerateDataKey/Decrypt with the encryption context, which
    /// includes `aws:x-amz-cek-alg`.
    KmsContext,
    /// `kms` (V1/V2 only): KMS without encryption context, a legacy mode (decrypt only, opt-in).
    Kms,
}

impl WrappingAlgorithm {
    /// The V2 name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesGcm => "AES/GCM",
            Self::KmsContext => "kms+context",
            Self::Kms => "kms",
        }
    }

    /// The V3 compressed code, for the algorithms V3 can store.
    pub fn v3_code(self) -> Option<&'static str> {
        match self {
            Self::AesGcm => Some("02"),
            Self::KmsContext => Some("12"),
            Self::Kms => None,
        }
    }

    pub(crate) fn from_v2_name(name: &str) -> Result<Self> {
        match name {
            "AES/GCM" => Ok(Self::AesGcm),
            "kms+context" => Ok(Self::KmsContext),
            "kms" => Ok(Self::Kms),
            "AESWrap"
            | "AES"
            | "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"
            | "RSA-OAEP-SHA1"
            | "RSA" => Err(Error::UnsupportedS3ecAlgorithm(format!(
                "wrapping algorithm `{name}` is not supported"
            ))),
            _ => Err(Error::InvalidS3ecMetadata(format!(
                "unknown wrapping algorithm {}",
                quote(name)
            ))),
        }
    }

    pub(crate) fn from_v3_code(code: &str) -> Result<Self> {
        match code {
            "02" => Ok(Self::AesGcm),
            "12" => Ok(Self::KmsContext),
            "22" => Err(Error::UnsupportedS3ecAlgorithm(
                "wrapping algorithm RSA-OAEP-SHA1 (`22`) is not supported".into(),
            )),
            _ => Err(Error::InvalidS3ecMetadata(format!(
                "unknown V3 wrapping algorithm {}",
                quote(code)
            ))),
        }
    }
}

/// The content key and the key commitment derived from a data key and a Message ID (HKDF-SHA512:
/// salt the Message ID; info the suite id ‖ `DERIVEKEY` or ‖ `COMMITKEY`).
pub(crate) struct Derived {
    pub(crate) content_key: Zeroizing<[u8; DATA_KEY_LEN]>,
    pub(crate) commitment: [u8; COMMITMENT_LEN],
}

pub(crate) fn derive(data_key: &DataKey, message_id: &[u8; MESSAGE_ID_LEN]) -> Result<Derived> {
    if data_key.as_bytes().len() != DATA_KEY_LEN {
        return Err(Error::InvalidConfiguration(format!(
            "the data key has {} bytes; the suite needs {DATA_KEY_LEN}",
            data_key.as_bytes().len()
        )));
    }
    let suite = ContentAlgorithm::AesGcmCommitKey.suite_id().to_be_bytes();
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key.as_bytes());
    let mut content_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    prk.expand(&[&suite, b"DERIVEKEY"], Len(DATA_KEY_LEN))?
        .fill(&mut content_key[..])?;
    let mut commitment = [0u8; COMMITMENT_LEN];
    prk.expand(&[&suite, b"COMMITKEY"], Len(COMMITMENT_LEN))?
        .fill(&mut commitment)?;
    Ok(Derived {
        content_key,
        commitment,
    })
}

/// A metadata value quoted for an error message: at most 64 characters, control characters escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut q: String = s
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if s.chars().count() > 64 {
        q.push('…');
    }
    format!("`{q}`")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// HKDF-SHA512 written out with HMAC (RFC 5869), to check the aws-lc-rs HKDF call and the
    /// info strings independently.
    fn hkdf_by_hand(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, salt), ikm);
        let k = hmac::Key::new(hmac::HMAC_SHA512, prk.as_ref());
        let t1 = hmac::sign(&k, &[info, &[1u8]].concat());
        t1.as_ref()[..len].to_vec()
    }

    #[test]
    fn derivation_is_hkdf_sha512_with_the_specified_info() {
        let dk = DataKey::new((0..32).collect());
        let mid: [u8; 28] = core::array::from_fn(|i| 100 + i as u8);
        let d = derive(&dk, &mid).unwrap();
        assert_eq!(
            &d.content_key[..],
            &hkdf_by_hand(&mid, dk.as_bytes(), b"\x00\x73DERIVEKEY", 32)[..]
        );
        assert_eq!(
            &d.commitment[..],
            &hkdf_by_hand(&mid, dk.as_bytes(), b"\x00\x73COMMITKEY", 28)[..]
        );
    }

    #[test]
    fn names_and_codes() {
        assert_eq!(ContentAlgorithm::AesGcmCommitKey.metadata_name(), "115");
        assert_eq!(
            ContentAlgorithm::AesGcm.metadata_name(),
            "AES/GCM/NoPadding"
        );
        assert_eq!(
            WrappingAlgorithm::from_v3_code("02").unwrap(),
            WrappingAlgorithm::AesGcm
        );
        assert_eq!(
            WrappingAlgorithm::from_v3_code("12").unwrap(),
            WrappingAlgorithm::KmsContext
        );
        assert!(matches!(
            WrappingAlgorithm::from_v3_code("22"),
            Err(Error::UnsupportedS3ecAlgorithm(_))
        ));
        assert!(matches!(
            WrappingAlgorithm::from_v3_code("13"),
            Err(Error::InvalidS3ecMetadata(_))
        ));
        assert!(matches!(
            WrappingAlgorithm::from_v2_name("AESWrap"),
            Err(Error::UnsupportedS3ecAlgorithm(_))
        ));
    }
}
