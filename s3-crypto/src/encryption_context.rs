//! The encryption context: non-secret key-value pairs bound to a message or an object as
//! authenticated data (the AWS Encryption SDK's header, the S3 Encryption Client's KMS context and
//! materials description, every KMS call).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::esdk::message::reader::Reader;

/// The key under which signed suites store the verification key (base64 of the compressed point).
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

/// Keys with this prefix are reserved for the AWS Encryption SDK itself.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// Non-secret key-value pairs bound to a message.
///
/// Pairs are kept sorted by the UTF-8 bytes of the key (Rust's `String` order), which is the order
/// the AWS Encryption SDK serializes them in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty encryption context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes a pair.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The pairs, sorted by key bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The serialization the format specifies: empty for an empty context, else a u16 pair count
    /// followed by, per pair in key order, u16 key length, key, u16 value length, value.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if self.0.is_empty() {
            return Ok(out);
        }
        let count = u16::try_from(self.0.len())
            .map_err(|_| Error::InvalidEncryptionContext("more than 65535 pairs".into()))?;
        out.extend_from_slice(&count.to_be_bytes());
        for (k, v) in &self.0 {
            for s in [k, v] {
                let len = u16::try_from(s.len()).map_err(|_| {
                    Error::InvalidEncryptionContext(
                        "a key or value is longer than 65535 bytes".into(),
                    )
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidEncryptionContext(
                "serialized encryption context is longer than 65535 bytes".into(),
            ));
        }
        Ok(out)
    }

    /// Parses the serialization (the inverse of [`serialize`](Self::serialize)). Duplicate keys,
    /// invalid UTF-8 and trailing bytes are rejected.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        const BAD: Error = Error::MalformedHeader("invalid encryption context");
        let mut ctx = Self::new();
        if bytes.is_empty() {
            return Ok(ctx);
        }
        let mut r = Reader::new(bytes);
        let count = r.u16().map_err(|_| BAD)?;
        if count == 0 {
            return Err(BAD);
        }
        for _ in 0..count {
            let k = r.string_u16().map_err(|_| BAD)?;
            let v = r.string_u16().map_err(|_| BAD)?;
            if ctx.0.insert(k, v).is_some() {
                return Err(Error::MalformedHeader("duplicate encryption context key"));
            }
        }
        if !r.is_empty() {
            return Err(BAD);
        }
        Ok(ctx)
    }

    /// Checks that every pair of `required` is present here with the same value.
    pub fn require(&self, required: &EncryptionContext) -> Result<()> {
        for (k, v) in required.iter() {
            match self.get(k) {
                None => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "the message has no key `{k}`"
                    )))
                }
                Some(found) if found != v => {
                    return Err(Error::EncryptionContextMismatch(format!(
                        "the message has another value for key `{k}`"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for EncryptionContext {
    fn from(pairs: BTreeMap<String, String>) -> Self {
        Self(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_utf8_bytes_and_unambiguous() {
        let a: EncryptionContext = [("ab", "c")].into_iter().collect();
        let b: EncryptionContext = [("a", "bc")].into_iter().collect();
        assert_ne!(a.serialize().unwrap(), b.serialize().unwrap());
        // "Z" (0x5a) < "a" (0x61) < "é" (0xc3 0xa9)
        let c: EncryptionContext = [("é", "1"), ("a", "2"), ("Z", "3")].into_iter().collect();
        let ser = c.serialize().unwrap();
        assert_eq!(
            ser,
            b"\x00\x03\x00\x01Z\x00\x013\x00\x01a\x00\x012\x00\x02\xc3\xa9\x00\x011".to_vec()
        );
        assert_eq!(EncryptionContext::deserialize(&ser).unwrap(), c);
        assert!(EncryptionContext::new().serialize().unwrap().is_empty());
    }

    #[test]
    fn rejects_duplicates() {
        let dup = b"\x00\x02\x00\x01a\x00\x011\x00\x01a\x00\x012";
        assert!(EncryptionContext::deserialize(dup).is_err());
    }
}
