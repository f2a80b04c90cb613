//! Grants through the JSON API (`Kms::execute`), run against SQLite and (when
//! ENVELOPE_TEST_POSTGRES_URL is set) PostgreSQL: CreateGrant, ListGrants, ListRetirableGrants,
//! RetireGrant, RevokeGrant, grant tokens, the per-key limit, who may retire, and the engine's
//! view of a key's grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kms_core::api::CreateGrantRequest;
use kms_core::policy::{self, keys, Principal, RequestContext};
use kms_core::{Caller, KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store};
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;
const HOME: &str = "111122223333";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::444455556666:user/bob";
const CAROL: &str = "arn:aws:iam::444455556666:user/carol";

mod common;
use common::fixture;

fn root(byte: u8) -> Arc<SoftwareRootKey> {
    Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[byte; 32]).unwrap(),
    ))
}

async fn kms_on(url: &str, root_byte: u8) -> Kms {
    let store = Store::connect(url).await.unwrap();
    let kms = Kms::open(store, root(root_byte), KmsConfig::default())
        .await
        .unwrap();
    // Grants may name only principals that exist.
    for arn in [ALICE, BOB, CAROL] {
        user(&kms, arn).await;
    }
    kms
}

/// The IAM user an ARN names (created on first use with AdministratorAccess in its account, as
/// `envelope principal create --admin` makes them), as the endpoint authenticates it.
async fn user(kms: &Kms, arn: &str) -> Caller {
    if kms.principal_named(arn).await.is_err() {
        let (account, name) = arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.split_once(":user/"))
            .unwrap();
        kms.create_principal_in(account, name, None, kms_core::InitialPolicy::Admin)
            .await
            .unwrap();
    }
    Caller {
        principal: kms.principal_named(arn).await.unwrap(),
        ..Caller::default()
    }
}

async fn call_as(kms: &Kms, caller: &Caller, op: &str, body: Value) -> Result<Value, KmsError> {
    let out = kms.execute(caller, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

async fn call(kms: &Kms, op: &str, body: Value) -> Result<Value, KmsError> {
    call_as(kms, &Caller::default(), op, body).await
}

async fn new_key(kms: &Kms) -> String {
    let v = call(kms, "CreateKey", json!({})).await.unwrap();
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

async fn grant(kms: &Kms, body: Value) -> (String, String) {
    let v = call(kms, "CreateGrant", body).await.unwrap();
    (
        v["GrantId"].as_str().unwrap().to_owned(),
        v["GrantToken"].as_str().unwrap().to_owned(),
    )
}

async fn listed(kms: &Kms, key: &str) -> Vec<Value> {
    let v = call(kms, "ListGrants", json!({"KeyId": key, "Limit": 100}))
        .await
        .unwrap();
    v["Grants"].as_array().unwrap().clone()
}

fn ids(grants: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = grants
        .iter()
        .map(|g| g["GrantId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn refused(r: Result<Value, KmsError>, name: &str) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.aws_name(), name, "{e}");
            e.to_string()
        }
        Ok(v) => panic!("expected {name}, got {v}"),
    }
}

// ----- the operations, on both stores ----------------------------------------------------------

async fn create_list_and_idempotency(kms: &Kms) {
    let key = new_key(kms).await;
    let body = json!({
        "KeyId": key, "GranteePrincipal": ALICE, "RetiringPrincipal": BOB,
        "Operations": ["Decrypt", "Encrypt", "Decrypt"], "Name": "app-grant",
        "Constraints": {"EncryptionContextSubset": {"Dept": "IT"}},
    });
    let (id, token) = grant(kms, body.clone()).await;
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // A retry with the same name and parameters: the same grant, a new token.
    let (again, token2) = grant(kms, body.clone()).await;
    assert_eq!(again, id);
    assert_ne!(token2, token);
    // The same name with other parameters is another grant.
    let mut other = body.clone();
    other["Operations"] = json!(["Decrypt"]);
    let (third, _) = grant(kms, other).await;
    assert_ne!(third, id);
    // Without a name every call is a new grant.
    let plain = json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["DescribeKey"]});
    let (p1, _) = grant(kms, plain.clone()).await;
    let (p2, _) = grant(kms, plain).await;
    assert_ne!(p1, p2);

    let all = listed(kms, &key).await;
    assert_eq!(all.len(), 4);
    let g = all.iter().find(|g| g["GrantId"] == id.as_str()).unwrap();
    let arn = format!("arn:aws:kms:us-east-1:{HOME}:key/{key}");
    assert_eq!(g["KeyId"], arn.as_str());
    assert_eq!(g["Name"], "app-grant");
    assert_eq!(g["GranteePrincipal"], ALICE);
    assert_eq!(g["RetiringPrincipal"], BOB);
    assert_eq!(
        g["IssuingAccount"],
        format!("arn:aws:iam::{HOME}:root").as_str()
    );
    assert_eq!(g["Operations"], json!(["Decrypt", "Encrypt"]));
    assert_eq!(
        g["Constraints"],
        json!({"EncryptionContextSubset": {"Dept": "IT"}})
    );
    assert!(g["CreationDate"].as_f64().unwrap() > 1.7e9);
    let unnamed = all.iter().find(|g| g["GrantId"] == p1.as_str()).unwrap();
    assert!(unnamed.get("Name").is_none() && unnamed.get("Constraints").is_none());

    // Filters: one grant, one grantee; the key ARN names the key too.
    let one = call(kms, "ListGrants", json!({"KeyId": arn, "GrantId": id}))
        .await
        .unwrap();
    assert_eq!(ids(one["Grants"].as_array().unwrap()), vec![id.clone()]);
    let none = call(
        kms,
        "ListGrants",
        json!({"KeyId": key, "GranteePrincipal": BOB}),
    )
    .await
    .unwrap();
    assert_eq!(none["Grants"], json!([]));
    assert_eq!(none["Truncated"], false);

    // Paging: one at a time, every grant once.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = json!({"KeyId": key, "Limit": 1});
        if let Some(m) = &marker {
            req["Marker"] = json!(m);
        }
        let page = call(kms, "ListGrants", req).await.unwrap();
        let grants = page["Grants"].as_array().unwrap();
        assert_eq!(grants.len(), 1);
        seen.extend(ids(grants));
        if page["Truncated"] == false {
            assert!(page.get("NextMarker").is_none());
            break;
        }
        marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 4);
    seen.sort();
    assert_eq!(seen, ids(&all));

    // ListRetirableGrants: BOB retires two (the named grant and its sibling).
    // Listed by BOB's own account, as AWS requires ("a principal in your AWS account").
    let r = call_as(
        kms,
        &user(kms, BOB).await,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": BOB}),
    )
    .await
    .unwrap();
    let mut expect = vec![id.clone(), third.clone()];
    expect.sort();
    assert_eq!(ids(r["Grants"].as_array().unwrap()), expect);

    // Retire by the second token, revoke by id; both tokens named the same grant.
    call(kms, "RetireGrant", json!({"GrantToken": token2}))
        .await
        .unwrap();
    refused(
        call(kms, "RetireGrant", json!({"GrantToken": token})).await,
        "NotFoundException",
    );
    call(kms, "RevokeGrant", json!({"KeyId": key, "GrantId": p1}))
        .await
        .unwrap();
    call(kms, "RetireGrant", json!({"KeyId": arn, "GrantId": p2}))
        .await
        .unwrap();
    assert_eq!(ids(&listed(kms, &key).await), vec![third]);
}

async fn refusals_change_nothing(kms: &Kms) {
    let key = new_key(kms).await;
    let (kept, token) = grant(
        kms,
        json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]}),
    )
    .await;
    let base = json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged = URL_SAFE_NO_PAD.encode(forged);
    let long_value = "v".repeat(385);
    let nine: BTreeMap<String, String> = (0..9).map(|i| (format!("k{i}"), "v".into())).collect();
    let cases: Vec<(Value, &str)> = vec![
        (without("KeyId"), "ValidationException"),
        (without("GranteePrincipal"), "ValidationException"),
        (without("Operations"), "ValidationException"),
        (
            with("Operations", json!(["Decrypt", "Fly"])),
            "ValidationException",
        ),
        (with("Operations", json!(["Sign"])), "ValidationException"),
        (with("Operations", json!([])), "ValidationException"),
        (
            with("Operations", json!(["CreateGrant"])),
            "ValidationException",
        ),
        (
            with("GranteePrincipal", json!("a b")),
            "ValidationException",
        ),
        (with("GranteePrincipal", json!("")), "ValidationException"),
        (
            with("GranteePrincipal", json!("alice")),
            "InvalidArnException",
        ),
        (
            with("GranteePrincipal", json!("arn:aws:iam::1234:user/alice")),
            "InvalidArnException",
        ),
        (
            with("RetiringPrincipal", json!("arn:aws:s3:::bucket")),
            "InvalidArnException",
        ),
        (with("Name", json!("no spaces")), "ValidationException"),
        (with("Name", json!("")), "ValidationException"),
        (
            with("Constraints", json!({"EncryptionContextSubset": nine})),
            "ValidationException",
        ),
        (
            with(
                "Constraints",
                json!({"EncryptionContextEquals": {"k": long_value}}),
            ),
            "ValidationException",
        ),
        (
            with("Constraints", json!({"SourceArn": "arn:aws:s3:::bucket"})),
            "UnsupportedOperationException",
        ),
        (
            with("GranteeServicePrincipal", json!("s3.amazonaws.com")),
            "UnsupportedOperationException",
        ),
        (
            with("KeyId", json!(uuid::Uuid::new_v4().to_string())),
            "NotFoundException",
        ),
        (with("KeyId", json!("alias/app")), "NotFoundException"),
        (
            with("GrantTokens", json!(["not-a-token"])),
            "InvalidGrantTokenException",
        ),
        (
            with("GrantTokens", json!([forged])),
            "InvalidGrantTokenException",
        ),
        (with("GrantTokens", json!([""])), "ValidationException"),
        (with("DryRun", json!(true)), "DryRunOperationException"),
    ];
    for (body, name) in cases {
        let r = call(kms, "CreateGrant", body.clone()).await;
        match r {
            Err(e) => assert_eq!(e.aws_name(), name, "{body}: {e}"),
            Ok(v) => panic!("{body}: expected {name}, got {v}"),
        }
    }
    let other = [
        ("ListGrants", json!({}), "ValidationException"),
        (
            "ListGrants",
            json!({"KeyId": key, "Limit": 0}),
            "ValidationException",
        ),
        (
            "ListGrants",
            json!({"KeyId": key, "Marker": "!!"}),
            "InvalidMarkerException",
        ),
        (
            "ListGrants",
            json!({"KeyId": key, "GrantId": "xyz"}),
            "InvalidGrantIdException",
        ),
        ("ListRetirableGrants", json!({}), "ValidationException"),
        ("RetireGrant", json!({}), "ValidationException"),
        (
            "RetireGrant",
            json!({"GrantToken": "junk"}),
            "InvalidGrantTokenException",
        ),
        (
            "RetireGrant",
            json!({"GrantToken": forged}),
            "InvalidGrantTokenException",
        ),
        (
            "RetireGrant",
            json!({"KeyId": key, "GrantId": "abc"}),
            "InvalidGrantIdException",
        ),
        (
            "RetireGrant",
            json!({"KeyId": key, "GrantId": "0".repeat(64)}),
            "NotFoundException",
        ),
        (
            "RetireGrant",
            json!({"GrantToken": token, "DryRun": true}),
            "DryRunOperationException",
        ),
        ("RevokeGrant", json!({"KeyId": key}), "ValidationException"),
        (
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": "0".repeat(64)}),
            "NotFoundException",
        ),
        (
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": "g".repeat(64)}),
            "InvalidGrantIdException",
        ),
        (
            "RevokeGrant",
            json!({"KeyId": uuid::Uuid::new_v4().to_string(), "GrantId": kept}),
            "NotFoundException",
        ),
        (
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": kept, "DryRun": true}),
            "DryRunOperationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "aGk=", "GrantTokens": [forged]}),
            "InvalidGrantTokenException",
        ),
        (
            "Decrypt",
            json!({"CiphertextBlob": "aGk=", "GrantTokens": ["x"]}),
            "InvalidGrantTokenException",
        ),
    ];
    for (op, body, name) in other {
        match call(kms, op, body.clone()).await {
            Err(e) => assert_eq!(e.aws_name(), name, "{op} {body}: {e}"),
            Ok(v) => panic!("{op} {body}: expected {name}, got {v}"),
        }
    }
    // A constraint naming a key twice is refused as the body is read.
    let dup = format!(
        r#"{{"KeyId":"{key}","GranteePrincipal":"{ALICE}","Operations":["Decrypt"],"Constraints":{{"EncryptionContextSubset":{{"a":"1","a":"2"}}}}}}"#
    );
    let e = kms
        .execute(&Caller::default(), "CreateGrant", dup.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.aws_name(), "SerializationException");
    // Nothing changed: the one grant is still there, alone.
    assert_eq!(ids(&listed(kms, &key).await), vec![kept]);
    // A real token works on a cryptographic operation.
    call(
        kms,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "aGk=", "GrantTokens": [token]}),
    )
    .await
    .unwrap();
}

async fn key_states(kms: &Kms) {
    let key = new_key(kms).await;
    let body = json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]});
    call(kms, "DisableKey", json!({"KeyId": key}))
        .await
        .unwrap();
    let (id, _) = grant(kms, body.clone()).await;
    call(
        kms,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    refused(
        call(kms, "CreateGrant", body).await,
        "KMSInvalidStateException",
    );
    // Listing and revoking work in every state.
    assert_eq!(ids(&listed(kms, &key).await), vec![id.clone()]);
    let (second, _) = {
        call(kms, "CancelKeyDeletion", json!({"KeyId": key}))
            .await
            .unwrap();
        grant(
            kms,
            json!({"KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt"]}),
        )
        .await
    };
    call(
        kms,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    call(kms, "RevokeGrant", json!({"KeyId": key, "GrantId": id}))
        .await
        .unwrap();
    // Deleting the key deletes its grants.
    kms.run_due_work(kms_core::now_millis() + 8 * DAY_MS)
        .await
        .unwrap();
    refused(
        call(kms, "ListGrants", json!({"KeyId": key})).await,
        "NotFoundException",
    );
    // Listed by BOB's own account, as AWS requires ("a principal in your AWS account").
    let r = call_as(
        kms,
        &user(kms, BOB).await,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": BOB}),
    )
    .await
    .unwrap();
    assert!(!ids(r["Grants"].as_array().unwrap()).contains(&second));
    assert!(kms.store().get_grant(&second).await.unwrap().is_none());
}

async fn who_may_retire(kms: &Kms) {
    let key = new_key(kms).await;
    // BOB and CAROL are in another account: the default key policy does not name it, so only the
    // grant can let them retire.
    let (by_retiring, _) = grant(
        kms,
        json!({"KeyId": key, "GranteePrincipal": ALICE, "RetiringPrincipal": BOB,
               "Operations": ["Decrypt"]}),
    )
    .await;
    let (grantee_may, _) = grant(
        kms,
        json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": ["Decrypt", "RetireGrant"]}),
    )
    .await;
    let (grantee_may_not, _) = grant(
        kms,
        json!({"KeyId": key, "GranteePrincipal": CAROL, "Operations": ["Decrypt"]}),
    )
    .await;
    // Another account names the key by its ARN (a bare key id is looked for in its own account).
    let arn = format!("arn:aws:kms:us-east-1:{HOME}:key/{key}");
    let retire = |id: &str| json!({"KeyId": arn, "GrantId": id});
    let (bob, carol) = (user(kms, BOB).await, user(kms, CAROL).await);
    let denied = refused(
        call_as(kms, &carol, "RetireGrant", retire(&by_retiring)).await,
        "AccessDeniedException",
    );
    assert!(
        denied.starts_with(&format!(
            "User: {CAROL} is not authorized to perform: kms:RetireGrant"
        )),
        "{denied}"
    );
    refused(
        call_as(kms, &carol, "RetireGrant", retire(&grantee_may_not)).await,
        "AccessDeniedException",
    );
    // A grant allowing RetireGrant lets its grantee retire that grant, not another.
    refused(
        call_as(kms, &bob, "RetireGrant", retire(&grantee_may)).await,
        "AccessDeniedException",
    );
    assert_eq!(
        listed(kms, &key).await.len(),
        3,
        "a denied retirement changed nothing"
    );
    // DryRun answers after the decision.
    refused(
        call_as(
            kms,
            &bob,
            "RetireGrant",
            json!({"KeyId": arn, "GrantId": by_retiring, "DryRun": true}),
        )
        .await,
        "DryRunOperationException",
    );
    call_as(kms, &bob, "RetireGrant", retire(&by_retiring))
        .await
        .unwrap();
    call_as(kms, &carol, "RetireGrant", retire(&grantee_may))
        .await
        .unwrap();
    // The key's account (here a user with identity policies, through the default key policy).
    call_as(
        kms,
        &user(kms, ALICE).await,
        "RetireGrant",
        retire(&grantee_may_not),
    )
    .await
    .unwrap();
    assert!(listed(kms, &key).await.is_empty());
}

async fn engine_view_and_cache(kms: &Kms) {
    let key = new_key(kms).await;
    let key_id: uuid::Uuid = key.parse().unwrap();
    assert!(kms.grants_for_key(&key_id).await.unwrap().is_empty());
    let (id, token) = grant(
        kms,
        json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"],
               "Constraints": {"EncryptionContextEquals": {"app": "x"}}}),
    )
    .await;
    // Created on this node: the cached (empty) list was forgotten.
    let grants = kms.grants_for_key(&key_id).await.unwrap();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(
        (g.grant_id.as_str(), g.grantee_principal.as_str()),
        (id.as_str(), ALICE)
    );
    let arn = format!("arn:aws:kms:us-east-1:{HOME}:key/{key}");
    let alice = Principal::user(HOME, "alice", "AIDAALICE");
    let decrypt = |ec: &[(&str, &str)]| {
        let ec: BTreeMap<String, String> = ec
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RequestContext::new(alice.clone(), "kms:Decrypt")
            .with_resource(&arn)
            .with_encryption_context(&ec)
    };
    assert!(g.allows(&decrypt(&[("app", "x")])));
    assert!(!g.allows(&decrypt(&[("app", "x"), ("more", "y")])));
    assert!(!g.allows(&decrypt(&[])));
    // Tokens name the grant.
    let named = kms.check_grant_tokens(Some(&[token])).await.unwrap();
    assert_eq!(named, vec![(key_id, id.clone())]);
    call(kms, "RevokeGrant", json!({"KeyId": key, "GrantId": id}))
        .await
        .unwrap();
    assert!(kms.grants_for_key(&key_id).await.unwrap().is_empty());
}

async fn grants_carry_the_keys_account(kms: &Kms) {
    // BOB's key is in BOB's account: its grants are too, and show its ARN there.
    let bob = user(kms, BOB).await;
    let v = call_as(kms, &bob, "CreateKey", json!({})).await.unwrap();
    let arn = v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    assert!(arn.contains(":444455556666:key/"), "{arn}");
    let out = call_as(
        kms,
        &bob,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": CAROL, "RetiringPrincipal": ALICE,
               "Operations": ["Decrypt"]}),
    )
    .await
    .unwrap();
    let id = out["GrantId"].as_str().unwrap();
    let row = kms.store().get_grant(id).await.unwrap().unwrap();
    assert_eq!(row.account_id, "444455556666");
    let listed = call_as(kms, &bob, "ListGrants", json!({"KeyId": arn}))
        .await
        .unwrap();
    let g = &listed["Grants"][0];
    assert_eq!(g["KeyId"], arn.as_str());
    assert_eq!(g["IssuingAccount"], "arn:aws:iam::444455556666:root");
    // ALICE, of the home account, retires it as its retiring principal, across accounts.
    call_as(
        kms,
        &user(kms, ALICE).await,
        "RetireGrant",
        json!({"GrantToken": out["GrantToken"]}),
    )
    .await
    .unwrap();
    assert!(kms.store().get_grant(id).await.unwrap().is_none());
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() {
                let f = super::fixture("sqlite").await.unwrap();
                super::$name(&super::kms_on(&f.url, 7).await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                let Some(f) = super::fixture("postgres").await else { return };
                super::$name(&super::kms_on(&f.url, 7).await).await;
            })*
        }
    };
}

on_both_stores!(
    create_list_and_idempotency,
    refusals_change_nothing,
    key_states,
    who_may_retire,
    engine_view_and_cache,
    grants_carry_the_keys_account,
);

// ----- one store --------------------------------------------------------------------------------

/// A grant made on another node counts at once when a request names its token, before this
/// node's cached list of the key's grants expires.
#[tokio::test]
async fn tokens_reach_past_another_nodes_cache() {
    let f = fixture("sqlite").await.unwrap();
    let (a, b) = (kms_on(&f.url, 7).await, kms_on(&f.url, 7).await);
    let key = new_key(&a).await;
    let key_id: uuid::Uuid = key.parse().unwrap();
    assert!(b.grants_for_key(&key_id).await.unwrap().is_empty());
    let (id, token) = grant(
        &a,
        json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Encrypt"]}),
    )
    .await;
    assert!(
        b.grants_for_key(&key_id).await.unwrap().is_empty(),
        "cached for the TTL"
    );
    let named = b.check_grant_tokens(Some(&[token])).await.unwrap();
    let grants = b.grants_for_request(&key_id, &named).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].grant_id, id);
}

/// 50,000 grants per key: the 50,001st is LimitExceededException and is not stored.
#[tokio::test]
async fn fifty_thousand_grants_per_key() {
    let f = fixture("sqlite").await.unwrap();
    let kms = kms_on(&f.url, 7).await;
    let key = new_key(&kms).await;
    {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&f.url).await.unwrap();
        sqlx::raw_sql(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 49999) \
             INSERT INTO kms_grants (grant_id, key_id, account_id, grantee_principal, operations, \
             issuing_account, created_at) \
             SELECT printf('%064d', i), '{key}', '{HOME}', '{ALICE}', '[\"Decrypt\"]', '{HOME}', 0 FROM n"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let body = json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]});
    grant(&kms, body.clone()).await;
    let msg = refused(
        call(&kms, "CreateGrant", body).await,
        "LimitExceededException",
    );
    assert!(msg.contains("50000"), "{msg}");
    let count: i64 = {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&f.url).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM kms_grants")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(count, 50_000);
    // Another key is not affected.
    let other = new_key(&kms).await;
    grant(
        &kms,
        json!({"KeyId": other, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]}),
    )
    .await;
}

/// The grant token key is re-wrapped with everything else: tokens issued under the old root
/// still verify under the new one.
#[tokio::test]
async fn tokens_survive_a_root_migration() {
    let f = fixture("sqlite").await.unwrap();
    let (key, token) = {
        let kms = kms_on(&f.url, 7).await;
        let key = new_key(&kms).await;
        let (_, token) = grant(
            &kms,
            json!({"KeyId": key, "GranteePrincipal": ALICE, "Operations": ["Decrypt"]}),
        )
        .await;
        (key, token)
    };
    let store = Store::connect(&f.url).await.unwrap();
    Kms::migrate_root(&store, root(7), root(9)).await.unwrap();
    let kms = kms_on(&f.url, 9).await;
    call(&kms, "RetireGrant", json!({"GrantToken": token}))
        .await
        .unwrap();
    assert!(listed(&kms, &key).await.is_empty());
}

// ----- the engine: CreateGrant's context and child grants ---------------------------------------

fn ec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create_grant_ctx(req: &CreateGrantRequest) -> RequestContext {
    let mut ctx = RequestContext::new(
        Principal::user(HOME, "alice", "AIDAALICE"),
        "kms:CreateGrant",
    )
    .with_resource("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    req.fill_context(&mut ctx);
    ctx
}

fn child(
    ops: &[&str],
    subset: Option<&[(&str, &str)]>,
    equals: Option<&[(&str, &str)]>,
) -> CreateGrantRequest {
    CreateGrantRequest {
        grantee_principal: Some(BOB.into()),
        retiring_principal: Some(CAROL.into()),
        operations: Some(ops.iter().map(|s| s.to_string()).collect()),
        constraints: (subset.is_some() || equals.is_some()).then(|| {
            kms_core::api::GrantConstraints {
                encryption_context_subset: subset.map(ec),
                encryption_context_equals: equals.map(ec),
                source_arn: None,
            }
        }),
        ..Default::default()
    }
}

#[test]
fn create_grant_condition_keys() {
    let ctx = create_grant_ctx(&child(
        &["Decrypt", "CreateGrant"],
        Some(&[("a", "1")]),
        None,
    ));
    let get = |k: &str| ctx.get(k).map(<[String]>::to_vec);
    let v = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(get(keys::GRANT_OPERATIONS), v(&["Decrypt", "CreateGrant"]));
    assert_eq!(get(keys::GRANTEE_PRINCIPAL), v(&[BOB]));
    assert_eq!(get(keys::RETIRING_PRINCIPAL), v(&[CAROL]));
    assert_eq!(get(keys::GRANT_IS_FOR_AWS_RESOURCE), v(&["false"]));
    assert_eq!(
        get(keys::GRANT_CONSTRAINT_TYPE),
        v(&["EncryptionContextSubset"])
    );
    let plain = create_grant_ctx(&child(&["Decrypt"], None, None));
    assert_eq!(plain.get(keys::GRANT_CONSTRAINT_TYPE), None);
    assert_eq!(
        plain.get(keys::RETIRING_PRINCIPAL).map(<[String]>::to_vec),
        v(&[CAROL])
    );
}

#[test]
fn a_grant_allowing_create_grant_allows_only_narrower_grants() {
    let parent = |subset: Option<&[(&str, &str)]>, equals: Option<&[(&str, &str)]>| policy::Grant {
        grant_id: "p".into(),
        grantee_principal: ALICE.into(),
        operations: vec!["CreateGrant".into(), "Decrypt".into(), "Encrypt".into()],
        constraints: (subset.is_some() || equals.is_some()).then(|| policy::GrantConstraints {
            encryption_context_subset: subset.map(ec),
            encryption_context_equals: equals.map(ec),
        }),
    };
    let allows = |p: &policy::Grant, c: &CreateGrantRequest| p.allows(&create_grant_ctx(c));
    let free = parent(None, None);
    assert!(allows(&free, &child(&["Decrypt"], None, None)));
    assert!(allows(
        &free,
        &child(&["Decrypt", "CreateGrant"], Some(&[("a", "1")]), None)
    ));
    assert!(
        !allows(&free, &child(&["Decrypt", "ReEncryptFrom"], None, None)),
        "wider operations"
    );
    let sub = parent(Some(&[("a", "1")]), None);
    assert!(
        !allows(&sub, &child(&["Decrypt"], None, None)),
        "drops the constraint"
    );
    assert!(allows(
        &sub,
        &child(&["Decrypt"], Some(&[("a", "1")]), None)
    ));
    assert!(allows(
        &sub,
        &child(&["Decrypt"], Some(&[("a", "1"), ("b", "2")]), None)
    ));
    assert!(!allows(
        &sub,
        &child(&["Decrypt"], Some(&[("a", "2")]), None)
    ));
    assert!(allows(
        &sub,
        &child(&["Decrypt"], None, Some(&[("a", "1"), ("b", "2")]))
    ));
    assert!(!allows(
        &sub,
        &child(&["Decrypt"], None, Some(&[("b", "2")]))
    ));
    let eq = parent(None, Some(&[("a", "1")]));
    assert!(allows(&eq, &child(&["Encrypt"], None, Some(&[("a", "1")]))));
    assert!(
        !allows(&eq, &child(&["Encrypt"], Some(&[("a", "1")]), None)),
        "a subset admits more"
    );
    assert!(!allows(
        &eq,
        &child(&["Encrypt"], None, Some(&[("a", "1"), ("b", "2")]))
    ));
    // A context for CreateGrant without the requested grant: the grant allows nothing.
    let bare = RequestContext::new(
        Principal::user(HOME, "alice", "AIDAALICE"),
        "kms:CreateGrant",
    );
    assert!(!free.allows(&bare));
    // Another grantee: nothing.
    let mut other = free.clone();
    other.grantee_principal = BOB.into();
    assert!(!allows(&other, &child(&["Decrypt"], None, None)));
}
