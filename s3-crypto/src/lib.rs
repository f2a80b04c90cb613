//! Encrypted-object formats for envelope, each in its own module, over one set of keyrings:
//!
//! - [`esdk`]: the [AWS Encryption SDK message format][spec] (files, streams, and framed S3
//!   objects that upload in parallel parts and decrypt by byte range), so that they round-trip with
//!   the AWS Encryption SDK and its CLI;
//! - [`s3ec`]: objects in the Amazon S3 Encryption Client's format (V3 and V2 metadata, instruction
//!   files), so that they round-trip with the official clients;
//! - `s3` (feature `s3`): the S3 transport only (PutObject/UploadPart with `Content-MD5`,
//!   multipart, server-side encryption, retries, ETag checks), which both formats' `s3` modules use.
//!
//! Shared by both formats: the data key and the one [`Keyring`] trait (`data_key.rs`);
//! [`KmsKeyring`], [`KmsArn`], [`DiscoveryFilter`] and [`KmsClientBuilder`] (`kms.rs`, default
//! feature `kms`); the [`EncryptionContext`]; the [`CommitmentPolicy`]; the [`Error`] type; the
//! [`ByteRange`] of a ranged read; and `Content-MD5` (`md5`).
//!
//! Data keys of messages come from [`RawAesKeyring`] (a customer-supplied AES key, as the ESDK
//! specifies it), `KmsKeyring` and [`MultiKeyring`]; data keys of S3 Encryption Client objects
//! from [`s3ec::AesKeyring`] or `KmsKeyring`.
//!
//! Encryption and decryption of messages stream with memory bounded by the frame length. Frames are
//! sealed and opened by a [`FrameKey`] given their sequence number, so they can be processed in
//! parallel. Decryption never hands out the final frame before the whole message (final frame,
//! signature, end of input) has verified; see [`esdk::stream`] for exactly what a caller may have
//! received before an error.
//!
//! ```
//! use s3_crypto::{Decryptor, EncryptionContext, Encryptor, RawAesKeyring};
//!
//! # fn main() -> Result<(), s3_crypto::Error> {
//! let keyring = RawAesKeyring::new("my-namespace", "my-key", &[7u8; 32])?;
//! let context: EncryptionContext = [("purpose", "example")].into_iter().collect();
//!
//! let message = Encryptor::new(&keyring)
//!     .frame_length(4096)
//!     .encryption_context(context.clone())
//!     .encrypt_to_vec(b"hello, envelope")?;
//!
//! let (plaintext, header) = Decryptor::new(&keyring)
//!     .required_context(context)
//!     .decrypt_to_vec(&message)?;
//! assert_eq!(plaintext, b"hello, envelope");
//! assert_eq!(header.encryption_context().get("purpose"), Some("example"));
//! # Ok(())
//! # }
//! ```
//!
//! [spec]: https://github.com/awslabs/aws-encryption-sdk-specification

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod block_on;
mod data_key;
mod encryption_context;
mod error;
pub mod esdk;
#[cfg(feature = "kms")]
mod kms;
#[cfg(feature = "s3")]
pub mod md5;
mod policy;
mod random;
mod range;
#[cfg(test)]
mod redaction_tests;
#[cfg(feature = "s3")]
pub mod s3;
pub mod s3ec;

pub use data_key::{
    DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring, KeyringFuture,
    WrappedDataKey,
};
pub use encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY, RESERVED_PREFIX};
pub use error::{Error, Result};
pub use esdk::keyring::{MultiKeyring, RawAesKeyring};
pub use esdk::message::frame::{
    body_len, final_frame_len, regular_frame_len, FrameBuffer, FrameKey, FrameKind,
};
pub use esdk::message::header::{ContentType, Header};
pub use esdk::message::signature::SigningKey;
pub use esdk::message::suite::AlgorithmSuite;
pub use esdk::stream::{Decryptor, Encryptor, MessageDecryptor, MessageEncryptor, ReadAt};
pub use esdk::{
    DEFAULT_FRAME_LENGTH, DEFAULT_MAX_BUFFERED_CONTENT, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};
#[cfg(feature = "kms")]
pub use kms::{
    DiscoveryFilter, KmsArn, KmsClientBuilder, KmsKeyring, DEFAULT_READ_TIMEOUT, KMS_PROVIDER_ID,
};
pub use policy::CommitmentPolicy;
pub use range::ByteRange;
