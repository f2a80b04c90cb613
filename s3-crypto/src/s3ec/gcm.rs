//! AES-256-GCM over a stream: the S3 Encryption Client seals a whole object with one GCM invocation
//! (one IV, one tag at the end), so encryption and decryption must be incremental.
//!
//! aws-lc-rs offers GCM only as a one-shot AEAD, so this is GCM assembled from its parts as NIST
//! SP 800-38D defines them: AES-CTR from aws-lc-rs (the keystream, starting at `inc32(J0)`) and
//! GHASH from the `ghash` crate (RustCrypto; hardware carry-less multiply where the CPU has it).
//! Tested against the one-shot AES-GCM of aws-lc-rs for every length around the block size.

use aws_lc_rs::cipher::{
    EncryptionContext as CipherContext, StreamingEncryptingKey, UnboundCipherKey, AES_256,
};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

use crate::error::{Error, Result};

/// The GCM IV length the S3 Encryption Client uses (96 bits).
pub(crate) const IV_LEN: usize = 12;
/// The GCM tag length the S3 Encryption Client uses (128 bits).
pub(crate) const TAG_LEN: usize = 16;
/// The most plaintext one GCM invocation may protect: 2^39 − 256 bits (SP 800-38D), that is
/// 2^36 − 32 bytes, so that the 32-bit block counter never wraps.
pub(crate) const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;

const BLOCK: usize = 16;

/// Incremental AES-256-GCM. The same type encrypts and decrypts: only which side of the
/// keystream XOR feeds GHASH differs.
pub(crate) struct StreamingGcm {
    ctr: StreamingEncryptingKey,
    ghash: GHash,
    /// E_K(J0), which masks the GHASH output to make the tag. Not secret once the tag is out, but
    /// kept no longer than needed.
    tag_mask: [u8; BLOCK],
    /// Ciphertext bytes not yet hashed (GHASH takes whole blocks; the last one is zero-padded).
    pending: [u8; BLOCK],
    pending_len: usize,
    aad_len: u64,
    text_len: u64,
}

impl StreamingGcm {
    /// Starts a GCM invocation with a 256-bit key, a 96-bit IV and the additional authenticated
    /// data (given whole: the S3 Encryption Client's AAD is at most a few bytes).
    pub(crate) fn new(key: &[u8], iv: &[u8; IV_LEN], aad: &[u8]) -> Result<Self> {
        // H = E_K(0^128): the CTR keystream for counter block 0 over one zero block.
        let mut h = [0u8; BLOCK];
        keystream_block(key, [0u8; BLOCK], &mut h)?;
        let mut ghash = GHash::new(&h.into());
        h.fill(0);

        let mut j0 = [0u8; BLOCK];
        j0[..IV_LEN].copy_from_slice(iv);
        j0[BLOCK - 1] = 1;
        let mut ctr = StreamingEncryptingKey::less_safe_ctr(
            UnboundCipherKey::new(&AES_256, key)?,
            CipherContext::Iv128(j0.into()),
        )?;
        // The first keystream block (counter J0) masks the tag; the content starts at inc32(J0).
        // Within MAX_PLAINTEXT_LEN the low 32 bits never wrap, so the 128-bit increment of CTR
        // mode equals GCM's inc32.
        let mut tag_mask = [0u8; BLOCK];
        let mut out = [0u8; 2 * BLOCK];
        let update = ctr.update(&[0u8; BLOCK], &mut out)?;
        if update.written().len() != BLOCK {
            return Err(Error::Crypto);
        }
        tag_mask.copy_from_slice(update.written());

        ghash.update_padded(aad);
        Ok(Self {
            ctr,
            ghash,
            tag_mask,
            pending: [0u8; BLOCK],
            pending_len: 0,
            aad_len: aad.len() as u64,
            text_len: 0,
        })
    }

    /// Encrypts `plaintext`, appending the ciphertext to `out`.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        self.apply_keystream(plaintext, out)?;
        self.hash_ciphertext(&out[start..]);
        Ok(())
    }

    /// Decrypts `ciphertext`, appending the (not yet authenticated) plaintext to `out`.
    pub(crate) fn decrypt(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.hash_ciphertext(ciphertext);
        self.apply_keystream(ciphertext, out)
    }

    /// The tag over everything processed.
    pub(crate) fn tag(mut self) -> [u8; TAG_LEN] {
        if self.pending_len > 0 {
            let n = self.pending_len;
            self.ghash.update_padded(&self.pending[..n]);
        }
        let mut lengths = [0u8; BLOCK];
        lengths[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(self.text_len * 8).to_be_bytes());
        self.ghash.update_padded(&lengths);
        let s = self.ghash.finalize();
        let mut tag = [0u8; TAG_LEN];
        for (t, (a, b)) in tag.iter_mut().zip(s.iter().zip(self.tag_mask.iter())) {
            *t = a ^ b;
        }
        self.tag_mask.fill(0);
        tag
    }

    /// Checks `expected` against the tag over everything processed, in constant time.
    pub(crate) fn verify(self, expected: &[u8]) -> bool {
        let tag = self.tag();
        aws_lc_rs::constant_time::verify_slices_are_equal(&tag, expected).is_ok()
    }

    fn apply_keystream(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.text_len = self
            .text_len
            .checked_add(input.len() as u64)
            .filter(|&n| n <= MAX_PLAINTEXT_LEN)
            .ok_or(Error::ContentTooLarge {
                len: self.text_len.saturating_add(input.len() as u64),
                max: MAX_PLAINTEXT_LEN,
            })?;
        // aws-lc-rs takes at most i32::MAX bytes per call and wants block_len − 1 bytes of slack.
        for chunk in input.chunks(1 << 24) {
            let start = out.len();
            out.resize(start + chunk.len() + BLOCK, 0);
            let written = self.ctr.update(chunk, &mut out[start..])?.written().len();
            if written != chunk.len() {
                return Err(Error::Crypto);
            }
            out.truncate(start + written);
        }
        Ok(())
    }

    fn hash_ciphertext(&mut self, mut data: &[u8]) {
        if self.pending_len > 0 {
            let take = (BLOCK - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < BLOCK {
                return;
            }
            let block = self.pending;
            self.ghash.update_padded(&block);
            self.pending_len = 0;
        }
        let whole = data.len() - data.len() % BLOCK;
        if whole > 0 {
            // A multiple of the block size: update_padded adds no padding.
            self.ghash.update_padded(&data[..whole]);
        }
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }
}

/// One AES block: E_K(counter_block), as the first CTR keystream block.
fn keystream_block(key: &[u8], counter_block: [u8; BLOCK], out: &mut [u8; BLOCK]) -> Result<()> {
    let mut ctr = StreamingEncryptingKey::less_safe_ctr(
        UnboundCipherKey::new(&AES_256, key)?,
        CipherContext::Iv128(counter_block.into()),
    )?;
    let mut buf = [0u8; 2 * BLOCK];
    let update = ctr.update(&[0u8; BLOCK], &mut buf)?;
    if update.written().len() != BLOCK {
        return Err(Error::Crypto);
    }
    out.copy_from_slice(update.written());
    buf.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

    fn one_shot(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
        let mut buf = plaintext.to_vec();
        k.seal_in_place_append_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut buf)
            .unwrap();
        buf
    }

    fn streaming_seal(
        key: &[u8; 32],
        iv: &[u8; 12],
        aad: &[u8],
        pt: &[u8],
        step: usize,
    ) -> Vec<u8> {
        let mut g = StreamingGcm::new(key, iv, aad).unwrap();
        let mut out = Vec::new();
        for chunk in pt.chunks(step.max(1)) {
            g.encrypt(chunk, &mut out).unwrap();
        }
        out.extend_from_slice(&g.tag());
        out
    }

    #[test]
    fn matches_one_shot_gcm_for_all_lengths_and_chunkings() {
        let key = [0x42u8; 32];
        let iv = [7u8; 12];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 31 % 251) as u8).collect();
        for aad in [&b""[..], b"\x00\x73", b"AES/GCM/NoPadding"] {
            for len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 200] {
                let expected = one_shot(&key, &iv, aad, &data[..len]);
                for step in [1, 3, 16, 17, 64, 1000] {
                    assert_eq!(
                        streaming_seal(&key, &iv, aad, &data[..len], step),
                        expected,
                        "len {len} step {step}"
                    );
                    // And back.
                    let mut g = StreamingGcm::new(&key, &iv, aad).unwrap();
                    let mut pt = Vec::new();
                    for chunk in expected[..len].chunks(step) {
                        g.decrypt(chunk, &mut pt).unwrap();
                    }
                    assert_eq!(pt, &data[..len]);
                    assert!(g.verify(&expected[len..]));
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_fails_verification() {
        let key = [1u8; 32];
        let iv = [2u8; 12];
        let sealed = one_shot(&key, &iv, b"", b"attack at dawn");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            let n = bad.len() - TAG_LEN;
            let mut g = StreamingGcm::new(&key, &iv, b"").unwrap();
            let mut pt = Vec::new();
            g.decrypt(&bad[..n], &mut pt).unwrap();
            assert!(!g.verify(&bad[n..]), "flip at {i} went unnoticed");
        }
    }
}
