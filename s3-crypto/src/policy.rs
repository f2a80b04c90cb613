//! Commitment policy and decryption limits.

/// Which messages may be decrypted, as the AWS Encryption SDK's commitment policy.
///
/// This crate always encrypts with a key-committing suite, so only the decrypt half varies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitmentPolicy {
    /// Decrypt only key-committing (format version 2) messages. The default, as in the ESDK.
    #[default]
    RequireEncryptRequireDecrypt,
    /// Also decrypt messages of the version 1 suites, which do not commit to their data key. An
    /// explicit opt-in for reading messages written by older ESDKs.
    RequireEncryptAllowDecrypt,
}

/// The default limit on encrypted data keys per message on decrypt.
pub const DEFAULT_MAX_ENCRYPTED_DATA_KEYS: usize = 16;

/// The default limit on what decryption buffers at once: one frame, or a whole non-framed body.
pub const DEFAULT_MAX_BUFFERED_CONTENT: u64 = 256 * 1024 * 1024;

/// The default frame length for encryption: 64 KiB, chosen by measurement (see the README: 4 KiB
/// frames are ~20% slower, 4 MiB frames leave L2, 64–256 KiB are level).
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;
