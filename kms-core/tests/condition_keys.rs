//! The condition keys an operation sets from its request, each proved by a Deny that must fire
//! (an absent key makes a positive condition false, so a Deny written on it would silently never
//! apply): `aws:TagKeys` on UntagResource, `kms:ScheduleKeyDeletionPendingWindowInDays`,
//! `kms:RotationPeriodInDays`, `kms:EncryptionAlgorithm` and `kms:ReEncryptOnSameKey`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use kms_core::{Caller, InitialPolicy, Kms};
use serde_json::{json, Value};

mod common;

use common::calls::*;

/// A user of the home account with every action allowed but what `denies` denies.
async fn ops_user(kms: &Kms, denies: Value) -> Caller {
    let mut statements = vec![json!({"Effect": "Allow", "Action": "*", "Resource": "*"})];
    statements.extend(denies.as_array().unwrap().iter().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    kms.create_principal_in(
        HOME,
        "ops",
        None,
        InitialPolicy::Document(policy.to_string()),
    )
    .await
    .unwrap();
    as_(kms
        .principal_named(&format!("arn:aws:iam::{HOME}:user/ops"))
        .await
        .unwrap())
}

fn deny(action: &str, condition: Value) -> Value {
    json!({"Effect": "Deny", "Action": action, "Resource": "*", "Condition": condition})
}

#[tokio::test]
async fn key_management_requests_set_their_condition_keys() {
    let (_d, kms) = kms().await;
    let ops = ops_user(
        &kms,
        json!([
            deny(
                "kms:UntagResource",
                json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["protected"]}})
            ),
            deny(
                "kms:ScheduleKeyDeletion",
                json!({"NumericLessThan": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}})
            ),
            deny(
                "kms:EnableKeyRotation",
                json!({"NumericLessThan": {"kms:RotationPeriodInDays": "180"}})
            ),
        ]),
    )
    .await;
    let arn = create_key(&kms, &ops, None).await;
    let tags =
        json!([{"TagKey": "protected", "TagValue": "1"}, {"TagKey": "free", "TagValue": "2"}]);
    call(
        &kms,
        &ops,
        "TagResource",
        json!({"KeyId": arn, "Tags": tags}),
    )
    .await
    .unwrap();
    denied(
        call(
            &kms,
            &ops,
            "UntagResource",
            json!({"KeyId": arn, "TagKeys": ["free", "protected"]}),
        )
        .await,
    );
    let listed = call(&kms, &ops, "ListResourceTags", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(listed["Tags"].as_array().unwrap().len(), 2, "{listed}");
    call(
        &kms,
        &ops,
        "UntagResource",
        json!({"KeyId": arn, "TagKeys": ["free"]}),
    )
    .await
    .unwrap();

    denied(
        call(
            &kms,
            &ops,
            "EnableKeyRotation",
            json!({"KeyId": arn, "RotationPeriodInDays": 90}),
        )
        .await,
    );
    let status = call(&kms, &ops, "GetKeyRotationStatus", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(status["KeyRotationEnabled"], false);
    call(
        &kms,
        &ops,
        "EnableKeyRotation",
        json!({"KeyId": arn, "RotationPeriodInDays": 365}),
    )
    .await
    .unwrap();

    denied(
        call(
            &kms,
            &ops,
            "ScheduleKeyDeletion",
            json!({"KeyId": arn, "PendingWindowInDays": 7}),
        )
        .await,
    );
    let d = call(&kms, &ops, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Enabled");
    call(
        &kms,
        &ops,
        "ScheduleKeyDeletion",
        json!({"KeyId": arn, "PendingWindowInDays": 30}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn cryptographic_requests_set_the_algorithm_and_whether_reencrypt_keeps_the_key() {
    let (_d, kms) = kms().await;
    let ops = ops_user(
        &kms,
        json!([
            deny(
                "kms:ReEncrypt*",
                json!({"Bool": {"kms:ReEncryptOnSameKey": "true"}})
            ),
            deny(
                "kms:Encrypt",
                json!({"StringNotEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}})
            ),
            deny(
                "kms:Encrypt",
                json!({"Null": {"kms:EncryptionAlgorithm": "true"}})
            ),
        ]),
    )
    .await;
    let a = create_key(&kms, &ops, None).await;
    let b = create_key(&kms, &ops, None).await;
    // Without an algorithm in the request the key still holds SYMMETRIC_DEFAULT: the Null deny
    // does not fire.
    let ct = call(
        &kms,
        &ops,
        "Encrypt",
        json!({"KeyId": a, "Plaintext": b64(b"s")}),
    )
    .await
    .unwrap();
    call(
        &kms,
        &ops,
        "Encrypt",
        json!({"KeyId": a, "Plaintext": b64(b"s"), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    )
    .await
    .unwrap();
    let m = denied(
        call(
            &kms,
            &ops,
            "ReEncrypt",
            json!({"CiphertextBlob": ct["CiphertextBlob"], "DestinationKeyId": a}),
        )
        .await,
    );
    assert!(m.contains("explicit deny"), "{m}");
    let moved = call(
        &kms,
        &ops,
        "ReEncrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"], "DestinationKeyId": b}),
    )
    .await
    .unwrap();
    assert_eq!(moved["KeyId"], b);
}
