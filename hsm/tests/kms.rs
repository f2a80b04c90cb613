//! The key service (`kms-core`) with its root of trust in a SoftHSMv2 token: key material and
//! principals' secrets wrapped inside the token, restarts, and migrating a software-rooted store.
//! Same set-up rules as `softhsm.rs` (a fresh token per test; CI fails when SoftHSM is missing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use hsm::{HsmConfig, HsmRootKey, PinSource, TokenSelector};
use kms_core::{api, KeyMaterial, Kms, KmsConfig, KmsError, RootOfTrust, SoftwareRootKey, Store};

mod common;
use common::Token;

impl Token {
    fn root(&self) -> Arc<HsmRootKey> {
        let config = HsmConfig::new(
            &self.module,
            TokenSelector::Label("envelope-test".into()),
            PinSource::File(self.dir.path().join("user.pin")),
        );
        Arc::new(HsmRootKey::open(config).unwrap())
    }
}

/// A new symmetric KMS key; returns its ARN.
async fn new_key(kms: &Kms) -> String {
    kms.create_key(api::CreateKeyRequest::default())
        .await
        .unwrap()
        .key_metadata
        .arn
}

async fn data_key(kms: &Kms, key: &str) -> (Vec<u8>, Vec<u8>) {
    let dk = kms
        .generate_data_key(api::GenerateDataKeyRequest {
            key_id: Some(key.into()),
            key_spec: Some("AES_256".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    (dk.plaintext.unwrap().to_vec(), dk.ciphertext_blob)
}

async fn decrypt(kms: &Kms, blob: Vec<u8>) -> Result<Vec<u8>, KmsError> {
    kms.decrypt(api::DecryptRequest {
        ciphertext_blob: Some(blob),
        ..Default::default()
    })
    .await
    .map(|r| r.plaintext.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_service_on_an_hsm_root_survives_restart() {
    let Some(token) = Token::new() else { return };
    let (key, plain, blob, access) = {
        let kms = Kms::open(
            Store::connect(&token.db()).await.unwrap(),
            token.root(),
            KmsConfig::default(),
        )
        .await
        .unwrap();
        let key = new_key(&kms).await;
        let (plain, blob) = data_key(&kms, &key).await;
        assert_eq!(decrypt(&kms, blob.clone()).await.unwrap(), plain);
        // A tampered blob is the caller's problem: InvalidCiphertextException.
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            decrypt(&kms, bad).await.unwrap_err().aws_name(),
            "InvalidCiphertextException"
        );
        let (info, secret) = kms.create_principal("alice", None).await.unwrap();
        let (_, got) = kms
            .principal_secret(&info.access_key_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], secret.unwrap().as_bytes());
        kms.store().close().await;
        (key, plain, blob, info.access_key_id)
    }; // the module is finalized with the root key
    let store = Store::connect(&token.db()).await.unwrap();
    let kms = Kms::open(store.clone(), token.root(), KmsConfig::default())
        .await
        .unwrap();
    assert_eq!(decrypt(&kms, blob).await.unwrap(), plain);
    assert!(kms.principal_secret(&access).await.unwrap().is_some());
    // Rotation wraps new material in the token too.
    kms.rotate_key_on_demand(api::KeyIdRequest {
        key_id: Some(key.clone()),
    })
    .await
    .unwrap();
    let (p2, b2) = data_key(&kms, &key).await;
    assert_eq!(decrypt(&kms, b2).await.unwrap(), p2);
    // A software root key cannot open this store.
    let soft: Arc<dyn RootOfTrust> =
        Arc::new(SoftwareRootKey::new(KeyMaterial::generate().unwrap()));
    let e = Kms::open(store, soft, KmsConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::InvalidState(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_a_software_store_to_the_hsm_is_all_or_nothing() {
    let Some(token) = Token::new() else { return };
    let soft: Arc<dyn RootOfTrust> = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[7; 32]).unwrap(),
    ));
    let store = Store::connect(&token.db()).await.unwrap();
    let (key, plain, blob, access) = {
        let kms = Kms::open(store.clone(), soft.clone(), KmsConfig::default())
            .await
            .unwrap();
        let key = new_key(&kms).await;
        kms.rotate_key_on_demand(api::KeyIdRequest {
            key_id: Some(key.clone()),
        })
        .await
        .unwrap();
        let (plain, blob) = data_key(&kms, &key).await;
        let (info, _) = kms.create_principal("bob", None).await.unwrap();
        (key, plain, blob, info.access_key_id)
    };
    let hsm_root: Arc<dyn RootOfTrust> = token.root();

    // A wrong "from" root fails on the first secret and changes nothing.
    let other: Arc<dyn RootOfTrust> = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[8; 32]).unwrap(),
    ));
    assert!(Kms::migrate_root(&store, other, hsm_root.clone())
        .await
        .is_err());
    Kms::open(store.clone(), soft.clone(), KmsConfig::default())
        .await
        .expect("still on the software root");

    // 2 material versions + 1 principal + the check value.
    let n = Kms::migrate_root(&store, soft.clone(), hsm_root.clone())
        .await
        .unwrap();
    assert_eq!(n, 4);
    let e = Kms::open(store.clone(), soft.clone(), KmsConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::InvalidState(_)), "{e:?}");
    let kms = Kms::open(store.clone(), hsm_root.clone(), KmsConfig::default())
        .await
        .unwrap();
    assert_eq!(decrypt(&kms, blob).await.unwrap(), plain);
    assert!(kms.principal_secret(&access).await.unwrap().is_some());
    let (p2, b2) = data_key(&kms, &key).await;
    assert_eq!(decrypt(&kms, b2).await.unwrap(), p2);
    // Migrating again from the software root fails (nothing opens under it any more), harmlessly.
    assert!(Kms::migrate_root(&store, soft, hsm_root).await.is_err());
    assert!(kms.principal_secret(&access).await.unwrap().is_some());
}

/// A key service with a software root and the test token as cluster `cluster-test1`.
async fn kms_with_cluster(token: &Token) -> Kms {
    let clusters = hsm::TokenClusters::new().with_cluster(
        "cluster-test1",
        hsm::HsmCluster::new(&token.module, TokenSelector::Label("envelope-test".into())),
    );
    let root: Arc<dyn RootOfTrust> = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[9u8; 32]).unwrap(),
    ));
    Kms::open(
        Store::connect(&token.db()).await.unwrap(),
        root,
        KmsConfig::default(),
    )
    .await
    .unwrap()
    .with_hsm_clusters(Arc::new(clusters))
}

fn pin(token: &Token) -> String {
    token.pin.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_key_store_keys_are_born_and_stay_in_the_token() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let Some(token) = Token::new() else { return };
    let user_pin = pin(&token);
    let (arn, plain, blob) = {
        let kms = kms_with_cluster(&token).await;
        let store_id = kms
            .create_custom_key_store(
                serde_json::from_value(serde_json::json!({
                    "CustomKeyStoreName": "test",
                    "CloudHsmClusterId": "cluster-test1",
                    "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----",
                    "KeyStorePassword": user_pin,
                }))
                .unwrap(),
            )
            .await
            .unwrap()
            .custom_key_store_id;
        kms.connect_custom_key_store(api::CustomKeyStoreIdRequest {
            custom_key_store_id: Some(store_id.clone()),
        })
        .await
        .unwrap();
        let meta = kms
            .create_key(api::CreateKeyRequest {
                origin: Some("AWS_CLOUDHSM".into()),
                custom_key_store_id: Some(store_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .key_metadata;
        assert_eq!(meta.origin, "AWS_CLOUDHSM");
        let (plain, blob) = data_key(&kms, &meta.arn).await;
        assert_eq!(decrypt(&kms, blob.clone()).await.unwrap(), plain);
        // The blob does not hold the data key in the clear, and has the version 2 layout.
        assert_eq!(blob[0], kms_core::blob::TOKEN_BLOB_VERSION);
        assert!(!blob.windows(16).any(|w| w == &plain[..16]));
        // Debug output of a request never shows the password.
        let req: api::CreateCustomKeyStoreRequest = serde_json::from_value(serde_json::json!({
            "KeyStorePassword": user_pin,
        }))
        .unwrap();
        assert!(!format!("{req:?}").contains(&user_pin));
        kms.disconnect_custom_key_store(api::CustomKeyStoreIdRequest {
            custom_key_store_id: Some(store_id),
        })
        .await
        .unwrap();
        (meta.arn, plain, blob)
    };
    // Our own module instance asks the token directly: one object labelled with the key ARN,
    // persistent, sensitive, never extractable; its value cannot be read or wrapped out.
    let ctx = Pkcs11::new(&token.module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    {
        let slot = ctx.get_slots_with_token().unwrap()[0];
        let s = ctx.open_rw_session(slot).unwrap();
        s.login(UserType::User, Some(&AuthPin::from(user_pin.as_str())))
            .unwrap();
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(arn.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "one key labelled {arn}");
        let key = found[0];
        let attrs = s
            .get_attributes(
                key,
                &[
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::ValueLen,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::Token(true),
            Attribute::ValueLen(32.into()),
        ] {
            assert!(attrs.contains(&want), "{want:?} not in {attrs:?}");
        }
        let info = s.get_attribute_info(key, &[AttributeType::Value]).unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{info:?}"
        );
        let value = s.get_attributes(key, &[AttributeType::Value]);
        assert!(
            !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
            "CKA_VALUE came back"
        );
        assert!(s
            .update_attributes(key, &[Attribute::Extractable(true)])
            .is_err());
        let wrapping = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Token(false),
                ],
            )
            .unwrap();
        assert!(s
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key)
            .is_err());
    }
    ctx.finalize().unwrap();
    // A new service over the same store (a restart) logs in again and decrypts.
    let kms = kms_with_cluster(&token).await;
    let store_id = kms
        .describe_custom_key_stores(api::DescribeCustomKeyStoresRequest::default())
        .await
        .unwrap()
        .custom_key_stores[0]
        .custom_key_store_id
        .clone();
    assert!(matches!(
        decrypt(&kms, blob.clone()).await,
        Err(KmsError::InvalidState(_))
    ));
    kms.connect_custom_key_store(api::CustomKeyStoreIdRequest {
        custom_key_store_id: Some(store_id),
    })
    .await
    .unwrap();
    assert_eq!(decrypt(&kms, blob).await.unwrap(), plain);
}
