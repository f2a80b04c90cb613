//! Encrypted-object formats for envelope.
//!
//! This crate reads and writes the [AWS Encryption SDK message format][spec] so that files and objects
//! round-trip with the AWS Encryption SDK and its CLI:
//!
//! - **writes** format version 2 with the key-committing suites 0x0478 (AES-256-GCM, HKDF-SHA512,
//!   key commitment) and 0x0578 (the same with an ECDSA P-384 signature), framed content, any frame
//!   length;
//! - **reads** those, and every version 1 suite the ESDK can write (0x0014 … 0x0378, with and without
//!   signatures), framed and non-framed. Version 1 messages do not commit to their key and are refused
//!   unless [`CommitmentPolicy::RequireEncryptAllowDecrypt`] is chosen.
//!
//! Objects in the Amazon S3 Encryption Client's format (V3 and V2 metadata, instruction files) are
//! in [`s3ec`]; the S3 transport (PutObject/UploadPart with `Content-MD5`) is `s3` (feature `s3`).
//!
//! Data keys come from a [`Keyring`]: [`RawAesKeyring`] (a customer-supplied AES key, as the ESDK
//! specifies it), `KmsKeyring` (a KMS-compatible key service through the AWS SDK; the default
//! `kms` feature) and [`MultiKeyring`].
//!
//! Encryption and decryption stream with memory bounded by the frame length. Frames are sealed and
//! opened by a [`FrameKey`] given their sequence number, so they can be processed in parallel.
//! Decryption never hands out the final frame before the whole message (final frame, signature,
//! end of input) has verified; see [`stream`] for exactly what a caller may have received before an
//! error.
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
mod encryption_context;
mod error;
pub mod keyring;
#[cfg(feature = "s3")]
pub mod md5;
mod message;
mod policy;
mod random;
mod range;
#[cfg(feature = "s3")]
pub mod s3;
pub mod s3ec;
pub mod stream;

pub use encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY, RESERVED_PREFIX};
pub use error::{Error, Result};
pub use keyring::{
    DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring, KeyringFuture,
    MultiKeyring, RawAesKeyring,
};
#[cfg(feature = "kms")]
pub use keyring::{DiscoveryFilter, KmsArn, KmsClientBuilder, KmsKeyring, KMS_PROVIDER_ID};
pub use message::frame::{
    body_len, final_frame_len, regular_frame_len, FrameBuffer, FrameKey, FrameKind,
};
pub use message::header::{ContentType, Header};
pub use message::signature::SigningKey;
pub use message::suite::AlgorithmSuite;
pub use policy::{
    CommitmentPolicy, DEFAULT_FRAME_LENGTH, DEFAULT_MAX_BUFFERED_CONTENT,
    DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};
pub use range::ByteRange;
pub use stream::{Decryptor, Encryptor, MessageDecryptor, MessageEncryptor, ReadAt};
