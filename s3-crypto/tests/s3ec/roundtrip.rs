//! Round trips with the AES keyring (CSE-C), the commitment policy, key binding, and what a
//! streaming decryption releases before a failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use s3_crypto::s3ec::{
    AesKeyring, ContentAlgorithm, ContentMetadata, ContentParameters, MetadataLookup,
    ObjectDecryptor, ObjectEncryptor, HOLD_BACK, TAG_LENGTH,
};
use s3_crypto::{
    CommitmentPolicy, DataKey, EncryptionContext, Error, Keyring, KeyringFuture, WrappedDataKey,
};

use crate::common::{context, plaintext};

fn v2_encryptor(keyring: &dyn Keyring) -> ObjectEncryptor<'_> {
    ObjectEncryptor::new(keyring).commitment_policy(CommitmentPolicy::ForbidEncryptAllowDecrypt)
}

fn read_back(metadata: &ContentMetadata) -> ContentMetadata {
    match ContentMetadata::from_object_metadata(metadata.to_object_metadata().unwrap()).unwrap() {
        MetadataLookup::Complete(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn aes_keyring_round_trips_v3_and_v2_streaming() {
    let keyring = AesKeyring::new(&[9u8; 32]).unwrap();
    for size in [0usize, 1, 15, 16, 17, 65_536, 200_003] {
        let data = plaintext(size);
        for v2 in [false, true] {
            let enc = if v2 {
                v2_encryptor(&keyring)
            } else {
                ObjectEncryptor::new(&keyring)
            };
            let mut body = Vec::new();
            let (n, metadata) = enc.encrypt(&data[..], &mut body).unwrap();
            assert_eq!(n as usize, size);
            assert_eq!(body.len(), size + TAG_LENGTH);
            assert_eq!(
                metadata.content_algorithm(),
                if v2 {
                    ContentAlgorithm::AesGcm
                } else {
                    ContentAlgorithm::AesGcmCommitKey
                }
            );
            let metadata = read_back(&metadata);
            let policy = if v2 {
                CommitmentPolicy::RequireEncryptAllowDecrypt
            } else {
                CommitmentPolicy::default()
            };
            let mut out = Vec::new();
            let m = ObjectDecryptor::new(&keyring)
                .commitment_policy(policy)
                .decrypt(&metadata, &body[..], &mut out)
                .unwrap();
            assert_eq!(m as usize, size);
            assert_eq!(out, data, "size {size} v2 {v2}");
        }
    }
}

#[test]
fn aes_keyring_metadata_layout_and_materials_description() {
    let desc: BTreeMap<String, String> = context(&[("key", "customer-7")]);
    let keyring = AesKeyring::new(&[1u8; 16])
        .unwrap()
        .with_materials_description(desc.clone());
    let (_, m3) = ObjectEncryptor::new(&keyring).encrypt_to_vec(b"x").unwrap();
    let meta = m3.to_object_metadata().unwrap();
    assert_eq!(meta["x-amz-w"], "02");
    assert_eq!(meta["x-amz-m"], r#"{"key":"customer-7"}"#);
    assert!(!meta.contains_key("x-amz-t"));
    // IV ‖ wrapped key ‖ tag.
    assert_eq!(m3.encrypted_data_key.len(), 12 + 32 + 16);
    let (_, m2) = v2_encryptor(&keyring).encrypt_to_vec(b"x").unwrap();
    let meta = m2.to_object_metadata().unwrap();
    assert_eq!(meta["x-amz-wrap-alg"], "AES/GCM");
    assert_eq!(meta["x-amz-matdesc"], r#"{"key":"customer-7"}"#);
    // No description: V3 writes no x-amz-m, V2 writes {}.
    let plain = AesKeyring::new(&[1u8; 16]).unwrap();
    let (_, m3) = ObjectEncryptor::new(&plain).encrypt_to_vec(b"x").unwrap();
    assert!(!m3.to_object_metadata().unwrap().contains_key("x-amz-m"));
    let (_, m2) = v2_encryptor(&plain).encrypt_to_vec(b"x").unwrap();
    assert_eq!(m2.to_object_metadata().unwrap()["x-amz-matdesc"], "{}");
}

#[test]
fn wrong_aes_key_is_refused() {
    let (body, metadata) = ObjectEncryptor::new(&AesKeyring::new(&[1u8; 32]).unwrap())
        .encrypt_to_vec(b"secret")
        .unwrap();
    let e = ObjectDecryptor::new(&AesKeyring::new(&[2u8; 32]).unwrap())
        .decrypt_to_vec(&metadata, &body)
        .unwrap_err();
    assert!(matches!(e, Error::NoDataKeyDecrypted { count: 1 }), "{e}");
}

#[test]
fn an_aes_wrapped_v3_key_does_not_unwrap_as_v2() {
    // The wrapping binds the content algorithm (AAD "115" vs "AES/GCM/NoPadding"), so a V3
    // object's data key relabelled into the V2 layout (no commitment) is refused.
    let keyring = AesKeyring::new(&[3u8; 32]).unwrap();
    let (body, m3) = ObjectEncryptor::new(&keyring)
        .encrypt_to_vec(b"data")
        .unwrap();
    let relabelled = ContentMetadata {
        content: ContentParameters::AesGcm { iv: [1u8; 12] },
        ..m3
    };
    let e = ObjectDecryptor::new(&keyring)
        .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
        .decrypt_to_vec(&relabelled, &body)
        .unwrap_err();
    assert!(matches!(e, Error::NoDataKeyDecrypted { .. }), "{e}");
}

#[test]
fn raw_keyrings_refuse_an_encryption_context() {
    let keyring = AesKeyring::new(&[3u8; 32]).unwrap();
    let e = ObjectEncryptor::new(&keyring)
        .encryption_context(context(&[("a", "b")]))
        .encrypt_to_vec(b"x")
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
}

#[test]
fn encryption_follows_the_commitment_policy() {
    let keyring = AesKeyring::new(&[3u8; 32]).unwrap();
    // V2 needs ForbidEncryptAllowDecrypt, as in the official clients …
    for policy in [
        CommitmentPolicy::RequireEncryptAllowDecrypt,
        CommitmentPolicy::RequireEncryptRequireDecrypt,
    ] {
        let e = ObjectEncryptor::new(&keyring)
            .content_algorithm(ContentAlgorithm::AesGcm)
            .commitment_policy(policy)
            .encrypt_to_vec(b"x")
            .unwrap_err();
        assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
    }
    // … which in turn forbids V3.
    let e = v2_encryptor(&keyring)
        .content_algorithm(ContentAlgorithm::AesGcmCommitKey)
        .encrypt_to_vec(b"x")
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
}

/// Counts unwrap calls, to show the policy is checked before any key is unwrapped.
struct Counting(AesKeyring, AtomicUsize);

impl Keyring for Counting {
    fn on_encrypt_object<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        ctx: &'a EncryptionContext,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        self.0.on_encrypt_object(algorithm, ctx)
    }

    fn on_decrypt_object<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        ctx: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.on_decrypt_object(metadata, ctx)
    }
}

#[test]
fn non_committing_objects_are_an_explicit_opt_in() {
    let keyring = Counting(AesKeyring::new(&[4u8; 32]).unwrap(), AtomicUsize::new(0));
    let (body, metadata) = v2_encryptor(&keyring)
        .encrypt_to_vec(b"old object")
        .unwrap();
    let e = ObjectDecryptor::new(&keyring)
        .decrypt_to_vec(&metadata, &body)
        .unwrap_err();
    assert!(matches!(e, Error::CommitmentPolicyViolation(0x0072)), "{e}");
    assert_eq!(
        keyring.1.load(Ordering::SeqCst),
        0,
        "unwrapped before the policy check"
    );
    for policy in [
        CommitmentPolicy::RequireEncryptAllowDecrypt,
        CommitmentPolicy::ForbidEncryptAllowDecrypt,
    ] {
        let got = ObjectDecryptor::new(&keyring)
            .commitment_policy(policy)
            .decrypt_to_vec(&metadata, &body)
            .unwrap();
        assert_eq!(got, b"old object");
    }
}

#[test]
fn streaming_decryption_holds_back_the_end_until_the_tag_verifies() {
    let keyring = AesKeyring::new(&[5u8; 32]).unwrap();
    for size in [10usize, HOLD_BACK, 3 * HOLD_BACK + 11] {
        let data = plaintext(size);
        let (body, metadata) = ObjectEncryptor::new(&keyring)
            .encrypt_to_vec(&data)
            .unwrap();
        let mut bad = body.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut out = Vec::new();
        let e = ObjectDecryptor::new(&keyring)
            .decrypt(&metadata, &bad[..], &mut out)
            .unwrap_err();
        assert!(matches!(e, Error::TamperedObject), "{e}");
        assert_eq!(out.len(), size.saturating_sub(HOLD_BACK), "size {size}");
        assert_eq!(out, data[..out.len()]);
        // A truncated body (shorter than a tag) is reported as such, with nothing released.
        let mut out = Vec::new();
        let e = ObjectDecryptor::new(&keyring)
            .decrypt(&metadata, &body[..TAG_LENGTH - 1], &mut out)
            .unwrap_err();
        assert!(matches!(e, Error::Truncated(_)), "{e}");
        assert!(out.is_empty());
        // decrypt_to_vec gives nothing at all.
        assert!(ObjectDecryptor::new(&keyring)
            .decrypt_to_vec(&metadata, &bad)
            .is_err());
    }
}

#[test]
fn a_tampered_commitment_is_caught_before_decrypting() {
    let keyring = AesKeyring::new(&[6u8; 32]).unwrap();
    let (body, mut metadata) = ObjectEncryptor::new(&keyring)
        .encrypt_to_vec(b"abc")
        .unwrap();
    if let ContentParameters::AesGcmCommitKey { commitment, .. } = &mut metadata.content {
        commitment[27] ^= 0x80;
    }
    let e = ObjectDecryptor::new(&keyring)
        .decrypt_to_vec(&metadata, &body)
        .unwrap_err();
    assert!(matches!(e, Error::CommitmentMismatch), "{e}");
}

#[test]
fn key_material_stays_out_of_debug_output() {
    let keyring = AesKeyring::new(&[0xABu8; 32]).unwrap();
    let d = format!("{keyring:?}");
    assert!(
        !d.contains("171") && !d.to_lowercase().contains("abab"),
        "{d}"
    );
    let enc = futures_block_on(ObjectEncryptor::new(&keyring).begin()).unwrap();
    let d = format!("{enc:?}");
    assert!(
        d.contains("ContentEncryptor") && !d.contains("content_key"),
        "{d}"
    );
}

fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
