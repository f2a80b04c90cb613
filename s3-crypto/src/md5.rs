//! MD5 of several parts at once, for `Content-MD5`.
//!
//! One MD5 stream is serial by construction (each 64-byte block needs the state the previous one
//! left), so it runs at about 0.6–0.8 GB/s per core whatever the implementation, and in an upload
//! pipeline it is slower than AES-GCM by an order of magnitude. Independent parts can be hashed
//! *together*: multi-buffer MD5 puts one part in each SIMD lane (16 lanes of AVX-512, and two
//! interleaved chains of 16 to hide the latency), which is several times faster per core.
//!
//! [`md5_parts`] uses `md5-many` for that whenever it is given two parts or more, and single-stream
//! `md-5` for one. `md5-many` is an alpha release; the tests (`tests/framed/md5.rs`) check it
//! against `md-5` on random parts of random, unequal lengths, and single-stream `md-5` stays the
//! path for one part at a time (which is also what the upload pipeline degrades to when its memory
//! budget leaves room for only one part per thread).

use std::sync::OnceLock;

use ::md5::{Digest, Md5};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// An MD5 digest.
pub type Md5Digest = [u8; 16];

/// The most parts [`md5_parts`] hands to one multi-buffer call. md5-many also has a kernel that
/// interleaves two chains of 16 lanes (32 parts) on AVX-512, but on this project's Xeon (Skylake-SP)
/// 32 parts of 1 MiB hashed at 1.68 GiB/s that way and at 1.95 GiB/s as two passes of 16
/// (`benches/benches/md5.rs`), so parts go in groups of the CPU's SIMD width ([`simd_lanes`]), at
/// most this many.
pub const MAX_LANES: usize = 16;

/// The multi-buffer engine, with the CPU's SIMD level detected once per process.
fn engine() -> md5_many::Md5Many {
    static ENGINE: OnceLock<md5_many::Md5Many> = OnceLock::new();
    *ENGINE.get_or_init(md5_many::Md5Many::new)
}

/// The number of 32-bit SIMD lanes the multi-buffer engine uses on this CPU (16 with AVX-512,
/// 8 with AVX2, 4 with SSE or NEON): how many parts one pass hashes at full speed.
pub fn simd_lanes() -> usize {
    engine().lanes()
}

/// The MD5 of `bytes`, with single-stream `md-5`.
pub fn md5(bytes: &[u8]) -> Md5Digest {
    Md5::digest(bytes).into()
}

/// The MD5 of each of `parts`, in order. Two parts or more are hashed together by multi-buffer
/// MD5 (`md5-many`, in groups of the SIMD width); a single part by single-stream `md-5`. The parts
/// may have any lengths, equal or not.
pub fn md5_parts(parts: &[&[u8]]) -> Vec<Md5Digest> {
    if parts.len() < 2 {
        return parts.iter().map(|p| md5(p)).collect();
    }
    let mut out = vec![[0u8; 16]; parts.len()];
    let engine = engine();
    let group = engine.lanes().clamp(2, MAX_LANES);
    for (inputs, outputs) in parts.chunks(group).zip(out.chunks_mut(group)) {
        // Same lengths by construction, so md5-many's length check cannot fire.
        engine.hash_many(inputs, outputs);
    }
    out
}

/// `Content-MD5` of `bytes`: the base64 of their MD5.
pub fn content_md5(bytes: &[u8]) -> String {
    content_md5_header(&md5(bytes))
}

/// The `Content-MD5` header value of a digest: its base64.
pub fn content_md5_header(digest: &Md5Digest) -> String {
    B64.encode(digest)
}

/// The hex form S3 uses in a single-part ETag.
pub fn to_hex(digest: &Md5Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_md5() {
        // RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn known_answers_through_both_paths() {
        // RFC 1321 appendix A.5.
        let abc = [
            0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
            0x7f, 0x72,
        ];
        assert_eq!(md5(b"abc"), abc);
        assert_eq!(to_hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        let got = md5_parts(&[b"abc", b"", b"abc"]);
        assert_eq!(got[0], abc);
        assert_eq!(to_hex(&got[1]), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(got[2], abc);
        assert_eq!(content_md5_header(&abc), "kAFQmDzST7DWlj99KOF/cg==");
        assert!(md5_parts(&[]).is_empty());
    }
}
