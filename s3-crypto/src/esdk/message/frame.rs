//! Frames: the body AAD, the IV, and sealing and opening one frame.
//!
//! [`FrameKey`] holds everything a frame needs (the derived content key and the message id), is
//! `Send + Sync`, and seals or opens any frame given its sequence number, so frames can be processed
//! in parallel; only the ordering of the output and the signature hash are sequential.

use aws_lc_rs::aead;

use crate::error::{Error, Result};
use crate::esdk::message::reader::Input;
use crate::esdk::message::suite::{IV_LEN, TAG_LEN};

/// The marker that starts a final frame in place of a sequence number.
pub(crate) const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;

/// The largest non-framed content the format allows (2^36 - 32 bytes).
pub(crate) const MAX_NON_FRAMED_LEN: u64 = (1 << 36) - 32;

/// Which part of the body a block of ciphertext is: it selects the body AAD content string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A regular frame (always exactly the frame length).
    Regular,
    /// The final frame (0 to frame length bytes).
    Final,
    /// The single block of non-framed content (read only).
    SingleBlock,
}

impl FrameKind {
    fn aad_content(self) -> &'static [u8] {
        match self {
            Self::Regular => b"AWSKMSEncryptionClient Frame",
            Self::Final => b"AWSKMSEncryptionClient Final Frame",
            Self::SingleBlock => b"AWSKMSEncryptionClient Single Block",
        }
    }
}

/// Room in front of the plaintext in a [`FrameBuffer`]: the longest frame prefix (the final frame's
/// marker, sequence number, IV and length).
const PREFIX_ROOM: usize = 4 + 4 + IV_LEN + 4;

/// A reusable buffer for one frame. Input is read straight into its plaintext space and sealed there
/// by [`FrameKey::seal_in_place`], with room before it for the frame prefix and after it for the tag,
/// so plaintext is never copied and no buffer is allocated per frame.
///
/// A buffer made for decryption ([`FrameBuffer::growable`]) starts empty and grows only as a
/// frame's bytes arrive (doubling, from [`GROW_FIRST`]), never beyond its limit: a header that
/// announces long frames costs only what the input actually holds.
pub struct FrameBuffer {
    buf: Vec<u8>,
    /// The largest plaintext this buffer takes.
    limit: usize,
    plaintext_len: usize,
    /// The plaintext length of the body read by `read_body` (decryption).
    body_len: usize,
    start: usize,
    end: usize,
}

/// What a growable buffer allocates first for a frame body, and grows from by doubling.
pub(crate) const GROW_FIRST: usize = 64 * 1024;

impl std::fmt::Debug for FrameBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuffer")
            .field("capacity", &self.capacity())
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl FrameBuffer {
    /// A buffer for frames of up to `frame_length` plaintext bytes, allocated whole.
    pub fn new(frame_length: usize) -> Self {
        let mut buf = Self::growable(frame_length);
        buf.grow_to(frame_length);
        buf
    }

    /// A buffer for frames of up to `limit` plaintext bytes that allocates nothing yet: it grows
    /// to what each use needs.
    pub(crate) fn growable(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            plaintext_len: 0,
            body_len: 0,
            start: 0,
            end: 0,
        }
    }

    /// The bytes a buffer for frames of `limit` plaintext bytes holds at most.
    pub(crate) fn size_for(limit: usize) -> usize {
        PREFIX_ROOM.saturating_add(limit).saturating_add(TAG_LEN)
    }

    /// Makes room for `len` bytes of plaintext (at most the limit) and exactly that: no amortized
    /// doubling behind the caller's back.
    fn grow_to(&mut self, len: usize) {
        let need = Self::size_for(len.min(self.limit));
        if self.buf.len() < need {
            self.buf.reserve_exact(need - self.buf.len());
            self.buf.resize(need, 0);
        }
    }

    /// The largest plaintext this buffer holds.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Fills the plaintext space from `input` until it is full or the input ends; returns the number
    /// of bytes read (less than [`capacity`](Self::capacity) only at the end of the input).
    pub fn fill_from<R: std::io::Read>(&mut self, input: &mut R) -> std::io::Result<usize> {
        let cap = self.capacity();
        self.grow_to(cap);
        let n =
            crate::esdk::stream::read_full(input, &mut self.buf[PREFIX_ROOM..PREFIX_ROOM + cap])?;
        self.plaintext_len = n;
        self.start = 0;
        self.end = 0;
        Ok(n)
    }

    /// Sets the plaintext from a slice (at most [`capacity`](Self::capacity) bytes).
    pub fn set_plaintext(&mut self, plaintext: &[u8]) -> Result<()> {
        if plaintext.len() > self.capacity() {
            return Err(Error::InvalidConfiguration(
                "plaintext longer than the frame buffer".into(),
            ));
        }
        self.grow_to(plaintext.len());
        self.buf[PREFIX_ROOM..PREFIX_ROOM + plaintext.len()].copy_from_slice(plaintext);
        self.plaintext_len = plaintext.len();
        self.start = 0;
        self.end = 0;
        Ok(())
    }

    /// The space for `len` bytes of plaintext to be read into and sealed (at most
    /// [`capacity`](Self::capacity)).
    pub(crate) fn plaintext_mut(&mut self, len: usize) -> &mut [u8] {
        self.grow_to(len);
        self.plaintext_len = len;
        self.start = 0;
        self.end = 0;
        &mut self.buf[PREFIX_ROOM..PREFIX_ROOM + len]
    }

    /// The plaintext length of the frame held.
    pub fn plaintext_len(&self) -> usize {
        self.plaintext_len
    }

    /// Reads a frame body of `len` plaintext bytes from `input` (ciphertext and tag, as in a
    /// message), growing the buffer only as the bytes arrive; returns what was read (decryption).
    /// `len` must be at most [`capacity`](Self::capacity).
    pub(crate) fn read_body<R: std::io::Read>(
        &mut self,
        input: &mut Input<R>,
        len: usize,
        what: &'static str,
    ) -> Result<&[u8]> {
        self.plaintext_len = 0;
        self.body_len = len;
        self.start = 0;
        self.end = 0;
        let end = Self::size_for(len);
        let mut filled = PREFIX_ROOM;
        while filled < end {
            if self.buf.len() <= filled {
                let next = self
                    .buf
                    .len()
                    .saturating_mul(2)
                    .max(PREFIX_ROOM + GROW_FIRST);
                let next = next.min(end);
                self.buf.reserve_exact(next - self.buf.len());
                self.buf.resize(next, 0);
            }
            let stop = end.min(self.buf.len());
            input.fill(&mut self.buf[filled..stop], what)?;
            filled = stop;
        }
        Ok(&self.buf[PREFIX_ROOM..end])
    }

    /// The plaintext after the frame was opened (decryption).
    pub fn plaintext(&self) -> &[u8] {
        &self.buf[PREFIX_ROOM..PREFIX_ROOM + self.plaintext_len]
    }

    /// The serialized frame after [`FrameKey::seal_in_place`]; empty before.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// The derived content key of one message, bound to its message id.
pub struct FrameKey {
    key: aead::LessSafeKey,
    message_id: Vec<u8>,
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameKey").finish_non_exhaustive()
    }
}

/// The IV of a frame: its sequence number, big-endian, left-padded with zeros to 12 bytes.
pub(crate) fn frame_iv(sequence: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence.to_be_bytes());
    iv
}

impl FrameKey {
    pub(crate) fn new(key: aead::LessSafeKey, message_id: &[u8]) -> Self {
        Self {
            key,
            message_id: message_id.to_vec(),
        }
    }

    /// message id ‖ body AAD content string ‖ u32 sequence number ‖ u64 plaintext length.
    fn aad(&self, kind: FrameKind, sequence: u32, len: u64) -> Vec<u8> {
        let content = kind.aad_content();
        let mut aad = Vec::with_capacity(self.message_id.len() + content.len() + 12);
        aad.extend_from_slice(&self.message_id);
        aad.extend_from_slice(content);
        aad.extend_from_slice(&sequence.to_be_bytes());
        aad.extend_from_slice(&len.to_be_bytes());
        aad
    }

    /// Encrypts one frame and returns its serialization: for a regular frame
    /// `seq ‖ IV ‖ ciphertext ‖ tag`, for the final frame
    /// `FF FF FF FF ‖ seq ‖ IV ‖ u32 length ‖ ciphertext ‖ tag`. A convenience over
    /// [`seal_in_place`](Self::seal_in_place), which the streaming paths use (no copy, no allocation
    /// per frame).
    pub fn seal_frame(&self, sequence: u32, kind: FrameKind, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut buf = FrameBuffer::new(plaintext.len());
        buf.set_plaintext(plaintext)?;
        self.seal_in_place(sequence, kind, &mut buf)?;
        Ok(buf.frame().to_vec())
    }

    /// Seals the plaintext held in `buf` in place (no copy) and lays the frame's prefix out in front
    /// of it and its tag behind it, so that [`FrameBuffer::frame`] is the serialized frame.
    pub fn seal_in_place(
        &self,
        sequence: u32,
        kind: FrameKind,
        buf: &mut FrameBuffer,
    ) -> Result<()> {
        let len = buf.plaintext_len;
        let start = PREFIX_ROOM - prefix_len(kind)?;
        let end = PREFIX_ROOM + len + TAG_LEN;
        self.seal_laid_out(sequence, kind, &mut buf.buf[start..end])?;
        buf.start = start;
        buf.end = end;
        Ok(())
    }

    /// Seals a frame laid out in `frame` in place: [`prefix_len`]`(kind)` bytes of room, the
    /// plaintext, [`TAG_LEN`] bytes of room. Writes the prefix and the tag, so that `frame` is then
    /// the serialized frame (the upload pipeline lays whole parts out this way).
    pub(crate) fn seal_laid_out(
        &self,
        sequence: u32,
        kind: FrameKind,
        frame: &mut [u8],
    ) -> Result<()> {
        let prefix_len = prefix_len(kind)?;
        let len = frame
            .len()
            .checked_sub(prefix_len + TAG_LEN)
            .ok_or_else(|| Error::InvalidConfiguration("frame space too short".into()))?;
        let iv = frame_iv(sequence);
        let (prefix, body) = frame.split_at_mut(prefix_len);
        match kind {
            FrameKind::Regular => {
                prefix[..4].copy_from_slice(&sequence.to_be_bytes());
                prefix[4..16].copy_from_slice(&iv);
            }
            _ => {
                let len32 = u32::try_from(len)
                    .map_err(|_| Error::InvalidConfiguration("frame longer than 2^32-1".into()))?;
                prefix[..4].copy_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
                prefix[4..8].copy_from_slice(&sequence.to_be_bytes());
                prefix[8..20].copy_from_slice(&iv);
                prefix[20..24].copy_from_slice(&len32.to_be_bytes());
            }
        }
        let aad = self.aad(kind, sequence, len as u64);
        let (plaintext, tag_space) = body.split_at_mut(len);
        let tag = self.key.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(iv),
            aead::Aad::from(&aad),
            plaintext,
        )?;
        tag_space.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens the frame body that was read into [`FrameBuffer::body_mut`]; on success
    /// [`FrameBuffer::plaintext`] holds the plaintext.
    pub(crate) fn open_in_place(
        &self,
        sequence: u32,
        kind: FrameKind,
        iv: &[u8],
        buf: &mut FrameBuffer,
    ) -> Result<()> {
        let len = buf.body_len;
        let n = self
            .open_frame(
                sequence,
                kind,
                iv,
                &mut buf.buf[PREFIX_ROOM..PREFIX_ROOM + len + TAG_LEN],
            )?
            .len();
        buf.plaintext_len = n;
        Ok(())
    }

    /// Decrypts and authenticates one frame's `ciphertext ‖ tag` in place, given the position the
    /// reader expects it at, and returns the plaintext. `iv` is the IV field read from the frame: it
    /// must be the one the sequence number dictates.
    pub fn open_frame<'a>(
        &self,
        sequence: u32,
        kind: FrameKind,
        iv: &[u8],
        ciphertext_and_tag: &'a mut [u8],
    ) -> Result<&'a mut [u8]> {
        let tampered = Error::TamperedFrame { sequence };
        let expected_iv = frame_iv(sequence);
        if iv != expected_iv || ciphertext_and_tag.len() < TAG_LEN {
            return Err(tampered);
        }
        let len = (ciphertext_and_tag.len() - TAG_LEN) as u64;
        let aad = self.aad(kind, sequence, len);
        self.key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(expected_iv),
                aead::Aad::from(&aad),
                ciphertext_and_tag,
            )
            .map_err(|_| tampered)
    }
}

/// The length of the fields in front of a frame's ciphertext: sequence number and IV for a regular
/// frame; the final-frame marker, sequence number, IV and length for the final frame.
pub(crate) fn prefix_len(kind: FrameKind) -> Result<usize> {
    match kind {
        FrameKind::Regular => Ok(4 + IV_LEN),
        FrameKind::Final => Ok(4 + 4 + IV_LEN + 4),
        FrameKind::SingleBlock => Err(Error::InvalidConfiguration(
            "this crate writes framed content only".into(),
        )),
    }
}

/// The serialized length of a regular frame of `frame_length` plaintext bytes.
pub fn regular_frame_len(frame_length: u32) -> u64 {
    4 + IV_LEN as u64 + u64::from(frame_length) + TAG_LEN as u64
}

/// The serialized length of a final frame of `len` plaintext bytes.
pub fn final_frame_len(len: u32) -> u64 {
    4 + 4 + IV_LEN as u64 + 4 + u64::from(len) + TAG_LEN as u64
}

/// Where the final frame of a framed body must be, from the body's length alone: every frame before
/// it is a whole regular frame, so `body_len` fixes how many there are and how long the final one
/// is. Readers that seek check the final frame there first: it authenticates the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyLayout {
    /// Regular frames before the final frame.
    pub(crate) regular_frames: u64,
    /// The final frame's plaintext length.
    pub(crate) final_len: u64,
}

impl BodyLayout {
    /// The layout of a body of `body_len` bytes, or `None` when no final frame fits (too short, a
    /// final frame longer than a frame, or more frames than sequence numbers).
    pub(crate) fn of(body_len: u64, frame_length: u32) -> Option<Self> {
        let rest = body_len.checked_sub(final_frame_len(0))?;
        let stride = regular_frame_len(frame_length);
        let layout = Self {
            regular_frames: rest / stride,
            final_len: rest % stride,
        };
        (layout.final_len <= u64::from(frame_length)
            && layout.regular_frames < u64::from(FINAL_FRAME_MARKER - 1))
        .then_some(layout)
    }

    /// The final frame's sequence number.
    pub(crate) fn final_sequence(&self) -> u32 {
        // `of` keeps `regular_frames` below `FINAL_FRAME_MARKER - 1`.
        self.regular_frames as u32 + 1
    }

    /// The plaintext length.
    pub(crate) fn plaintext_len(&self, frame_length: u32) -> u64 {
        self.regular_frames * u64::from(frame_length) + self.final_len
    }
}

/// The serialized body length of `plaintext_len` bytes framed by `frame_length`, as this crate
/// writes it: full regular frames, then a final frame of the rest (empty for an exact multiple).
pub fn body_len(plaintext_len: u64, frame_length: u32) -> u64 {
    let fl = u64::from(frame_length.max(1));
    let regular = plaintext_len / fl;
    let last = plaintext_len % fl;
    regular * regular_frame_len(frame_length) + final_frame_len(last as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_layout_finds_the_final_frame_of_every_body_this_crate_writes() {
        for fl in [1u32, 7, 4096, 65_536] {
            for len in [
                0,
                1,
                u64::from(fl) - 1,
                u64::from(fl),
                3 * u64::from(fl) + 1,
            ] {
                let layout = BodyLayout::of(body_len(len, fl), fl).expect("a layout");
                assert_eq!(layout.regular_frames, len / u64::from(fl), "{fl} {len}");
                assert_eq!(layout.final_len, len % u64::from(fl), "{fl} {len}");
                assert_eq!(layout.plaintext_len(fl), len);
                assert_eq!(layout.final_sequence() as u64, len / u64::from(fl) + 1);
            }
        }
    }

    #[test]
    fn body_layout_refuses_bodies_with_no_place_for_a_final_frame() {
        let fl = 100;
        // Shorter than an empty final frame.
        assert_eq!(BodyLayout::of(final_frame_len(0) - 1, fl), None);
        assert_eq!(BodyLayout::of(0, fl), None);
        // A final frame one byte longer than a frame.
        assert_eq!(BodyLayout::of(final_frame_len(fl + 1), fl), None);
        // More frames than sequence numbers.
        let too_many =
            u64::from(FINAL_FRAME_MARKER - 1) * regular_frame_len(1) + final_frame_len(0);
        assert_eq!(BodyLayout::of(too_many, 1), None);
        assert!(BodyLayout::of(too_many - regular_frame_len(1), 1).is_some());
    }
}
