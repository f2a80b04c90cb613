//! What the access control tests share: a key service on SQLite with the users their policies
//! name, callers, and one call through `Kms::execute` as the endpoint makes it.

use std::sync::Arc;

use base64::Engine;
use kms_core::policy::Principal;
use kms_core::{
    Caller, InitialPolicy, KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store,
};
use serde_json::{json, Value};

pub const HOME: &str = "111122223333";
pub const OTHER: &str = "444455556666";

pub async fn kms() -> (tempfile::TempDir, Kms) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let root = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[9; 32]).unwrap(),
    ));
    let kms = Kms::open(
        Store::connect(&url).await.unwrap(),
        root,
        KmsConfig::default(),
    )
    .await
    .unwrap();
    // The users the tests' policies and grants name exist (a policy naming a missing user is
    // refused); each is an administrator, as `user` makes them.
    for name in ["alice", "bob", "app"] {
        kms.create_principal_in(HOME, name, None, InitialPolicy::Admin)
            .await
            .unwrap();
    }
    (dir, kms)
}

pub fn as_(principal: Principal) -> Caller {
    Caller {
        principal,
        ..Caller::default()
    }
}

/// The IAM user `name` of `account` (created on first use with AdministratorAccess, as `envelope
/// principal create` makes them), as the endpoint authenticates it.
pub async fn user(kms: &Kms, account: &str, name: &str) -> Caller {
    let arn = format!("arn:aws:iam::{account}:user/{name}");
    if kms.principal_named(&arn).await.is_err() {
        kms.create_principal_in(account, name, None, InitialPolicy::Admin)
            .await
            .unwrap();
    }
    as_(kms.principal_named(&arn).await.unwrap())
}

pub async fn call(kms: &Kms, caller: &Caller, op: &str, body: Value) -> Result<Value, KmsError> {
    let out = kms
        .execute(caller, op, serde_json::to_vec(&body).unwrap().as_slice())
        .await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub async fn create_key(kms: &Kms, caller: &Caller, policy: Option<Value>) -> String {
    let mut body = json!({});
    if let Some(p) = policy {
        body["Policy"] = json!(p.to_string());
    }
    let r = call(kms, caller, "CreateKey", body).await.unwrap();
    r["KeyMetadata"]["Arn"].as_str().unwrap().to_string()
}

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn denied(r: Result<Value, KmsError>) -> String {
    match r {
        Err(KmsError::AccessDenied(m)) => m,
        other => panic!("expected AccessDeniedException, got {other:?}"),
    }
}
