//! Secret bytes on the wire: [`SecretBytes`], the type of every request and response member that
//! carries a plaintext or a data key, and the buffers a request and its response pass through.
//!
//! A secret is held in one buffer, zeroized when dropped, and never printed: `Debug` shows its
//! length only. Moving it in and out of JSON copies it through base64, so both directions write into
//! buffers allocated once at their final size and zeroized on drop ([`Zeroizing`]); a `Vec` that
//! grew by reallocation would leave its earlier copies behind in freed memory.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Bytes that are a secret (a plaintext, a data key, random bytes that will become a key): zeroized
/// on drop, redacted in `Debug`, base64 in JSON.
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

/// In constant time (for equal lengths): a comparison of secrets must not tell how much matched.
impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Eq for SecretBytes {}

impl SecretBytes {
    /// Takes ownership of `bytes` (zeroized from now on).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The buffer, still zeroized on drop.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = Zeroizing::new(vec![
            0u8;
            base64::encoded_len(self.0.len(), true).unwrap_or(0)
        ]);
        let n = STANDARD
            .encode_slice(&*self.0, &mut text[..])
            .map_err(|_| serde::ser::Error::custom("cannot encode a blob"))?;
        let text = std::str::from_utf8(&text[..n])
            .map_err(|_| serde::ser::Error::custom("cannot encode a blob"))?;
        s.serialize_str(text)
    }
}

struct Base64Secret;

impl Base64Secret {
    fn decode<E: serde::de::Error>(text: &[u8]) -> Result<SecretBytes, E> {
        let mut out = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
        let n = STANDARD
            .decode_slice(text, &mut out[..])
            .map_err(|_| E::custom("blob is not valid base64"))?;
        out.truncate(n);
        Ok(SecretBytes(out))
    }
}

impl serde::de::Visitor<'_> for Base64Secret {
    type Value = SecretBytes;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretBytes, E> {
        Self::decode(v.as_bytes())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretBytes, E> {
        let v = Zeroizing::new(v);
        Self::decode(v.as_bytes())
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A string read from a body without escapes is borrowed from the body, never copied.
        d.deserialize_str(Base64Secret)
    }
}

/// `value` as JSON in one buffer of its exact size, zeroized on drop: a response may carry a
/// plaintext or a data key. The length is measured first (the value is serialized twice), so the
/// buffer never grows and leaves no copy behind.
pub fn to_json_zeroizing<T: Serialize + ?Sized>(
    value: &T,
) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, value)?;
    Ok(out)
}

/// A writer that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `data` to `buf` without leaving a copy behind: when `buf` must grow, its contents move
/// to a new buffer (at least twice the size) and the old one is zeroized, where `Vec`'s own growth
/// would free it as it is. For a request body read chunk by chunk.
pub fn extend_zeroizing(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let needed = buf.len() + data.len();
    if needed > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_only() {
        let s = SecretBytes::new(b"top-secret-plaintext".to_vec());
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(!shown.contains("116, 111, 112"), "{shown}");
        assert!(shown.contains("20 bytes, redacted"), "{shown}");
    }

    #[test]
    fn json_round_trip_through_base64() {
        let s = SecretBytes::new((0u8..=255).collect());
        let json = to_json_zeroizing(&s).unwrap();
        assert_eq!(
            &json[..],
            serde_json::to_vec(&STANDARD.encode(s.expose())).unwrap()
        );
        assert_eq!(json.capacity(), json.len());
        let back: SecretBytes = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        // An escaped string (serde_json copies it) and an empty one.
        let back: SecretBytes = serde_json::from_str(r#""AQI\/""#).unwrap();
        assert_eq!(back.expose(), [1, 2, 0x3f]);
        let back: SecretBytes = serde_json::from_str(r#""""#).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn refuses_what_is_not_base64() {
        for bad in [r#""not base64!""#, r#""AAA""#, "12", "null", "[]"] {
            assert!(serde_json::from_str::<SecretBytes>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_json_is_exactly_sized() {
        #[derive(Serialize)]
        struct R {
            plaintext: SecretBytes,
            key_id: &'static str,
        }
        let r = R {
            plaintext: SecretBytes::new(vec![7; 1024]),
            key_id: "k",
        };
        let json = to_json_zeroizing(&r).unwrap();
        assert_eq!(json.capacity(), json.len());
        assert_eq!(&json[..], serde_json::to_vec(&r).unwrap());
    }

    #[test]
    fn extend_keeps_every_byte() {
        let mut buf = Zeroizing::new(Vec::new());
        let mut want = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; usize::from(i) * 3];
            extend_zeroizing(&mut buf, &chunk);
            want.extend_from_slice(&chunk);
        }
        assert_eq!(&buf[..], &want[..]);
    }

    /// Every type of this crate that holds a plaintext, a data key, random bytes or a password:
    /// its `Debug` holds none of the secret, in any form.
    mod redaction {
        use std::sync::Arc;

        use base64::Engine;

        use crate::api::*;
        use crate::material::{KeyMaterial, SoftwareRootKey};
        use crate::store::CustomKeyStoreRow;
        use crate::ConnectionState;

        const SECRET: &[u8] = b"never-print-this-secret";

        /// Fails when `shown` holds `SECRET` as text, as a byte list, in hex or in base64.
        fn assert_redacted(what: &str, shown: &str) {
            let list = format!("{:?}", SECRET);
            let list = list.trim_matches(|c| c == '[' || c == ']');
            for form in [
                String::from_utf8_lossy(SECRET).into_owned(),
                list.to_string(),
                hex::encode(SECRET),
                super::STANDARD.encode(SECRET),
            ] {
                assert!(!shown.contains(&form), "{what} shows its secret: {shown}");
            }
        }

        fn secret() -> SecretBytes {
            SecretBytes::from(SECRET)
        }

        fn password() -> KeyStorePassword {
            serde_json::from_str(
                &serde_json::to_string(std::str::from_utf8(SECRET).unwrap()).unwrap(),
            )
            .unwrap()
        }

        #[test]
        fn secret_bytes() {
            assert_redacted("SecretBytes", &format!("{:?}", secret()));
        }

        #[test]
        fn key_store_password() {
            assert_eq!(password().expose().as_bytes(), SECRET);
            assert_redacted("KeyStorePassword", &format!("{:?}", password()));
        }

        #[test]
        fn encrypt_request() {
            let r: EncryptRequest = serde_json::from_value(serde_json::json!({
                "KeyId": "alias/a", "Plaintext": super::STANDARD.encode(SECRET)
            }))
            .unwrap();
            assert_eq!(r.plaintext.as_deref(), Some(SECRET));
            assert_redacted("EncryptRequest", &format!("{r:?}"));
        }

        #[test]
        fn decrypt_response() {
            let r = DecryptResponse {
                key_id: "k".into(),
                plaintext: secret(),
                encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            };
            assert_redacted("DecryptResponse", &format!("{r:?}"));
        }

        #[test]
        fn generate_data_key_response() {
            let r = GenerateDataKeyResponse {
                ciphertext_blob: vec![1, 2, 3],
                plaintext: Some(secret()),
                key_id: "k".into(),
            };
            assert_redacted("GenerateDataKeyResponse", &format!("{r:?}"));
        }

        #[test]
        fn generate_random_response() {
            let r = GenerateRandomResponse {
                plaintext: secret(),
            };
            assert_redacted("GenerateRandomResponse", &format!("{r:?}"));
        }

        #[test]
        fn custom_key_store_requests() {
            let create = CreateCustomKeyStoreRequest {
                key_store_password: Some(password()),
                ..Default::default()
            };
            assert_redacted("CreateCustomKeyStoreRequest", &format!("{create:?}"));
            let update = UpdateCustomKeyStoreRequest {
                key_store_password: Some(password()),
                ..Default::default()
            };
            assert_redacted("UpdateCustomKeyStoreRequest", &format!("{update:?}"));
        }

        #[test]
        fn custom_key_store_row() {
            // The password is stored wrapped; the row does not print even that.
            let row = CustomKeyStoreRow {
                id: "cks-1".into(),
                account_id: "111122223333".into(),
                name: "n".into(),
                cluster_id: "cluster-1".into(),
                trust_anchor: String::new(),
                wrapped_password: SECRET.to_vec(),
                connection_state: ConnectionState::Disconnected,
                connection_error: None,
                created_at: 0,
                revision: 0,
            };
            assert_redacted("CustomKeyStoreRow", &format!("{row:?}"));
        }

        #[test]
        fn key_material_and_root_key() {
            let mut bytes = [0u8; 32];
            bytes[..SECRET.len()].copy_from_slice(SECRET);
            let m = KeyMaterial::from_slice(&bytes).unwrap();
            assert_redacted("KeyMaterial", &format!("{m:?}"));
            let root = SoftwareRootKey::new(m);
            assert_redacted("SoftwareRootKey", &format!("{root:?}"));
        }

        #[tokio::test]
        async fn the_service() {
            let mut bytes = [0u8; 32];
            bytes[..SECRET.len()].copy_from_slice(SECRET);
            let root = Arc::new(SoftwareRootKey::new(
                KeyMaterial::from_slice(&bytes).unwrap(),
            ));
            let store = crate::Store::connect("sqlite::memory:").await.unwrap();
            let kms = crate::Kms::open(store, root, crate::KmsConfig::default())
                .await
                .unwrap();
            assert_redacted("Kms", &format!("{kms:?}"));
        }
    }
}
