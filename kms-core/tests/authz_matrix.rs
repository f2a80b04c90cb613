//! The authorization matrix: every KMS operation the endpoint serves, called by a caller allowed by
//! the default key policy and AdministratorAccess, by a caller with no policy at all (implicitly
//! denied) and by one whose identity policy allows everything but explicitly denies `kms:*`. The
//! two denied callers must get AccessDeniedException every time, and leave the key, its aliases,
//! tags, policy, rotation, grants and the account's keys exactly as they were: zero unauthorized
//! successes. The allowed caller must never get AccessDeniedException.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::sync::Arc;

use base64::Engine;
use kms_core::{
    Caller, InitialPolicy, KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store,
};
use serde_json::{json, Value};

const HOME: &str = "111122223333";

async fn call(kms: &Kms, caller: &Caller, op: &str, body: &Value) -> Result<Value, KmsError> {
    let out = kms.execute(caller, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
}

async fn user(kms: &Kms, name: &str, policy: InitialPolicy) -> Caller {
    kms.create_principal_in(HOME, name, None, policy)
        .await
        .unwrap();
    Caller {
        principal: kms
            .principal_named(&format!("arn:aws:iam::{HOME}:user/{name}"))
            .await
            .unwrap(),
        ..Caller::default()
    }
}

/// Everything a refused call could have changed, as the account's root sees it.
async fn snapshot(kms: &Kms, key: &str) -> Value {
    let root = Caller::default();
    let get = |op: &'static str, body: Value| {
        let root = root.clone();
        async move { call(kms, &root, op, &body).await.unwrap() }
    };
    json!({
        "key": get("DescribeKey", json!({"KeyId": key})).await,
        "tags": get("ListResourceTags", json!({"KeyId": key})).await,
        "policy": get("GetKeyPolicy", json!({"KeyId": key, "PolicyName": "default"})).await,
        "rotation": get("GetKeyRotationStatus", json!({"KeyId": key})).await,
        "rotations": get("ListKeyRotations", json!({"KeyId": key})).await,
        "grants": get("ListGrants", json!({"KeyId": key})).await,
        "aliases": get("ListAliases", json!({})).await,
        "keys": get("ListKeys", json!({})).await,
        "stores": get("DescribeCustomKeyStores", json!({})).await,
    })
}

#[tokio::test]
async fn every_operation_allowed_implicitly_denied_and_explicitly_denied() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let root_key = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[5; 32]).unwrap(),
    ));
    let kms = Kms::open(
        Store::connect(&url).await.unwrap(),
        root_key,
        KmsConfig::default(),
    )
    .await
    .unwrap();
    let admin = user(&kms, "admin", InitialPolicy::Admin).await;
    let implicit = user(&kms, "implicit", InitialPolicy::None).await;
    let deny_all = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "NoKms", "Effect": "Deny", "Action": "kms:*", "Resource": "*"}]});
    let explicit = user(
        &kms,
        "explicit",
        InitialPolicy::Document(deny_all.to_string()),
    )
    .await;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let grantee = format!("arn:aws:iam::{HOME}:user/implicit");

    // Each case gets a fresh key (with an alias, a tag, a grant, a ciphertext) made by the admin.
    let operations: Vec<&str> = kms_core::operations().collect();
    let mut checked = 0;
    for (n, op) in operations.iter().enumerate() {
        let key = call(
            &kms,
            &admin,
            "CreateKey",
            &json!({"Tags": [{"TagKey": "t", "TagValue": "v"}]}),
        )
        .await
        .unwrap()["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .to_string();
        let alias = format!("alias/m{n}");
        call(
            &kms,
            &admin,
            "CreateAlias",
            &json!({"AliasName": alias, "TargetKeyId": key}),
        )
        .await
        .unwrap();
        let grant = call(
            &kms,
            &admin,
            "CreateGrant",
            &json!({
            "KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{HOME}:user/admin"),
            "Operations": ["Decrypt"]}),
        )
        .await
        .unwrap();
        let ct = call(
            &kms,
            &admin,
            "Encrypt",
            &json!({"KeyId": key, "Plaintext": b64(b"m")}),
        )
        .await
        .unwrap()["CiphertextBlob"]
            .clone();
        let body = match *op {
            "CreateKey" | "ListKeys" | "ListAliases" | "DescribeCustomKeyStores" => json!({}),
            "UpdateKeyDescription" => json!({"KeyId": key, "Description": "changed"}),
            "ScheduleKeyDeletion" => json!({"KeyId": key, "PendingWindowInDays": 7}),
            "GetKeyPolicy" | "ListKeyPolicies" => json!({"KeyId": key, "PolicyName": "default"}),
            "PutKeyPolicy" => json!({"KeyId": key, "PolicyName": "default", "Policy": json!({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]}).to_string()}),
            "CreateAlias" => json!({"AliasName": format!("alias/new{n}"), "TargetKeyId": key}),
            "UpdateAlias" => json!({"AliasName": alias, "TargetKeyId": key}),
            "DeleteAlias" => json!({"AliasName": alias}),
            "Encrypt" => json!({"KeyId": key, "Plaintext": b64(b"x")}),
            "Decrypt" => json!({"CiphertextBlob": ct}),
            "ReEncrypt" => json!({"CiphertextBlob": ct, "DestinationKeyId": key}),
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                json!({"KeyId": key, "KeySpec": "AES_256"})
            }
            "GenerateRandom" => json!({"NumberOfBytes": 16}),
            "TagResource" => {
                json!({"KeyId": key, "Tags": [{"TagKey": "t", "TagValue": "changed"}]})
            }
            "UntagResource" => json!({"KeyId": key, "TagKeys": ["t"]}),
            "CreateCustomKeyStore" => json!({"CustomKeyStoreName": format!("s{n}"),
                "CloudHsmClusterId": "cluster-234abcdefgh", "TrustAnchorCertificate": "x",
                "KeyStorePassword": "password1"}),
            "ConnectCustomKeyStore" | "DisconnectCustomKeyStore" | "DeleteCustomKeyStore" => {
                json!({"CustomKeyStoreId": "cks-1234567890abcdef0"})
            }
            "UpdateCustomKeyStore" => {
                json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "NewCustomKeyStoreName": "n"})
            }
            "CreateGrant" => {
                json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ["Encrypt"]})
            }
            "ListGrants" => json!({"KeyId": key}),
            "ListRetirableGrants" => json!({"RetiringPrincipal": grantee}),
            "RetireGrant" | "RevokeGrant" => json!({"KeyId": key, "GrantId": grant["GrantId"]}),
            "Sign" => {
                json!({"KeyId": key, "Message": b64(b"m"), "SigningAlgorithm": "RSASSA_PSS_SHA_256"})
            }
            "Verify" => json!({"KeyId": key, "Message": b64(b"m"), "Signature": b64(b"s"),
                "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
            "GenerateMac" => {
                json!({"KeyId": key, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"})
            }
            "VerifyMac" => {
                json!({"KeyId": key, "Message": b64(b"m"), "Mac": b64(b"s"), "MacAlgorithm": "HMAC_SHA_256"})
            }
            "DeriveSharedSecret" => {
                json!({"KeyId": key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(b"p")})
            }
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                json!({"KeyId": key, "KeyPairSpec": "RSA_2048"})
            }
            _ => json!({"KeyId": key}),
        };
        let before = snapshot(&kms, &key).await;
        for (who, caller) in [
            ("implicitly denied", &implicit),
            ("explicitly denied", &explicit),
        ] {
            match call(&kms, caller, op, &body).await {
                Err(KmsError::AccessDenied(m)) => {
                    assert!(
                        m.starts_with(&format!(
                            "User: {} is not authorized to perform: kms:",
                            caller.principal.arn
                        )),
                        "{op}: {m}"
                    );
                    if who == "explicitly denied" {
                        assert!(
                            m.contains("with an explicit deny in an identity-based policy"),
                            "{op}: {m}"
                        );
                    }
                }
                other => panic!("{op} {who}: {other:?}"),
            }
            assert_eq!(
                snapshot(&kms, &key).await,
                before,
                "{op} {who} changed something"
            );
        }
        let allowed = call(&kms, &admin, op, &body).await;
        assert!(
            !matches!(allowed, Err(KmsError::AccessDenied(_))),
            "{op} allowed: {allowed:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, operations.len());
}
