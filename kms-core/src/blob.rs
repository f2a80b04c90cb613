//! The ciphertext blob returned by Encrypt and GenerateDataKey.
//!
//! Byte layout, version 1 (all integers big-endian):
//!
//! | offset | length | field |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `0x01` |
//! | 1 | 16 | KMS key id (UUID bytes) |
//! | 17 | 4 | key material version (1 = the material created with the key) |
//! | 21 | 32 | random salt |
//! | 53 | n | AES-256-GCM ciphertext of the n-byte plaintext |
//! | 53+n | 16 | GCM tag |
//!
//! The content key is HKDF-SHA256(ikm = key material, salt = the salt, info = `envelope/kms-blob/v1`),
//! so every blob has a key of its own (no IV reuse bound across the life of a key version) and the GCM
//! nonce is all zeros. The AAD is bytes 0..53 followed by the canonical encryption context
//! ([`EncryptionContext::canonical_bytes`]); the context itself is not stored.
//!
//! Version 2, for keys in a custom key store (the material never leaves the HSM token, so the token
//! encrypts the plaintext itself):
//!
//! | offset | length | field |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `0x02` |
//! | 1 | 16 | KMS key id (UUID bytes) |
//! | 17 | 4 | always 1 (the token key never rotates) |
//! | 21 | 1 | the token's sealing format, `0x02` |
//! | 22 | 12 | GCM IV (from the host or the token, as the token's capabilities say) |
//! | 34 | n | AES-256-GCM ciphertext under the token key |
//! | 34+n | 16 | GCM tag |
//!
//! The AAD is bytes 0..21 followed by the canonical encryption context.

use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::{KmsError, Result};
use crate::material::{self, KeyMaterial, KEY_LEN, TAG_LEN};

/// Format version byte of blobs written now.
pub const BLOB_VERSION: u8 = 1;
/// Length of the salt.
pub const SALT_LEN: usize = 32;
/// Length of the header (version, key id, material version, salt).
pub const HEADER_LEN: usize = 1 + 16 + 4 + SALT_LEN;
/// Bytes a blob adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const HKDF_INFO: &[u8] = b"envelope/kms-blob/v1";

/// The parsed header of a ciphertext blob: which key and version encrypted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The KMS key.
    pub key_id: Uuid,
    /// The material version within that key.
    pub version: u32,
}

/// Format version byte of blobs sealed inside an HSM token (keys in a custom key store).
pub const TOKEN_BLOB_VERSION: u8 = 2;
/// Length of a version 2 header.
pub const TOKEN_HEADER_LEN: usize = 1 + 16 + 4;
/// The smallest sealed part of a version 2 blob: format byte, IV and tag.
const TOKEN_SEALED_MIN: usize = 1 + 12 + TAG_LEN;

/// Reads the header of a blob (either version) without decrypting it.
pub fn parse_header(blob: &[u8]) -> Result<BlobHeader> {
    let min = match blob.first() {
        Some(&BLOB_VERSION) => OVERHEAD,
        Some(&TOKEN_BLOB_VERSION) => TOKEN_HEADER_LEN + TOKEN_SEALED_MIN,
        _ => return Err(invalid()),
    };
    if blob.len() < min {
        return Err(invalid());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&blob[1..17]);
    let mut v = [0u8; 4];
    v.copy_from_slice(&blob[17..21]);
    Ok(BlobHeader {
        key_id: Uuid::from_bytes(id),
        version: u32::from_be_bytes(v),
    })
}

fn invalid() -> KmsError {
    KmsError::InvalidCiphertext(
        "The ciphertext is invalid, or was not encrypted under this key with this encryption context."
            .into(),
    )
}

fn content_key(material: &KeyMaterial, salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    Salt::new(HKDF_SHA256, salt)
        .extract(material.expose())
        .expand(&[HKDF_INFO], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out[..]))
        .map_err(|_| KmsError::Internal("HKDF failed.".into()))?;
    Ok(out)
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&context.canonical_bytes());
    aad
}

/// Encrypts `plaintext` under one version of a key with a fresh random salt.
pub fn seal(
    header: BlobHeader,
    material: &KeyMaterial,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    material::random_bytes(&mut salt)?;
    seal_with_salt(header, material, context, plaintext, salt)
}

/// [`seal`] with a salt the caller drew from the CSPRNG (or fixed, for golden vectors). A salt must
/// never be reused with the same material.
pub fn seal_with_salt(
    header: BlobHeader,
    material: &KeyMaterial,
    context: &EncryptionContext,
    plaintext: &[u8],
    salt: [u8; SALT_LEN],
) -> Result<Vec<u8>> {
    let mut blob = Vec::with_capacity(OVERHEAD + plaintext.len());
    blob.push(BLOB_VERSION);
    blob.extend_from_slice(header.key_id.as_bytes());
    blob.extend_from_slice(&header.version.to_be_bytes());
    blob.extend_from_slice(&salt);
    let key = content_key(material, &salt)?;
    let mut body = plaintext.to_vec();
    material::seal(&key[..], [0u8; 12], &aad(&blob, context), &mut body)?;
    blob.extend_from_slice(&body);
    Ok(blob)
}

/// Decrypts a blob whose header named this material. Any mismatch is `InvalidCiphertextException`.
pub fn open(
    blob: &[u8],
    material: &KeyMaterial,
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>> {
    parse_header(blob)?;
    if blob[0] != BLOB_VERSION {
        return Err(invalid());
    }
    let (header, sealed) = blob.split_at(HEADER_LEN);
    let key = content_key(material, &header[21..])?;
    material::open(&key[..], [0u8; 12], &aad(header, context), sealed).ok_or_else(invalid)
}

/// The header of a version 2 blob for `key_id`.
pub fn token_header(key_id: &Uuid) -> [u8; TOKEN_HEADER_LEN] {
    let mut h = [0u8; TOKEN_HEADER_LEN];
    h[0] = TOKEN_BLOB_VERSION;
    h[1..17].copy_from_slice(key_id.as_bytes());
    h[17..21].copy_from_slice(&1u32.to_be_bytes());
    h
}

/// The AAD the token binds for a version 2 blob: its header, then the canonical context.
pub fn token_aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    aad(header, context)
}

/// A version 2 blob from its header and what the token sealed.
pub fn token_blob(header: &[u8; TOKEN_HEADER_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(TOKEN_HEADER_LEN + sealed.len());
    blob.extend_from_slice(header);
    blob.extend_from_slice(sealed);
    blob
}

/// Splits a version 2 blob into its header and the part the token opens; anything else is
/// `InvalidCiphertextException`.
pub fn split_token_blob(blob: &[u8]) -> Result<(&[u8], &[u8])> {
    let h = parse_header(blob)?;
    if blob[0] != TOKEN_BLOB_VERSION || h.version != 1 {
        return Err(invalid());
    }
    Ok(blob.split_at(TOKEN_HEADER_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_blob_layout() {
        let id = Uuid::from_bytes([7; 16]);
        let h = token_header(&id);
        let sealed = [2u8; 1 + 12 + 5 + TAG_LEN];
        let b = token_blob(&h, &sealed);
        assert_eq!(b[0], 2);
        assert_eq!(&b[1..17], &[7; 16]);
        assert_eq!(&b[17..21], &[0, 0, 0, 1]);
        assert_eq!(
            parse_header(&b).unwrap(),
            BlobHeader {
                key_id: id,
                version: 1
            }
        );
        let (hh, ss) = split_token_blob(&b).unwrap();
        assert_eq!((hh, ss), (&h[..], &sealed[..]));
        // Too short, or a version 1 blob: refused.
        assert!(split_token_blob(&b[..TOKEN_HEADER_LEN + 10]).is_err());
        let ctx = EncryptionContext::new(Default::default()).unwrap();
        let m = KeyMaterial::generate().unwrap();
        let v1 = seal(
            BlobHeader {
                key_id: id,
                version: 1,
            },
            &m,
            &ctx,
            b"x",
        )
        .unwrap();
        assert!(split_token_blob(&v1).is_err());
        // And a version 2 blob never opens as version 1.
        assert!(open(&b, &m, &ctx).is_err());
    }
}
