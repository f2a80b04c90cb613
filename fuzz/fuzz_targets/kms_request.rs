//! Every KMS request body through the real dispatcher, `Kms::execute`, as the endpoint calls it
//! after authentication: the first input byte picks the operation (modulo the list below, which is
//! every operation the service knows plus one it does not), the rest is the body. Any body must be
//! answered with a response or an AWS error, never a panic, and never KMSInternalException (the
//! 500 a client cannot fix); a response is a JSON object.
//!
//! One tokio runtime and one `Kms` per process, over an in-memory SQLite store (no file and no
//! fsync: several times the executions of a file store), with three keys and the aliases `alias/fuzz-1` … `alias/fuzz-3` for the bodies to name. The store keeps what earlier
//! inputs did (keys created, disabled, tagged), as a long-lived server does.
//!
//! Seed corpus: a valid body for every operation (`fuzz/corpus/kms_request`, written by
//! `fuzz/seeds.py`), including Decrypt of the golden blobs of `kms-core/tests/testdata`.
#![no_main]

use std::sync::OnceLock;

use kms_core::{Caller, Kms};
use libfuzzer_sys::fuzz_target;

/// Every operation `Kms::execute` knows (`kms_core::operations()`, in the order it had when the
/// corpus was written), then one it does not know. The corpus's first bytes index this list:
/// append, never reorder. The fixture checks it against `operations()`.
const OPERATIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "UpdateKeyDescription",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "CreateCustomKeyStore",
    "DescribeCustomKeyStores",
    "ConnectCustomKeyStore",
    "DisconnectCustomKeyStore",
    "UpdateCustomKeyStore",
    "DeleteCustomKeyStore",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "GetPublicKey",
    "DeriveSharedSecret",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "NoSuchOperation",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
];

struct Fixture {
    rt: tokio::runtime::Runtime,
    kms: Kms,
    caller: Caller,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut known: Vec<&str> = kms_core::operations().collect();
        let mut listed: Vec<&str> = OPERATIONS
            .iter()
            .copied()
            .filter(|op| *op != "NoSuchOperation")
            .collect();
        known.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, known, "OPERATIONS is not kms_core::operations()");
        let (rt, kms) = envelope_fuzz::kms_in_memory();
        rt.block_on(async {
            let caller = caller();
            for i in 1..=3 {
                let key = kms
                    .execute(&caller, "CreateKey", br#"{"Description":"fuzz"}"#)
                    .await
                    .unwrap();
                let key: serde_json::Value = serde_json::from_slice(&key).unwrap();
                let id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
                let body = format!(r#"{{"AliasName":"alias/fuzz-{i}","TargetKeyId":"{id}"}}"#);
                kms.execute(&caller, "CreateAlias", body.as_bytes())
                    .await
                    .unwrap();
            }
        });
        Fixture {
            rt,
            kms,
            caller: caller(),
        }
    })
}

/// The home account's root user: every request reaches its operation through the authorization
/// point (key policies still decide), so the operations' parsers are what is fuzzed.
fn caller() -> Caller {
    Caller {
        access_key_id: "AKIAFUZZFUZZFUZZFUZZ".into(),
        request_id: "00000000-0000-4000-8000-000000000000".into(),
        ..Caller::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let operation = OPERATIONS[usize::from(op) % OPERATIONS.len()];
    match f.rt.block_on(f.kms.execute(&f.caller, operation, body)) {
        Ok(response) => {
            let v: serde_json::Value = serde_json::from_slice(&response).unwrap();
            assert!(
                v.is_object(),
                "{operation}: a response that is not an object"
            );
        }
        Err(e) => assert!(!e.is_internal(), "{operation}: {e:?}"),
    }
});
