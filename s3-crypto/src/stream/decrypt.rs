//! Decryption: header, data key from the keyring, commitment, header authentication, frames,
//! signature, end of input.

use std::io::{BufReader, Read, Write};

use crate::block_on::block_on;
use crate::encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY};
use crate::error::{Error, Result};
use crate::keyring::{DecryptionMaterials, Keyring};
use crate::message::frame::{FrameKey, FrameKind, FINAL_FRAME_MARKER, MAX_NON_FRAMED_LEN};
use crate::message::header::{ContentType, Header, HeaderLimits};
use crate::message::kdf;
use crate::message::reader::Input;
use crate::message::signature::Verifier;
use crate::message::suite::{IV_LEN, TAG_LEN};
use crate::policy::{
    CommitmentPolicy, DEFAULT_MAX_BUFFERED_CONTENT, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};

/// Decrypts messages with a keyring.
pub struct Decryptor<'k> {
    keyring: &'k dyn Keyring,
    commitment_policy: CommitmentPolicy,
    max_encrypted_data_keys: usize,
    max_buffered_content: u64,
    required_context: EncryptionContext,
}

impl std::fmt::Debug for Decryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("commitment_policy", &self.commitment_policy)
            .field("max_encrypted_data_keys", &self.max_encrypted_data_keys)
            .field("max_buffered_content", &self.max_buffered_content)
            .field("required_context", &self.required_context)
            .finish_non_exhaustive()
    }
}

impl<'k> Decryptor<'k> {
    /// A decryptor with the defaults: committing messages only, at most
    /// [`DEFAULT_MAX_ENCRYPTED_DATA_KEYS`], frames (or non-framed bodies) up to
    /// [`DEFAULT_MAX_BUFFERED_CONTENT`], no required encryption context.
    pub fn new(keyring: &'k dyn Keyring) -> Self {
        Self {
            keyring,
            commitment_policy: CommitmentPolicy::default(),
            max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
            max_buffered_content: DEFAULT_MAX_BUFFERED_CONTENT,
            required_context: EncryptionContext::new(),
        }
    }

    /// The commitment policy (the default refuses version 1 messages).
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.commitment_policy = policy;
        self
    }

    /// The largest number of encrypted data keys a message may carry.
    pub fn max_encrypted_data_keys(mut self, max: usize) -> Self {
        self.max_encrypted_data_keys = max;
        self
    }

    /// The largest frame, or non-framed body, to buffer (plaintext bytes).
    pub fn max_buffered_content(mut self, max: u64) -> Self {
        self.max_buffered_content = max;
        self
    }

    /// Pairs that the message's encryption context must contain, with these values.
    pub fn required_context(mut self, required: EncryptionContext) -> Self {
        self.required_context = required;
        self
    }

    /// Reads and verifies the header and unwraps the data key. Reading the header is blocking I/O on
    /// `input`; the keyring call is awaited.
    pub async fn begin<R: Read>(&self, input: R) -> Result<MessageDecryptor<R>> {
        let mut input = Input::new(input);
        let header = Header::read(
            &mut input,
            HeaderLimits {
                max_encrypted_data_keys: self.max_encrypted_data_keys,
                allow_non_committing: self.commitment_policy
                    == CommitmentPolicy::RequireEncryptAllowDecrypt,
            },
        )?;
        let materials = DecryptionMaterials::new(header.suite, header.encryption_context.clone());
        let materials = self
            .keyring
            .on_decrypt(materials, &header.encrypted_data_keys)
            .await?;
        let data_key = materials.data_key.ok_or(Error::NoDataKeyDecrypted {
            count: header.encrypted_data_keys.len(),
        })?;
        if data_key.as_bytes().len() != header.suite.data_key_len() {
            return Err(Error::Keyring(
                "the keyring returned a data key of the wrong length".into(),
            ));
        }
        let keys = kdf::derive(header.suite, data_key.as_bytes(), &header.message_id)?;
        if let Some(derived) = &keys.commitment {
            let stored = header
                .commitment
                .as_ref()
                .map(|c| c.as_slice())
                .unwrap_or(&[]);
            if !kdf::commitment_matches(stored, derived) {
                return Err(Error::CommitmentMismatch);
            }
        }
        header.verify_auth(&keys.content_key)?;
        header.encryption_context.require(&self.required_context)?;
        let verifier = match header.suite.signature() {
            Some(alg) => {
                let public_key = header
                    .encryption_context
                    .get(PUBLIC_KEY_CONTEXT_KEY)
                    .ok_or(Error::MalformedHeader(
                        "signed message without aws-crypto-public-key",
                    ))?;
                let mut v = Verifier::new(alg, public_key)?;
                v.update(&header.body_bytes);
                v.update(&header.auth_bytes());
                Some(v)
            }
            None => None,
        };
        let frame_key = FrameKey::new(keys.content_key, &header.message_id);
        Ok(MessageDecryptor {
            input,
            header,
            frame_key,
            verifier,
            max_buffered_content: self.max_buffered_content,
        })
    }

    /// Decrypts one message from `input` to `output`; returns its header. See the
    /// [module documentation](crate::stream) for what `output` may have received if this fails.
    pub fn decrypt<R: Read, W: Write>(&self, input: R, output: W) -> Result<Header> {
        block_on(self.begin(BufReader::with_capacity(1 << 16, input)))?.decrypt_to(output)
    }

    /// Decrypts a whole message held in memory.
    pub fn decrypt_to_vec(&self, message: &[u8]) -> Result<(Vec<u8>, Header)> {
        let mut out = Vec::with_capacity(message.len());
        let header = self.decrypt(message, &mut out)?;
        Ok((out, header))
    }
}

/// A message whose header has verified and whose data key is known; the body is next.
pub struct MessageDecryptor<R> {
    input: Input<R>,
    header: Header,
    frame_key: FrameKey,
    verifier: Option<Verifier>,
    max_buffered_content: u64,
}

impl<R> std::fmt::Debug for MessageDecryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDecryptor")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<R: Read> MessageDecryptor<R> {
    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The key that opens frame `n` independently of the others (for parallel decryption).
    pub fn frame_key(&self) -> &FrameKey {
        &self.frame_key
    }

    /// Decrypts the body to `output`, verifies the signature and the end of the input; returns the
    /// header. See the [`stream`](crate::stream) module docs for what `output` holds after an error.
    pub fn decrypt_to<W: Write>(mut self, mut output: W) -> Result<Header> {
        let held_back = match self.header.content_type {
            ContentType::Framed => self.framed_body(&mut output)?,
            ContentType::NonFramed => self.non_framed_body()?,
        };
        if let Some(verifier) = self.verifier.take() {
            let len = self.input.u16("before the signature")?;
            let signature = self.input.bytes(usize::from(len), "inside the signature")?;
            verifier.verify(&signature)?;
        }
        if !self.input.at_end()? {
            return Err(Error::TrailingData);
        }
        output.write_all(&held_back)?;
        output.flush()?;
        Ok(self.header)
    }

    fn hash(&mut self, bytes: &[u8]) {
        if let Some(v) = &mut self.verifier {
            v.update(bytes);
        }
    }

    fn check_buffer(&self, len: u64) -> Result<()> {
        if len > self.max_buffered_content {
            return Err(Error::ContentTooLarge {
                len,
                max: self.max_buffered_content,
            });
        }
        Ok(())
    }

    /// Writes regular frames as they verify; returns the final frame's plaintext.
    fn framed_body<W: Write>(&mut self, output: &mut W) -> Result<Vec<u8>> {
        const NO_FINAL: &str = "the message ends before its final frame";
        let frame_length = self.header.frame_length;
        self.check_buffer(u64::from(frame_length))?;
        let mut buf = Vec::new();
        let mut expected: u32 = 1;
        loop {
            let first = self.input.u32(NO_FINAL)?;
            let is_final = first == FINAL_FRAME_MARKER;
            let sequence = if is_final {
                self.input.u32(NO_FINAL)?
            } else {
                first
            };
            if sequence != expected {
                return Err(Error::FrameSequence {
                    expected,
                    found: sequence,
                });
            }
            let iv = self.input.array::<IV_LEN>(NO_FINAL)?;
            let len = if is_final {
                let len = self.input.u32(NO_FINAL)?;
                if len > frame_length {
                    return Err(Error::MalformedBody(
                        "final frame longer than the frame length",
                    ));
                }
                len
            } else {
                frame_length
            };
            buf.resize(len as usize + TAG_LEN, 0);
            self.input.fill(&mut buf, NO_FINAL)?;
            if let Some(v) = &mut self.verifier {
                if is_final {
                    v.update(&FINAL_FRAME_MARKER.to_be_bytes());
                }
                v.update(&sequence.to_be_bytes());
                v.update(&iv);
                if is_final {
                    v.update(&len.to_be_bytes());
                }
                v.update(&buf);
            }
            let kind = if is_final {
                FrameKind::Final
            } else {
                FrameKind::Regular
            };
            let plaintext_len = self
                .frame_key
                .open_frame(sequence, kind, &iv, &mut buf)?
                .len();
            if is_final {
                buf.truncate(plaintext_len);
                return Ok(buf);
            }
            output.write_all(&buf[..plaintext_len])?;
            expected = expected
                .checked_add(1)
                .ok_or(Error::MalformedBody("too many frames"))?;
        }
    }

    /// Reads and authenticates the whole non-framed body; returns its plaintext.
    fn non_framed_body(&mut self) -> Result<Vec<u8>> {
        const T: &str = "inside the non-framed body";
        let iv = self.input.array::<IV_LEN>(T)?;
        let len = self.input.u64(T)?;
        if len > MAX_NON_FRAMED_LEN {
            return Err(Error::MalformedBody(
                "non-framed content longer than 2^36-32 bytes",
            ));
        }
        self.check_buffer(len)?;
        let mut buf = self.input.bytes(len as usize + TAG_LEN, T)?;
        self.hash(&iv);
        self.hash(&len.to_be_bytes());
        self.hash(&buf);
        let plaintext_len = self
            .frame_key
            .open_frame(1, FrameKind::SingleBlock, &iv, &mut buf)?
            .len();
        buf.truncate(plaintext_len);
        Ok(buf)
    }
}
