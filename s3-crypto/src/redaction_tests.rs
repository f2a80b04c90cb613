//! Every type of this crate that holds a data key, a wrapping key, an SSE-C key, a signing key or a
//! secret access key prints none of it in `Debug` (issue 14): one test per type, each formatting it
//! with `{:?}` and looking for the secret as text, as a byte list, in hex and in base64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::data_key::{DataKey, DecryptionMaterials, EncryptionMaterials, WrappedDataKey};
use crate::esdk::message::frame::FrameKey;
use crate::esdk::message::suite::SignatureAlgorithm;
use crate::{AlgorithmSuite, EncryptionContext, MultiKeyring, RawAesKeyring, SigningKey};

/// 32 bytes, printable so that a `Debug` of a `String` would show it as text.
const SECRET: &[u8; 32] = b"never-print-this-32-byte-secret!";

fn assert_redacted(what: &str, shown: &str) {
    let list = format!("{:?}", SECRET);
    let forms = [
        String::from_utf8_lossy(SECRET).into_owned(),
        list.trim_matches(|c| c == '[' || c == ']').to_string(),
        SECRET.iter().map(|b| format!("{b:02x}")).collect(),
        STANDARD.encode(SECRET),
    ];
    for form in forms {
        assert!(!shown.contains(&form), "{what} shows its secret: {shown}");
    }
}

#[test]
fn data_key() {
    assert_redacted("DataKey", &format!("{:?}", DataKey::new(SECRET.to_vec())));
}

#[test]
fn materials() {
    let suite = AlgorithmSuite::ALL[AlgorithmSuite::ALL.len() - 1];
    let mut enc = EncryptionMaterials::new(suite, EncryptionContext::new());
    enc.data_key = Some(DataKey::new(SECRET.to_vec()));
    enc.signing_key = Some(SigningKey::generate(SignatureAlgorithm::P384Sha384).unwrap());
    assert_redacted("EncryptionMaterials", &format!("{enc:?}"));
    let mut dec = DecryptionMaterials::new(suite, EncryptionContext::new());
    dec.data_key = Some(DataKey::new(SECRET.to_vec()));
    assert_redacted("DecryptionMaterials", &format!("{dec:?}"));
    let wrapped = WrappedDataKey::new(
        DataKey::new(SECRET.to_vec()),
        vec![1, 2, 3],
        crate::s3ec::WrappingAlgorithm::AesGcm,
        EncryptionContext::new(),
    );
    assert_redacted("WrappedDataKey", &format!("{wrapped:?}"));
}

#[test]
fn signing_key() {
    // The private scalar cannot be read back; the Debug names nothing of the key.
    let key = SigningKey::generate(SignatureAlgorithm::P256Sha256).unwrap();
    assert_eq!(format!("{key:?}"), "SigningKey { .. }");
}

#[test]
fn frame_key() {
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, SECRET).unwrap(),
    );
    assert_redacted(
        "FrameKey",
        &format!("{:?}", FrameKey::new(key, b"message id")),
    );
}

#[test]
fn keyrings() {
    let raw = RawAesKeyring::new("ns", "name", SECRET).unwrap();
    assert_redacted("RawAesKeyring", &format!("{raw:?}"));
    let multi = MultiKeyring::new(
        Some(Box::new(RawAesKeyring::new("ns", "a", SECRET).unwrap())),
        vec![Box::new(RawAesKeyring::new("ns", "b", SECRET).unwrap())],
    )
    .unwrap();
    assert_redacted("MultiKeyring", &format!("{multi:?}"));
    let s3ec = crate::s3ec::AesKeyring::new(SECRET).unwrap();
    assert_redacted("s3ec::AesKeyring", &format!("{s3ec:?}"));
}

#[test]
fn streams() {
    let raw = RawAesKeyring::new("ns", "name", SECRET).unwrap();
    assert_redacted("Encryptor", &format!("{:?}", crate::Encryptor::new(&raw)));
    assert_redacted("Decryptor", &format!("{:?}", crate::Decryptor::new(&raw)));
}

#[cfg(feature = "s3")]
#[test]
fn sse_customer_key() {
    use crate::s3::{ServerSideEncryption, SseCustomerKey};
    let key = SseCustomerKey::new(SECRET).unwrap();
    assert_redacted("SseCustomerKey", &format!("{key:?}"));
    let sse = ServerSideEncryption::Customer(key);
    assert_redacted("ServerSideEncryption", &format!("{sse:?}"));
}

#[cfg(feature = "kms")]
#[test]
fn kms_client_builder() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let b = crate::KmsClientBuilder::new().static_credentials("AKIA", secret, Some(secret.into()));
    assert_redacted("KmsClientBuilder", &format!("{b:?}"));
}
