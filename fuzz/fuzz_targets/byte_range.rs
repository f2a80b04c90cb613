//! `ByteRange` parsing: never panics; what parses prints back to a form that parses to the same
//! range; resolving never yields an empty or out-of-bounds range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3_crypto::ByteRange;

fuzz_target!(|data: (&str, u64)| {
    let (text, total) = data;
    if let Ok(range) = text.parse::<ByteRange>() {
        assert_eq!(range.to_string().parse::<ByteRange>(), Ok(range));
        if let Some(r) = range.resolve(total) {
            assert!(r.start < r.end && r.end <= total);
        }
    }
});
