//! Byte-range decryption of framed messages: the bytes asked for, authenticated, reading only the
//! frames that hold them.

use std::io::{Cursor, Read, Seek, SeekFrom};

use s3_crypto::{AlgorithmSuite, ByteRange, Decryptor, Encryptor, Error};

use crate::common::{block_on, keyring, Rng};

fn encrypt(frame: u32, plaintext: &[u8]) -> Vec<u8> {
    Encryptor::new(&keyring("raw-aes-256"))
        .frame_length(frame)
        .encrypt_to_vec(plaintext)
        .unwrap()
}

/// A seekable reader that counts the bytes it hands out.
struct Counting<'a> {
    inner: Cursor<&'a [u8]>,
    read: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Seek for Counting<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Decrypts `range` of `message`; returns the bytes written, the range and total reported, and the
/// number of message bytes read.
fn decrypt_range(
    message: &[u8],
    range: ByteRange,
) -> Result<(Vec<u8>, std::ops::Range<u64>, u64, u64), Error> {
    let kr = keyring("raw-aes-256");
    let dec = Decryptor::new(&kr);
    let mut input = Counting {
        inner: Cursor::new(message),
        read: 0,
    };
    let m = block_on(dec.begin(&mut input))?;
    let mut out = Vec::new();
    let (_, r, total) = m.decrypt_range_to(range, &mut out)?;
    Ok((out, r, total, input.read))
}

#[test]
fn random_ranges_of_random_messages_match_the_plaintext() {
    let mut rng = Rng::new(5);
    for case in 0..200 {
        let frame = 1 + rng.below(100) as u32;
        let len = match case % 4 {
            0 => (u64::from(frame) * (1 + rng.below(6))) as usize, // exact multiple
            _ => rng.below(u64::from(frame) * 8) as usize,
        };
        let plaintext = rng.bytes(len);
        let message = encrypt(frame, &plaintext);
        let total = len as u64;
        let range = match rng.below(3) {
            0 => {
                let first = rng.below(total + 3);
                ByteRange::Inclusive {
                    first,
                    last: first + rng.below(u64::from(frame) * 3),
                }
            }
            1 => ByteRange::From(rng.below(total + 3)),
            _ => ByteRange::Suffix(rng.below(total + 3)),
        };
        match (range.resolve(total), decrypt_range(&message, range)) {
            (Some(want), Ok((out, r, t, _))) => {
                assert_eq!(r, want, "case {case}: {range}");
                assert_eq!(t, total, "case {case}");
                assert_eq!(out, &plaintext[want.start as usize..want.end as usize]);
            }
            (None, Err(Error::RangeNotSatisfiable { total: t, .. })) => assert_eq!(t, total),
            (want, got) => panic!("case {case}: {range} of {total}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn reads_only_the_header_the_final_frame_and_the_frames_of_the_range() {
    let frame = 4096u32;
    let plaintext = Rng::new(1).bytes(1000 * frame as usize + 17);
    let message = encrypt(frame, &plaintext);
    let range = ByteRange::Inclusive {
        first: 500 * 4096 + 4000,
        last: 500 * 4096 + 4200, // spans frames 501 and 502
    };
    let (out, _, _, read) = decrypt_range(&message, range).unwrap();
    assert_eq!(out, &plaintext[500 * 4096 + 4000..=500 * 4096 + 4200]);
    // Header (< 300 bytes here), the final frame (57 bytes), two regular frames, one byte probing
    // for the end.
    assert!(read < 300 + 57 + 2 * (4096 + 32) + 1, "read {read} bytes");
}

#[test]
fn damaged_messages_fail_and_nothing_unauthenticated_is_written() {
    let frame = 64u32;
    let plaintext = Rng::new(2).bytes(10 * 64 + 5);
    let message = encrypt(frame, &plaintext);
    let all = ByteRange::From(0);
    // Every truncation and an extra byte: the plaintext length no longer authenticates.
    for cut in 0..message.len() {
        let r = decrypt_range(&message[..cut], all);
        assert!(r.is_err(), "cut at {cut}");
    }
    let mut longer = message.clone();
    longer.push(0);
    assert!(decrypt_range(&longer, all).is_err());
    // A flipped byte in frame 4 fails a range that covers it, after writing only frames 1 to 3.
    let header_len = message.len() - s3_crypto::body_len(plaintext.len() as u64, frame) as usize;
    let frame4 = header_len + 3 * s3_crypto::regular_frame_len(frame) as usize + 20;
    let mut tampered = message.clone();
    tampered[frame4] ^= 0x40;
    let kr = keyring("raw-aes-256");
    let m = block_on(Decryptor::new(&kr).begin(Cursor::new(&tampered[..]))).unwrap();
    let mut out = Vec::new();
    let r = m.decrypt_range_to(all, &mut out);
    assert!(
        matches!(r, Err(Error::TamperedFrame { sequence: 4 })),
        "{r:?}"
    );
    assert_eq!(out, &plaintext[..3 * 64]);
    // A range that avoids frame 4 still decrypts: each frame stands on its own.
    let (out, _, _, _) = decrypt_range(&tampered, ByteRange::Suffix(70)).unwrap();
    assert_eq!(out, &plaintext[plaintext.len() - 70..]);
}

#[test]
fn signed_messages_are_refused() {
    let kr = keyring("raw-aes-256");
    let message = Encryptor::new(&kr)
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .encrypt_to_vec(b"signed")
        .unwrap();
    let r = decrypt_range(&message, ByteRange::From(0));
    assert!(matches!(r, Err(Error::RangeOfSignedMessage)), "{r:?}");
}
