//! The stand-in KMS shared with `testdata/s3ec/s3ec_py.py`, and helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use s3_crypto::s3ec::{
    check_kms_encryption_context, kms_encryption_context, ContentAlgorithm, ContentMetadata,
    WrappingAlgorithm,
};
use s3_crypto::{DataKey, EncryptionContext, Error, Keyring, KeyringFuture, WrappedDataKey};

/// The directory of the vectors and the Python helper.
pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/s3ec")
}

/// The deterministic plaintext the generator uses.
pub fn plaintext(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

pub fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The "fake KMS" of `s3ec_py.py`: the CiphertextBlob is IV ‖ AES-256-GCM(data key) ‖ tag under
/// SHA-256("envelope s3ec fake kms key"), the canonical JSON of the encryption context as AAD.
/// The keyring logic around it (context rules) is the library's own.
pub struct FakeKms {
    key: LessSafeKey,
}

impl FakeKms {
    pub fn new() -> Self {
        let k =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"envelope s3ec fake kms key");
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.as_ref()).unwrap()),
        }
    }

    fn aad(context: &EncryptionContext) -> Vec<u8> {
        let sorted: BTreeMap<&str, &str> = context.iter().collect();
        serde_json::to_string(&sorted).unwrap().into_bytes()
    }
}

impl Keyring for FakeKms {
    fn on_encrypt_object<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        Box::pin(async move {
            let context = kms_encryption_context(algorithm, encryption_context)?;
            let data_key = DataKey::generate(32)?;
            let mut iv = [0u8; 12];
            aws_lc_rs::rand::fill(&mut iv)?;
            let mut sealed = data_key.as_bytes().to_vec();
            self.key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(Self::aad(&context)),
                &mut sealed,
            )?;
            let mut blob = iv.to_vec();
            blob.extend_from_slice(&sealed);
            Ok(WrappedDataKey::new(
                data_key,
                blob,
                WrappingAlgorithm::KmsContext,
                context,
            ))
        })
    }

    fn on_decrypt_object<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(async move {
            assert_eq!(metadata.wrapping, WrappingAlgorithm::KmsContext);
            check_kms_encryption_context(metadata, encryption_context)?;
            let blob = &metadata.encrypted_data_key;
            if blob.len() < 12 + 16 {
                return Err(Error::Keyring(
                    "InvalidCiphertextException (fake KMS)".into(),
                ));
            }
            let iv: [u8; 12] = blob[..12].try_into().unwrap();
            let mut buf = blob[12..].to_vec();
            let plain = self
                .key
                .open_in_place(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(Self::aad(&metadata.context)),
                    &mut buf,
                )
                .map_err(|_| Error::Keyring("InvalidCiphertextException (fake KMS)".into()))?;
            Ok(DataKey::new(plain.to_vec()))
        })
    }
}

/// The name of an error's variant (`TamperedObject`, `Keyring`, …).
pub fn variant(e: &Error) -> String {
    let d = format!("{e:?}");
    d.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}
