//! Encryption: materials from the keyring, header, frames, signature.

use std::io::{IoSlice, Read, Write};

use crate::block_on::block_on;
use crate::data_key::{EncryptionMaterials, Keyring};
use crate::encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY, RESERVED_PREFIX};
use crate::error::{Error, Result};
use crate::esdk::message::frame::{FrameBuffer, FrameKey, FrameKind, FINAL_FRAME_MARKER};
use crate::esdk::message::header::Header;
use crate::esdk::message::kdf;
use crate::esdk::message::signature::{Signer, SigningKey};
use crate::esdk::message::suite::AlgorithmSuite;
use crate::esdk::message::suite::IV_LEN;
use crate::esdk::stream::pipeline::{next_sequence, run, Job, ReadEnd};
use crate::esdk::stream::read_at::{ReadAt, ReaderAt};
use crate::esdk::stream::write_all_vectored;
use crate::esdk::{DEFAULT_FRAME_LENGTH, DEFAULT_FRAME_MEMORY};

/// Encrypts messages under a keyring: format version 2, a key-committing suite, framed content.
pub struct Encryptor<'k> {
    keyring: &'k dyn Keyring,
    suite: AlgorithmSuite,
    frame_length: u32,
    encryption_context: EncryptionContext,
}

impl std::fmt::Debug for Encryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("suite", &self.suite)
            .field("frame_length", &self.frame_length)
            .field("encryption_context", &self.encryption_context)
            .finish_non_exhaustive()
    }
}

impl<'k> Encryptor<'k> {
    /// An encryptor with the defaults: suite 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment, no
    /// signature), [`DEFAULT_FRAME_LENGTH`], empty encryption context.
    pub fn new(keyring: &'k dyn Keyring) -> Self {
        Self {
            keyring,
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            frame_length: DEFAULT_FRAME_LENGTH,
            encryption_context: EncryptionContext::new(),
        }
    }

    /// The algorithm suite: 0x0478 or 0x0578 (the committing suites); others are refused on encrypt.
    pub fn suite(mut self, suite: AlgorithmSuite) -> Self {
        self.suite = suite;
        self
    }

    /// The plaintext length of each frame (at least 1).
    pub fn frame_length(mut self, frame_length: u32) -> Self {
        self.frame_length = frame_length;
        self
    }

    /// The encryption context. Keys starting with `aws-crypto-` are reserved.
    pub fn encryption_context(mut self, encryption_context: EncryptionContext) -> Self {
        self.encryption_context = encryption_context;
        self
    }

    /// Gets the data key from the keyring and builds the header. The returned [`MessageEncryptor`]
    /// then encrypts the body.
    pub async fn begin(&self) -> Result<MessageEncryptor> {
        if !self.suite.is_committing() {
            return Err(Error::UnsupportedAlgorithmSuite(self.suite.id()));
        }
        if self.frame_length == 0 {
            return Err(Error::InvalidConfiguration(
                "frame length must be at least 1".into(),
            ));
        }
        if let Some((k, _)) = self
            .encryption_context
            .iter()
            .find(|(k, _)| k.starts_with(RESERVED_PREFIX))
        {
            return Err(Error::InvalidEncryptionContext(format!(
                "the key `{k}` uses the reserved prefix `{RESERVED_PREFIX}`"
            )));
        }
        let mut ctx = self.encryption_context.clone();
        let signing_key = match self.suite.signature() {
            Some(alg) => {
                let key = SigningKey::generate(alg)?;
                ctx.insert(PUBLIC_KEY_CONTEXT_KEY, key.public_key_base64()?);
                Some(key)
            }
            None => None,
        };
        // Fail on an oversized context before calling the keyring.
        ctx.serialize()?;
        let mut materials = EncryptionMaterials::new(self.suite, ctx);
        materials.signing_key = signing_key;
        let materials = self.keyring.on_encrypt(materials).await?;
        let data_key = materials
            .data_key
            .ok_or_else(|| Error::Keyring("the keyring produced no data key".into()))?;
        if data_key.as_bytes().len() != self.suite.data_key_len() {
            return Err(Error::Keyring(
                "the keyring produced a data key of the wrong length".into(),
            ));
        }
        if materials.encrypted_data_keys.is_empty() {
            return Err(Error::Keyring(
                "the keyring produced no encrypted data key".into(),
            ));
        }
        let mut message_id = vec![0u8; self.suite.message_id_len()];
        crate::random::fill(&mut message_id)?;
        let keys = kdf::derive(self.suite, data_key.as_bytes(), &message_id)?;
        let commitment = keys.commitment.ok_or(Error::Crypto)?;
        let header = Header::new_v2(
            self.suite,
            message_id,
            materials.encryption_context,
            materials.encrypted_data_keys,
            self.frame_length,
            commitment,
            &keys.content_key,
        )?;
        let frame_key = FrameKey::new(keys.content_key, &header.message_id);
        let signer = materials.signing_key.map(Signer::new);
        Ok(MessageEncryptor {
            header,
            frame_key,
            signer,
        })
    }

    /// Encrypts `input` to `output` as one message; returns the number of plaintext bytes.
    /// Keyring calls run on this thread (see [`begin`](Self::begin) for async use).
    pub fn encrypt<R: Read, W: Write>(&self, input: R, output: W) -> Result<u64> {
        block_on(self.begin())?.encrypt_stream(input, output)
    }

    /// Encrypts a byte slice into a new message.
    pub fn encrypt_to_vec(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + 1024);
        self.encrypt(plaintext, &mut out)?;
        Ok(out)
    }
}

/// One message being encrypted: its header is fixed, its frames are sealed with [`FrameKey`].
#[derive(Debug)]
pub struct MessageEncryptor {
    header: Header,
    frame_key: FrameKey,
    signer: Option<Signer>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl MessageEncryptor {
    /// The message header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The key that seals frame `n` independently of the others (for parallel encryption; the
    /// signature, if any, must still hash the frames in order).
    pub fn frame_key(&self) -> &FrameKey {
        &self.frame_key
    }

    /// The header and the frame key of an unsigned message, for writers that lay frames out
    /// themselves (the S3 upload pipeline seals parts out of order). A signed suite is refused:
    /// its signature would have to hash the whole message in order.
    #[cfg(feature = "s3")]
    pub(crate) fn into_unsigned_parts(self) -> Result<(Header, FrameKey)> {
        if self.signer.is_some() {
            return Err(Error::UnsupportedAlgorithmSuite(self.header.suite.id()));
        }
        Ok((self.header, self.frame_key))
    }

    /// Encrypts `input` to `output`: header, frames, footer. Reads each frame straight into one
    /// reused [`FrameBuffer`] and seals it in place. A full frame is a regular frame; the first short
    /// one (possibly empty) is the final frame, so an input whose length is an exact multiple of the
    /// frame length ends with an empty final frame, as the AWS Encryption SDKs write it (the Python
    /// ESDK 3.x, which `aws-encryption-cli` 4.x runs on, refuses a final frame as long as the frame
    /// length). Returns the plaintext length.
    pub fn encrypt_stream<R: Read, W: Write>(mut self, mut input: R, mut output: W) -> Result<u64> {
        let header = self.header.to_bytes();
        self.emit(&mut output, &header)?;
        let fl = self.header.frame_length as usize;
        let mut frame = FrameBuffer::new(fl);
        let mut total: u64 = 0;
        let mut sequence: u32 = 1;
        loop {
            let kind = read_plaintext_frame(&mut input, &mut frame, &mut total)?;
            self.frame_key.seal_in_place(sequence, kind, &mut frame)?;
            self.emit(&mut output, frame.frame())?;
            if kind == FrameKind::Final {
                break;
            }
            sequence = next_sequence(sequence)?;
        }
        self.finish(output)?;
        Ok(total)
    }

    /// Like [`encrypt_stream`](Self::encrypt_stream), sealing frames on `threads` threads: each
    /// takes the input in turn to read a batch of about 1 MiB of frames, seals it, and hands it to
    /// the caller's thread, which writes the frames in order (and hashes them for the signature,
    /// which is serial by nature). Frame buffers come from a fixed pool of `2 × threads + 2`
    /// batches, whatever the input size, within [`DEFAULT_FRAME_MEMORY`] (at least one frame). The output is byte-for-byte what `encrypt_stream` writes.
    /// `threads <= 1` is `encrypt_stream`.
    pub fn encrypt_stream_parallel<R: Read + Send, W: Write>(
        mut self,
        input: R,
        mut output: W,
        threads: usize,
    ) -> Result<u64> {
        if threads <= 1 {
            return self.encrypt_stream(input, output);
        }
        let header = self.header.to_bytes();
        self.emit(&mut output, &header)?;
        let fl = self.header.frame_length as usize;
        let frame_key = &self.frame_key;
        let signer = &mut self.signer;
        // Reading state: the input, the next sequence number, the plaintext length so far.
        let state = (input, 1u32, 0u64);
        let read = |(input, sequence, total): &mut (R, u32, u64),
                    bufs: &mut Vec<FrameBuffer>,
                    jobs: &mut Vec<Job>|
         -> Result<ReadEnd> {
            while let Some(mut buf) = bufs.pop() {
                let kind = read_plaintext_frame(input, &mut buf, total)?;
                jobs.push(Job {
                    sequence: *sequence,
                    kind,
                    iv: [0; IV_LEN],
                    at: 0,
                    buf,
                });
                if kind == FrameKind::Final {
                    return Ok(ReadEnd::Done);
                }
                *sequence = next_sequence(*sequence)?;
            }
            Ok(ReadEnd::More)
        };
        let seal = |job: &mut Job| frame_key.seal_in_place(job.sequence, job.kind, &mut job.buf);
        let ((_, next, total), written) = run(
            threads,
            fl,
            DEFAULT_FRAME_MEMORY,
            state,
            read,
            seal,
            |jobs| write_frames(signer, &mut output, jobs),
        );
        // Every frame up to the final one (sequence `next`) must have been written.
        if written? != next {
            return Err(Error::InvalidConfiguration(
                "a frame was not written".into(),
            ));
        }
        self.finish(output)?;
        Ok(total)
    }

    /// Like [`encrypt_stream_parallel`](Self::encrypt_stream_parallel) for input that can be read at
    /// any offset (a regular file): the `len` bytes of `input` from `start` on. Each worker takes
    /// only the *numbers* of its next batch of frames in turn, then reads each frame itself with a
    /// positioned read and seals it at once, while it is still in that core's cache; no thread
    /// waits for another to read. The output is byte-for-byte what `encrypt_stream` writes for the
    /// same bytes. The input must not change meanwhile: if it ends before `start + len` or has
    /// bytes after it, encryption fails. `threads <= 1` reads the input in order on this thread.
    pub fn encrypt_at_parallel<I: ReadAt + ?Sized, W: Write>(
        mut self,
        input: &I,
        start: u64,
        len: u64,
        mut output: W,
        threads: usize,
    ) -> Result<u64> {
        if threads <= 1 {
            let mut reader = ReaderAt {
                input,
                offset: start,
            };
            let total = self.encrypt_stream(&mut reader, output)?;
            return if total == len {
                Ok(total)
            } else {
                Err(input_changed())
            };
        }
        let header = self.header.to_bytes();
        self.emit(&mut output, &header)?;
        let fl = u64::from(self.header.frame_length);
        // Full frames are regular; the rest (possibly nothing) is the final frame.
        let regular = len / fl;
        let final_sequence = u32::try_from(regular + 1)
            .ok()
            .filter(|s| *s != FINAL_FRAME_MARKER)
            .ok_or(Error::MalformedBody("more than 2^32-2 frames"))?;
        let read = |next: &mut u32, bufs: &mut Vec<FrameBuffer>, jobs: &mut Vec<Job>| {
            while let Some(buf) = bufs.pop() {
                let sequence = *next;
                let kind = if sequence == final_sequence {
                    FrameKind::Final
                } else {
                    FrameKind::Regular
                };
                jobs.push(Job {
                    sequence,
                    kind,
                    iv: [0; IV_LEN],
                    at: start + u64::from(sequence - 1) * fl,
                    buf,
                });
                if kind == FrameKind::Final {
                    return Ok(ReadEnd::Done);
                }
                *next += 1;
            }
            Ok(ReadEnd::More)
        };
        let frame_key = &self.frame_key;
        let seal = |job: &mut Job| {
            let n = match job.kind {
                FrameKind::Final => len - regular * fl,
                _ => fl,
            };
            input
                .read_exact_at(job.buf.plaintext_mut(n as usize), job.at)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => input_changed(),
                    _ => e.into(),
                })?;
            if job.kind == FrameKind::Final && input.read_at(&mut [0], job.at + n)? != 0 {
                return Err(input_changed());
            }
            frame_key.seal_in_place(job.sequence, job.kind, &mut job.buf)
        };
        let signer = &mut self.signer;
        let (_, written) = run(
            threads,
            fl as usize,
            DEFAULT_FRAME_MEMORY,
            1u32,
            read,
            seal,
            |jobs| write_frames(signer, &mut output, jobs),
        );
        if written? != final_sequence {
            return Err(Error::InvalidConfiguration(
                "a frame was not written".into(),
            ));
        }
        self.finish(output)?;
        Ok(len)
    }

    /// Writes the signature footer (signed suites) and flushes.
    fn finish<W: Write>(&mut self, mut output: W) -> Result<()> {
        if let Some(signer) = self.signer.take() {
            let footer = signer.finish()?;
            output.write_all(&footer)?;
        }
        output.flush()?;
        Ok(())
    }

    fn emit<W: Write>(&mut self, output: &mut W, bytes: &[u8]) -> Result<()> {
        if let Some(s) = &mut self.signer {
            s.update(bytes);
        }
        output.write_all(bytes)?;
        Ok(())
    }
}

/// Writes a batch of sealed frames in order (one vectored write), hashing them first for the
/// signature, if any.
fn write_frames<W: Write>(signer: &mut Option<Signer>, output: &mut W, jobs: &[Job]) -> Result<()> {
    if let Some(s) = signer.as_mut() {
        for job in jobs {
            s.update(job.buf.frame());
        }
    }
    let mut frames: Vec<IoSlice<'_>> = jobs.iter().map(|j| IoSlice::new(j.buf.frame())).collect();
    write_all_vectored(output, &mut frames)?;
    Ok(())
}

/// The input of a positioned encryption was not the length it was said to be.
fn input_changed() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the input changed size while it was being encrypted",
    ))
}

/// Fills `buf` from `input` and adds what it read to `total`. A full frame is a regular frame; the
/// first short one (possibly empty) is the final frame.
fn read_plaintext_frame<R: Read>(
    input: &mut R,
    buf: &mut FrameBuffer,
    total: &mut u64,
) -> Result<FrameKind> {
    let n = buf.fill_from(input)?;
    *total += n as u64;
    Ok(if n == buf.capacity() {
        FrameKind::Regular
    } else {
        FrameKind::Final
    })
}
