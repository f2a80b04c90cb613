//! The encryption context and its canonical encoding, bound as AAD.

use std::collections::BTreeMap;

use crate::error::{KmsError, Result};

/// Largest encoded encryption context accepted, in bytes (AWS KMS allows 8 KiB).
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// Non-secret key-value pairs bound to a ciphertext. Decrypt needs the same pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// Checks and wraps the pairs of a request.
    pub fn new(pairs: BTreeMap<String, String>) -> Result<Self> {
        let mut size = 0usize;
        for (k, v) in &pairs {
            if k.is_empty() {
                return Err(KmsError::Validation(
                    "Encryption context keys must not be empty.".into(),
                ));
            }
            size += k.len() + v.len();
        }
        if size > MAX_CONTEXT_BYTES {
            return Err(KmsError::Validation(format!(
                "The encryption context is {size} bytes; at most {MAX_CONTEXT_BYTES} are allowed."
            )));
        }
        Ok(Self(pairs))
    }

    /// The pairs, sorted by key.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Canonical encoding: pair count, then each pair sorted by key, every string length-prefixed
    /// (u32 big-endian). `{"ab":"c"}` and `{"a":"bc"}` encode differently.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.0.len() * 16);
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (k, v) in &self.0 {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn encoding_is_unambiguous_and_order_independent() {
        assert_ne!(
            ctx(&[("ab", "c")]).canonical_bytes(),
            ctx(&[("a", "bc")]).canonical_bytes()
        );
        assert_eq!(
            ctx(&[("b", "2"), ("a", "1")]).canonical_bytes(),
            ctx(&[("a", "1"), ("b", "2")]).canonical_bytes()
        );
        assert_eq!(ctx(&[]).canonical_bytes(), vec![0, 0, 0, 0]);
        assert_eq!(
            ctx(&[("a", "bc")]).canonical_bytes(),
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c']
        );
    }

    #[test]
    fn rejects_empty_keys_and_oversized_contexts() {
        let empty = [(String::new(), "v".to_string())].into_iter().collect();
        assert!(matches!(
            EncryptionContext::new(empty),
            Err(KmsError::Validation(_))
        ));
        let big = [("k".to_string(), "v".repeat(MAX_CONTEXT_BYTES))]
            .into_iter()
            .collect();
        assert!(matches!(
            EncryptionContext::new(big),
            Err(KmsError::Validation(_))
        ));
    }
}
