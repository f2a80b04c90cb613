//! Access control through `Kms::execute`, the one entry every endpoint request takes: key policies,
//! identity policies, accounts and cross-account use, the lockout check, and that a denied call
//! changes nothing. Run on SQLite (the store is not what is under test here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::sync::Arc;

use kms_core::policy::Principal;
use kms_core::{
    Caller, InitialPolicy, KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store,
};
use serde_json::{json, Value};

mod common;

use common::calls::*;

/// A key policy allowing the account root (so IAM policies apply) and denying bob Decrypt.
fn policy_denying_bob_decrypt() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "NoBobDecrypt", "Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/bob")},
         "Action": "kms:Decrypt", "Resource": "*"}]})
}

#[tokio::test]
async fn an_explicit_deny_in_the_key_policy_wins_and_names_itself() {
    let (_d, kms) = kms().await;
    let (alice, bob) = (
        user(&kms, HOME, "alice").await,
        user(&kms, HOME, "bob").await,
    );
    let arn = create_key(&kms, &alice, Some(policy_denying_bob_decrypt())).await;
    let ct = call(
        &kms,
        &bob,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"hi")}),
    )
    .await
    .unwrap()["CiphertextBlob"]
        .clone();
    let m = denied(call(&kms, &bob, "Decrypt", json!({"CiphertextBlob": ct})).await);
    assert_eq!(
        m,
        format!(
            "User: arn:aws:iam::{HOME}:user/bob is not authorized to perform: kms:Decrypt on resource: \
             {arn} with an explicit deny in a resource-based policy"
        )
    );
    let back = call(&kms, &alice, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(back["Plaintext"], b64(b"hi"));
}

#[tokio::test]
async fn a_key_policy_without_the_account_makes_iam_policies_irrelevant() {
    let (_d, kms) = kms().await;
    let alice = user(&kms, HOME, "alice").await;
    // Only alice, directly; bob's AdministratorAccess cannot reach the key.
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/alice")},
         "Action": "kms:*", "Resource": "*"}]});
    let arn = create_key(&kms, &alice, Some(policy)).await;
    let bob = user(&kms, HOME, "bob").await;
    let m = denied(call(&kms, &bob, "DescribeKey", json!({"KeyId": arn})).await);
    assert!(
        m.ends_with("because no resource-based policy allows the kms:DescribeKey action"),
        "{m}"
    );
    // Nothing changed by a refused state change, tag or policy change.
    for (op, body) in [
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": arn, "PendingWindowInDays": 7}),
        ),
        ("DisableKey", json!({"KeyId": arn})),
        (
            "TagResource",
            json!({"KeyId": arn, "Tags": [{"TagKey": "k", "TagValue": "v"}]}),
        ),
        (
            "PutKeyPolicy",
            json!({"KeyId": arn, "PolicyName": "default",
            "Policy": policy_denying_bob_decrypt().to_string()}),
        ),
        (
            "CreateAlias",
            json!({"AliasName": "alias/bobs", "TargetKeyId": arn}),
        ),
    ] {
        denied(call(&kms, &bob, op, body).await);
    }
    let d = call(&kms, &alice, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");
    let tags = call(&kms, &alice, "ListResourceTags", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(tags["Tags"], json!([]));
    let p = call(
        &kms,
        &alice,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    assert!(p["Policy"].as_str().unwrap().contains("user/alice"));
    let aliases = call(&kms, &alice, "ListAliases", json!({})).await.unwrap();
    assert_eq!(aliases["Aliases"], json!([]));
}

#[tokio::test]
async fn key_policy_conditions_see_the_encryption_context() {
    let (_d, kms) = kms().await;
    let root = Caller::default();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")},
         "NotAction": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
        {"Sid": "Tenant", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/app")},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "${aws:username}"}}}]});
    let arn = create_key(&kms, &root, Some(policy)).await;
    let app = user(&kms, HOME, "app").await;
    let ok = call(
        &kms,
        &app,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"x"), "EncryptionContext": {"tenant": "app"}}),
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    for ec in [json!({"tenant": "other"}), json!({})] {
        denied(
            call(
                &kms,
                &app,
                "Encrypt",
                json!({"KeyId": arn, "Plaintext": b64(b"x"), "EncryptionContext": ec}),
            )
            .await,
        );
    }
}

#[tokio::test]
async fn the_lockout_check_refuses_a_policy_that_shuts_the_caller_out() {
    let (_d, kms) = kms().await;
    let alice = user(&kms, HOME, "alice").await;
    let locked = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/bob")},
         "Action": "kms:*", "Resource": "*"}]});
    let before = call(&kms, &alice, "ListKeys", json!({})).await.unwrap();
    let e = call(
        &kms,
        &alice,
        "CreateKey",
        json!({"Policy": locked.to_string()}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.aws_name(), "MalformedPolicyDocumentException");
    assert_eq!(
        call(&kms, &alice, "ListKeys", json!({})).await.unwrap(),
        before
    );
    // With the bypass, the key is made; alice cannot touch it afterwards.
    let r = call(
        &kms,
        &alice,
        "CreateKey",
        json!({"Policy": locked.to_string(), "BypassPolicyLockoutSafetyCheck": true}),
    )
    .await
    .unwrap();
    let arn = r["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    denied(call(&kms, &alice, "DescribeKey", json!({"KeyId": arn})).await);
    // Malformed documents and the size quota.
    for (policy, name) in [
        ("{".to_string(), "MalformedPolicyDocumentException"),
        (json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}).to_string(),
         "MalformedPolicyDocumentException"),
        (format!("{{\"Version\":\"2012-10-17\",\"Statement\":[],\"Id\":\"{}\"}}", "x".repeat(33_000)),
         "LimitExceededException"),
    ] {
        let e = call(&kms, &alice, "CreateKey", json!({"Policy": policy})).await.unwrap_err();
        assert_eq!(e.aws_name(), name);
    }
}

#[tokio::test]
async fn the_default_key_policy_is_shown_and_put_key_policy_replaces_it() {
    let (_d, kms) = kms().await;
    let root = Caller::default();
    let arn = create_key(&kms, &root, None).await;
    let p = call(
        &kms,
        &root,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    let doc: Value = serde_json::from_str(p["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        doc["Statement"][0]["Principal"]["AWS"],
        format!("arn:aws:iam::{HOME}:root")
    );
    assert_eq!(doc["Statement"][0]["Action"], "kms:*");
    let names = call(&kms, &root, "ListKeyPolicies", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(names["PolicyNames"], json!(["default"]));
    let e = call(
        &kms,
        &root,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "other"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.aws_name(), "NotFoundException");
    let new = policy_denying_bob_decrypt().to_string();
    call(
        &kms,
        &root,
        "PutKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default", "Policy": new}),
    )
    .await
    .unwrap();
    let p = call(
        &kms,
        &root,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    assert_eq!(p["Policy"], new);
    // The new policy decides at once on this node (the cached one is dropped).
    let bob = user(&kms, HOME, "bob").await;
    let ct = call(
        &kms,
        &bob,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"z")}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &bob,
            "Decrypt",
            json!({"CiphertextBlob": ct["CiphertextBlob"]}),
        )
        .await,
    );
}

#[tokio::test]
async fn every_decision_is_audited_with_what_decided_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let root = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[9; 32]).unwrap(),
    ));
    let log_path = dir.path().join("audit.log");
    let kms = Kms::open(
        Store::connect(&url).await.unwrap(),
        root,
        KmsConfig::default(),
    )
    .await
    .unwrap()
    .with_audit_log(kms_core::AuditLog::open(&log_path).unwrap());
    let alice = user(&kms, HOME, "alice").await;
    let bob = user(&kms, HOME, "bob").await;
    let arn = create_key(&kms, &alice, Some(policy_denying_bob_decrypt())).await;
    let ct = call(
        &kms,
        &bob,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"a")}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &bob,
            "Decrypt",
            json!({"CiphertextBlob": ct["CiphertextBlob"]}),
        )
        .await,
    );
    kms.flush_audit_log();
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_name = |n: &str| lines.iter().find(|l| l["eventName"] == n).unwrap().clone();
    let create = by_name("CreateKey");
    assert_eq!(create["authorization"][0]["action"], "kms:CreateKey");
    assert_eq!(create["authorization"][0]["decision"], "Allow");
    assert_eq!(
        create["authorization"][0]["reason"],
        "managed policy arn:aws:iam::aws:policy/AdministratorAccess statement 0"
    );
    let enc = by_name("Encrypt");
    assert_eq!(enc["authorization"][0]["resource"], arn);
    assert_eq!(
        enc["authorization"][0]["reason"],
        format!(
            "key policy of {arn} statement 0 (Sid \"Root\") and managed policy \
             arn:aws:iam::aws:policy/AdministratorAccess statement 0"
        )
    );
    let dec = by_name("Decrypt");
    assert_eq!(dec["errorCode"], "AccessDeniedException");
    assert_eq!(dec["authorization"][0]["decision"], "Deny");
    assert_eq!(
        dec["authorization"][0]["reason"],
        format!("explicit deny in key policy of {arn} statement 1 (Sid \"NoBobDecrypt\")")
    );
    // A malformed request is refused before any decision: nothing to record but the error.
    let _ = kms.execute(&bob, "Decrypt", b"{nope").await;
    kms.flush_audit_log();
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["errorCode"], "SerializationException");
    assert!(last.get("authorization").is_none());
}

#[tokio::test]
async fn explain_gives_the_endpoints_decision_and_what_decided_it() {
    let (_d, kms) = kms().await;
    let root = Caller::default();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")},
         "NotAction": "kms:Decrypt", "Resource": "*"},
        {"Sid": "AppDecrypts", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/app")},
         "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:dept": "IT"}}}]});
    let arn = create_key(&kms, &root, Some(policy)).await;
    call(
        &kms,
        &root,
        "CreateAlias",
        json!({"AliasName": "alias/it", "TargetKeyId": arn}),
    )
    .await
    .unwrap();
    let app_caller = user(&kms, HOME, "app").await;
    let app = || app_caller.principal.clone();
    let ctx = |v: &str| vec![("kms:EncryptionContext:dept".to_string(), v.to_string())];
    let yes = kms
        .explain(app(), "kms:Decrypt", Some("alias/it"), &ctx("IT"))
        .await
        .unwrap();
    assert_eq!(yes.decision, "Allow");
    assert_eq!(
        yes.decided_by,
        format!("key policy of {arn} statement 1 (Sid \"AppDecrypts\")")
    );
    assert_eq!(yes.resource.as_deref(), Some(arn.as_str()));
    assert!(yes.message.is_none());
    let no = kms
        .explain(app(), "kms:Decrypt", Some(&arn), &ctx("HR"))
        .await
        .unwrap();
    assert_eq!(no.decision, "Deny");
    assert_eq!(no.decided_by, "no resource-based policy allows");
    assert_eq!(
        no.message.as_deref(),
        Some(format!(
            "User: arn:aws:iam::{HOME}:user/app is not authorized to perform: kms:Decrypt on resource: {arn} \
             because no resource-based policy allows the kms:Decrypt action"
        ).as_str())
    );
    assert!(no
        .policies_evaluated
        .contains(&format!("key policy of {arn}")));
    // The endpoint decides the same: the decision is one code path.
    let ct = call(
        &kms,
        &root,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"d"), "EncryptionContext": {"dept": "HR"}}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &app_caller,
            "Decrypt",
            json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": {"dept": "HR"}}),
        )
        .await,
    );
    // Account-level actions need an identity policy; the root user has every right in its account.
    let create = kms
        .explain(Principal::root(HOME), "kms:CreateKey", None, &[])
        .await
        .unwrap();
    assert_eq!(
        (create.decision, create.decided_by.as_str()),
        ("Allow", "the account's root user")
    );
}

#[tokio::test]
async fn dry_run_answers_what_the_call_would_do_after_authorization() {
    let (_d, kms) = kms().await;
    let alice = user(&kms, HOME, "alice").await;
    let arn = create_key(&kms, &alice, Some(policy_denying_bob_decrypt())).await;
    let ct = call(
        &kms,
        &alice,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"q")}),
    )
    .await
    .unwrap();
    let blob = ct["CiphertextBlob"].clone();
    for (op, body) in [
        (
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"q"), "DryRun": true}),
        ),
        ("Decrypt", json!({"CiphertextBlob": blob, "DryRun": true})),
        (
            "GenerateDataKey",
            json!({"KeyId": arn, "KeySpec": "AES_256", "DryRun": true}),
        ),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": blob, "DestinationKeyId": arn, "DryRun": true}),
        ),
    ] {
        let e = call(&kms, &alice, op, body.clone()).await.unwrap_err();
        assert_eq!(e.aws_name(), "DryRunOperationException", "{op}");
        let bob = call(&kms, &user(&kms, HOME, "bob").await, op, body).await;
        if op == "Decrypt" {
            // bob may not decrypt: the dry run says so. (ReEncrypt needs kms:ReEncryptFrom, which
            // the policy does not deny, as in AWS.)
            denied(bob);
        } else {
            assert_eq!(
                bob.unwrap_err().aws_name(),
                "DryRunOperationException",
                "{op}"
            );
        }
    }
}

#[tokio::test]
async fn a_grant_lets_in_whom_the_key_policy_does_not_and_no_further() {
    let (_d, kms) = kms().await;
    let alice = user(&kms, HOME, "alice").await;
    let only_alice = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:user/alice")},
         "Action": "kms:*", "Resource": "*"}]});
    let arn = create_key(&kms, &alice, Some(only_alice)).await;
    let bob = user(&kms, HOME, "bob").await;
    denied(
        call(
            &kms,
            &bob,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"g")}),
        )
        .await,
    );
    let g = call(
        &kms,
        &alice,
        "CreateGrant",
        json!({
        "KeyId": arn, "GranteePrincipal": format!("arn:aws:iam::{HOME}:user/bob"),
        "Operations": ["Encrypt", "Decrypt"],
        "Constraints": {"EncryptionContextSubset": {"app": "billing"}}}),
    )
    .await
    .unwrap();
    let ec = json!({"app": "billing", "x": "y"});
    let ct = call(
        &kms,
        &bob,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"g"), "EncryptionContext": ec}),
    )
    .await
    .unwrap();
    let back = call(
        &kms,
        &bob,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": ec}),
    )
    .await
    .unwrap();
    assert_eq!(back["Plaintext"], b64(b"g"));
    // Outside the grant: another context, another operation.
    denied(
        call(
            &kms,
            &bob,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"g"), "EncryptionContext": {"app": "hr"}}),
        )
        .await,
    );
    denied(call(&kms, &bob, "DescribeKey", json!({"KeyId": arn})).await);
    // Revoked, the grant allows nothing, at once on this node.
    call(
        &kms,
        &alice,
        "RevokeGrant",
        json!({"KeyId": arn, "GrantId": g["GrantId"]}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &bob,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"g"), "EncryptionContext": ec}),
        )
        .await,
    );
    // bob may not create grants for himself on a key he cannot reach.
    let before = call(&kms, &alice, "ListGrants", json!({"KeyId": arn}))
        .await
        .unwrap();
    denied(
        call(
            &kms,
            &bob,
            "CreateGrant",
            json!({
        "KeyId": arn, "GranteePrincipal": format!("arn:aws:iam::{HOME}:user/bob"),
        "Operations": ["Decrypt"]}),
        )
        .await,
    );
    assert_eq!(
        call(&kms, &alice, "ListGrants", json!({"KeyId": arn}))
            .await
            .unwrap(),
        before
    );
}

#[tokio::test]
async fn identity_policies_decide_under_the_default_key_policy() {
    let (_d, kms) = kms().await;
    let root = Caller::default();
    let arn = create_key(&kms, &root, None).await;
    let make = |name: &'static str, policy: InitialPolicy| {
        let kms = &kms;
        async move {
            kms.create_principal_in(HOME, name, None, policy)
                .await
                .unwrap();
            as_(kms
                .principal_named(&format!("arn:aws:iam::{HOME}:user/{name}"))
                .await
                .unwrap())
        }
    };
    let nobody = make("nobody", InitialPolicy::None).await;
    let m = denied(
        call(
            &kms,
            &nobody,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"i")}),
        )
        .await,
    );
    assert_eq!(
        m,
        format!(
            "User: arn:aws:iam::{HOME}:user/nobody is not authorized to perform: kms:Encrypt on resource: \
             {arn} because no identity-based policy allows the kms:Encrypt action"
        )
    );
    denied(call(&kms, &nobody, "CreateKey", json!({})).await);
    let only_encrypt = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": arn}]});
    let enc = make(
        "encrypter",
        InitialPolicy::Document(only_encrypt.to_string()),
    )
    .await;
    let ct = call(
        &kms,
        &enc,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"i")}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &enc,
            "Decrypt",
            json!({"CiphertextBlob": ct["CiphertextBlob"]}),
        )
        .await,
    );
    let other = create_key(&kms, &root, None).await;
    denied(
        call(
            &kms,
            &enc,
            "Encrypt",
            json!({"KeyId": other, "Plaintext": b64(b"i")}),
        )
        .await,
    );
    let before = call(&kms, &root, "ListKeys", json!({})).await.unwrap();
    denied(call(&kms, &enc, "CreateKey", json!({})).await);
    assert_eq!(
        call(&kms, &root, "ListKeys", json!({})).await.unwrap(),
        before
    );
}

/// Two nodes on one store: a key policy changed on one, then an identity policy, is in force on the
/// other within the cache TTL (plus the second a stale entry may serve while it reloads).
async fn policy_changes_reach_another_node_within_the_cache_ttl(backend: &str) {
    let Some(f) = common::fixture(backend).await else {
        return;
    };
    let ttl = std::time::Duration::from_millis(500);
    let open = || async {
        let root = Arc::new(SoftwareRootKey::new(
            KeyMaterial::from_slice(&[9; 32]).unwrap(),
        ));
        let config = KmsConfig {
            cache_ttl: ttl,
            ..KmsConfig::default()
        };
        Kms::open(Store::connect(&f.url).await.unwrap(), root, config)
            .await
            .unwrap()
    };
    let (a, b) = (open().await, open().await);
    let root = Caller::default();
    let arn = create_key(&a, &root, None).await;
    let bob_on_b = user(&b, HOME, "bob").await;
    let encrypt = json!({"KeyId": arn, "Plaintext": b64(b"n")});
    let generate = json!({"KeyId": arn, "KeySpec": "AES_256"});
    call(&b, &bob_on_b, "Encrypt", encrypt.clone())
        .await
        .unwrap();
    call(&b, &bob_on_b, "GenerateDataKey", generate.clone())
        .await
        .unwrap();
    let denied_within_ttl = |op: &'static str, body: Value| {
        let (b, bob) = (&b, &bob_on_b);
        async move {
            let changed = std::time::Instant::now();
            loop {
                match call(b, bob, op, body.clone()).await {
                    Err(KmsError::AccessDenied(_)) => break,
                    Ok(_) => assert!(
                        changed.elapsed() < ttl + std::time::Duration::from_millis(1300),
                        "node b still allows {op} after {:?}",
                        changed.elapsed()
                    ),
                    Err(e) => panic!("{e:?}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    // A key policy put on node a.
    call(
        &a,
        &root,
        "PutKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default",
        "Policy": policy_denying_bob_decrypt().to_string().replace("kms:Decrypt", "kms:Encrypt")}),
    )
    .await
    .unwrap();
    denied_within_ttl("Encrypt", encrypt).await;
    // An identity policy put on node a (IAM PutUserPolicy): bob's Deny reaches node b too.
    let deny = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "kms:GenerateDataKey", "Resource": "*"}]});
    let params: kms_core::identity::Params = [
        ("UserName", "bob"),
        ("PolicyName", "no-data-keys"),
        ("PolicyDocument", &deny.to_string()),
    ]
    .into_iter()
    .collect();
    a.execute_query(
        &root,
        kms_core::identity::QueryService::Iam,
        "PutUserPolicy",
        &params,
    )
    .await
    .unwrap();
    denied_within_ttl("GenerateDataKey", generate).await;
}

#[tokio::test]
async fn policy_changes_reach_another_node_on_sqlite() {
    policy_changes_reach_another_node_within_the_cache_ttl("sqlite").await;
}

#[tokio::test]
async fn policy_changes_reach_another_node_on_postgres() {
    policy_changes_reach_another_node_within_the_cache_ttl("postgres").await;
}

#[tokio::test]
async fn policies_and_grants_may_name_only_principals_that_exist() {
    let (_d, kms) = kms().await;
    let root = Caller::default();
    let arn = create_key(&kms, &root, None).await;
    let naming = |who: &str| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "Them", "Effect": "Allow", "Principal": {"AWS": who}, "Action": "kms:Decrypt",
             "Resource": "*"}]})
    };
    let keys = call(&kms, &root, "ListKeys", json!({})).await.unwrap();
    let get_policy = json!({"KeyId": arn, "PolicyName": "default"});
    let before = call(&kms, &root, "GetKeyPolicy", get_policy.clone())
        .await
        .unwrap();
    for missing in [
        format!("arn:aws:iam::{HOME}:user/carol"),
        format!("arn:aws:iam::{HOME}:user/other/path/alice"),
        format!("arn:aws:iam::{HOME}:role/Nope"),
        format!("arn:aws:sts::{HOME}:assumed-role/Nope/session"),
        format!("arn:aws:iam::{HOME}:group/admins"),
        format!("arn:aws:iam::{OTHER}:user/alice"),
        "AIDAAAAAAAAAAAAAAAAA".to_string(),
    ] {
        let doc = naming(&missing).to_string();
        for (op, body) in [
            ("CreateKey", json!({"Policy": doc})),
            (
                "PutKeyPolicy",
                json!({"KeyId": arn, "PolicyName": "default", "Policy": doc}),
            ),
        ] {
            let e = call(&kms, &root, op, body).await.unwrap_err();
            assert_eq!(
                e.aws_name(),
                "MalformedPolicyDocumentException",
                "{op} naming {missing}"
            );
            assert_eq!(
                e.to_string(),
                "Policy contains a statement with one or more invalid principals."
            );
        }
        if missing.starts_with("arn:") {
            let e = call(
                &kms,
                &root,
                "CreateGrant",
                json!({
                "KeyId": arn, "GranteePrincipal": missing, "Operations": ["Decrypt"]}),
            )
            .await
            .unwrap_err();
            assert_eq!(e.aws_name(), "InvalidArnException", "grant to {missing}");
            if !missing.contains(":group/") {
                assert_eq!(
                    e.to_string(),
                    format!("ARN does not refer to a valid principal: {missing}")
                );
            }
            let e = call(
                &kms,
                &root,
                "CreateGrant",
                json!({
                "KeyId": arn, "GranteePrincipal": format!("arn:aws:iam::{HOME}:user/bob"),
                "RetiringPrincipal": missing, "Operations": ["Decrypt"]}),
            )
            .await
            .unwrap_err();
            assert_eq!(e.aws_name(), "InvalidArnException", "retiring {missing}");
        }
    }
    // Nothing was made or changed by the refusals.
    assert_eq!(
        call(&kms, &root, "ListKeys", json!({})).await.unwrap(),
        keys
    );
    assert_eq!(
        call(&kms, &root, "GetKeyPolicy", get_policy).await.unwrap(),
        before
    );
    let grants = call(&kms, &root, "ListGrants", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(grants["Grants"], json!([]));
    // Once carol exists, the same policy and grant are accepted; so are accounts (existing or
    // not), `*`, a user's unique id, a session of an existing role, and a federated user.
    kms.create_principal_in(HOME, "carol", None, InitialPolicy::None)
        .await
        .unwrap();
    let carol = kms
        .principal_named(&format!("arn:aws:iam::{HOME}:user/carol"))
        .await
        .unwrap();
    let carol_id = carol.user_id.clone().unwrap();
    for ok in [
        carol.arn.clone(),
        carol_id,
        "*".to_string(),
        OTHER.to_string(),
        "999988887777".to_string(),
        format!("arn:aws:iam::{OTHER}:root"),
        format!("arn:aws:sts::{HOME}:federated-user/fed"),
    ] {
        call(
            &kms,
            &root,
            "PutKeyPolicy",
            json!({
            "KeyId": arn, "PolicyName": "default", "Policy": naming(&ok).to_string()}),
        )
        .await
        .unwrap_or_else(|e| panic!("a policy naming {ok}: {e:?}"));
    }
    call(
        &kms,
        &root,
        "CreateGrant",
        json!({
        "KeyId": arn, "GranteePrincipal": carol.arn, "Operations": ["Decrypt"]}),
    )
    .await
    .unwrap();
}
