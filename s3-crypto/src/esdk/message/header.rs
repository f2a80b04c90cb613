//! The message header: format version, suite, message id, encryption context, encrypted data keys,
//! content type, frame length, key commitment, and the header authentication tag.

use std::io::Read;

use aws_lc_rs::aead;

use crate::data_key::EncryptedDataKey;
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::esdk::message::reader::Input;
use crate::esdk::message::suite::{AlgorithmSuite, COMMITMENT_LEN, IV_LEN, TAG_LEN};
use crate::esdk::DEFAULT_MAX_ENCRYPTED_DATA_KEYS;

/// How the message body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// One AES-GCM block for the whole plaintext (read only; 0x01).
    NonFramed,
    /// A sequence of frames of the header's frame length, ending with a final frame (0x02).
    Framed,
}

impl ContentType {
    fn byte(self) -> u8 {
        match self {
            Self::NonFramed => 0x01,
            Self::Framed => 0x02,
        }
    }
}

/// The type byte of version 1 headers: "customer authenticated encrypted data".
const V1_TYPE: u8 = 0x80;

/// A parsed (or freshly built) message header.
#[derive(Clone, Debug)]
pub struct Header {
    pub(crate) suite: AlgorithmSuite,
    pub(crate) message_id: Vec<u8>,
    pub(crate) encryption_context: EncryptionContext,
    pub(crate) encrypted_data_keys: Vec<EncryptedDataKey>,
    pub(crate) content_type: ContentType,
    pub(crate) frame_length: u32,
    /// Version 2 algorithm suite data: the key commitment.
    pub(crate) commitment: Option<[u8; COMMITMENT_LEN]>,
    /// Version 1 header authentication IV.
    pub(crate) header_iv: [u8; IV_LEN],
    pub(crate) auth_tag: [u8; TAG_LEN],
    /// The serialized header body exactly as received or written: the header authentication AAD.
    pub(crate) body_bytes: Vec<u8>,
}

/// What header parsing enforces before it reads the rest of the message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderLimits {
    pub(crate) max_encrypted_data_keys: usize,
    pub(crate) allow_non_committing: bool,
}

impl Header {
    /// The algorithm suite.
    pub fn suite(&self) -> AlgorithmSuite {
        self.suite
    }

    /// The message format version (1 or 2).
    pub fn format_version(&self) -> u8 {
        self.suite.message_format_version()
    }

    /// The message id (16 bytes in version 1, 32 in version 2).
    pub fn message_id(&self) -> &[u8] {
        &self.message_id
    }

    /// The encryption context stored in the header (including `aws-crypto-public-key` for signed
    /// suites).
    pub fn encryption_context(&self) -> &EncryptionContext {
        &self.encryption_context
    }

    /// The encrypted data keys.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.encrypted_data_keys
    }

    /// Framed or non-framed.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The plaintext length of each regular frame (0 for non-framed content).
    pub fn frame_length(&self) -> u32 {
        self.frame_length
    }

    /// The serialized header: body followed by the authentication fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body_bytes.clone();
        out.extend_from_slice(&self.auth_bytes());
        out
    }

    pub(crate) fn auth_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IV_LEN + TAG_LEN);
        if self.format_version() == 1 {
            out.extend_from_slice(&self.header_iv);
        }
        out.extend_from_slice(&self.auth_tag);
        out
    }

    /// Builds a version 2 header (the only version this crate writes) and computes its
    /// authentication tag with the content key.
    pub(crate) fn new_v2(
        suite: AlgorithmSuite,
        message_id: Vec<u8>,
        encryption_context: EncryptionContext,
        encrypted_data_keys: Vec<EncryptedDataKey>,
        frame_length: u32,
        commitment: [u8; COMMITMENT_LEN],
        content_key: &aead::LessSafeKey,
    ) -> Result<Self> {
        let mut b = Vec::with_capacity(256);
        b.push(2);
        b.extend_from_slice(&suite.id().to_be_bytes());
        b.extend_from_slice(&message_id);
        let ctx = encryption_context.serialize()?;
        push_u16_len(&mut b, &ctx, "encryption context")?;
        let count = u16::try_from(encrypted_data_keys.len()).map_err(|_| {
            Error::InvalidConfiguration("more than 65535 encrypted data keys".into())
        })?;
        b.extend_from_slice(&count.to_be_bytes());
        for edk in &encrypted_data_keys {
            push_u16_len(&mut b, edk.provider_id.as_bytes(), "key provider id")?;
            push_u16_len(&mut b, &edk.provider_info, "key provider info")?;
            push_u16_len(&mut b, &edk.ciphertext, "encrypted data key")?;
        }
        b.push(ContentType::Framed.byte());
        b.extend_from_slice(&frame_length.to_be_bytes());
        b.extend_from_slice(&commitment);
        let header_iv = [0u8; IV_LEN];
        let tag = content_key.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(header_iv),
            aead::Aad::from(&b),
            &mut [],
        )?;
        let mut auth_tag = [0u8; TAG_LEN];
        auth_tag.copy_from_slice(tag.as_ref());
        Ok(Self {
            suite,
            message_id,
            encryption_context,
            encrypted_data_keys,
            content_type: ContentType::Framed,
            frame_length,
            commitment: Some(commitment),
            header_iv,
            auth_tag,
            body_bytes: b,
        })
    }

    /// Reads and parses a header (version 1 or 2). Enforces the limits as early as possible: the
    /// commitment policy right after the suite id, the data key limit before any key is read.
    pub(crate) fn read<R: Read>(input: &mut Input<R>, limits: HeaderLimits) -> Result<Self> {
        const T: &str = "inside the header";
        input.start_recording();
        let version = input.u8(T)?;
        if version != 1 && version != 2 {
            return Err(Error::UnsupportedVersion(version));
        }
        if version == 1 && input.u8(T)? != V1_TYPE {
            return Err(Error::MalformedHeader("unknown message type"));
        }
        let suite = AlgorithmSuite::from_id(input.u16(T)?)?;
        if suite.message_format_version() != version {
            return Err(Error::MalformedHeader(
                "algorithm suite does not belong to this format version",
            ));
        }
        if !suite.is_committing() && !limits.allow_non_committing {
            return Err(Error::CommitmentPolicyViolation(suite.id()));
        }
        let message_id = input.bytes(suite.message_id_len(), T)?;
        let ctx_len = input.u16(T)?;
        let ctx_bytes = input.bytes(usize::from(ctx_len), T)?;
        let encryption_context = EncryptionContext::deserialize(&ctx_bytes)?;
        let count = usize::from(input.u16(T)?);
        if count == 0 {
            return Err(Error::MalformedHeader("no encrypted data keys"));
        }
        if count > limits.max_encrypted_data_keys {
            return Err(Error::TooManyEncryptedDataKeys {
                count,
                max: limits.max_encrypted_data_keys,
            });
        }
        // Grown as keys arrive: the count is the input's word, up to the caller's limit.
        let mut encrypted_data_keys =
            Vec::with_capacity(count.min(DEFAULT_MAX_ENCRYPTED_DATA_KEYS));
        for _ in 0..count {
            let len = input.u16(T)?;
            let provider_id = String::from_utf8(input.bytes(usize::from(len), T)?)
                .map_err(|_| Error::MalformedHeader("key provider id is not UTF-8"))?;
            let len = input.u16(T)?;
            let provider_info = input.bytes(usize::from(len), T)?;
            let len = input.u16(T)?;
            let ciphertext = input.bytes(usize::from(len), T)?;
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        let content_type = match input.u8(T)? {
            0x01 => ContentType::NonFramed,
            0x02 => ContentType::Framed,
            _ => return Err(Error::MalformedHeader("unknown content type")),
        };
        if version == 1 {
            if input.array::<4>(T)? != [0; 4] {
                return Err(Error::MalformedHeader("reserved bytes are not zero"));
            }
            if usize::from(input.u8(T)?) != IV_LEN {
                return Err(Error::MalformedHeader("IV length is not 12"));
            }
        }
        let frame_length = input.u32(T)?;
        match (content_type, frame_length) {
            (ContentType::NonFramed, 0) | (ContentType::Framed, 1..) => {}
            (ContentType::NonFramed, _) => {
                return Err(Error::MalformedHeader(
                    "non-framed content with a frame length",
                ))
            }
            (ContentType::Framed, 0) => {
                return Err(Error::MalformedHeader("framed content with frame length 0"))
            }
        }
        let commitment = if version == 2 {
            Some(input.array::<COMMITMENT_LEN>(T)?)
        } else {
            None
        };
        let body_bytes = input.take_recording();
        let header_iv = if version == 1 {
            input.array::<IV_LEN>(T)?
        } else {
            [0; IV_LEN]
        };
        let auth_tag = input.array::<TAG_LEN>(T)?;
        Ok(Self {
            suite,
            message_id,
            encryption_context,
            encrypted_data_keys,
            content_type,
            frame_length,
            commitment,
            header_iv,
            auth_tag,
            body_bytes,
        })
    }

    /// Verifies the header authentication tag with the content key.
    pub(crate) fn verify_auth(&self, content_key: &aead::LessSafeKey) -> Result<()> {
        let mut tag = self.auth_tag;
        content_key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(self.header_iv),
                aead::Aad::from(&self.body_bytes),
                &mut tag,
            )
            .map(|_| ())
            .map_err(|_| Error::TamperedHeader)
    }
}

fn push_u16_len(out: &mut Vec<u8>, field: &[u8], what: &str) -> Result<()> {
    let len = u16::try_from(field.len())
        .map_err(|_| Error::InvalidConfiguration(format!("{what} is longer than 65535 bytes")))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}
