//! Framed ranged reads: positioned decryption of a fuzzed range (`decrypt_range_to`), which reads
//! the final frame first, where the message's length puts it, then only the frames of the range.
//!
//! - Any bytes as a message with any range: never a panic; a ranged read that succeeds reports the
//!   range its request resolves to, and when the whole message also decrypts, it wrote exactly that
//!   slice of it (a ranged read authenticates only the frames it reads and the final frame, so it may
//!   succeed where a whole decryption finds a damaged frame elsewhere).
//! - Differential: a message our encryptor wrote (fuzzed frame length, unsigned committing suite)
//!   gives back `x[range]` for any range that resolves, and refuses one that does not.
//!
//! Input: byte 0 picks the case (even: the rest is a message; odd: the rest is a plaintext) and the
//! range kind; bytes 1..9 and 9..17 are the range's numbers (little-endian u64; for the
//! differential case the low bits of bytes 9..11 are also the frame length).
//! Seed corpus: each golden message of `s3-crypto/tests/testdata` behind a few ranges.
#![no_main]

use std::io::Cursor;

use envelope_fuzz::{block_on, esdk_keyring};
use libfuzzer_sys::fuzz_target;
use s3_crypto::{ByteRange, CommitmentPolicy, Decryptor, Encryptor};

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let a = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let b = u64::from_le_bytes(data[9..17].try_into().unwrap());
    let range = match (data[0] >> 1) % 3 {
        0 => ByteRange::Inclusive {
            first: a.min(b),
            last: a.max(b),
        },
        1 => ByteRange::From(a),
        _ => ByteRange::Suffix(a),
    };
    let rest = &data[17..];
    let keyring = esdk_keyring();
    let dec =
        Decryptor::new(&keyring).commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    if data[0] & 1 == 0 {
        let whole = dec.decrypt_to_vec(rest).map(|(p, _)| p);
        let mut out = Vec::new();
        let ranged = block_on(dec.begin(Cursor::new(rest)))
            .and_then(|m| m.decrypt_range_to(range, &mut out));
        if let Ok((_, r, total)) = ranged {
            assert_eq!(range.resolve(total), Some(r.clone()));
            assert_eq!(out.len() as u64, r.end - r.start);
            if let Ok(whole) = whole {
                assert_eq!(total, whole.len() as u64);
                assert!(out == whole[r.start as usize..r.end as usize]);
            }
        }
    } else {
        let frame_length = u32::from(u16::from_le_bytes([data[9], data[10]])) + 1;
        let Ok(message) = Encryptor::new(&keyring)
            .frame_length(frame_length)
            .encrypt_to_vec(rest)
        else {
            panic!("encrypting {} bytes failed", rest.len());
        };
        let mut out = Vec::new();
        let ranged = block_on(dec.begin(Cursor::new(message.as_slice())))
            .and_then(|m| m.decrypt_range_to(range, &mut out));
        match range.resolve(rest.len() as u64) {
            Some(r) => {
                let (_, got, total) = ranged.unwrap();
                assert_eq!((got.clone(), total), (r.clone(), rest.len() as u64));
                assert!(out == rest[r.start as usize..r.end as usize]);
            }
            None => assert!(ranged.is_err() && out.is_empty()),
        }
    }
});
