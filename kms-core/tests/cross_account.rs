//! Accounts and cross-account use through `Kms::execute`: another account sees none of a key it
//! is not let in to, a key policy lets it use a key but never manage it, aliases and grants stay
//! with their account, and no refusal tells another account which keys or grants exist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use kms_core::policy::Principal;
use kms_core::{Caller, InitialPolicy, KmsError};
use serde_json::{json, Value};

mod common;

use common::calls::*;

/// A key policy that lets the home account do everything and OTHER's root everything too.
fn shared_with_other() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Home", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Other", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
         "Action": "kms:*", "Resource": "*"}]})
}

fn key_id(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

fn code(r: Result<Value, KmsError>) -> &'static str {
    r.unwrap_err().aws_name()
}

#[tokio::test]
async fn accounts_are_separate_and_a_key_policy_lets_another_account_in() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = as_(Principal::root(OTHER));
    let arn = create_key(&kms, &home, None).await;
    let id = arn.rsplit('/').next().unwrap().to_string();
    // Another account sees none of the home account's keys and cannot name them by id.
    let listed = call(&kms, &other, "ListKeys", json!({})).await.unwrap();
    assert_eq!(listed["Keys"], json!([]));
    let e = call(&kms, &other, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.aws_name(), "NotFoundException");
    // By ARN, the default key policy (the home account only) refuses it.
    let m = denied(
        call(
            &kms,
            &other,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"s")}),
        )
        .await,
    );
    assert_eq!(
        m,
        format!(
            "User: arn:aws:iam::{OTHER}:root is not authorized to perform: kms:Encrypt on resource: {arn} \
             because no resource-based policy allows the kms:Encrypt action"
        )
    );
    // A key ARN of another account that does not exist is refused the same way: no existence oracle.
    let ghost = format!("arn:aws:kms:us-east-1:{HOME}:key/{}", uuid::Uuid::new_v4());
    let m2 = denied(
        call(
            &kms,
            &other,
            "Encrypt",
            json!({"KeyId": ghost, "Plaintext": b64(b"s")}),
        )
        .await,
    );
    assert!(m2.contains("no resource-based policy allows"), "{m2}");
    // The key's account lets OTHER use it (the seed's case: a snapshot restored in another account).
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{HOME}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]});
    call(
        &kms,
        &home,
        "PutKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default", "Policy": policy.to_string()}),
    )
    .await
    .unwrap();
    let ct = call(
        &kms,
        &other,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"s")}),
    )
    .await
    .unwrap();
    assert_eq!(ct["KeyId"], arn);
    let back = call(
        &kms,
        &other,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap();
    assert_eq!(back["Plaintext"], b64(b"s"));
    let d = call(&kms, &other, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["AWSAccountId"], HOME);
    // Actions the policy does not grant stay refused, and change nothing.
    denied(call(&kms, &other, "DisableKey", json!({"KeyId": arn})).await);
    let d = call(&kms, &home, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");
    // Keys OTHER creates are its own, with ARNs in its account, and aliases are per account.
    let mine = create_key(&kms, &other, None).await;
    assert!(mine.contains(&format!(":{OTHER}:key/")), "{mine}");
    for (who, target) in [(&home, &arn), (&other, &mine)] {
        call(
            &kms,
            who,
            "CreateAlias",
            json!({"AliasName": "alias/app", "TargetKeyId": target}),
        )
        .await
        .unwrap();
    }
    let d = call(&kms, &other, "DescribeKey", json!({"KeyId": "alias/app"}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["Arn"], mine);
    let listed = call(&kms, &other, "ListAliases", json!({})).await.unwrap();
    assert_eq!(listed["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed["Aliases"][0]["AliasArn"],
        format!("arn:aws:kms:us-east-1:{OTHER}:alias/app")
    );
}

#[tokio::test]
async fn another_account_cannot_point_an_alias_at_a_key_it_does_not_own() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = user(&kms, OTHER, "admin").await;
    // Even a key shared with OTHER: an alias and its key are of one account.
    let arn = create_key(&kms, &home, Some(shared_with_other())).await;
    let id = key_id(&arn);
    let own = create_key(&kms, &other, None).await;
    for (op, target, want) in [
        ("CreateAlias", id.clone(), "NotFoundException"),
        ("CreateAlias", arn.clone(), "AccessDeniedException"),
    ] {
        let r = call(
            &kms,
            &other,
            op,
            json!({"AliasName": "alias/x", "TargetKeyId": target}),
        )
        .await;
        assert_eq!(code(r), want, "{op} {target}");
    }
    // Not by repointing one of its own aliases either.
    call(
        &kms,
        &other,
        "CreateAlias",
        json!({"AliasName": "alias/mine", "TargetKeyId": own}),
    )
    .await
    .unwrap();
    for target in [id.clone(), arn.clone()] {
        let r = call(
            &kms,
            &other,
            "UpdateAlias",
            json!({"AliasName": "alias/mine", "TargetKeyId": target}),
        )
        .await;
        assert!(r.is_err(), "UpdateAlias to {target}: {r:?}");
    }
    // Nothing changed: the home key has no alias (so none in its kms:ResourceAliases), OTHER's
    // alias still names OTHER's key, and OTHER has no alias/x.
    let uuid: uuid::Uuid = id.parse().unwrap();
    assert!(kms.store().aliases_of_key(&uuid).await.unwrap().is_empty());
    let d = call(&kms, &other, "DescribeKey", json!({"KeyId": "alias/mine"}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["Arn"], own);
    let listed = call(&kms, &other, "ListAliases", json!({})).await.unwrap();
    assert_eq!(listed["Aliases"].as_array().unwrap().len(), 1, "{listed}");
    // An alias an earlier version let OTHER point at the home key is OTHER's to delete.
    kms.store()
        .create_alias(OTHER, "alias/stale", &uuid, 0, 50)
        .await
        .unwrap();
    call(
        &kms,
        &other,
        "DeleteAlias",
        json!({"AliasName": "alias/stale"}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_key_policy_lets_another_account_use_a_key_never_manage_it() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = user(&kms, OTHER, "admin").await;
    let arn = create_key(&kms, &home, Some(shared_with_other())).await;
    call(
        &kms,
        &home,
        "TagResource",
        json!({"KeyId": arn, "Tags": [{"TagKey": "t", "TagValue": "v"}]}),
    )
    .await
    .unwrap();
    let before = call(&kms, &home, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    let policy_before = call(
        &kms,
        &home,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    // Use: allowed by the key policy (and OTHER's admin identity policy).
    let ct = call(
        &kms,
        &other,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"s")}),
    )
    .await
    .unwrap();
    call(
        &kms,
        &other,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap();
    call(&kms, &other, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    call(&kms, &other, "GetKeyRotationStatus", json!({"KeyId": arn}))
        .await
        .unwrap();
    // Management: refused whatever the key policy says, as AWS refuses it ("Cross-account use: No").
    let lockout = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")}, "Action": "kms:*",
         "Resource": "*"}]});
    for (op, body) in [
        (
            "GetKeyPolicy",
            json!({"KeyId": arn, "PolicyName": "default"}),
        ),
        (
            "PutKeyPolicy",
            json!({"KeyId": arn, "PolicyName": "default", "Policy": lockout.to_string(),
                                "BypassPolicyLockoutSafetyCheck": true}),
        ),
        ("ListKeyPolicies", json!({"KeyId": arn})),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": arn, "PendingWindowInDays": 7}),
        ),
        ("DisableKey", json!({"KeyId": arn})),
        (
            "UpdateKeyDescription",
            json!({"KeyId": arn, "Description": "mine now"}),
        ),
        (
            "TagResource",
            json!({"KeyId": arn, "Tags": [{"TagKey": "t", "TagValue": "x"}]}),
        ),
        ("UntagResource", json!({"KeyId": arn, "TagKeys": ["t"]})),
        ("ListResourceTags", json!({"KeyId": arn})),
        ("EnableKeyRotation", json!({"KeyId": arn})),
        ("RotateKeyOnDemand", json!({"KeyId": arn})),
        ("ListKeyRotations", json!({"KeyId": arn})),
    ] {
        let m = denied(call(&kms, &other, op, body).await);
        assert!(
            m.contains(&format!("kms:{op} on resource: {arn}")),
            "{op}: {m}"
        );
    }
    // `envelope authz explain` gives the endpoint's decisions.
    for (action, want) in [("kms:PutKeyPolicy", "Deny"), ("kms:encrypt", "Allow")] {
        let e = kms
            .explain(other.principal.clone(), action, Some(&arn), &[])
            .await
            .unwrap();
        assert_eq!(e.decision, want, "{action}: {}", e.decided_by);
    }
    let after = call(&kms, &home, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(after, before);
    let policy_after = call(
        &kms,
        &home,
        "GetKeyPolicy",
        json!({"KeyId": arn, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    assert_eq!(policy_after, policy_before);
    let tags = call(&kms, &home, "ListResourceTags", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(tags["Tags"], json!([{"TagKey": "t", "TagValue": "v"}]));
    let rotation = call(&kms, &home, "GetKeyRotationStatus", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(rotation["KeyRotationEnabled"], false);
}

#[tokio::test]
async fn list_retirable_grants_lists_only_for_principals_of_the_callers_account() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = user(&kms, OTHER, "admin").await;
    let arn = create_key(&kms, &home, None).await;
    let alice = format!("arn:aws:iam::{HOME}:user/alice");
    call(
        &kms,
        &home,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": alice,
        "RetiringPrincipal": alice, "Operations": ["Decrypt"]}),
    )
    .await
    .unwrap();
    let m = denied(
        call(
            &kms,
            &other,
            "ListRetirableGrants",
            json!({"RetiringPrincipal": alice}),
        )
        .await,
    );
    assert!(
        m.contains(&format!("kms:ListRetirableGrants on resource: {alice}")),
        "{m}"
    );
    let mine = call(
        &kms,
        &home,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": alice}),
    )
    .await
    .unwrap();
    assert_eq!(mine["Grants"].as_array().unwrap().len(), 1);
    // The resource is the retiring principal: a policy may allow a user its own grants only.
    let own_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "kms:ListRetirableGrants", "Resource": format!("arn:aws:iam::{HOME}:user/carol")}]});
    kms.create_principal_in(
        HOME,
        "carol",
        None,
        InitialPolicy::Document(own_only.to_string()),
    )
    .await
    .unwrap();
    let carol = as_(kms
        .principal_named(&format!("arn:aws:iam::{HOME}:user/carol"))
        .await
        .unwrap());
    let r = call(
        &kms,
        &carol,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": format!("arn:aws:iam::{HOME}:user/carol")}),
    )
    .await
    .unwrap();
    assert_eq!(r["Grants"], json!([]));
    denied(
        call(
            &kms,
            &carol,
            "ListRetirableGrants",
            json!({"RetiringPrincipal": alice}),
        )
        .await,
    );
}

#[tokio::test]
async fn retire_grant_tells_another_account_nothing_about_its_keys_or_grants() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = user(&kms, OTHER, "admin").await;
    let arn = create_key(&kms, &home, None).await;
    let alice = format!("arn:aws:iam::{HOME}:user/alice");
    let g = call(
        &kms,
        &home,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": alice,
        "Operations": ["Decrypt"]}),
    )
    .await
    .unwrap();
    let grant = g["GrantId"].as_str().unwrap().to_string();
    let ghost_grant = "0".repeat(64);
    let ghost_key = format!("arn:aws:kms:us-east-1:{HOME}:key/{}", uuid::Uuid::new_v4());
    // A key that exists, with or without the grant, and a key that does not: the same refusal.
    for (key, grant_id) in [
        (&arn, &grant),
        (&arn, &ghost_grant),
        (&ghost_key, &ghost_grant),
    ] {
        let m = denied(
            call(
                &kms,
                &other,
                "RetireGrant",
                json!({"KeyId": key, "GrantId": grant_id}),
            )
            .await,
        );
        assert!(
            m.contains(&format!("kms:RetireGrant on resource: {key}")),
            "{m}"
        );
    }
    // By bare id the key is looked for in the caller's account, and named there.
    let r = call(
        &kms,
        &other,
        "RetireGrant",
        json!({"KeyId": key_id(&arn), "GrantId": grant}),
    )
    .await;
    match r {
        Err(KmsError::NotFound(m)) => assert!(m.contains(&format!(":{OTHER}:key/")), "{m}"),
        other => panic!("{other:?}"),
    }
    // The grant is still there.
    let listed = call(&kms, &home, "ListGrants", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 1);
    // Its own account's refusals stay as they were: a missing grant is NotFoundException, also for
    // a retiring principal with no other right retrying a retirement that went through.
    let r = call(
        &kms,
        &home,
        "RetireGrant",
        json!({"KeyId": arn, "GrantId": ghost_grant}),
    )
    .await;
    assert_eq!(code(r), "NotFoundException");
    kms.create_principal_in(HOME, "carol", None, InitialPolicy::None)
        .await
        .unwrap();
    let carol_arn = format!("arn:aws:iam::{HOME}:user/carol");
    let carol = as_(kms.principal_named(&carol_arn).await.unwrap());
    let g = call(
        &kms,
        &home,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": alice,
        "RetiringPrincipal": carol_arn, "Operations": ["Decrypt"]}),
    )
    .await
    .unwrap();
    let retire = json!({"KeyId": arn, "GrantId": g["GrantId"]});
    call(&kms, &carol, "RetireGrant", retire.clone())
        .await
        .unwrap();
    assert_eq!(
        code(call(&kms, &carol, "RetireGrant", retire).await),
        "NotFoundException"
    );
}

#[tokio::test]
async fn a_forged_blob_naming_no_key_is_invalid_ciphertext_whatever_key_id_it_is_sent_with() {
    let (_d, kms) = kms().await;
    let home = Caller::default();
    let other = user(&kms, OTHER, "admin").await;
    let arn = create_key(&kms, &home, None).await;
    call(
        &kms,
        &home,
        "CreateAlias",
        json!({"AliasName": "alias/secret-project", "TargetKeyId": arn}),
    )
    .await
    .unwrap();
    let mine = create_key(&kms, &other, None).await;
    let ct = call(
        &kms,
        &other,
        "Encrypt",
        json!({"KeyId": mine, "Plaintext": b64(b"s")}),
    )
    .await
    .unwrap();
    use base64::Engine;
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(ct["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    blob[1..17].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let forged = b64(&blob);
    for key in [
        format!("arn:aws:kms:us-east-1:{HOME}:alias/secret-project"),
        format!("arn:aws:kms:us-east-1:{HOME}:alias/no-such-alias"),
        arn.clone(),
        key_id(&arn),
    ] {
        let r = call(
            &kms,
            &other,
            "Decrypt",
            json!({"CiphertextBlob": forged, "KeyId": key}),
        )
        .await;
        assert_eq!(code(r), "InvalidCiphertextException", "{key}");
    }
}
