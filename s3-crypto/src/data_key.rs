//! The data key, and the one [`Keyring`] trait both formats use: what wraps and unwraps the data
//! key of an AWS Encryption SDK message (any number of encrypted data keys, each named by its key
//! provider) or of an S3 Encryption Client object (exactly one, bound to the content algorithm).
//!
//! A keyring's operations are asynchronous because some keyrings (KMS) call a network endpoint.
//! The trait returns boxed futures so that keyrings can be combined as `dyn Keyring`
//! (see [`MultiKeyring`](crate::MultiKeyring)). The keyrings themselves are
//! [`KmsKeyring`](crate::KmsKeyring) (both formats), [`RawAesKeyring`](crate::RawAesKeyring) and
//! [`MultiKeyring`](crate::MultiKeyring) (messages), and [`AesKeyring`](crate::s3ec::AesKeyring)
//! (objects: the S3 Encryption Client wraps with another AAD and stores no key name).

use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::esdk::message::signature::SigningKey;
use crate::esdk::message::suite::AlgorithmSuite;
use crate::s3ec::{ContentAlgorithm, ContentMetadata, WrappingAlgorithm};

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

/// An AES-GCM key that wraps data keys: 16, 24 or 32 bytes (the raw AES keyrings of both formats).
/// `what` names it in the error (`a raw AES wrapping key`, `an AES wrapping key`), as each
/// keyring always has.
pub(crate) fn aes_wrapping_key(bytes: &[u8], what: &str) -> Result<aws_lc_rs::aead::LessSafeKey> {
    use aws_lc_rs::aead;
    let alg = match bytes.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        n => {
            return Err(Error::InvalidConfiguration(format!(
                "{what} is 16, 24 or 32 bytes, not {n}"
            )))
        }
    };
    Ok(aead::LessSafeKey::new(aead::UnboundKey::new(alg, bytes)?))
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

/// A fresh data key and its wrapped form, as a keyring returns it on encrypt.
#[derive(Debug)]
#[non_exhaustive]
pub struct WrappedDataKey {
    /// The plaintext data key.
    pub data_key: DataKey,
    /// The wrapped data key to store.
    pub encrypted_data_key: Vec<u8>,
    /// How it is wrapped.
    pub wrapping: WrappingAlgorithm,
    /// The context to store beside it (KMS encryption context, or materials description).
    pub context: EncryptionContext,
}

impl WrappedDataKey {
    /// What a keyring returns (for keyrings written outside this crate).
    pub fn new(
        data_key: DataKey,
        encrypted_data_key: Vec<u8>,
        wrapping: WrappingAlgorithm,
        context: EncryptionContext,
    ) -> Self {
        Self {
            data_key,
            encrypted_data_key,
            wrapping,
            context,
        }
    }
}

/// The future a keyring operation returns.
pub type KeyringFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Wraps and unwraps data keys, for AWS Encryption SDK messages and S3 Encryption Client objects.
///
/// Contract on messages (as the AWS Encryption SDK's keyring interface):
/// - `on_encrypt` generates the data key if the materials have none (or fails if it cannot generate),
///   then appends one encrypted data key per wrapping key it holds.
/// - `on_decrypt` returns the materials unchanged if they already hold a data key, or if none of the
///   encrypted data keys is one it can unwrap; otherwise it sets the data key. It returns an error only
///   for failures that are not "this is not my key" (a key service being unreachable).
///
/// On objects (as the S3 Encryption Client's keyrings): `on_encrypt_object` generates the one
/// data key and wraps it, `on_decrypt_object` unwraps it or fails.
///
/// A keyring implements the format(s) it serves; each method's default refuses, saying which
/// format the keyring does not serve — except `on_decrypt`, whose default finds no key of its own
/// (a [`MultiKeyring`](crate::MultiKeyring) then goes on to its other keyrings, and a message no
/// keyring opens fails as every undecryptable message does).
pub trait Keyring: Send + Sync {
    /// Messages: generates and/or wraps the data key.
    fn on_encrypt<'a>(
        &'a self,
        materials: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials> {
        let _ = materials;
        Box::pin(async { Err(not_for(MESSAGES)) })
    }

    /// Messages: tries to unwrap one of `encrypted_data_keys`. The default (a keyring for objects
    /// only) owns none of them, so it returns the materials unchanged, as the contract says.
    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        encrypted_data_keys: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        let _ = encrypted_data_keys;
        Box::pin(async { Ok(materials) })
    }

    /// Objects: generates a data key for `algorithm` and wraps it. `encryption_context` is the
    /// caller's (KMS keyrings bind and store it; raw keyrings refuse a non-empty one).
    fn on_encrypt_object<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        let _ = (algorithm, encryption_context);
        Box::pin(async { Err(not_for(OBJECTS)) })
    }

    /// Objects: unwraps the data key of an object. `encryption_context` is what the caller
    /// expects the object to have been encrypted with.
    fn on_decrypt_object<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        let _ = (metadata, encryption_context);
        Box::pin(async { Err(not_for(OBJECTS)) })
    }
}

const MESSAGES: &str = "AWS Encryption SDK messages (framed objects)";
const OBJECTS: &str = "S3 Encryption Client objects (V3, V2)";

fn not_for(format: &str) -> Error {
    Error::InvalidConfiguration(format!("this keyring does not wrap data keys of {format}"))
}
