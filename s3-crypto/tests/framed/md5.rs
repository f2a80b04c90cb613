//! `md5_parts` (multi-buffer `md5-many`, alpha) must agree with single-stream `md-5` on any parts.

use md5::{Digest, Md5};
use proptest::prelude::*;
use s3_crypto::md5::{md5_parts, Md5Digest, MAX_LANES};

fn reference(bytes: &[u8]) -> Md5Digest {
    Md5::digest(bytes).into()
}

fn check(parts: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let got = md5_parts(&slices);
    prop_assert_eq!(got.len(), parts.len());
    for (i, (part, digest)) in parts.iter().zip(&got).enumerate() {
        prop_assert_eq!(
            *digest,
            reference(part),
            "part {} of {} bytes",
            i,
            part.len()
        );
    }
    Ok(())
}

/// Lengths around the 64-byte block and the 56-byte padding boundary, and longer ones.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..130,
        (0usize..40, 0usize..3).prop_map(|(k, d)| k * 64 + 55 + d),
        0usize..20_000,
        60_000usize..70_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_parts_of_unequal_lengths(
        parts in prop::collection::vec(length().prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)), 0..(2 * MAX_LANES + 3)),
    ) {
        check(&parts)?;
    }

    #[test]
    fn random_parts_of_equal_length(count in 1usize..(MAX_LANES + 20), len in length(), seed in any::<u64>()) {
        // Equal lengths take md5-many's whole-stream kernels; a few parts are made different in
        // length so that the mixed path runs beside them.
        let mut state = seed | 1;
        let mut next = move || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
        let parts: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let n = if i % 7 == 6 { len / 2 } else { len };
                (0..n).map(|_| next() as u8).collect()
            })
            .collect();
        check(&parts)?;
    }
}

#[test]
fn megabyte_parts_in_a_full_batch() {
    // What the pipeline hashes: 32 parts of about a megabyte, the first one longer (the header).
    let parts: Vec<Vec<u8>> = (0..MAX_LANES)
        .map(|i| {
            let n = (1 << 20) + if i == 0 { 417 } else { 0 };
            (0..n).map(|j| (j * 31 + i * 7) as u8).collect()
        })
        .collect();
    check(&parts).unwrap();
}
