//! Key derivation and key commitment.

use aws_lc_rs::{aead, hkdf};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::esdk::message::suite::{AlgorithmSuite, Kdf, COMMITMENT_LEN};

/// An HKDF output length (aws-lc-rs asks for it as a `KeyType`).
pub(crate) struct Len(pub(crate) usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The content key of one message and, for committing suites, the commitment value.
pub(crate) struct DerivedKeys {
    pub(crate) content_key: aead::LessSafeKey,
    pub(crate) commitment: Option<[u8; COMMITMENT_LEN]>,
}

/// Derives the content key (and commitment) from the data key, as the format specifies:
/// - identity: the data key itself;
/// - HKDF without commitment: salt = zeros (as long as the hash), info = suite id ‖ message id;
/// - HKDF with commitment: salt = message id (32 bytes), one extract, then expand with
///   info = suite id ‖ "DERIVEKEY" for the key and info = "COMMITKEY" for the 32-byte commitment.
pub(crate) fn derive(
    suite: AlgorithmSuite,
    data_key: &[u8],
    message_id: &[u8],
) -> Result<DerivedKeys> {
    if data_key.len() != suite.data_key_len() {
        return Err(Error::Crypto);
    }
    let key_len = suite.data_key_len();
    let mut key = Zeroizing::new(vec![0u8; key_len]);
    let mut commitment = None;
    match suite.kdf() {
        Kdf::Identity => key.copy_from_slice(data_key),
        Kdf::Hkdf(alg) => {
            let id = suite.id().to_be_bytes();
            if suite.is_committing() {
                let prk = hkdf::Salt::new(alg, message_id).extract(data_key);
                prk.expand(&[&id, b"DERIVEKEY"], Len(key_len))?
                    .fill(&mut key)?;
                let mut c = [0u8; COMMITMENT_LEN];
                prk.expand(&[b"COMMITKEY"], Len(COMMITMENT_LEN))?
                    .fill(&mut c)?;
                commitment = Some(c);
            } else {
                let prk = hkdf::Salt::new(alg, &[]).extract(data_key);
                prk.expand(&[&id, message_id], Len(key_len))?
                    .fill(&mut key)?;
            }
        }
    }
    let content_key = aead::LessSafeKey::new(aead::UnboundKey::new(suite.aead(), &key)?);
    Ok(DerivedKeys {
        content_key,
        commitment,
    })
}

/// Constant-time comparison of the stored and the derived commitment.
pub(crate) fn commitment_matches(stored: &[u8], derived: &[u8; COMMITMENT_LEN]) -> bool {
    stored.len() == COMMITMENT_LEN
        && aws_lc_rs::constant_time::verify_slices_are_equal(stored, derived).is_ok()
}
