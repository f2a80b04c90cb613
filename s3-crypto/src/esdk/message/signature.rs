//! The signature footer of signed suites: ECDSA over the hash of the header and body, and the
//! verification key carried in the encryption context as `aws-crypto-public-key`.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::esdk::message::suite::SignatureAlgorithm;

/// An ephemeral ECDSA signing key (generated per message).
pub struct SigningKey {
    alg: SignatureAlgorithm,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

impl SigningKey {
    pub(crate) fn generate(alg: SignatureAlgorithm) -> Result<Self> {
        Ok(Self {
            alg,
            key: EcdsaKeyPair::generate(alg.signing())?,
        })
    }

    /// The public key as the format stores it: base64 (standard, padded) of the SEC 1 compressed point.
    pub fn public_key_base64(&self) -> Result<String> {
        let compressed: EcPublicKeyCompressedBin<'static> = self.key.public_key().as_be_bytes()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(compressed.as_ref()))
    }
}

/// Hashes the message as it is written and signs it at the end.
pub(crate) struct Signer {
    key: SigningKey,
    hash: digest::Context,
}

impl Signer {
    pub(crate) fn new(key: SigningKey) -> Self {
        let hash = digest::Context::new(key.alg.digest());
        Self { key, hash }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// The footer: u16 signature length ‖ DER signature. Like the ESDK, re-signs a few times to get the
    /// canonical DER length, so that message lengths are predictable.
    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        let digest = self.hash.finish();
        let want = self.key.alg.canonical_signature_len();
        let mut sig = self.key.key.sign_digest(&digest)?;
        for _ in 0..32 {
            if sig.as_ref().len() == want {
                break;
            }
            sig = self.key.key.sign_digest(&digest)?;
        }
        let sig = sig.as_ref();
        let len = u16::try_from(sig.len()).map_err(|_| Error::Crypto)?;
        let mut out = Vec::with_capacity(2 + sig.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(sig);
        Ok(out)
    }
}

/// Hashes the message as it is read and verifies the footer.
pub(crate) struct Verifier {
    alg: SignatureAlgorithm,
    public_key: Vec<u8>,
    hash: digest::Context,
}

impl Verifier {
    /// `public_key_base64` is the `aws-crypto-public-key` value of the header's encryption context.
    pub(crate) fn new(alg: SignatureAlgorithm, public_key_base64: &str) -> Result<Self> {
        let public_key = base64::engine::general_purpose::STANDARD
            .decode(public_key_base64)
            .map_err(|_| Error::MalformedHeader("aws-crypto-public-key is not base64"))?;
        Ok(Self {
            alg,
            public_key,
            hash: digest::Context::new(alg.digest()),
        })
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    pub(crate) fn verify(self, signature: &[u8]) -> Result<()> {
        let digest = self.hash.finish();
        UnparsedPublicKey::new(self.alg.verification(), &self.public_key)
            .verify_digest(&digest, signature)
            .map_err(|_| Error::BadSignature)
    }
}
