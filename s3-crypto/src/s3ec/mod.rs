//! Objects compatible with the [Amazon S3 Encryption Client][spec] (S3EC): the body is the whole
//! object sealed with one AES-256-GCM invocation (ciphertext ‖ 16-byte tag); the data key, wrapped
//! by KMS (CSE-KMS, [`KmsKeyring`](crate::KmsKeyring)) or a customer-supplied AES key (CSE-C,
//! [`AesKeyring`]), and the
//! other parameters are stored in the object's user metadata ([`ContentMetadata`]) or, on request,
//! partly in an instruction file.
//!
//! - **Writes** the layout the official clients write by default: V3, with the key-committing
//!   suite 115 (`ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`; metadata `x-amz-c`, `x-amz-3`, `x-amz-w`,
//!   `x-amz-d`, `x-amz-i`, `x-amz-t` or `x-amz-m`); and on request the V2 layout
//!   (`AES/GCM/NoPadding`; `x-amz-key-v2`, `x-amz-iv`, `x-amz-cek-alg`, `x-amz-wrap-alg`,
//!   `x-amz-matdesc`, `x-amz-tag-len`), which needs [`CommitmentPolicy::ForbidEncryptAllowDecrypt`]
//!   as in the official clients.
//! - **Reads** both, with the official clients' commitment policy: by default
//!   ([`CommitmentPolicy::RequireEncryptRequireDecrypt`]) V2 objects, which do not commit to
//!   their key, are refused; reading them is an explicit opt-in. V1 objects, AES-CBC content and
//!   the RSA and AESWrap wrappings are not supported.
//!
//! This module turns plaintext into a body and metadata and back; `s3.rs` (feature `s3`) puts and
//! gets such objects over the S3 transport ([`crate::s3`]).
//!
//! # What a streaming caller may have received before a failure
//!
//! The one GCM tag is at the end of the object, so a streaming decryption produces plaintext before
//! it can know whether the object is authentic. [`ContentDecryptor`] therefore always holds back
//! the last [`HOLD_BACK`] bytes of plaintext (all of it for a smaller object) until the tag has
//! verified: after an error, the output has received a strict prefix of the plaintext, never the
//! whole of it, and that prefix is unauthenticated. A caller writing to a file must write to a
//! temporary file and rename it only on `Ok`. [`ObjectDecryptor::decrypt_to_vec`] returns
//! nothing unless everything verified.
//!
//! ```
//! use std::collections::BTreeMap;
//! use s3_crypto::s3ec::{AesKeyring, ContentMetadata, MetadataLookup, ObjectDecryptor, ObjectEncryptor};
//!
//! # fn main() -> Result<(), s3_crypto::Error> {
//! let keyring = AesKeyring::new(&[7u8; 32])?;
//! let (body, metadata) = ObjectEncryptor::new(&keyring).encrypt_to_vec(b"hello, S3")?;
//! let user_metadata: BTreeMap<String, String> = metadata.to_object_metadata()?;
//! assert_eq!(user_metadata["x-amz-c"], "115");
//!
//! // ... PutObject(body, user_metadata); GetObject ...
//! let MetadataLookup::Complete(read) = ContentMetadata::from_object_metadata(&user_metadata)? else {
//!     unreachable!("the metadata is complete")
//! };
//! let plaintext = ObjectDecryptor::new(&keyring).decrypt_to_vec(&read, &body)?;
//! assert_eq!(plaintext, b"hello, S3");
//! # Ok(())
//! # }
//! ```
//!
//! [spec]: https://github.com/awslabs/aws-encryption-sdk-specification/tree/master/s3-encryption

mod algorithms;
mod gcm;
mod keyring;
mod metadata;
#[cfg(feature = "s3")]
mod s3;

use std::io::{Read, Write};

pub use algorithms::{
    ContentAlgorithm, WrappingAlgorithm, COMMITMENT_LEN, DATA_KEY_LEN, MESSAGE_ID_LEN,
};
pub use keyring::{
    check_kms_encryption_context, kms_encryption_context, AesKeyring, CEK_ALG_CONTEXT_KEY,
    KMS_CMK_ID_CONTEXT_KEY,
};
pub use metadata::{
    ContentMetadata, ContentParameters, MetadataLookup, INSTRUCTION_FILE_MARKER,
    INSTRUCTION_FILE_SUFFIX,
};
#[cfg(feature = "s3")]
pub use s3::{
    get_decrypted_object, get_decrypted_object_with, put_encrypted_object,
    put_encrypted_object_multipart, put_encrypted_object_stream, read_metadata, MetadataStorage,
    MAX_INSTRUCTION_FILE_LEN,
};

/// The metadata keys, without the `x-amz-meta-` prefix.
pub mod keys {
    pub use super::metadata::{
        CEK_ALG, CONTENT_CIPHER_V3, ENCRYPTED_DATA_KEY_V3, ENCRYPTION_CONTEXT_V3, IV,
        KEY_COMMITMENT_V3, KEY_V1, KEY_V2, MATDESC, MAT_DESC_V3, MESSAGE_ID_V3, TAG_LEN, WRAP_ALG,
        WRAP_ALG_V3,
    };
}

use crate::block_on::block_on;
use crate::data_key::{Keyring, WrappedDataKey};
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::esdk::stream::read_full;
use crate::policy::CommitmentPolicy;
use gcm::{StreamingGcm, IV_LEN, TAG_LEN};

/// The GCM tag length: a body is always exactly this much longer than its plaintext.
pub const TAG_LENGTH: usize = TAG_LEN;
/// The largest plaintext one object may have (the GCM limit, 2^36 − 32 bytes).
pub const MAX_PLAINTEXT_LENGTH: u64 = gcm::MAX_PLAINTEXT_LEN;
/// How much plaintext a streaming decryption holds back until the tag has verified.
pub const HOLD_BACK: usize = 64 * 1024;

const READ_CHUNK: usize = 64 * 1024;

// ------------------------------------------------------------------------------------------------
// Encryption

/// Encrypts objects: chooses the content algorithm and gets a data key from the keyring.
pub struct ObjectEncryptor<'k> {
    keyring: &'k dyn Keyring,
    algorithm: Option<ContentAlgorithm>,
    policy: CommitmentPolicy,
    encryption_context: EncryptionContext,
}

impl std::fmt::Debug for ObjectEncryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectEncryptor")
            .field("algorithm", &self.algorithm)
            .field("policy", &self.policy)
            .field("encryption_context", &self.encryption_context)
            .finish_non_exhaustive()
    }
}

impl<'k> ObjectEncryptor<'k> {
    /// An encryptor writing V3 objects under the default policy.
    pub fn new(keyring: &'k dyn Keyring) -> Self {
        Self {
            keyring,
            algorithm: None,
            policy: CommitmentPolicy::default(),
            encryption_context: EncryptionContext::new(),
        }
    }

    /// The content algorithm (and so the layout). Default: the one the policy allows, which is
    /// [`ContentAlgorithm::AesGcmCommitKey`] unless the policy is
    /// [`ForbidEncryptAllowDecrypt`](CommitmentPolicy::ForbidEncryptAllowDecrypt).
    pub fn content_algorithm(mut self, algorithm: ContentAlgorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// The commitment policy; the content algorithm must agree with it.
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The encryption context (KMS keyrings only).
    pub fn encryption_context(mut self, context: impl Into<EncryptionContext>) -> Self {
        self.encryption_context = context.into();
        self
    }

    fn algorithm(&self) -> Result<ContentAlgorithm> {
        match self.algorithm {
            None if self.policy.allows_encrypt(true) => Ok(ContentAlgorithm::AesGcmCommitKey),
            None => Ok(ContentAlgorithm::AesGcm),
            Some(a) => {
                self.policy.check_encrypt(a.suite_id(), a.is_committing())?;
                Ok(a)
            }
        }
    }

    /// Gets a data key and starts an object.
    pub async fn begin(&self) -> Result<ContentEncryptor> {
        let algorithm = self.algorithm()?;
        let wrapped = self
            .keyring
            .on_encrypt_object(algorithm, &self.encryption_context)
            .await?;
        ContentEncryptor::new(algorithm, wrapped)
    }

    /// Encrypts `input` to `output` (blocking; keyrings that need an async runtime must be used
    /// through [`begin`](Self::begin)). Returns the plaintext length and the metadata.
    pub fn encrypt<R: Read, W: Write>(
        &self,
        input: R,
        output: W,
    ) -> Result<(u64, ContentMetadata)> {
        let enc = block_on(self.begin())?;
        let metadata = enc.metadata().clone();
        let n = enc.encrypt_stream(input, output)?;
        Ok((n, metadata))
    }

    /// Encrypts a whole object in memory: `(body, metadata)`.
    pub fn encrypt_to_vec(&self, plaintext: &[u8]) -> Result<(Vec<u8>, ContentMetadata)> {
        let mut enc = block_on(self.begin())?;
        let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
        enc.update(plaintext, &mut body)?;
        let metadata = enc.metadata().clone();
        enc.finish(&mut body);
        Ok((body, metadata))
    }
}

/// One object being encrypted: feed plaintext, then [`finish`](Self::finish) appends the tag.
pub struct ContentEncryptor {
    gcm: StreamingGcm,
    metadata: ContentMetadata,
}

impl std::fmt::Debug for ContentEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentEncryptor")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl ContentEncryptor {
    fn new(algorithm: ContentAlgorithm, wrapped: WrappedDataKey) -> Result<Self> {
        let (gcm, content) = match algorithm {
            ContentAlgorithm::AesGcm => {
                let iv: [u8; IV_LEN] = random_nonzero()?;
                let gcm = StreamingGcm::new(wrapped.data_key.as_bytes(), &iv, b"")?;
                (gcm, ContentParameters::AesGcm { iv })
            }
            ContentAlgorithm::AesGcmCommitKey => {
                let message_id: [u8; MESSAGE_ID_LEN] = random_nonzero()?;
                let derived = algorithms::derive(&wrapped.data_key, &message_id)?;
                let gcm = StreamingGcm::new(
                    &derived.content_key[..],
                    &[1u8; IV_LEN],
                    &algorithm.suite_id().to_be_bytes(),
                )?;
                (
                    gcm,
                    ContentParameters::AesGcmCommitKey {
                        message_id,
                        commitment: derived.commitment,
                    },
                )
            }
        };
        Ok(Self {
            gcm,
            metadata: ContentMetadata {
                content,
                wrapping: wrapped.wrapping,
                encrypted_data_key: wrapped.encrypted_data_key,
                context: wrapped.context,
            },
        })
    }

    /// The object's metadata (complete from the start: nothing in it depends on the content).
    pub fn metadata(&self) -> &ContentMetadata {
        &self.metadata
    }

    /// Encrypts more plaintext, appending ciphertext to `out`.
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.gcm.encrypt(plaintext, out)
    }

    /// Ends the object, appending the tag to `out`.
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.gcm.tag());
    }

    /// Encrypts all of `input` to `output`; returns the plaintext length.
    pub fn encrypt_stream<R: Read, W: Write>(mut self, mut input: R, mut output: W) -> Result<u64> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out = Vec::with_capacity(READ_CHUNK + TAG_LEN);
        let mut total = 0u64;
        loop {
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            out.clear();
            self.update(&buf[..n], &mut out)?;
            output.write_all(&out)?;
        }
        out.clear();
        self.finish(&mut out);
        output.write_all(&out)?;
        output.flush()?;
        Ok(total)
    }
}

fn random_nonzero<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    crate::random::fill(&mut b)?;
    // All zeros is valid but far likelier a broken generator than chance (the spec's SHOULD).
    if b.iter().all(|&x| x == 0) {
        return Err(Error::Crypto);
    }
    Ok(b)
}

// ------------------------------------------------------------------------------------------------
// Decryption

/// Decrypts objects: checks the commitment policy, unwraps the data key, verifies the key
/// commitment.
pub struct ObjectDecryptor<'k> {
    keyring: &'k dyn Keyring,
    policy: CommitmentPolicy,
    encryption_context: EncryptionContext,
}

impl std::fmt::Debug for ObjectDecryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDecryptor")
            .field("policy", &self.policy)
            .field("encryption_context", &self.encryption_context)
            .finish_non_exhaustive()
    }
}

impl<'k> ObjectDecryptor<'k> {
    /// A decryptor under the default policy (key-committing V3 objects only).
    pub fn new(keyring: &'k dyn Keyring) -> Self {
        Self {
            keyring,
            policy: CommitmentPolicy::default(),
            encryption_context: EncryptionContext::new(),
        }
    }

    /// The commitment policy: V2 objects are read only under one that allows decrypting them.
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The encryption context the object must have been encrypted with (KMS: exactly this, apart
    /// from the client's own `aws:x-amz-cek-alg`).
    pub fn encryption_context(mut self, context: impl Into<EncryptionContext>) -> Self {
        self.encryption_context = context.into();
        self
    }

    /// Checks the policy, gets the data key, verifies the commitment, and starts decrypting.
    pub async fn begin(&self, metadata: &ContentMetadata) -> Result<ContentDecryptor> {
        let algorithm = metadata.content_algorithm();
        // Before anything else, as the specification requires.
        if !self.policy.allows_decrypt(algorithm.is_committing()) {
            return Err(Error::CommitmentPolicyViolation(algorithm.suite_id()));
        }
        let data_key = self
            .keyring
            .on_decrypt_object(metadata, &self.encryption_context)
            .await?;
        if data_key.as_bytes().len() != DATA_KEY_LEN {
            return Err(Error::Keyring(format!(
                "the keyring returned a data key of {} bytes",
                data_key.as_bytes().len()
            )));
        }
        let gcm = match &metadata.content {
            ContentParameters::AesGcm { iv } => StreamingGcm::new(data_key.as_bytes(), iv, b"")?,
            ContentParameters::AesGcmCommitKey {
                message_id,
                commitment,
            } => {
                let derived = algorithms::derive(&data_key, message_id)?;
                aws_lc_rs::constant_time::verify_slices_are_equal(&derived.commitment, commitment)
                    .map_err(|_| Error::CommitmentMismatch)?;
                StreamingGcm::new(
                    &derived.content_key[..],
                    &[1u8; IV_LEN],
                    &algorithm.suite_id().to_be_bytes(),
                )?
            }
        };
        Ok(ContentDecryptor {
            gcm,
            tail: Vec::with_capacity(TAG_LEN),
            held: Vec::new(),
        })
    }

    /// Decrypts `input` (the whole body) to `output` (blocking). See the [module
    /// documentation](self) for what `output` may have received when this fails.
    pub fn decrypt<R: Read, W: Write>(
        &self,
        metadata: &ContentMetadata,
        input: R,
        output: W,
    ) -> Result<u64> {
        block_on(self.begin(metadata))?.decrypt_stream(input, output)
    }

    /// Decrypts a whole body in memory; the plaintext only if all of it is authentic.
    pub fn decrypt_to_vec(&self, metadata: &ContentMetadata, body: &[u8]) -> Result<Vec<u8>> {
        // The whole body is here: no hold-back needed, decrypt it in one pass, then check the tag.
        let mut dec = block_on(self.begin(metadata))?;
        let n = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Truncated("the object body is shorter than its tag"))?;
        let mut out = Vec::with_capacity(n);
        dec.gcm.decrypt(&body[..n], &mut out)?;
        if !dec.gcm.verify(&body[n..]) {
            return Err(Error::TamperedObject);
        }
        Ok(out)
    }
}

/// One object being decrypted. [`update`](Self::update) releases plaintext that is **not yet
/// authenticated**, holding back the last [`HOLD_BACK`] bytes; [`finish`](Self::finish) verifies
/// the tag and only then releases them.
pub struct ContentDecryptor {
    gcm: StreamingGcm,
    /// The last bytes seen: the tag, once the input ends.
    tail: Vec<u8>,
    /// Decrypted plaintext not yet released.
    held: Vec<u8>,
}

impl std::fmt::Debug for ContentDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDecryptor").finish_non_exhaustive()
    }
}

impl ContentDecryptor {
    /// Takes more of the body; appends plaintext beyond the held-back amount to `out`.
    pub fn update(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<()> {
        // Everything except the last TAG_LEN bytes seen so far is ciphertext.
        let total = self.tail.len() + body.len();
        if total <= TAG_LEN {
            self.tail.extend_from_slice(body);
            return Ok(());
        }
        let ciphertext_len = total - TAG_LEN;
        let from_tail = ciphertext_len.min(self.tail.len());
        let from_body = ciphertext_len - from_tail;
        self.gcm.decrypt(&self.tail[..from_tail], &mut self.held)?;
        self.tail.drain(..from_tail);
        self.gcm.decrypt(&body[..from_body], &mut self.held)?;
        self.tail.extend_from_slice(&body[from_body..]);
        if self.held.len() > HOLD_BACK {
            let release = self.held.len() - HOLD_BACK;
            out.extend(self.held.drain(..release));
        }
        Ok(())
    }

    /// Verifies the tag; on success appends the held-back plaintext to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.tail.len() < TAG_LEN {
            return Err(Error::Truncated("the object body is shorter than its tag"));
        }
        let tail = std::mem::take(&mut self.tail);
        let held = std::mem::take(&mut self.held);
        if !self.gcm.verify(&tail) {
            return Err(Error::TamperedObject);
        }
        out.extend_from_slice(&held);
        Ok(())
    }

    /// Decrypts all of `input` to `output`; returns the plaintext length.
    pub fn decrypt_stream<R: Read, W: Write>(mut self, mut input: R, mut output: W) -> Result<u64> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out = Vec::with_capacity(READ_CHUNK);
        let mut total = 0u64;
        loop {
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            out.clear();
            self.update(&buf[..n], &mut out)?;
            output.write_all(&out)?;
            total += out.len() as u64;
        }
        out.clear();
        self.finish(&mut out)?;
        output.write_all(&out)?;
        output.flush()?;
        total += out.len() as u64;
        Ok(total)
    }
}
