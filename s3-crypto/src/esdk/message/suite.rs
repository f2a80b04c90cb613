//! Algorithm suites: which AEAD, key derivation, commitment and signature a message uses.

use aws_lc_rs::{aead, digest, hkdf, signature};

use crate::error::{Error, Result};

/// An algorithm suite of the AWS Encryption SDK message format, named as the ESDK names it.
///
/// All suites use AES-GCM with a 12-byte IV and a 16-byte tag. This crate writes only the two
/// key-committing suites of message format version 2; it reads all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlgorithmSuite {
    /// 0x0014: AES-128-GCM, data key used directly (format version 1).
    Aes128GcmIv12Tag16NoKdf,
    /// 0x0046: AES-192-GCM, data key used directly (format version 1).
    Aes192GcmIv12Tag16NoKdf,
    /// 0x0078: AES-256-GCM, data key used directly (format version 1).
    Aes256GcmIv12Tag16NoKdf,
    /// 0x0114: AES-128-GCM, HKDF-SHA256 (format version 1).
    Aes128GcmIv12Tag16HkdfSha256,
    /// 0x0146: AES-192-GCM, HKDF-SHA256 (format version 1).
    Aes192GcmIv12Tag16HkdfSha256,
    /// 0x0178: AES-256-GCM, HKDF-SHA256 (format version 1).
    Aes256GcmIv12Tag16HkdfSha256,
    /// 0x0214: AES-128-GCM, HKDF-SHA256, ECDSA P-256 with SHA-256 (format version 1).
    Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
    /// 0x0346: AES-192-GCM, HKDF-SHA384, ECDSA P-384 with SHA-384 (format version 1).
    Aes192GcmIv12Tag16HkdfSha384EcdsaP384,
    /// 0x0378: AES-256-GCM, HKDF-SHA384, ECDSA P-384 with SHA-384 (format version 1).
    Aes256GcmIv12Tag16HkdfSha384EcdsaP384,
    /// 0x0478: AES-256-GCM, HKDF-SHA512, key commitment (format version 2).
    Aes256GcmHkdfSha512CommitKey,
    /// 0x0578: AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384 with SHA-384 (format version 2).
    Aes256GcmHkdfSha512CommitKeyEcdsaP384,
}

/// How the message's content key is derived from the data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kdf {
    Identity,
    Hkdf(hkdf::Algorithm),
}

/// The ECDSA curve and hash of a signed suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    P256Sha256,
    P384Sha384,
}

impl SignatureAlgorithm {
    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::P256Sha256 => &digest::SHA256,
            Self::P384Sha384 => &digest::SHA384,
        }
    }

    pub(crate) fn verification(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Self::P256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::P384Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
        }
    }

    pub(crate) fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256Sha256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384Sha384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    /// The DER signature length the ESDK pads to by re-signing, so that message lengths are
    /// predictable (a DER length can vary by a byte or two with the leading bits of r and s).
    pub(crate) fn canonical_signature_len(self) -> usize {
        match self {
            Self::P256Sha256 => 71,
            Self::P384Sha384 => 103,
        }
    }
}

/// IV length of every suite, in bytes.
pub(crate) const IV_LEN: usize = 12;
/// Authentication tag length of every suite, in bytes.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the key commitment (the algorithm suite data of version 2).
pub(crate) const COMMITMENT_LEN: usize = 32;

impl AlgorithmSuite {
    /// Every suite, in id order.
    pub const ALL: [AlgorithmSuite; 11] = [
        Self::Aes128GcmIv12Tag16NoKdf,
        Self::Aes192GcmIv12Tag16NoKdf,
        Self::Aes256GcmIv12Tag16NoKdf,
        Self::Aes128GcmIv12Tag16HkdfSha256,
        Self::Aes192GcmIv12Tag16HkdfSha256,
        Self::Aes256GcmIv12Tag16HkdfSha256,
        Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256,
        Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384,
        Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384,
        Self::Aes256GcmHkdfSha512CommitKey,
        Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ];

    /// The two-byte id written in the header.
    pub fn id(self) -> u16 {
        match self {
            Self::Aes128GcmIv12Tag16NoKdf => 0x0014,
            Self::Aes192GcmIv12Tag16NoKdf => 0x0046,
            Self::Aes256GcmIv12Tag16NoKdf => 0x0078,
            Self::Aes128GcmIv12Tag16HkdfSha256 => 0x0114,
            Self::Aes192GcmIv12Tag16HkdfSha256 => 0x0146,
            Self::Aes256GcmIv12Tag16HkdfSha256 => 0x0178,
            Self::Aes128GcmIv12Tag16HkdfSha256EcdsaP256 => 0x0214,
            Self::Aes192GcmIv12Tag16HkdfSha384EcdsaP384 => 0x0346,
            Self::Aes256GcmIv12Tag16HkdfSha384EcdsaP384 => 0x0378,
            Self::Aes256GcmHkdfSha512CommitKey => 0x0478,
            Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => 0x0578,
        }
    }

    /// The suite with this id.
    pub fn from_id(id: u16) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or(Error::UnsupportedAlgorithmSuite(id))
    }

    /// The message format version that carries this suite (1 or 2).
    pub fn message_format_version(self) -> u8 {
        if self.is_committing() {
            2
        } else {
            1
        }
    }

    /// Whether the suite commits to its data key (only these are written, and by default only these
    /// are read).
    pub fn is_committing(self) -> bool {
        matches!(
            self,
            Self::Aes256GcmHkdfSha512CommitKey | Self::Aes256GcmHkdfSha512CommitKeyEcdsaP384
        )
    }

    /// Whether messages of this suite end with an ECDSA signature.
    pub fn is_signed(self) -> bool {
        self.signature().is_some()
    }

    /// Length in bytes of the data key (and of the derived content key).
    pub fn data_key_len(self) -> usize {
        match self.id() & 0xff {
            0x14 => 16,
            0x46 => 24,
            _ => 32,
        }
    }

    pub(crate) fn aead(self) -> &'static aead::Algorithm {
        match self.data_key_len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            _ => &aead::AES_256_GCM,
        }
    }

    pub(crate) fn kdf(self) -> Kdf {
        match self.id() >> 8 {
            0x00 => Kdf::Identity,
            0x01 | 0x02 => Kdf::Hkdf(hkdf::HKDF_SHA256),
            0x03 => Kdf::Hkdf(hkdf::HKDF_SHA384),
            _ => Kdf::Hkdf(hkdf::HKDF_SHA512),
        }
    }

    pub(crate) fn signature(self) -> Option<SignatureAlgorithm> {
        match self.id() >> 8 {
            0x02 => Some(SignatureAlgorithm::P256Sha256),
            0x03 | 0x05 => Some(SignatureAlgorithm::P384Sha384),
            _ => None,
        }
    }

    /// Length of the message id for this suite's format version.
    pub(crate) fn message_id_len(self) -> usize {
        if self.message_format_version() == 2 {
            32
        } else {
            16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_properties() {
        for s in AlgorithmSuite::ALL {
            assert_eq!(AlgorithmSuite::from_id(s.id()).unwrap(), s);
        }
        let s = AlgorithmSuite::Aes192GcmIv12Tag16HkdfSha384EcdsaP384;
        assert_eq!(s.data_key_len(), 24);
        assert_eq!(s.signature(), Some(SignatureAlgorithm::P384Sha384));
        assert_eq!(s.message_format_version(), 1);
        assert_eq!(AlgorithmSuite::Aes128GcmIv12Tag16NoKdf.data_key_len(), 16);
        assert_eq!(AlgorithmSuite::Aes128GcmIv12Tag16NoKdf.kdf(), Kdf::Identity);
        assert!(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384.is_signed());
        assert!(!AlgorithmSuite::Aes256GcmHkdfSha512CommitKey.is_signed());
        assert!(AlgorithmSuite::from_id(0x0479).is_err());
    }
}
