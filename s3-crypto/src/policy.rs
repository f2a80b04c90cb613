//! The commitment policy, one for both formats: which algorithm suites may encrypt and which may
//! be decrypted, with the names the AWS Encryption SDK and the S3 Encryption Client both use.

use crate::error::{Error, Result};

/// Whether encryption must, and decryption may only, use a key-committing algorithm suite, as the
/// AWS Encryption SDK and the S3 Encryption Client name their commitment policies.
///
/// | policy | encrypts | decrypts |
/// | --- | --- | --- |
/// | [`ForbidEncryptAllowDecrypt`](Self::ForbidEncryptAllowDecrypt) | non-committing only | both |
/// | [`RequireEncryptAllowDecrypt`](Self::RequireEncryptAllowDecrypt) | committing only | both |
/// | [`RequireEncryptRequireDecrypt`](Self::RequireEncryptRequireDecrypt) (default) | committing only | committing only |
///
/// Only decryption of messages (the AWS Encryption SDK format) reads the policy: the encryptor
/// takes none and always writes a key-committing suite. The S3 Encryption Client checks both
/// ways: objects are written as V2 (non-committing) under
/// [`ForbidEncryptAllowDecrypt`](Self::ForbidEncryptAllowDecrypt), V3 otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitmentPolicy {
    /// Encrypt only with a non-committing suite (S3 Encryption Client V2 objects); decrypt both.
    ForbidEncryptAllowDecrypt,
    /// Encrypt only with a key-committing suite; also decrypt non-committing ones (version 1
    /// messages, V2 objects): an explicit opt-in for reading what older clients wrote.
    RequireEncryptAllowDecrypt,
    /// Encrypt and decrypt only key-committing suites. The default, as in both SDKs.
    #[default]
    RequireEncryptRequireDecrypt,
}

impl CommitmentPolicy {
    /// Whether a suite that does (`true`) or does not commit to its key may encrypt.
    pub fn allows_encrypt(self, committing: bool) -> bool {
        committing != (self == Self::ForbidEncryptAllowDecrypt)
    }

    /// Whether a suite that does (`true`) or does not commit to its key may be decrypted.
    pub fn allows_decrypt(self, committing: bool) -> bool {
        committing || self != Self::RequireEncryptRequireDecrypt
    }

    /// Checks that suite `suite_id` (committing or not) may encrypt under this policy.
    pub(crate) fn check_encrypt(self, suite_id: u16, committing: bool) -> Result<()> {
        if self.allows_encrypt(committing) {
            Ok(())
        } else {
            Err(Error::InvalidConfiguration(format!(
                "commitment policy {self:?} does not allow encrypting with suite {suite_id:#06x}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CommitmentPolicy::*;

    #[test]
    fn the_table_of_both_sdks() {
        // (policy, encrypts committing, encrypts non-committing, decrypts non-committing)
        for (policy, commit, plain, old) in [
            (ForbidEncryptAllowDecrypt, false, true, true),
            (RequireEncryptAllowDecrypt, true, false, true),
            (RequireEncryptRequireDecrypt, true, false, false),
        ] {
            assert_eq!(policy.allows_encrypt(true), commit, "{policy:?}");
            assert_eq!(policy.allows_encrypt(false), plain, "{policy:?}");
            assert!(policy.allows_decrypt(true), "{policy:?}");
            assert_eq!(policy.allows_decrypt(false), old, "{policy:?}");
        }
        assert_eq!(
            super::CommitmentPolicy::default(),
            RequireEncryptRequireDecrypt
        );
        assert!(ForbidEncryptAllowDecrypt
            .check_encrypt(0x0073, true)
            .is_err());
    }
}
