//! The [AWS Encryption SDK message format][spec], so that files and objects round-trip with the AWS
//! Encryption SDK and its CLI:
//!
//! - **writes** format version 2 with the key-committing suites 0x0478 (AES-256-GCM, HKDF-SHA512,
//!   key commitment) and 0x0578 (the same with an ECDSA P-384 signature), framed content, any frame
//!   length;
//! - **reads** those, and every version 1 suite the ESDK can write (0x0014 … 0x0378, with and without
//!   signatures), framed and non-framed. Version 1 messages do not commit to their key and are refused
//!   unless a policy that allows decrypting them is chosen
//!   ([`CommitmentPolicy`](crate::CommitmentPolicy)`::RequireEncryptAllowDecrypt` or
//!   `ForbidEncryptAllowDecrypt`).
//!
//! - `message/`: the byte layout (header, frames, footer, suites, key derivation, signatures);
//! - [`stream`]: encryption and decryption that stream with memory bounded by the frame length,
//!   frames sealed and opened in parallel;
//! - [`keyring`]: the raw AES and multi keyrings (the KMS keyring is shared: `kms.rs`);
//! - [`pipeline`] and [`s3`] (feature `s3`): framed objects, a message stored as an S3 object,
//!   uploaded in parallel parts and read back whole or by byte range.
//!
//! [spec]: https://github.com/awslabs/aws-encryption-sdk-specification

pub mod keyring;
pub(crate) mod message;
#[cfg(feature = "s3")]
pub mod pipeline;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stream;

/// The default limit on encrypted data keys per message on decrypt.
pub const DEFAULT_MAX_ENCRYPTED_DATA_KEYS: usize = 16;

/// The default limit on what decryption buffers at once: one frame, or a whole non-framed body
/// (plaintext bytes). A message whose header announces longer frames is refused before anything
/// of its body is read (`Error::ContentTooLarge`); the AWS Encryption SDK has the same kind of
/// limit (`max_body_length` in Python). Raise it with `Decryptor::max_buffered_content`.
pub const DEFAULT_MAX_BUFFERED_CONTENT: u64 = 256 * 1024 * 1024;

/// The default budget of frame buffers that parallel encryption and decryption hold at once,
/// whatever the thread count: `2 × threads + 2` batches of about 1 MiB of frames, cut down to this
/// (at least one frame). With the default 64 KiB frames it binds only above 30 threads.
pub const DEFAULT_FRAME_MEMORY: usize = 64 * 1024 * 1024;

/// The default frame length for encryption: 64 KiB, chosen by measurement (see the README: 4 KiB
/// frames are ~20% slower, 4 MiB frames leave L2, 64–256 KiB are level).
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;
