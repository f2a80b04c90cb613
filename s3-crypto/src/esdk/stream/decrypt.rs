//! Decryption: header, data key from the keyring, commitment, header authentication, frames,
//! signature, end of input.

use std::io::{BufReader, Read, Seek, SeekFrom, Write};

use crate::block_on::block_on;
use crate::data_key::{DecryptionMaterials, Keyring};
use crate::encryption_context::{EncryptionContext, PUBLIC_KEY_CONTEXT_KEY};
use crate::error::{Error, Result};
use crate::esdk::message::frame::{
    regular_frame_len, BodyLayout, FrameBuffer, FrameKey, FrameKind, FINAL_FRAME_MARKER,
    MAX_NON_FRAMED_LEN,
};
use crate::esdk::message::header::{ContentType, Header, HeaderLimits};
use crate::esdk::message::kdf;
use crate::esdk::message::reader::Input;
use crate::esdk::message::signature::Verifier;
use crate::esdk::message::suite::{IV_LEN, TAG_LEN};
use crate::esdk::stream::pipeline::{next_sequence, run, Job, ReadEnd};
use crate::esdk::stream::read_at::{ReadAt, ReaderAt};
use crate::esdk::{
    DEFAULT_FRAME_MEMORY, DEFAULT_MAX_BUFFERED_CONTENT, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};
use crate::policy::CommitmentPolicy;
use crate::range::ByteRange;

/// Decrypts messages with a keyring.
pub struct Decryptor<'k> {
    keyring: &'k dyn Keyring,
    commitment_policy: CommitmentPolicy,
    max_encrypted_data_keys: usize,
    max_buffered_content: u64,
    memory_budget: usize,
    required_context: EncryptionContext,
}

impl std::fmt::Debug for Decryptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("commitment_policy", &self.commitment_policy)
            .field("max_encrypted_data_keys", &self.max_encrypted_data_keys)
            .field("max_buffered_content", &self.max_buffered_content)
            .field("memory_budget", &self.memory_budget)
            .field("required_context", &self.required_context)
            .finish_non_exhaustive()
    }
}

impl<'k> Decryptor<'k> {
    /// A decryptor with the defaults: committing messages only, at most
    /// [`DEFAULT_MAX_ENCRYPTED_DATA_KEYS`], frames (or non-framed bodies) up to
    /// [`DEFAULT_MAX_BUFFERED_CONTENT`], [`DEFAULT_FRAME_MEMORY`] of frame buffers in flight, no
    /// required encryption context.
    pub fn new(keyring: &'k dyn Keyring) -> Self {
        Self {
            keyring,
            commitment_policy: CommitmentPolicy::default(),
            max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
            max_buffered_content: DEFAULT_MAX_BUFFERED_CONTENT,
            memory_budget: DEFAULT_FRAME_MEMORY,
            required_context: EncryptionContext::new(),
        }
    }

    /// The commitment policy (the default refuses version 1 messages; `RequireEncryptAllowDecrypt`
    /// and `ForbidEncryptAllowDecrypt` read them).
    pub fn commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.commitment_policy = policy;
        self
    }

    /// The largest number of encrypted data keys a message may carry.
    pub fn max_encrypted_data_keys(mut self, max: usize) -> Self {
        self.max_encrypted_data_keys = max;
        self
    }

    /// The largest frame, or non-framed body, to buffer (plaintext bytes): a message that
    /// announces more is refused with [`Error::ContentTooLarge`] before its body is read.
    pub fn max_buffered_content(mut self, max: u64) -> Self {
        self.max_buffered_content = max;
        self
    }

    /// The bytes of frame buffers the parallel paths hold at once, whatever the thread count (at
    /// least one frame; the sequential path holds one frame).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
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
                allow_non_committing: self.commitment_policy.allows_decrypt(false),
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
            memory_budget: self.memory_budget,
        })
    }

    /// Decrypts one message from `input` to `output`; returns its header. See the
    /// [module documentation](crate::esdk::stream) for what `output` may have received if this fails.
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
    memory_budget: usize,
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
    /// header. See the [`stream`](crate::esdk::stream) module docs for what `output` holds after an error.
    pub fn decrypt_to<W: Write>(mut self, mut output: W) -> Result<Header> {
        match self.header.content_type {
            ContentType::Framed => {
                let final_frame = self.framed_body(&mut output)?;
                finish_input(&mut self.input, self.verifier.take())?;
                output.write_all(final_frame.plaintext())?;
            }
            ContentType::NonFramed => {
                let plaintext = self.non_framed_body()?;
                finish_input(&mut self.input, self.verifier.take())?;
                output.write_all(&plaintext)?;
            }
        }
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

    /// Writes regular frames as they verify; returns the final frame (held back: its buffer, so
    /// that it is never copied and the whole decryption holds one frame buffer).
    fn framed_body<W: Write>(&mut self, output: &mut W) -> Result<FrameBuffer> {
        let frame_length = self.header.frame_length;
        self.check_buffer(u64::from(frame_length))?;
        let mut buf = FrameBuffer::growable(frame_length as usize);
        let mut expected: u32 = 1;
        loop {
            let head = FrameHead::read_frame(
                &mut self.input,
                expected,
                frame_length,
                &mut buf,
                &mut self.verifier,
            )?;
            self.frame_key
                .open_in_place(head.sequence, head.kind, &head.iv, &mut buf)?;
            if head.kind == FrameKind::Final {
                return Ok(buf);
            }
            output.write_all(buf.plaintext())?;
            expected = next_sequence(expected)?;
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

impl<R: Read + Send> MessageDecryptor<R> {
    /// Like [`decrypt_to`](Self::decrypt_to), opening frames on `threads` threads: each takes the
    /// input in turn to read a batch of about 1 MiB of frames (hashing them for the signature, which
    /// is serial by nature), opens it, and hands it to the caller's thread, which writes the frames in
    /// order. Frame buffers come from a fixed pool of `2 × threads + 2` batches, cut down to the
    /// memory budget (at least one frame); the final frame is one of them. What `output` can
    /// hold after an error is exactly as for `decrypt_to` (regular frames that verified, in order;
    /// never the final frame), and the error is the one `decrypt_to` reports. Non-framed messages
    /// and `threads <= 1` take the sequential path.
    pub fn decrypt_to_parallel<W: Write>(
        mut self,
        mut output: W,
        threads: usize,
    ) -> Result<Header> {
        if threads <= 1 || self.header.content_type != ContentType::Framed {
            return self.decrypt_to(output);
        }
        let frame_length = self.header.frame_length;
        self.check_buffer(u64::from(frame_length))?;
        let frame_key = &self.frame_key;
        // Reading state: the input, the signature verifier, the sequence number expected next.
        let state = (&mut self.input, self.verifier.take(), 1u32);
        let read = |(input, verifier, expected): &mut (&mut Input<R>, Option<Verifier>, u32),
                    bufs: &mut Vec<FrameBuffer>,
                    jobs: &mut Vec<Job>|
         -> Result<ReadEnd> {
            while let Some(mut buf) = bufs.pop() {
                let head =
                    FrameHead::read_frame(input, *expected, frame_length, &mut buf, verifier)?;
                jobs.push(Job {
                    sequence: head.sequence,
                    kind: head.kind,
                    iv: head.iv,
                    at: 0,
                    buf,
                });
                if head.kind == FrameKind::Final {
                    finish_input(input, verifier.take())?;
                    return Ok(ReadEnd::Done);
                }
                *expected = next_sequence(*expected)?;
            }
            Ok(ReadEnd::More)
        };
        let open =
            |job: &mut Job| frame_key.open_in_place(job.sequence, job.kind, &job.iv, &mut job.buf);
        let mut final_frame = None;
        let budget = self.memory_budget;
        let (_, written) = run(
            threads,
            frame_length as usize,
            budget,
            state,
            read,
            open,
            |jobs| {
                // The final frame ends the last batch; it is held back (its buffer taken, not copied).
                let regular = match jobs.split_last_mut() {
                    Some((last, regular)) if last.kind == FrameKind::Final => {
                        final_frame =
                            Some(std::mem::replace(&mut last.buf, FrameBuffer::growable(0)));
                        regular
                    }
                    _ => jobs,
                };
                write_plaintexts(&mut output, regular)
            },
        );
        written?;
        let held_back = final_frame.ok_or(Error::Truncated(NO_FINAL))?;
        output.write_all(held_back.plaintext())?;
        output.flush()?;
        Ok(self.header)
    }
}

impl<R: Read + Seek> MessageDecryptor<R> {
    /// Decrypts only the plaintext bytes `range` selects, reading only the frames that hold them and
    /// the final frame: the final frame is read and authenticated first, which authenticates the
    /// plaintext length (a truncated or extended message fails), then each frame of the range is
    /// authenticated before any of its bytes are written. Returns the header, the half-open plaintext
    /// range written and the plaintext length.
    ///
    /// A signed message cannot be range-decrypted: its signature covers the whole message and so
    /// would be left unchecked; such messages are refused with [`Error::RangeOfSignedMessage`].
    /// Non-framed messages are decrypted whole (they are one block) and the range is cut from them.
    pub fn decrypt_range_to<W: Write>(
        mut self,
        range: ByteRange,
        mut output: W,
    ) -> Result<(Header, std::ops::Range<u64>, u64)> {
        if self.verifier.is_some() {
            return Err(Error::RangeOfSignedMessage);
        }
        if self.header.content_type == ContentType::NonFramed {
            let plaintext = self.non_framed_body()?;
            finish_input(&mut self.input, None)?;
            let total = plaintext.len() as u64;
            let r = range.resolve_or_err(total)?;
            output.write_all(&plaintext[r.start as usize..r.end as usize])?;
            output.flush()?;
            return Ok((self.header, r, total));
        }
        let fl = self.header.frame_length;
        self.check_buffer(u64::from(fl))?;
        let body_start = self.input.inner_mut().stream_position()?;
        let (layout, final_frame) = self.final_frame_first(body_start)?;
        let (final_sequence, total) = (layout.final_sequence(), layout.plaintext_len(fl));
        let mut buf = FrameBuffer::growable(fl as usize);
        let r = range.resolve_or_err(total)?;
        let fl64 = u64::from(fl);
        let (first, last) = (r.start / fl64 + 1, (r.end - 1) / fl64 + 1);
        for sequence in first..=last {
            let frame_start = (sequence - 1) * fl64;
            let frame = if sequence == u64::from(final_sequence) {
                &final_frame
            } else {
                if self.read_frame_at(body_start, sequence as u32, &mut buf)? != FrameKind::Regular
                {
                    return Err(Error::MalformedBody("a final frame before the last frame"));
                }
                &buf
            };
            let from = r.start.saturating_sub(frame_start) as usize;
            let to = (r.end - frame_start).min(frame.plaintext_len() as u64) as usize;
            output.write_all(&frame.plaintext()[from..to])?;
        }
        output.flush()?;
        Ok((self.header, r, total))
    }

    /// Like [`decrypt_to_parallel`](MessageDecryptor::decrypt_to_parallel), for a message that can
    /// also be read at any offset: `input` holds the same bytes as this decryptor's stream (the same
    /// file, opened again or cloned). The final frame is read and authenticated first, where the
    /// message's length says it is, which fixes the number of frames; then each worker takes only the
    /// numbers of its next batch of frames in turn and reads each frame itself with a positioned
    /// read, opening it while it is still in that core's cache.
    ///
    /// What reaches `output`, and every error, is exactly what `decrypt_to` would write and return:
    /// a message whose final frame does not authenticate where its length puts it (truncated,
    /// extended, damaged there), a signed message (its signature needs the bytes in order) and a
    /// non-framed one are decrypted by `decrypt_to_parallel` from the stream; a frame that fails is
    /// reported as reading in order reports it, after every frame before it was written.
    pub fn decrypt_at_parallel<I: ReadAt + ?Sized, W: Write>(
        mut self,
        input: &I,
        mut output: W,
        threads: usize,
    ) -> Result<Header>
    where
        R: Send,
    {
        if threads <= 1
            || self.verifier.is_some()
            || self.header.content_type != ContentType::Framed
        {
            return self.decrypt_to_parallel(output, threads);
        }
        let fl = self.header.frame_length;
        self.check_buffer(u64::from(fl))?;
        let body_start = self.input.inner_mut().stream_position()?;
        let Ok((layout, final_frame)) = self.final_frame_first(body_start) else {
            // Not where the length says: read in order, which finds and names the damage.
            self.input.inner_mut().seek(SeekFrom::Start(body_start))?;
            return self.decrypt_to_parallel(output, threads);
        };
        let final_sequence = layout.final_sequence();
        let read = |next: &mut u32, bufs: &mut Vec<FrameBuffer>, jobs: &mut Vec<Job>| {
            while *next < final_sequence {
                let Some(buf) = bufs.pop() else {
                    return Ok(ReadEnd::More);
                };
                jobs.push(Job {
                    sequence: *next,
                    kind: FrameKind::Regular,
                    iv: [0; IV_LEN],
                    at: body_start + u64::from(*next - 1) * regular_frame_len(fl),
                    buf,
                });
                *next += 1;
            }
            Ok(ReadEnd::Done)
        };
        let frame_key = &self.frame_key;
        let open = |job: &mut Job| {
            let mut frame = Input::new(ReaderAt {
                input,
                offset: job.at,
            });
            let head =
                FrameHead::read_frame(&mut frame, job.sequence, fl, &mut job.buf, &mut None)?;
            frame_key.open_in_place(head.sequence, head.kind, &head.iv, &mut job.buf)?;
            if head.kind != FrameKind::Regular {
                return Err(Error::MalformedBody("a final frame before the last frame"));
            }
            Ok(())
        };
        if final_sequence > 1 {
            // The final frame, held back meanwhile, counts against the budget.
            let held = FrameBuffer::size_for(final_frame.plaintext_len());
            let budget = self.memory_budget.saturating_sub(held);
            let (_, written) = run(threads, fl as usize, budget, 1u32, read, open, |jobs| {
                write_plaintexts(&mut output, jobs)
            });
            written?;
        }
        output.write_all(final_frame.plaintext())?;
        output.flush()?;
        Ok(self.header)
    }

    /// Reads the final frame of a framed body at `body_start` from where the message's length puts
    /// it, opens it, and checks that the message ends right after it. Returns the body's layout
    /// and the frame.
    fn final_frame_first(&mut self, body_start: u64) -> Result<(BodyLayout, FrameBuffer)> {
        let end = self.input.inner_mut().seek(SeekFrom::End(0))?;
        let layout = end
            .checked_sub(body_start)
            .and_then(|body| BodyLayout::of(body, self.header.frame_length))
            .ok_or(Error::Truncated(NO_FINAL))?;
        let (final_sequence, final_len) = (layout.final_sequence(), layout.final_len);
        let mut final_frame = FrameBuffer::growable(final_len as usize);
        let kind = self.read_frame_at(body_start, final_sequence, &mut final_frame)?;
        if kind != FrameKind::Final
            || final_frame.plaintext_len() as u64 != final_len
            || !self.input.at_end()?
        {
            return Err(Error::Truncated(NO_FINAL));
        }
        Ok((layout, final_frame))
    }

    /// Seeks to frame `sequence` of a body at `body_start`, reads it, checks it is that frame, opens
    /// it into `buf`; returns its kind.
    fn read_frame_at(
        &mut self,
        body_start: u64,
        sequence: u32,
        buf: &mut FrameBuffer,
    ) -> Result<FrameKind> {
        let offset = u64::from(sequence - 1) * regular_frame_len(self.header.frame_length);
        self.input
            .inner_mut()
            .seek(SeekFrom::Start(body_start + offset))?;
        let frame_length = self.header.frame_length;
        let head = FrameHead::read_frame(&mut self.input, sequence, frame_length, buf, &mut None)?;
        self.frame_key
            .open_in_place(head.sequence, head.kind, &head.iv, buf)?;
        Ok(head.kind)
    }
}

/// Writes the plaintexts of a batch of opened frames in order, one `write` each. Not one vectored
/// write as for sealed frames: plaintext frames are page multiples at page-aligned offsets, and
/// Linux 6.18 copies such a `writev` into the page cache 2–4× slower than the same bytes in one
/// `write` each (measured from C: 16 × 64 KiB aligned, 1 GiB: 0.66–1.30 s against 0.32 s; the same
/// `writev` 100 bytes off alignment: 0.30 s).
fn write_plaintexts<W: Write>(output: &mut W, jobs: &[Job]) -> Result<()> {
    for job in jobs {
        output.write_all(job.buf.plaintext())?;
    }
    Ok(())
}

const NO_FINAL: &str = "the message ends before its final frame";
const IN_FRAME: &str = "the message ends inside a frame";

/// The fields in front of a frame's ciphertext.
struct FrameHead {
    sequence: u32,
    kind: FrameKind,
    iv: [u8; IV_LEN],
    /// Plaintext (and ciphertext) length.
    len: usize,
}

impl FrameHead {
    /// Reads the fields of the frame that should carry sequence number `expected`.
    fn read<R: Read>(input: &mut Input<R>, expected: u32, frame_length: u32) -> Result<Self> {
        let first = input.u32(NO_FINAL)?;
        let is_final = first == FINAL_FRAME_MARKER;
        let sequence = if is_final {
            input.u32(IN_FRAME)?
        } else {
            first
        };
        if sequence != expected {
            return Err(Error::FrameSequence {
                expected,
                found: sequence,
            });
        }
        let iv = input.array::<IV_LEN>(IN_FRAME)?;
        let len = if is_final {
            let len = input.u32(IN_FRAME)?;
            if len > frame_length {
                return Err(Error::MalformedBody(
                    "final frame longer than the frame length",
                ));
            }
            len
        } else {
            frame_length
        };
        let kind = if is_final {
            FrameKind::Final
        } else {
            FrameKind::Regular
        };
        Ok(Self {
            sequence,
            kind,
            iv,
            len: len as usize,
        })
    }

    /// Reads the frame that should carry sequence number `expected`: its fields, then its body into
    /// `buf` (refused if `buf` cannot hold it), feeding both to the signature verifier if any.
    fn read_frame<R: Read>(
        input: &mut Input<R>,
        expected: u32,
        frame_length: u32,
        buf: &mut FrameBuffer,
        verifier: &mut Option<Verifier>,
    ) -> Result<Self> {
        let head = Self::read(input, expected, frame_length)?;
        if head.len > buf.capacity() {
            return Err(Error::Truncated(NO_FINAL));
        }
        let body = buf.read_body(input, head.len, IN_FRAME)?;
        head.hash(verifier, body);
        Ok(head)
    }

    /// Feeds the frame, as serialized, to the signature verifier.
    fn hash(&self, verifier: &mut Option<Verifier>, body: &[u8]) {
        let Some(v) = verifier else {
            return;
        };
        if self.kind == FrameKind::Final {
            v.update(&FINAL_FRAME_MARKER.to_be_bytes());
        }
        v.update(&self.sequence.to_be_bytes());
        v.update(&self.iv);
        if self.kind == FrameKind::Final {
            v.update(&(self.len as u32).to_be_bytes());
        }
        v.update(body);
    }
}

/// After the body: the signature footer (signed suites), then the end of the input.
fn finish_input<R: Read>(input: &mut Input<R>, verifier: Option<Verifier>) -> Result<()> {
    if let Some(verifier) = verifier {
        let len = input.u16("before the signature")?;
        let signature = input.bytes(usize::from(len), "inside the signature")?;
        verifier.verify(&signature)?;
    }
    if !input.at_end()? {
        return Err(Error::TrailingData);
    }
    Ok(())
}
