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

/// The test token as cluster `cluster-test1`.
fn test_cluster(token: &Token) -> hsm::TokenClusters {
    hsm::TokenClusters::new().with_cluster(
        "cluster-test1",
        hsm::HsmCluster::new(&token.module, TokenSelector::Label("envelope-test".into())),
    )
}

/// A key service with a software root, over the token's database, reaching `clusters`.
async fn kms_over(token: &Token, clusters: Arc<dyn kms_core::HsmClusters>) -> Kms {
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
    .with_hsm_clusters(clusters)
}

/// A key service with a software root and the test token as cluster `cluster-test1`.
async fn kms_with_cluster(token: &Token) -> Kms {
    kms_over(token, Arc::new(test_cluster(token))).await
}

/// A custom key store `test` on cluster `cluster-test1` with `password`; returns its id.
async fn create_test_store(kms: &Kms, password: &str) -> String {
    kms.create_custom_key_store(
        serde_json::from_value(serde_json::json!({
            "CustomKeyStoreName": "test",
            "CloudHsmClusterId": "cluster-test1",
            "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----",
            "KeyStorePassword": password,
        }))
        .unwrap(),
    )
    .await
    .unwrap()
    .custom_key_store_id
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
        let store_id = create_test_store(&kms, &user_pin).await;
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

/// The test token's cluster, whose first login waits until `release` is sent (a slow login, made
/// to order), saying on `entered` when it has begun.
struct SlowFirstLogin {
    clusters: hsm::TokenClusters,
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl kms_core::HsmClusters for SlowFirstLogin {
    fn token_identity(&self, cluster_id: &str) -> Option<String> {
        self.clusters.token_identity(cluster_id)
    }

    fn connect(
        &self,
        cluster_id: &str,
        password: &[u8],
    ) -> Result<Arc<dyn kms_core::HsmKeyStore>, kms_core::ConnectFailure> {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            entered.send(()).unwrap();
            let release = self.release.lock().unwrap().take().unwrap();
            release.recv().unwrap();
        }
        self.clusters.connect(cluster_id, password)
    }
}

/// A connection that logs in while the store is disconnected, given a new password and connected
/// again: the second connection logs in with the new password (here a wrong one: FAILED,
/// INVALID_CREDENTIALS), it does not take the first one's login under the old password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_never_uses_a_login_made_with_an_earlier_password() {
    use kms_core::HsmClusters;

    let Some(token) = Token::new() else { return };
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let clusters = SlowFirstLogin {
        clusters: test_cluster(&token),
        entered: std::sync::Mutex::new(Some(entered_tx)),
        release: std::sync::Mutex::new(Some(release_rx)),
    };
    assert!(clusters.token_identity("cluster-test1").is_some());
    let kms = Arc::new(kms_over(&token, Arc::new(clusters)).await);
    let id = create_test_store(&kms, &pin(&token)).await;
    let request = || api::CustomKeyStoreIdRequest {
        custom_key_store_id: Some(id.clone()),
    };
    let state = || async {
        let d = kms
            .describe_custom_key_stores(api::DescribeCustomKeyStoresRequest::default())
            .await
            .unwrap();
        let s = &d.custom_key_stores[0];
        (s.connection_state.clone(), s.connection_error_code.clone())
    };
    // The first connection's login (with the right password) is under way...
    let first = tokio::spawn({
        let (kms, request) = (kms.clone(), request());
        async move { kms.connect_custom_key_store(request).await }
    });
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // ... when the store is disconnected, given a wrong password and connected again.
    kms.disconnect_custom_key_store(request()).await.unwrap();
    kms.update_custom_key_store(
        serde_json::from_value(serde_json::json!({
            "CustomKeyStoreId": id,
            "KeyStorePassword": "not-the-pin-1234",
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let second = tokio::spawn({
        let (kms, request) = (kms.clone(), request());
        async move { kms.connect_custom_key_store(request).await }
    });
    // The second connection is waiting for the first login to end; then the first one ends.
    while state().await.0 != "CONNECTING" {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(
        state().await,
        (
            "FAILED".to_string(),
            Some("INVALID_CREDENTIALS".to_string())
        )
    );
}

/// PKCS#11 login state is the process's: while one login to a token lives, a second `C_Login`
/// answers "already logged in" whatever its PIN. A second connection with a wrong password is
/// still refused, and one with the right password still works.
#[test]
fn a_wrong_password_does_not_ride_on_a_live_login() {
    use kms_core::{ConnectionErrorCode, HsmClusters};

    let Some(token) = Token::new() else { return };
    let clusters = test_cluster(&token);
    let first = clusters
        .connect("cluster-test1", pin(&token).as_bytes())
        .unwrap();
    let wrong = clusters
        .connect("cluster-test1", b"not-the-pin-1234")
        .err()
        .unwrap();
    assert_eq!(wrong.code, ConnectionErrorCode::InvalidCredentials);
    let second = clusters
        .connect("cluster-test1", pin(&token).as_bytes())
        .unwrap();
    let random = second.generate_random(8).unwrap();
    assert_eq!(random.len(), 8);
    drop(first);
}
