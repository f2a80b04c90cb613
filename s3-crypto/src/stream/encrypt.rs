//! Encryption: materials from the keyring, header, frames, signature.

use std::io::{Read, Write};

use crate::block_on::block_on;
use crate::encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY, RESERVED_PREFIX};
use crate::error::{Error, Result};
use crate::keyring::{EncryptionMaterials, Keyring};
use crate::message::frame::{FrameKey, FrameKind};
use crate::message::header::Header;
use crate::message::kdf;
use crate::message::signature::{Signer, SigningKey};
use crate::message::suite::AlgorithmSuite;
use crate::policy::DEFAULT_FRAME_LENGTH;
use crate::stream::read_full;

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
        aws_lc_rs::rand::fill(&mut message_id)?;
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

    /// Encrypts `input` to `output`: header, frames, footer. Holds two frames of plaintext and one
    /// of ciphertext at a time. An input whose length is an exact multiple of the frame length ends
    /// with a full final frame (the format's recommended layout). Returns the plaintext length.
    pub fn encrypt_stream<R: Read, W: Write>(mut self, mut input: R, mut output: W) -> Result<u64> {
        let header = self.header.to_bytes();
        self.emit(&mut output, &header)?;
        let fl = self.header.frame_length as usize;
        let mut current = vec![0u8; fl];
        let mut next = vec![0u8; fl];
        let mut frame = Vec::with_capacity(fl + 40);
        let mut n = read_full(&mut input, &mut current)?;
        let mut total = n as u64;
        let mut sequence: u32 = 1;
        loop {
            if n == fl {
                let m = read_full(&mut input, &mut next)?;
                if m > 0 {
                    let frame =
                        self.frame_key
                            .seal_frame(sequence, FrameKind::Regular, &current)?;
                    self.emit(&mut output, &frame)?;
                    sequence = sequence
                        .checked_add(1)
                        .filter(|s| *s != u32::MAX)
                        .ok_or_else(|| {
                            Error::InvalidConfiguration("more than 2^32-1 frames".into())
                        })?;
                    std::mem::swap(&mut current, &mut next);
                    n = m;
                    total += m as u64;
                    continue;
                }
            }
            self.frame_key.seal_frame_into(
                sequence,
                FrameKind::Final,
                &current[..n],
                &mut frame,
            )?;
            self.emit(&mut output, &frame)?;
            break;
        }
        if let Some(signer) = self.signer.take() {
            let footer = signer.finish()?;
            output.write_all(&footer)?;
        }
        output.flush()?;
        Ok(total)
    }

    /// Like [`encrypt_stream`](Self::encrypt_stream), sealing frames on `threads` threads: one thread
    /// reads, `threads` seal, the caller's thread writes the frames in order (and hashes them for the
    /// signature, which is serial by nature). At most `4 × threads` frames of plaintext or ciphertext
    /// are in memory at once, whatever the input size. The output is byte-for-byte what
    /// `encrypt_stream` writes. `threads <= 1` is `encrypt_stream`.
    pub fn encrypt_stream_parallel<R: Read + Send, W: Write>(
        mut self,
        mut input: R,
        mut output: W,
        threads: usize,
    ) -> Result<u64> {
        if threads <= 1 {
            return self.encrypt_stream(input, output);
        }
        let header = self.header.to_bytes();
        self.emit(&mut output, &header)?;
        let fl = self.header.frame_length as usize;
        let in_flight = 2 * threads;
        type Job = (u32, FrameKind, Vec<u8>);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Job>(in_flight);
        let job_rx = std::sync::Mutex::new(job_rx);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(u32, Result<Vec<u8>>)>(in_flight);
        let frame_key = &self.frame_key;
        // Set when the writer fails: the reader stops, workers drain the queue without sealing.
        let abort = std::sync::atomic::AtomicBool::new(false);
        let abort = &abort;
        let outcome = std::thread::scope(|scope| -> Result<u64> {
            let reader = scope.spawn(move || -> Result<(u64, u32)> {
                let mut current = vec![0u8; fl];
                let mut n = read_full(&mut input, &mut current)?;
                let mut total = n as u64;
                let mut sequence: u32 = 1;
                loop {
                    if abort.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok((total, sequence));
                    }
                    if n == fl {
                        let mut next = vec![0u8; fl];
                        let m = read_full(&mut input, &mut next)?;
                        if m > 0 {
                            if job_tx
                                .send((sequence, FrameKind::Regular, current))
                                .is_err()
                            {
                                return Ok((total, sequence)); // the writer stopped on an error
                            }
                            sequence = sequence
                                .checked_add(1)
                                .filter(|s| *s != u32::MAX)
                                .ok_or_else(|| {
                                    Error::InvalidConfiguration("more than 2^32-1 frames".into())
                                })?;
                            current = next;
                            n = m;
                            total += m as u64;
                            continue;
                        }
                    }
                    current.truncate(n);
                    let _ = job_tx.send((sequence, FrameKind::Final, current));
                    return Ok((total, sequence));
                }
            });
            for _ in 0..threads {
                let done_tx = done_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((sequence, kind, plaintext)) = job else {
                        return;
                    };
                    if abort.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let sealed = frame_key.seal_frame(sequence, kind, &plaintext);
                    if done_tx.send((sequence, sealed)).is_err() {
                        abort.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
            drop(done_tx);
            // Write frames in sequence order as they come back.
            let mut pending = std::collections::BTreeMap::new();
            let mut next_out: u32 = 1;
            let mut write_error = None;
            for (sequence, sealed) in done_rx.iter() {
                pending.insert(sequence, sealed);
                while let Some(sealed) = pending.remove(&next_out) {
                    let r = sealed.and_then(|frame| {
                        if let Some(s) = &mut self.signer {
                            s.update(&frame);
                        }
                        output.write_all(&frame).map_err(Error::from)
                    });
                    if let Err(e) = r {
                        write_error = Some(e);
                        break;
                    }
                    next_out += 1;
                }
                if write_error.is_some() {
                    abort.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
            // Dropping the receiver unblocks workers; the reader sees the closed job channel.
            drop(done_rx);
            let read = reader
                .join()
                .map_err(|_| Error::InvalidConfiguration("the reader thread panicked".into()))?;
            if let Some(e) = write_error {
                return Err(e);
            }
            let (total, last) = read?;
            if next_out != last.wrapping_add(1) {
                return Err(Error::InvalidConfiguration(
                    "a frame was not written".into(),
                ));
            }
            Ok(total)
        })?;
        if let Some(signer) = self.signer.take() {
            let footer = signer.finish()?;
            output.write_all(&footer)?;
        }
        output.flush()?;
        Ok(outcome)
    }

    fn emit<W: Write>(&mut self, output: &mut W, bytes: &[u8]) -> Result<()> {
        if let Some(s) = &mut self.signer {
            s.update(bytes);
        }
        output.write_all(bytes)?;
        Ok(())
    }
}
