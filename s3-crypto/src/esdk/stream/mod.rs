//! Streaming encryption and decryption with memory bounded by the frame length.
//!
//! # What a streaming caller may have received before a failure
//!
//! [`MessageDecryptor::decrypt_to`] (and [`Decryptor::decrypt`],
//! [`MessageDecryptor::decrypt_to_parallel`]) writes plaintext frame by frame,
//! and only after each frame's AES-GCM tag has verified. When it returns an error (other than a
//! failure of `output` itself), `output` has received exactly the plaintext of regular frames 1..k
//! of this message, in order, for some k ≥ 0 (possibly none), and **never** the plaintext of the
//! final frame: the final frame is held back until the final frame, the signature (signed suites)
//! and the end of the input have all verified. So:
//! - the output after an error is a prefix of the real plaintext that lacks the final frame's bytes.
//!   When the plaintext length is an exact multiple of the frame length the final frame is empty
//!   (this crate writes it so, as the AWS Encryption SDKs do), so that prefix can be the whole
//!   plaintext: only `Ok` says the message is complete and authentic;
//! - with a signed suite, frames written before the error were authenticated with the data key but
//!   not yet by the signature (someone holding the data key could have made them);
//! - non-framed messages are authenticated as a whole before anything is written: on error, nothing
//!   was written.
//!
//! A caller writing to a file must therefore write to a temporary file and rename it only on `Ok`; a
//! caller writing to a pipe must report the failure (the CLI exits non-zero).
//!
//! [`MessageDecryptor::decrypt_range_to`] writes each frame of the range only after it verifies, and
//! only after the final frame has verified (which fixes the plaintext length).

mod decrypt;
mod encrypt;
mod pipeline;
mod read_at;

pub use decrypt::{Decryptor, MessageDecryptor};
pub use encrypt::{Encryptor, MessageEncryptor};
pub use read_at::ReadAt;

use std::io::{IoSlice, Read, Write};

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
pub(crate) fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes every byte of `bufs`, in as few `write_vectored` calls as `output` takes (a file or a pipe:
/// one `writev` for a whole batch of frames, which costs the kernel less than a write per frame).
pub(crate) fn write_all_vectored<W: Write + ?Sized>(
    output: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match output.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
