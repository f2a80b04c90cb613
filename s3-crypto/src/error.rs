//! The one error type of this crate.
//!
//! Messages name what went wrong and where (frame numbers, suite ids, counts); they never contain key
//! material, plaintext, or encrypted data keys.

/// Everything that can go wrong while encrypting or decrypting a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No keyring could decrypt any of the message's encrypted data keys: the wrong wrapping key, a key
    /// name or namespace that does not match, or a tampered encrypted data key.
    #[error(
        "no keyring could decrypt any of the message's {count} encrypted data key(s) (wrong key?)"
    )]
    NoDataKeyDecrypted {
        /// How many encrypted data keys the message carries.
        count: usize,
    },
    /// The message's encryption context lacks a pair the caller required, or has another value for it.
    #[error("encryption context mismatch: {0}")]
    EncryptionContextMismatch(String),
    /// The message ended early: inside the header, inside a frame, before the final frame, or before
    /// the signature footer.
    #[error("message truncated: {0}")]
    Truncated(&'static str),
    /// A header field has a value the format does not allow (reserved bytes, IV length, counts).
    #[error("malformed header: {0}")]
    MalformedHeader(&'static str),
    /// The header authentication tag does not verify: the header was modified after encryption.
    #[error("header authentication failed: the header was tampered with")]
    TamperedHeader,
    /// A frame (or the single block of non-framed content) failed authentication: its bytes were
    /// modified, or it was moved from another position or another message.
    #[error("frame {sequence} failed authentication: tampered or out of place")]
    TamperedFrame {
        /// The sequence number of the frame (1 for non-framed content).
        sequence: u32,
    },
    /// Frames are out of order: a frame carries another sequence number than the next one expected.
    #[error("frame out of sequence: expected frame {expected}, found frame {found}")]
    FrameSequence {
        /// The sequence number that should come next.
        expected: u32,
        /// The sequence number found.
        found: u32,
    },
    /// The message body is structurally invalid (a final frame longer than the frame length,
    /// a content length above the format's limit).
    #[error("malformed message body: {0}")]
    MalformedBody(&'static str),
    /// The ECDSA signature in the footer does not verify over the header and body.
    #[error("message signature does not verify")]
    BadSignature,
    /// The key commitment in the header does not match the data key: the message was built to decrypt
    /// differently under different keys, or its header was modified.
    #[error("key commitment mismatch: the data key does not commit to this message")]
    CommitmentMismatch,
    /// The message carries more encrypted data keys than this decryptor accepts.
    #[error("message has {count} encrypted data keys, more than the limit of {max}")]
    TooManyEncryptedDataKeys {
        /// How many the message declares.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The message format version is not 1 or 2.
    #[error("unsupported message format version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The algorithm suite id is not one the AWS Encryption SDK defines for messages, or it is not
    /// valid for this operation (encryption writes only the key-committing suites).
    #[error("unsupported algorithm suite {0:#06x}")]
    UnsupportedAlgorithmSuite(u16),
    /// The message uses a suite without key commitment, and the commitment policy requires it
    /// (the default). Decrypting such messages is an explicit opt-in:
    /// [`CommitmentPolicy::RequireEncryptAllowDecrypt`](crate::CommitmentPolicy::RequireEncryptAllowDecrypt)
    /// or [`CommitmentPolicy::ForbidEncryptAllowDecrypt`](crate::CommitmentPolicy::ForbidEncryptAllowDecrypt).
    #[error(
        "algorithm suite {0:#06x} does not commit to its key; the commitment policy refuses it"
    )]
    CommitmentPolicyViolation(u16),
    /// Bytes follow the end of the message.
    #[error("unexpected data after the end of the message")]
    TrailingData,
    /// A frame or a non-framed body is larger than this decryptor buffers.
    #[error("content of {len} bytes exceeds the buffering limit of {max} bytes")]
    ContentTooLarge {
        /// The length the message declares.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// The encryption context cannot be used: a reserved `aws-crypto-` key, or too large to serialize.
    #[error("invalid encryption context: {0}")]
    InvalidEncryptionContext(String),
    /// A parameter is out of range (frame length, wrapping key length, key namespace).
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),
    /// A keyring failed for another reason than not holding the right key (for example a network
    /// error on the way to a key service).
    #[error("keyring failure: {0}")]
    Keyring(String),
    /// A byte range was asked of a signed message; its signature covers the whole message, so a
    /// range of it cannot be authenticated as the message's signer wrote it.
    #[error("a byte range of a signed message cannot be verified (its signature covers the whole message); decrypt it whole")]
    RangeOfSignedMessage,
    /// The byte range selects nothing of the plaintext (it starts at or after its end).
    #[error("byte range {range} is not satisfiable: the plaintext is {total} bytes")]
    RangeNotSatisfiable {
        /// The range asked for.
        range: String,
        /// The plaintext length.
        total: u64,
    },
    /// S3 Encryption Client metadata (object metadata or instruction file) is missing a key, has a
    /// malformed value, or mixes format versions.
    #[error("invalid S3 Encryption Client metadata: {0}")]
    InvalidS3ecMetadata(String),
    /// An S3 Encryption Client algorithm or format this crate does not read (V1, AES-CBC, RSA and
    /// AESWrap wrapping) or that needs an explicit opt-in.
    #[error("unsupported S3 Encryption Client object: {0}")]
    UnsupportedS3ecAlgorithm(String),
    /// An S3 Encryption Client object's GCM tag does not verify: its body or metadata was modified
    /// or truncated.
    #[error(
        "object authentication failed: the object or its metadata was tampered with or truncated"
    )]
    TamperedObject,
    /// An S3 request failed; the message has the S3 error code (`NoSuchKey`, `AccessDenied`, …)
    /// and the object.
    #[error("S3 {operation} failed: {message}")]
    S3 {
        /// The S3 operation.
        operation: &'static str,
        /// What S3 (or the connection) said.
        message: String,
    },
    /// The store kept answering that the bytes it received do not match their `Content-MD5`
    /// (`BadDigest`): the data is damaged on the way to the store.
    #[error("the store rejected the upload {attempts} times: the bytes it received do not match their Content-MD5 (BadDigest)")]
    ContentDigestMismatch {
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The store accepted a PutObject or UploadPart each time it was sent, but answered with an
    /// ETag that is an MD5 and not the MD5 of the bytes sent: what it stored is not what was sent
    /// (a store that ignores `Content-MD5`, damage after its check). After a PutObject the object
    /// has been replaced all the same; a multipart upload is aborted.
    #[error("the store answered {request} {attempts} times with ETag {etag}, which is not the MD5 of the bytes sent: what it holds is not what was sent")]
    StoredDigestMismatch {
        /// The S3 request (`PutObject`, `UploadPart (part 3)`).
        request: String,
        /// The last ETag the store answered.
        etag: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The download does not match its ETag (an MD5, or an MD5 of the parts' MD5s): the bytes were
    /// damaged on the way or the object changed while it was read.
    #[error("s3://{bucket}/{key}: the bytes received do not match the object's ETag {etag}")]
    EtagMismatch {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// The ETag the store announced.
        etag: String,
    },
    /// An object that is read whole into memory (an S3 Encryption Client instruction file) is
    /// longer than its limit; refused before its body is read when the store announces its length.
    #[error("s3://{bucket}/{key}: {what} longer than the limit of {max} bytes")]
    ObjectTooLarge {
        /// What the object is (`"an instruction file"`).
        what: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// The limit.
        max: u64,
    },
    /// The caller cancelled the transfer (Ctrl-C); a multipart upload was aborted.
    #[error("cancelled")]
    Cancelled,
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The cryptographic library failed (random generation, key setup). Not caused by the input.
    #[error("cryptographic library failure")]
    Crypto,
}

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Error::Crypto
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place_of_the_failure() {
        assert_eq!(
            Error::TamperedFrame { sequence: 7 }.to_string(),
            "frame 7 failed authentication: tampered or out of place"
        );
        assert_eq!(
            Error::FrameSequence {
                expected: 2,
                found: 3
            }
            .to_string(),
            "frame out of sequence: expected frame 2, found frame 3"
        );
        assert_eq!(
            Error::UnsupportedAlgorithmSuite(0x0479).to_string(),
            "unsupported algorithm suite 0x0479"
        );
        assert_eq!(
            Error::CommitmentPolicyViolation(0x0178).to_string(),
            "algorithm suite 0x0178 does not commit to its key; the commitment policy refuses it"
        );
        assert_eq!(
            Error::UnsupportedVersion(3).to_string(),
            "unsupported message format version 0x03"
        );
    }

    #[test]
    fn unspecified_crypto_errors_carry_nothing() {
        let e: Error = aws_lc_rs::error::Unspecified.into();
        assert!(matches!(e, Error::Crypto));
    }
}
