//! The key service (`kms-core`) with its root of trust in a SoftHSMv2 token: key material and
//! principals' secrets wrapped inside the token, restarts, and migrating a software-rooted store.
//! Same set-up rules as `softhsm.rs` (a fresh token per test; CI fails when SoftHSM is missing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use hsm::{HsmConfig, HsmRootKey, PinSource, TokenSelector};
use kms_core::{api, KeyMaterial, Kms, KmsConfig, KmsError, RootOfTrust, SoftwareRootKey, Store};

static MODULE_LOCK: Mutex<()> = Mutex::new(());

struct Token {
    _lock: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl Token {
    fn new() -> Option<Self> {
        let module = std::env::var_os("ENVELOPE_TEST_HSM_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        if !module.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "SoftHSMv2 module {} missing under CI",
                module.display()
            );
            eprintln!("skipping: no SoftHSMv2 module at {}", module.display());
            return None;
        }
        let lock = MODULE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/softhsm.sh"
        ))
        .arg("init")
        .arg(dir.path())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::env::set_var("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"));
        Some(Self {
            _lock: lock,
            dir,
            module,
        })
    }

    fn root(&self) -> Arc<HsmRootKey> {
        let config = HsmConfig::new(
            &self.module,
            TokenSelector::Label("envelope-test".into()),
            PinSource::File(self.dir.path().join("user.pin")),
        );
        Arc::new(HsmRootKey::open(config).unwrap())
    }

    fn db(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("kms.db").display()
        )
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
