//! The content metadata: what an S3 Encryption Client object stores beside its body (in the
//! object's user metadata, or partly in an instruction file), in the V2 and V3 layouts.
//!
//! Map keys here are without the `x-amz-meta-` prefix that S3 adds on the wire.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::algorithms::{
    quote, ContentAlgorithm, WrappingAlgorithm, COMMITMENT_LEN, MESSAGE_ID_LEN,
};
use super::gcm::IV_LEN;
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};

/// V1 (legacy, not supported): the encrypted data key.
pub const KEY_V1: &str = "x-amz-key";
/// V2: the encrypted data key (base64).
pub const KEY_V2: &str = "x-amz-key-v2";
/// V1/V2: the content IV (base64).
pub const IV: &str = "x-amz-iv";
/// V2: the content algorithm.
pub const CEK_ALG: &str = "x-amz-cek-alg";
/// V2: the wrapping algorithm.
pub const WRAP_ALG: &str = "x-amz-wrap-alg";
/// V1/V2: the materials description or KMS encryption context (JSON).
pub const MATDESC: &str = "x-amz-matdesc";
/// V2: the GCM tag length in bits (`128`).
pub const TAG_LEN: &str = "x-amz-tag-len";
/// V3: the content algorithm (`115`).
pub const CONTENT_CIPHER_V3: &str = "x-amz-c";
/// V3: the encrypted data key (base64).
pub const ENCRYPTED_DATA_KEY_V3: &str = "x-amz-3";
/// V3: the materials description of a raw keyring (JSON).
pub const MAT_DESC_V3: &str = "x-amz-m";
/// V3: the KMS encryption context (JSON).
pub const ENCRYPTION_CONTEXT_V3: &str = "x-amz-t";
/// V3: the wrapping algorithm, compressed (`02`, `12`).
pub const WRAP_ALG_V3: &str = "x-amz-w";
/// V3: the key commitment (base64).
pub const KEY_COMMITMENT_V3: &str = "x-amz-d";
/// V3: the Message ID (base64).
pub const MESSAGE_ID_V3: &str = "x-amz-i";
/// The user-metadata key that marks an instruction file object (with an empty value).
pub const INSTRUCTION_FILE_MARKER: &str = "x-amz-crypto-instr-file";
/// The default suffix of an instruction file's object key.
pub const INSTRUCTION_FILE_SUFFIX: &str = ".instruction";

/// Every key the S3 Encryption Client owns; others in the metadata are ignored.
const S3EC_KEYS: [&str; 15] = [
    KEY_V1,
    KEY_V2,
    IV,
    CEK_ALG,
    WRAP_ALG,
    MATDESC,
    TAG_LEN,
    INSTRUCTION_FILE_MARKER,
    CONTENT_CIPHER_V3,
    ENCRYPTED_DATA_KEY_V3,
    MAT_DESC_V3,
    ENCRYPTION_CONTEXT_V3,
    WRAP_ALG_V3,
    KEY_COMMITMENT_V3,
    MESSAGE_ID_V3,
];
/// Keys only the V2 layout has.
const V2_ONLY: [&str; 5] = [IV, CEK_ALG, WRAP_ALG, MATDESC, TAG_LEN];
/// Keys only the V3 layout has.
const V3_ONLY: [&str; 6] = [
    CONTENT_CIPHER_V3,
    MAT_DESC_V3,
    ENCRYPTION_CONTEXT_V3,
    WRAP_ALG_V3,
    KEY_COMMITMENT_V3,
    MESSAGE_ID_V3,
];
/// V3 keys that stay in the object metadata when the rest goes to an instruction file.
const V3_OBJECT_ONLY: [&str; 3] = [CONTENT_CIPHER_V3, KEY_COMMITMENT_V3, MESSAGE_ID_V3];

/// The per-object parameters of the content encryption.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentParameters {
    /// [`ContentAlgorithm::AesGcm`]: the random IV.
    AesGcm {
        /// The GCM IV (`x-amz-iv`).
        iv: [u8; IV_LEN],
    },
    /// [`ContentAlgorithm::AesGcmCommitKey`]: the Message ID and the key commitment.
    AesGcmCommitKey {
        /// The Message ID, the HKDF salt (`x-amz-i`).
        message_id: [u8; MESSAGE_ID_LEN],
        /// The key commitment (`x-amz-d`).
        commitment: [u8; COMMITMENT_LEN],
    },
}

/// Everything needed to decrypt an S3 Encryption Client object apart from the key and the body.
///
/// The layout follows from the content algorithm, as the specification requires: AES-GCM objects
/// use the V2 layout, key-committing objects the V3 layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentMetadata {
    /// Content algorithm and its per-object parameters.
    pub content: ContentParameters,
    /// How the data key is wrapped.
    pub wrapping: WrappingAlgorithm,
    /// The wrapped data key (for KMS, the `CiphertextBlob`).
    pub encrypted_data_key: Vec<u8>,
    /// For `kms+context`, the KMS encryption context (including `aws:x-amz-cek-alg`); for `AES/GCM`,
    /// the keyring's materials description. Not secret.
    pub context: EncryptionContext,
}

/// The result of reading an object's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataLookup {
    /// The object metadata holds everything.
    Complete(ContentMetadata),
    /// The object metadata lacks the key material: read the instruction file (the object key with
    /// [`INSTRUCTION_FILE_SUFFIX`]) and call [`ContentMetadata::from_instruction_file`].
    NeedsInstructionFile,
}

impl ContentMetadata {
    /// The content algorithm.
    pub fn content_algorithm(&self) -> ContentAlgorithm {
        match self.content {
            ContentParameters::AesGcm { .. } => ContentAlgorithm::AesGcm,
            ContentParameters::AesGcmCommitKey { .. } => ContentAlgorithm::AesGcmCommitKey,
        }
    }

    /// The whole metadata as object user metadata (keys without `x-amz-meta-`).
    pub fn to_object_metadata(&self) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        let edk = B64.encode(&self.encrypted_data_key);
        let context = context_json(&self.context)?;
        match &self.content {
            ContentParameters::AesGcm { iv } => {
                m.insert(KEY_V2.into(), edk);
                m.insert(IV.into(), B64.encode(iv));
                m.insert(
                    CEK_ALG.into(),
                    ContentAlgorithm::AesGcm.metadata_name().into(),
                );
                m.insert(TAG_LEN.into(), "128".into());
                m.insert(WRAP_ALG.into(), self.wrapping.name().into());
                m.insert(MATDESC.into(), context);
            }
            ContentParameters::AesGcmCommitKey {
                message_id,
                commitment,
            } => {
                let code = self.wrapping.v3_code().ok_or_else(|| {
                    Error::InvalidConfiguration(format!(
                        "wrapping algorithm {} cannot be written in the V3 layout",
                        self.wrapping.name()
                    ))
                })?;
                m.insert(
                    CONTENT_CIPHER_V3.into(),
                    ContentAlgorithm::AesGcmCommitKey.metadata_name().into(),
                );
                m.insert(ENCRYPTED_DATA_KEY_V3.into(), edk);
                m.insert(WRAP_ALG_V3.into(), code.into());
                m.insert(KEY_COMMITMENT_V3.into(), B64.encode(commitment));
                m.insert(MESSAGE_ID_V3.into(), B64.encode(message_id));
                // As the official clients: the context only when there is one.
                if !self.context.is_empty() {
                    let key = match self.wrapping {
                        WrappingAlgorithm::AesGcm => MAT_DESC_V3,
                        _ => ENCRYPTION_CONTEXT_V3,
                    };
                    m.insert(key.into(), context);
                }
            }
        }
        Ok(m)
    }

    /// The metadata split for an instruction file: `(object user metadata, instruction file body)`.
    /// V2 puts everything in the instruction file; V3 keeps `x-amz-c`, `x-amz-d` and `x-amz-i` in
    /// the object metadata. Store the body under the object key + [`INSTRUCTION_FILE_SUFFIX`], with
    /// the user metadata `{INSTRUCTION_FILE_MARKER: ""}`.
    pub fn to_instruction_file(&self) -> Result<(BTreeMap<String, String>, String)> {
        let mut all = self.to_object_metadata()?;
        let mut object = BTreeMap::new();
        if matches!(self.content, ContentParameters::AesGcmCommitKey { .. }) {
            for k in V3_OBJECT_ONLY {
                if let Some(v) = all.remove(k) {
                    object.insert(k.to_owned(), v);
                }
            }
        }
        let body = serde_json::to_string(&all)
            .map_err(|e| Error::InvalidConfiguration(format!("cannot serialize metadata: {e}")))?;
        Ok((object, body))
    }

    /// Reads the object's user metadata (keys without `x-amz-meta-`; keys that are not the S3
    /// Encryption Client's are ignored).
    pub fn from_object_metadata<I, K, V>(metadata: I) -> Result<MetadataLookup>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let m = s3ec_keys(metadata);
        let has_key = [KEY_V1, KEY_V2, ENCRYPTED_DATA_KEY_V3]
            .iter()
            .any(|k| m.contains_key(*k));
        if !has_key {
            // No data key: either V3 content keys with the rest in an instruction file, or
            // (V1/V2) everything in the instruction file. Anything else is not one of those.
            let v3_object_only = V3_OBJECT_ONLY.iter().all(|k| m.contains_key(*k))
                && m.keys().all(|k| V3_OBJECT_ONLY.contains(&k.as_str()));
            let nothing = m.keys().all(|k| k == INSTRUCTION_FILE_MARKER);
            if v3_object_only || nothing {
                return Ok(MetadataLookup::NeedsInstructionFile);
            }
            return Err(Error::InvalidS3ecMetadata(format!(
                "no encrypted data key, but {} present",
                list(m.keys())
            )));
        }
        parse(&m).map(MetadataLookup::Complete)
    }

    /// Reads the metadata of an object whose key material is in an instruction file: the object's
    /// user metadata and the instruction file's body (a JSON object).
    pub fn from_instruction_file<I, K, V>(
        object_metadata: I,
        instruction_file: &[u8],
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let object = s3ec_keys(object_metadata);
        let value: serde_json::Value = serde_json::from_slice(instruction_file).map_err(|_| {
            Error::InvalidS3ecMetadata("the instruction file is not valid JSON".into())
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::InvalidS3ecMetadata(
                "the instruction file is not a JSON object".into(),
            ));
        };
        let mut merged = BTreeMap::new();
        for (k, v) in map {
            if !S3EC_KEYS.contains(&k.as_str()) {
                return Err(Error::InvalidS3ecMetadata(format!(
                    "the instruction file has the key {}, which is not an S3 Encryption Client key",
                    quote(&k)
                )));
            }
            if V3_OBJECT_ONLY.contains(&k.as_str()) {
                // These bind the content to the key; they must come from the object itself.
                return Err(Error::InvalidS3ecMetadata(format!(
                    "the instruction file has {}, which only the object metadata may hold",
                    quote(&k)
                )));
            }
            let serde_json::Value::String(v) = v else {
                return Err(Error::InvalidS3ecMetadata(format!(
                    "the instruction file's {} is not a string",
                    quote(&k)
                )));
            };
            merged.insert(k, v);
        }
        for (k, v) in object {
            if k == INSTRUCTION_FILE_MARKER {
                continue;
            }
            if merged.contains_key(&k) {
                return Err(Error::InvalidS3ecMetadata(format!(
                    "{} is in both the object metadata and the instruction file",
                    quote(&k)
                )));
            }
            if V2_ONLY.contains(&k.as_str()) || k == KEY_V2 || k == KEY_V1 {
                // A V1/V2 object with an instruction file keeps nothing in its metadata.
                return Err(Error::InvalidS3ecMetadata(format!(
                    "{} is in the object metadata of an object with an instruction file",
                    quote(&k)
                )));
            }
            merged.insert(k, v);
        }
        merged.remove(INSTRUCTION_FILE_MARKER);
        parse(&merged)
    }
}

/// The S3 Encryption Client's keys of a metadata map, lower-cased (S3 returns them lower-cased).
fn s3ec_keys<I, K, V>(metadata: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    metadata
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.as_ref().to_ascii_lowercase();
            S3EC_KEYS
                .contains(&k.as_str())
                .then(|| (k, v.as_ref().to_owned()))
        })
        .collect()
}

fn list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

fn parse(m: &BTreeMap<String, String>) -> Result<ContentMetadata> {
    let versions = [KEY_V1, KEY_V2, ENCRYPTED_DATA_KEY_V3]
        .iter()
        .filter(|k| m.contains_key(**k))
        .count();
    if versions > 1 {
        return Err(Error::InvalidS3ecMetadata(
            "data keys of several format versions (x-amz-key, x-amz-key-v2, x-amz-3)".into(),
        ));
    }
    if m.contains_key(KEY_V1) {
        return Err(Error::UnsupportedS3ecAlgorithm(
            "the V1 format (x-amz-key) is not supported".into(),
        ));
    }
    if m.contains_key(KEY_V2) {
        if let Some(k) = V3_ONLY.iter().find(|k| m.contains_key(**k)) {
            return Err(Error::InvalidS3ecMetadata(format!(
                "a V2 object with the V3 key {k}"
            )));
        }
        parse_v2(m)
    } else {
        if let Some(k) = V2_ONLY.iter().find(|k| m.contains_key(**k)) {
            return Err(Error::InvalidS3ecMetadata(format!(
                "a V3 object with the V2 key {k}"
            )));
        }
        parse_v3(m)
    }
}

fn parse_v2(m: &BTreeMap<String, String>) -> Result<ContentMetadata> {
    match required(m, CEK_ALG)? {
        "AES/GCM/NoPadding" => {}
        "AES/CBC/PKCS5Padding" => {
            return Err(Error::UnsupportedS3ecAlgorithm(
                "AES/CBC/PKCS5Padding content (unauthenticated, legacy) is not supported".into(),
            ))
        }
        other => {
            return Err(Error::InvalidS3ecMetadata(format!(
                "unknown content algorithm {}",
                quote(other)
            )))
        }
    }
    if let Some(t) = m.get(TAG_LEN) {
        if t != "128" {
            return Err(Error::InvalidS3ecMetadata(format!(
                "tag length {}; AES/GCM/NoPadding uses 128",
                quote(t)
            )));
        }
    }
    let iv = fixed::<IV_LEN>(m, IV)?;
    let wrapping = WrappingAlgorithm::from_v2_name(required(m, WRAP_ALG)?)?;
    let context = match m.get(MATDESC) {
        Some(s) => parse_context(MATDESC, s)?,
        None => EncryptionContext::new(),
    };
    Ok(ContentMetadata {
        content: ContentParameters::AesGcm { iv },
        wrapping,
        encrypted_data_key: data_key(m, KEY_V2)?,
        context,
    })
}

fn parse_v3(m: &BTreeMap<String, String>) -> Result<ContentMetadata> {
    match required(m, CONTENT_CIPHER_V3)? {
        "115" => {}
        other => {
            return Err(Error::InvalidS3ecMetadata(format!(
                "V3 content algorithm {}; the V3 layout is for suite 115",
                quote(other)
            )))
        }
    }
    let wrapping = WrappingAlgorithm::from_v3_code(required(m, WRAP_ALG_V3)?)?;
    let (own, other) = match wrapping {
        WrappingAlgorithm::AesGcm => (MAT_DESC_V3, ENCRYPTION_CONTEXT_V3),
        _ => (ENCRYPTION_CONTEXT_V3, MAT_DESC_V3),
    };
    if m.contains_key(other) {
        return Err(Error::InvalidS3ecMetadata(format!(
            "{other} with wrapping algorithm {}",
            wrapping.name()
        )));
    }
    let context = match m.get(own) {
        Some(s) => parse_context(own, s)?,
        None => EncryptionContext::new(),
    };
    Ok(ContentMetadata {
        content: ContentParameters::AesGcmCommitKey {
            message_id: fixed::<MESSAGE_ID_LEN>(m, MESSAGE_ID_V3)?,
            commitment: fixed::<COMMITMENT_LEN>(m, KEY_COMMITMENT_V3)?,
        },
        wrapping,
        encrypted_data_key: data_key(m, ENCRYPTED_DATA_KEY_V3)?,
        context,
    })
}

fn required<'m>(m: &'m BTreeMap<String, String>, key: &str) -> Result<&'m str> {
    m.get(key)
        .map(String::as_str)
        .ok_or_else(|| Error::InvalidS3ecMetadata(format!("{key} is missing")))
}

fn decode(m: &BTreeMap<String, String>, key: &str) -> Result<Vec<u8>> {
    B64.decode(required(m, key)?.trim())
        .map_err(|_| Error::InvalidS3ecMetadata(format!("{key} is not valid base64")))
}

fn fixed<const N: usize>(m: &BTreeMap<String, String>, key: &str) -> Result<[u8; N]> {
    let v = decode(m, key)?;
    let n = v.len();
    v.try_into()
        .map_err(|_| Error::InvalidS3ecMetadata(format!("{key} has {n} bytes; it must have {N}")))
}

fn data_key(m: &BTreeMap<String, String>, key: &str) -> Result<Vec<u8>> {
    let v = decode(m, key)?;
    if v.is_empty() || v.len() > 4096 {
        return Err(Error::InvalidS3ecMetadata(format!(
            "{key} has {} bytes",
            v.len()
        )));
    }
    Ok(v)
}

/// Serializes a materials description or encryption context: compact JSON, keys sorted.
fn context_json(context: &EncryptionContext) -> Result<String> {
    if let Some((k, v)) = context.iter().find(|(k, v)| !k.is_ascii() || !v.is_ascii()) {
        let which = if k.is_ascii() { v } else { k };
        return Err(Error::InvalidEncryptionContext(format!(
            "{} is not US-ASCII; S3 metadata keeps only US-ASCII unchanged",
            quote(which)
        )));
    }
    let sorted: BTreeMap<&str, &str> = context.iter().collect();
    serde_json::to_string(&sorted)
        .map_err(|e| Error::InvalidEncryptionContext(format!("cannot serialize: {e}")))
}

/// Parses a JSON object of strings, after undoing S3's RFC 2047 encoding of non-ASCII values.
fn parse_context(key: &str, value: &str) -> Result<EncryptionContext> {
    let decoded = rfc2047_decode(value)
        .ok_or_else(|| Error::InvalidS3ecMetadata(format!("{key} is badly RFC 2047-encoded")))?;
    let bad = || Error::InvalidS3ecMetadata(format!("{key} is not a JSON object of strings"));
    let serde_json::Value::Object(map) =
        serde_json::from_str::<serde_json::Value>(&decoded).map_err(|_| bad())?
    else {
        return Err(bad());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(bad()),
        })
        .collect()
}

/// S3 returns a metadata value that had non-ASCII characters as RFC 2047 encoded-words
/// (`=?UTF-8?B?…?=` or `=?UTF-8?Q?…?=`, several separated by white space). Other values are
/// returned as they are. `None` for a malformed encoded-word.
fn rfc2047_decode(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if !(trimmed.starts_with("=?") && trimmed.ends_with("?=")) {
        return Some(value.to_owned());
    }
    let mut bytes = Vec::new();
    for word in trimmed.split_whitespace() {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let charset = parts.next()?;
        let encoding = parts.next()?;
        let text = parts.next()?;
        if !charset.eq_ignore_ascii_case("utf-8") {
            return None;
        }
        match encoding {
            "B" | "b" => bytes.extend(B64.decode(text).ok()?),
            "Q" | "q" => {
                let t = text.as_bytes();
                let mut i = 0;
                while i < t.len() {
                    match t[i] {
                        b'_' => bytes.push(b' '),
                        b'=' => {
                            let hex = std::str::from_utf8(t.get(i + 1..i + 3)?).ok()?;
                            bytes.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 2;
                        }
                        c => bytes.push(c),
                    }
                    i += 1;
                }
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v3() -> ContentMetadata {
        ContentMetadata {
            content: ContentParameters::AesGcmCommitKey {
                message_id: [1; 28],
                commitment: [2; 28],
            },
            wrapping: WrappingAlgorithm::KmsContext,
            encrypted_data_key: vec![3; 40],
            context: [("aws:x-amz-cek-alg", "115")].into_iter().collect(),
        }
    }

    fn v2() -> ContentMetadata {
        ContentMetadata {
            content: ContentParameters::AesGcm { iv: [9; 12] },
            wrapping: WrappingAlgorithm::AesGcm,
            encrypted_data_key: vec![4; 60],
            context: EncryptionContext::new(),
        }
    }

    #[test]
    fn v3_layout_round_trips() {
        let m = v3().to_object_metadata().unwrap();
        let keys: Vec<_> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["x-amz-3", "x-amz-c", "x-amz-d", "x-amz-i", "x-amz-t", "x-amz-w"]
        );
        assert_eq!(m["x-amz-c"], "115");
        assert_eq!(m["x-amz-w"], "12");
        assert_eq!(m["x-amz-t"], r#"{"aws:x-amz-cek-alg":"115"}"#);
        assert_eq!(
            ContentMetadata::from_object_metadata(&m).unwrap(),
            MetadataLookup::Complete(v3())
        );
    }

    #[test]
    fn v2_layout_round_trips() {
        let m = v2().to_object_metadata().unwrap();
        let keys: Vec<_> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "x-amz-cek-alg",
                "x-amz-iv",
                "x-amz-key-v2",
                "x-amz-matdesc",
                "x-amz-tag-len",
                "x-amz-wrap-alg"
            ]
        );
        assert_eq!(m["x-amz-matdesc"], "{}");
        assert_eq!(m["x-amz-tag-len"], "128");
        assert_eq!(
            ContentMetadata::from_object_metadata(&m).unwrap(),
            MetadataLookup::Complete(v2())
        );
    }

    #[test]
    fn instruction_files_split_as_specified_and_merge_back() {
        let (object, body) = v3().to_instruction_file().unwrap();
        let keys: Vec<_> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["x-amz-c", "x-amz-d", "x-amz-i"]);
        assert!(!body.contains("x-amz-c\"") && body.contains("x-amz-3"));
        assert_eq!(
            ContentMetadata::from_object_metadata(&object).unwrap(),
            MetadataLookup::NeedsInstructionFile
        );
        assert_eq!(
            ContentMetadata::from_instruction_file(&object, body.as_bytes()).unwrap(),
            v3()
        );

        let (object, body) = v2().to_instruction_file().unwrap();
        assert!(object.is_empty());
        assert_eq!(
            ContentMetadata::from_instruction_file(&object, body.as_bytes()).unwrap(),
            v2()
        );
    }

    #[test]
    fn instruction_file_may_not_carry_the_commitment() {
        let (object, _) = v3().to_instruction_file().unwrap();
        let mut all = v3().to_object_metadata().unwrap();
        all.remove("x-amz-c");
        let body = serde_json::to_string(&all).unwrap();
        let mut obj = object.clone();
        obj.remove("x-amz-d");
        assert!(matches!(
            ContentMetadata::from_instruction_file(&obj, body.as_bytes()),
            Err(Error::InvalidS3ecMetadata(_))
        ));
    }

    #[test]
    fn mixed_versions_are_refused() {
        let mut m = v3().to_object_metadata().unwrap();
        m.extend(v2().to_object_metadata().unwrap());
        assert!(matches!(
            ContentMetadata::from_object_metadata(&m),
            Err(Error::InvalidS3ecMetadata(_))
        ));
        let mut m = v2().to_object_metadata().unwrap();
        m.insert("x-amz-d".into(), B64.encode([0u8; 28]));
        assert!(matches!(
            ContentMetadata::from_object_metadata(&m),
            Err(Error::InvalidS3ecMetadata(_))
        ));
    }

    #[test]
    fn unrelated_metadata_is_ignored_and_plain_objects_need_an_instruction_file() {
        let mut m = v2().to_object_metadata().unwrap();
        m.insert("color".into(), "blue".into());
        assert_eq!(
            ContentMetadata::from_object_metadata(&m).unwrap(),
            MetadataLookup::Complete(v2())
        );
        let plain: BTreeMap<String, String> = [("color".to_owned(), "blue".to_owned())].into();
        assert_eq!(
            ContentMetadata::from_object_metadata(&plain).unwrap(),
            MetadataLookup::NeedsInstructionFile
        );
    }

    #[test]
    fn rfc2047_values_are_decoded() {
        assert_eq!(
            rfc2047_decode("=?UTF-8?B?eyJrIjoiw6kifQ==?=").unwrap(),
            r#"{"k":"é"}"#
        );
        assert_eq!(rfc2047_decode("=?UTF-8?Q?a=C3=A9_b?=").unwrap(), "aé b");
        assert_eq!(rfc2047_decode(r#"{"a":"b"}"#).unwrap(), r#"{"a":"b"}"#);
        assert!(rfc2047_decode("=?latin1?B?eA==?=").is_none());
    }

    #[test]
    fn non_ascii_context_is_refused_on_write() {
        let mut m = v3();
        m.context.insert("k", "é");
        assert!(matches!(
            m.to_object_metadata(),
            Err(Error::InvalidEncryptionContext(_))
        ));
    }
}
