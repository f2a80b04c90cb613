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

/// Reads the header of a blob without decrypting it.
pub fn parse_header(blob: &[u8]) -> Result<BlobHeader> {
    if blob.len() < OVERHEAD || blob[0] != BLOB_VERSION {
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
    let (header, sealed) = blob.split_at(HEADER_LEN);
    let key = content_key(material, &header[21..])?;
    material::open(&key[..], [0u8; 12], &aad(header, context), sealed).ok_or_else(invalid)
}
