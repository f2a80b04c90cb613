//! Keyrings: what wraps and unwraps the per-message data key, and the materials they work on.
//!
//! A keyring's operations are asynchronous because some keyrings (KMS) call a network endpoint.
//! The trait returns boxed futures so that keyrings can be combined as `dyn Keyring`
//! (see [`MultiKeyring`]).

#[cfg(feature = "kms")]
pub(crate) mod kms;
mod multi;
mod raw_aes;

use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

#[cfg(feature = "kms")]
pub use kms::{DiscoveryFilter, KmsArn, KmsClientBuilder, KmsKeyring, KMS_PROVIDER_ID};
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;

use crate::encryption_context::EncryptionContext;
use crate::error::Result;
use crate::message::signature::SigningKey;
use crate::message::suite::AlgorithmSuite;

/// A data key wrapped by one keyring, as stored in the message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Which kind of keyring made it (a raw keyring's key namespace, or `aws-kms`).
    pub provider_id: String,
    /// Keyring-specific: for a raw AES keyring, key name ‖ tag bits ‖ IV length ‖ IV.
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// A plaintext data key. Zeroized on drop; its `Debug` prints no key bytes.
#[derive(Clone)]
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A random key of `len` bytes.
    pub fn generate(len: usize) -> Result<Self> {
        let mut k = Zeroizing::new(vec![0u8; len]);
        crate::random::fill(&mut k)?;
        Ok(Self(k))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({} bytes, redacted)", self.0.len())
    }
}

/// What a keyring receives and returns on encrypt.
#[derive(Debug)]
#[non_exhaustive]
pub struct EncryptionMaterials {
    /// The message's algorithm suite.
    pub suite: AlgorithmSuite,
    /// The full encryption context, including `aws-crypto-public-key` for signed suites. Keyrings
    /// bind it to the data keys they wrap.
    pub encryption_context: EncryptionContext,
    /// The plaintext data key: absent until a (generator) keyring sets it.
    pub data_key: Option<DataKey>,
    /// The encrypted data keys, one per wrapping key.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// The message's signing key, for signed suites.
    pub signing_key: Option<SigningKey>,
}

impl EncryptionMaterials {
    /// Materials with no data key yet.
    pub fn new(suite: AlgorithmSuite, encryption_context: EncryptionContext) -> Self {
        Self {
            suite,
            encryption_context,
            data_key: None,
            encrypted_data_keys: Vec::new(),
            signing_key: None,
        }
    }
}

/// What a keyring receives and returns on decrypt.
#[derive(Debug)]
#[non_exhaustive]
pub struct DecryptionMaterials {
    /// The message's algorithm suite.
    pub suite: AlgorithmSuite,
    /// The encryption context from the message header.
    pub encryption_context: EncryptionContext,
    /// The plaintext data key, once a keyring has unwrapped one.
    pub data_key: Option<DataKey>,
}

impl DecryptionMaterials {
    /// Materials with no data key yet.
    pub fn new(suite: AlgorithmSuite, encryption_context: EncryptionContext) -> Self {
        Self {
            suite,
            encryption_context,
            data_key: None,
        }
    }
}

/// The future a keyring operation returns.
pub type KeyringFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Wraps and unwraps data keys.
///
/// Contract (as the AWS Encryption SDK's keyring interface):
/// - `on_encrypt` generates the data key if the materials have none (or fails if it cannot generate),
///   then appends one encrypted data key per wrapping key it holds.
/// - `on_decrypt` returns the materials unchanged if they already hold a data key, or if none of the
///   encrypted data keys is one it can unwrap; otherwise it sets the data key. It returns an error only
///   for failures that are not "this is not my key" (a key service being unreachable).
pub trait Keyring: Send + Sync {
    /// Generates and/or wraps the data key.
    fn on_encrypt<'a>(
        &'a self,
        materials: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials>;

    /// Tries to unwrap one of `encrypted_data_keys`.
    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        encrypted_data_keys: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials>;
}
