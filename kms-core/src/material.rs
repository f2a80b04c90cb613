//! Key material, the root of trust that wraps it, and the AES-256-GCM primitives both use.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{KmsError, Result};

/// Length of every AES-256 key handled here.
pub const KEY_LEN: usize = 32;
/// Length of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of a GCM IV: 96 bits.
pub const NONCE_LEN: usize = aws_lc_rs::aead::NONCE_LEN;

/// Fills `buf` from the operating system's CSPRNG (getrandom(2); aws-lc's `RAND_bytes` would first
/// seed itself from CPU jitter, ~80 ms of CPU per process).
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|_| KmsError::Internal("The random number generator failed.".into()))
}

/// One version of a KMS key's secret: 256 bits, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; KEY_LEN]);

impl KeyMaterial {
    /// Fresh random material.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        random_bytes(&mut k)?;
        Ok(Self(k))
    }

    /// Material from bytes (must be 32 long).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KmsError::Internal("Key material has the wrong length.".into()))?;
        Ok(Self(arr))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// AES-256-GCM seal in place: appends the tag to `data`.
pub(crate) fn seal(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    data: &mut Vec<u8>,
) -> Result<()> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| KmsError::Internal("Bad AES key.".into()))?,
    );
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
        .map_err(|_| KmsError::Internal("AES-GCM seal failed.".into()))
}

/// AES-256-GCM open of `ciphertext || tag`; `None` when authentication fails.
pub(crate) fn open(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

/// The key at the top of the hierarchy: it wraps KMS key material and principals' secrets.
///
/// The software implementation holds a 256-bit key in memory; the `hsm` crate implements it with a
/// non-extractable key in a PKCS#11 token.
pub trait RootOfTrust: Send + Sync + 'static {
    /// Encrypts `secret`, binding `aad`. The result is self-contained (it carries its own IV).
    fn wrap(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>>;
    /// Decrypts what [`RootOfTrust::wrap`] returned with the same `aad`; fails if either differs.
    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
    /// A short human-readable description for logs ("software root key", "PKCS#11 token X").
    fn describe(&self) -> String;
    /// Like [`RootOfTrust::unwrap`], but tells "this does not open under this root" (`Ok(None)`:
    /// another root, or changed bytes) from "the root cannot be asked now" (`Err`: an HSM that is
    /// unavailable), so a transient failure is never taken for the wrong root key.
    fn try_unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>> {
        Ok(self.unwrap(aad, wrapped).ok())
    }
}

/// The layout of every wrapped secret, whatever root sealed it: `version | IV (12) | ciphertext |
/// tag (16)`. The version byte names the kind of root (1: [`SoftwareRootKey`]; 2: the `hsm` crate's
/// PKCS#11 key), so a secret is never offered to a root of the other kind.
pub mod wrapped {
    use super::{NONCE_LEN, TAG_LEN};

    /// Why bytes are not a wrapped secret of the expected kind.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LayoutError {
        /// Shorter than version, IV and tag.
        TooShort,
        /// Another version byte: sealed by another kind of root, or not a wrapped secret.
        OtherVersion,
    }

    /// `version | iv | sealed`, where `sealed` is `ciphertext || tag`.
    pub fn encode(version: u8, iv: &[u8; NONCE_LEN], sealed: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(version);
        out.extend_from_slice(iv);
        out.extend_from_slice(sealed);
        out
    }

    /// The IV and `ciphertext || tag` of a secret wrapped with `version`.
    pub fn decode(version: u8, wrapped: &[u8]) -> Result<([u8; NONCE_LEN], &[u8]), LayoutError> {
        if wrapped.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(LayoutError::TooShort);
        }
        if wrapped[0] != version {
            return Err(LayoutError::OtherVersion);
        }
        let (iv, sealed) = wrapped[1..].split_at(NONCE_LEN);
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(iv);
        Ok((out, sealed))
    }
}

/// The version byte of a secret wrapped by a [`SoftwareRootKey`].
const WRAP_FORMAT: u8 = 1;

/// A root key held in memory (loaded from a 0600 file or the environment).
pub struct SoftwareRootKey(KeyMaterial);

impl SoftwareRootKey {
    /// Wraps 32 bytes of root key.
    pub fn new(material: KeyMaterial) -> Self {
        Self(material)
    }
}

impl std::fmt::Debug for SoftwareRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoftwareRootKey(<redacted>)")
    }
}

impl RootOfTrust for SoftwareRootKey {
    fn wrap(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut body = Zeroizing::new(Vec::with_capacity(secret.len() + TAG_LEN));
        body.extend_from_slice(secret);
        seal(self.0.expose(), nonce, aad, &mut body)?;
        Ok(wrapped::encode(WRAP_FORMAT, &nonce, &body))
    }

    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let bad = || KmsError::Internal("Wrapped secret does not open under the root key.".into());
        let (nonce, sealed) = wrapped::decode(WRAP_FORMAT, wrapped).map_err(|_| bad())?;
        open(self.0.expose(), nonce, aad, sealed).ok_or_else(bad)
    }

    fn describe(&self) -> String {
        "software root key".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_layout_round_trips_and_rejects() {
        let w = wrapped::encode(7, &[1; NONCE_LEN], &[2; TAG_LEN + 3]);
        assert_eq!(w.len(), 1 + NONCE_LEN + TAG_LEN + 3);
        assert_eq!(w[0], 7);
        let (iv, sealed) = wrapped::decode(7, &w).unwrap();
        assert_eq!((iv, sealed), ([1; NONCE_LEN], &[2u8; TAG_LEN + 3][..]));
        assert_eq!(
            wrapped::decode(8, &w),
            Err(wrapped::LayoutError::OtherVersion)
        );
        let short = &w[..NONCE_LEN + TAG_LEN];
        assert_eq!(
            wrapped::decode(7, short),
            Err(wrapped::LayoutError::TooShort)
        );
    }

    #[test]
    fn wrap_binds_aad_and_key() {
        let root = SoftwareRootKey::new(KeyMaterial::generate().unwrap());
        let w = root.wrap(b"aad", b"secret").unwrap();
        assert_eq!(&root.unwrap(b"aad", &w).unwrap()[..], b"secret");
        assert!(root.unwrap(b"other", &w).is_err());
        let other = SoftwareRootKey::new(KeyMaterial::generate().unwrap());
        assert!(other.unwrap(b"aad", &w).is_err());
        let mut t = w.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(root.unwrap(b"aad", &t).is_err());
        assert!(root.unwrap(b"aad", &w[..5]).is_err());
    }

    #[test]
    fn debug_never_shows_material() {
        let m = KeyMaterial::from_slice(&[0x41; 32]).unwrap();
        assert_eq!(format!("{m:?}"), "KeyMaterial(<redacted>)");
        let r = SoftwareRootKey::new(m);
        assert!(!format!("{r:?}").contains("65"));
    }
}
