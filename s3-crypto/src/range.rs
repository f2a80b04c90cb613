//! Byte ranges of plaintext, written as HTTP writes them.

use std::ops::Range;
use std::str::FromStr;

/// A byte range of plaintext as an HTTP `Range` header writes it (RFC 9110, section 14.1.2):
/// `bytes=0-99` (the first 100 bytes), `bytes=100-` (from byte 100 to the end), `bytes=-500` (the
/// last 500 bytes). The `bytes=` prefix is optional when parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `first` to `last`, both included.
    Inclusive {
        /// The first byte.
        first: u64,
        /// The last byte (clamped to the end of the plaintext).
        last: u64,
    },
    /// From this byte to the end.
    From(u64),
    /// The last this-many bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range of a plaintext of `total` bytes that this selects, or `None` if it selects
    /// nothing (HTTP's 416 Range Not Satisfiable).
    pub fn resolve(self, total: u64) -> Option<Range<u64>> {
        match self {
            Self::Inclusive { first, last } if first < total => {
                Some(first..last.saturating_add(1).min(total))
            }
            Self::From(first) if first < total => Some(first..total),
            Self::Suffix(n) if n > 0 && total > 0 => Some(total.saturating_sub(n)..total),
            _ => None,
        }
    }

    /// [`resolve`](Self::resolve), with nothing selected as [`Error::RangeNotSatisfiable`].
    pub(crate) fn resolve_or_err(self, total: u64) -> crate::Result<Range<u64>> {
        self.resolve(total)
            .ok_or_else(|| crate::Error::RangeNotSatisfiable {
                range: self.to_string(),
                total,
            })
    }
}

impl std::fmt::Display for ByteRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inclusive { first, last } => write!(f, "bytes={first}-{last}"),
            Self::From(first) => write!(f, "bytes={first}-"),
            Self::Suffix(n) => write!(f, "bytes=-{n}"),
        }
    }
}

impl FromStr for ByteRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.strip_prefix("bytes=").unwrap_or(s);
        let bad = || format!("invalid byte range `{s}`: expected FIRST-LAST, FIRST- or -SUFFIX");
        let number = |n: &str| -> Result<u64, String> {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map_err(|_| bad())
        };
        let (first, last) = spec.split_once('-').ok_or_else(bad)?;
        match (first.is_empty(), last.is_empty()) {
            (true, false) => Ok(Self::Suffix(number(last)?)),
            (false, true) => Ok(Self::From(number(first)?)),
            (false, false) => {
                let (first, last) = (number(first)?, number(last)?);
                if last < first {
                    return Err(format!(
                        "invalid byte range `{s}`: the last byte comes before the first"
                    ));
                }
                Ok(Self::Inclusive { first, last })
            }
            (true, true) => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_http_forms_with_or_without_prefix() {
        assert_eq!(
            "bytes=0-99".parse(),
            Ok(ByteRange::Inclusive { first: 0, last: 99 })
        );
        assert_eq!("100-".parse(), Ok(ByteRange::From(100)));
        assert_eq!("bytes=-500".parse(), Ok(ByteRange::Suffix(500)));
        for bad in [
            "",
            "-",
            "bytes=",
            "a-b",
            "5-3",
            "1-2-3",
            "+1-2",
            "1 -2",
            "bytes=0-1,4-5",
        ] {
            assert!(bad.parse::<ByteRange>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(ByteRange::Suffix(7).to_string(), "bytes=-7");
    }

    #[test]
    fn resolves_against_the_plaintext_length_as_http_does() {
        let r = |s: &str, total| s.parse::<ByteRange>().unwrap().resolve(total);
        assert_eq!(r("0-99", 1000), Some(0..100));
        assert_eq!(r("990-2000", 1000), Some(990..1000));
        assert_eq!(r("1000-", 1000), None);
        assert_eq!(r("999-", 1000), Some(999..1000));
        assert_eq!(r("-10", 1000), Some(990..1000));
        assert_eq!(r("-5000", 1000), Some(0..1000));
        assert_eq!(r("-0", 1000), None);
        assert_eq!(r("0-0", 0), None);
        assert_eq!(r("-1", 0), None);
    }
}
