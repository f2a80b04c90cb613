//! Key service behaviour, run against SQLite and (when ENVELOPE_TEST_POSTGRES_URL is set) PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;

use kms_core::api::*;
use kms_core::{blob, Caller, KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store};

const DAY_MS: i64 = 86_400_000;

/// A fresh, empty store: a SQLite file in a temporary directory, or a new PostgreSQL database.
struct Fixture {
    _dir: Option<tempfile::TempDir>,
    url: String,
}

async fn fixture(backend: &str) -> Option<Fixture> {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
            Some(Fixture {
                _dir: Some(dir),
                url,
            })
        }
        _ => {
            let Ok(admin) = std::env::var("ENVELOPE_TEST_POSTGRES_URL") else {
                // In CI the PostgreSQL run is required, never silently skipped.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but ENVELOPE_TEST_POSTGRES_URL is not"
                );
                eprintln!("ENVELOPE_TEST_POSTGRES_URL not set: skipping the PostgreSQL run");
                return None;
            };
            sqlx::any::install_default_drivers();
            use sqlx::Connection;
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            let name = format!("envelope_t_{}", uuid::Uuid::new_v4().simple());
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            Some(Fixture {
                _dir: None,
                url: format!("{base}/{name}"),
            })
        }
    }
}

fn root(byte: u8) -> Arc<SoftwareRootKey> {
    Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[byte; 32]).unwrap(),
    ))
}

async fn kms_on(f: &Fixture) -> Kms {
    let store = Store::connect(&f.url).await.unwrap();
    Kms::open(store, root(7), KmsConfig::default())
        .await
        .unwrap()
}

async fn new_key(kms: &Kms) -> KeyMetadata {
    kms.create_key(CreateKeyRequest {
        description: Some("test".into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .key_metadata
}

fn ctx(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

async fn encrypt(
    kms: &Kms,
    key: &str,
    pt: &[u8],
    c: Option<BTreeMap<String, String>>,
) -> Result<EncryptResponse, KmsError> {
    kms.encrypt(EncryptRequest {
        key_id: Some(key.into()),
        plaintext: Some(pt.into()),
        encryption_context: c,
        ..Default::default()
    })
    .await
}

async fn decrypt(
    kms: &Kms,
    blob: &[u8],
    c: Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>, KmsError> {
    kms.decrypt(DecryptRequest {
        ciphertext_blob: Some(blob.to_vec()),
        encryption_context: c,
        ..Default::default()
    })
    .await
    .map(|r| r.plaintext.to_vec())
}

fn kid(k: &KeyMetadata) -> KeyIdRequest {
    KeyIdRequest {
        key_id: Some(k.key_id.clone()),
    }
}

async fn key_states(kms: &Kms) {
    let k = new_key(kms).await;
    assert_eq!(k.key_state, KeyState::Enabled);
    assert_eq!(
        k.arn,
        format!("arn:aws:kms:us-east-1:111122223333:key/{}", k.key_id)
    );
    let ct = encrypt(kms, &k.key_id, b"x", None).await.unwrap();
    assert_eq!(ct.key_id, k.arn, "Encrypt names the key by ARN");

    kms.disable_key(kid(&k)).await.unwrap();
    assert!(matches!(
        encrypt(kms, &k.key_id, b"x", None).await,
        Err(KmsError::Disabled(_))
    ));
    assert!(matches!(
        decrypt(kms, &ct.ciphertext_blob, None).await,
        Err(KmsError::Disabled(_))
    ));
    kms.enable_key(kid(&k)).await.unwrap();
    assert_eq!(decrypt(kms, &ct.ciphertext_blob, None).await.unwrap(), b"x");

    for bad in [6, 31] {
        let r = kms
            .schedule_key_deletion(ScheduleKeyDeletionRequest {
                key_id: Some(k.key_id.clone()),
                pending_window_in_days: Some(bad),
            })
            .await;
        assert!(matches!(r, Err(KmsError::Validation(_))), "{bad}: {r:?}");
    }
    let s = kms
        .schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: Some(k.arn.clone()),
            pending_window_in_days: None,
        })
        .await
        .unwrap();
    assert_eq!(s.pending_window_in_days, 30);
    assert_eq!(s.key_state, KeyState::PendingDeletion);
    assert!(matches!(
        encrypt(kms, &k.key_id, b"x", None).await,
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        decrypt(kms, &ct.ciphertext_blob, None).await,
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        kms.enable_key(kid(&k)).await,
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: Some(k.key_id.clone()),
            pending_window_in_days: Some(7)
        })
        .await,
        Err(KmsError::InvalidState(_))
    ));
    kms.cancel_key_deletion(kid(&k)).await.unwrap();
    let d = kms.describe_key(kid(&k)).await.unwrap().key_metadata;
    assert_eq!(
        d.key_state,
        KeyState::Disabled,
        "a cancelled deletion leaves the key disabled"
    );
    assert!(d.deletion_date.is_none());
    assert!(matches!(
        kms.cancel_key_deletion(kid(&k)).await,
        Err(KmsError::InvalidState(_))
    ));
}

async fn context_binding_and_tampering(kms: &Kms) {
    let k = new_key(kms).await;
    let c = ctx(&[("purpose", "test"), ("a", "b")]);
    let ct = encrypt(kms, &k.key_id, b"secret data", c.clone())
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(decrypt(kms, &ct, c.clone()).await.unwrap(), b"secret data");
    for wrong in [
        None,
        ctx(&[("purpose", "test")]),
        ctx(&[("purpose", "tesT"), ("a", "b")]),
        ctx(&[("purposea", "test"), ("", "b")]),
    ] {
        let r = decrypt(kms, &ct, wrong.clone()).await;
        assert!(
            matches!(
                r,
                Err(KmsError::InvalidCiphertext(_)) | Err(KmsError::Validation(_))
            ),
            "{wrong:?}: {r:?}"
        );
    }
    // Every single flipped bit is refused.
    for i in 0..ct.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = ct.clone();
            t[i] ^= bit;
            let r = decrypt(kms, &t, c.clone()).await;
            assert!(
                matches!(r, Err(KmsError::InvalidCiphertext(_))),
                "byte {i}: {r:?}"
            );
        }
    }
    for n in [0, 1, blob::OVERHEAD - 1, ct.len() - 1] {
        let r = decrypt(kms, &ct[..n], c.clone()).await;
        assert!(
            matches!(
                r,
                Err(KmsError::InvalidCiphertext(_)) | Err(KmsError::Validation(_))
            ),
            "{n}: {r:?}"
        );
    }
    // KeyId on Decrypt must match.
    let other = new_key(kms).await;
    let r = kms
        .decrypt(DecryptRequest {
            ciphertext_blob: Some(ct.clone()),
            key_id: Some(other.key_id.clone()),
            encryption_context: c.clone(),
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(KmsError::IncorrectKey(_))), "{r:?}");
    let ok = kms
        .decrypt(DecryptRequest {
            ciphertext_blob: Some(ct.clone()),
            key_id: Some(k.arn.clone()),
            encryption_context: c.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.key_id, k.arn);
    // ReEncrypt moves it to another key and context.
    let re = kms
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: Some(ct),
            source_encryption_context: c,
            destination_key_id: Some(other.key_id.clone()),
            destination_encryption_context: ctx(&[("new", "ctx")]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (re.source_key_id.as_str(), re.key_id.as_str()),
        (k.arn.as_str(), other.arn.as_str())
    );
    assert_eq!(
        decrypt(kms, &re.ciphertext_blob, ctx(&[("new", "ctx")]))
            .await
            .unwrap(),
        b"secret data"
    );
}

async fn limits(kms: &Kms) {
    let k = new_key(kms).await;
    assert!(encrypt(kms, &k.key_id, &[1; 4096], None).await.is_ok());
    for n in [0usize, 4097] {
        assert!(
            matches!(
                encrypt(kms, &k.key_id, &vec![1; n], None).await,
                Err(KmsError::Validation(_))
            ),
            "{n}"
        );
    }
    let r = kms
        .encrypt(EncryptRequest {
            key_id: Some(k.key_id.clone()),
            plaintext: Some(vec![1].into()),
            encryption_algorithm: Some("RSAES_OAEP_SHA_256".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(KmsError::InvalidKeyUsage(_))), "{r:?}");
    let gdk = |spec: Option<&str>, n: Option<i64>| GenerateDataKeyRequest {
        key_id: Some(k.key_id.clone()),
        key_spec: spec.map(Into::into),
        number_of_bytes: n,
        ..Default::default()
    };
    assert_eq!(
        kms.generate_data_key(gdk(Some("AES_256"), None))
            .await
            .unwrap()
            .plaintext
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        kms.generate_data_key(gdk(Some("AES_128"), None))
            .await
            .unwrap()
            .plaintext
            .unwrap()
            .len(),
        16
    );
    assert_eq!(
        kms.generate_data_key(gdk(None, Some(1024)))
            .await
            .unwrap()
            .plaintext
            .unwrap()
            .len(),
        1024
    );
    for (s, n) in [
        (None, Some(0)),
        (None, Some(1025)),
        (None, None),
        (Some("AES_256"), Some(32)),
        (Some("AES_512"), None),
    ] {
        assert!(
            matches!(
                kms.generate_data_key(gdk(s, n)).await,
                Err(KmsError::Validation(_))
            ),
            "{s:?} {n:?}"
        );
    }
    let wo = kms
        .generate_data_key_without_plaintext(gdk(Some("AES_256"), None))
        .await
        .unwrap();
    assert!(wo.plaintext.is_none());
    assert_eq!(
        decrypt(kms, &wo.ciphertext_blob, None).await.unwrap().len(),
        32
    );
    for n in [1, 1024] {
        let r = kms
            .generate_random(GenerateRandomRequest {
                number_of_bytes: Some(n),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r.plaintext.len(), n as usize);
    }
    for n in [0, 1025] {
        assert!(matches!(
            kms.generate_random(GenerateRandomRequest {
                number_of_bytes: Some(n),
                ..Default::default()
            })
            .await,
            Err(KmsError::Validation(_))
        ));
    }
    for (spec, want_unsupported) in [("RSA_2048", true), ("NOPE", false)] {
        let r = kms
            .create_key(CreateKeyRequest {
                key_spec: Some(spec.into()),
                ..Default::default()
            })
            .await;
        if want_unsupported {
            assert!(matches!(r, Err(KmsError::UnsupportedOperation(_))), "{r:?}");
        } else {
            assert!(matches!(r, Err(KmsError::Validation(_))), "{r:?}");
        }
    }
    let r = kms
        .create_key(CreateKeyRequest {
            origin: Some("EXTERNAL".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(r, Err(KmsError::UnsupportedOperation(_))));
}

async fn rotation(kms: &Kms) {
    let k = new_key(kms).await;
    let first = encrypt(kms, &k.key_id, b"v1", None)
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(blob::parse_header(&first).unwrap().version, 1);
    kms.rotate_key_on_demand(kid(&k)).await.unwrap();
    let second = encrypt(kms, &k.key_id, b"v2", None)
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(blob::parse_header(&second).unwrap().version, 2);
    // Automatic rotation, when due.
    let r = kms
        .enable_key_rotation(EnableKeyRotationRequest {
            key_id: Some(k.key_id.clone()),
            rotation_period_in_days: Some(89),
        })
        .await;
    assert!(matches!(r, Err(KmsError::Validation(_))));
    kms.enable_key_rotation(EnableKeyRotationRequest {
        key_id: Some(k.key_id.clone()),
        rotation_period_in_days: Some(90),
    })
    .await
    .unwrap();
    let st = kms.get_key_rotation_status(kid(&k)).await.unwrap();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(90));
    let (_, rotated) = kms
        .run_due_work(kms_core::now_millis() + 91 * DAY_MS)
        .await
        .unwrap();
    assert!(rotated >= 1);
    let third = encrypt(kms, &k.key_id, b"v3", None)
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(blob::parse_header(&third).unwrap().version, 3);
    for (b, pt) in [(&first, b"v1"), (&second, b"v2"), (&third, b"v3")] {
        assert_eq!(
            decrypt(kms, b, None).await.unwrap(),
            pt,
            "every version keeps decrypting"
        );
    }
    let list = kms
        .list_key_rotations(ListKeyRotationsRequest {
            key_id: Some(k.key_id.clone()),
            limit: Some(1),
            marker: None,
        })
        .await
        .unwrap();
    assert_eq!(list.rotations.len(), 1);
    assert_eq!(list.rotations[0].rotation_type, "ON_DEMAND");
    assert!(list.truncated);
    let rest = kms
        .list_key_rotations(ListKeyRotationsRequest {
            key_id: Some(k.key_id.clone()),
            limit: None,
            marker: list.next_marker,
        })
        .await
        .unwrap();
    assert_eq!(rest.rotations.len(), 1);
    assert_eq!(rest.rotations[0].rotation_type, "AUTOMATIC");
    assert!(!rest.truncated);
    kms.disable_key_rotation(kid(&k)).await.unwrap();
    assert!(
        !kms.get_key_rotation_status(kid(&k))
            .await
            .unwrap()
            .key_rotation_enabled
    );
    // The on-demand limit.
    for _ in 1..10 {
        kms.rotate_key_on_demand(kid(&k)).await.unwrap();
    }
    assert!(matches!(
        kms.rotate_key_on_demand(kid(&k)).await,
        Err(KmsError::LimitExceeded(_))
    ));
    kms.disable_key(kid(&k)).await.unwrap();
    assert!(matches!(
        kms.enable_key_rotation(EnableKeyRotationRequest {
            key_id: Some(k.key_id.clone()),
            rotation_period_in_days: None
        })
        .await,
        Err(KmsError::Disabled(_))
    ));
}

async fn deletion_destroys_material(kms: &Kms) {
    let k = new_key(kms).await;
    let keep = new_key(kms).await;
    kms.create_alias(AliasRequest {
        alias_name: Some("alias/doomed".into()),
        target_key_id: Some(k.key_id.clone()),
    })
    .await
    .unwrap();
    let ct = encrypt(kms, "alias/doomed", b"bye", None)
        .await
        .unwrap()
        .ciphertext_blob;
    kms.schedule_key_deletion(ScheduleKeyDeletionRequest {
        key_id: Some(k.key_id.clone()),
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    let (deleted, _) = kms
        .run_due_work(kms_core::now_millis() + 6 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(deleted, 0, "not due yet");
    let (deleted, _) = kms
        .run_due_work(kms_core::now_millis() + 7 * DAY_MS + 1000)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(matches!(
        kms.describe_key(kid(&k)).await,
        Err(KmsError::NotFound(_))
    ));
    let id = uuid::Uuid::parse_str(&k.key_id).unwrap();
    assert!(
        kms.store().get_materials(&id).await.unwrap().is_empty(),
        "material rows are gone"
    );
    assert!(matches!(
        decrypt(kms, &ct, None).await,
        Err(KmsError::InvalidCiphertext(_))
    ));
    assert!(kms
        .store()
        .get_alias("alias/doomed")
        .await
        .unwrap()
        .is_none());
    assert!(
        kms.describe_key(kid(&keep)).await.is_ok(),
        "other keys untouched"
    );
}

async fn aliases_and_identifiers(kms: &Kms) {
    let k = new_key(kms).await;
    let k2 = new_key(kms).await;
    let name = format!("alias/app-{}", &k.key_id[..8]);
    kms.create_alias(AliasRequest {
        alias_name: Some(name.clone()),
        target_key_id: Some(k.arn.clone()),
    })
    .await
    .unwrap();
    let r = kms
        .create_alias(AliasRequest {
            alias_name: Some(name.clone()),
            target_key_id: Some(k.key_id.clone()),
        })
        .await;
    assert!(matches!(r, Err(KmsError::AlreadyExists(_))), "{r:?}");
    // AWS's answers: the reserved prefix is NotAuthorizedException, a name without `alias/` or with
    // a character outside its pattern is ValidationException.
    for (bad, want) in [
        ("alias/aws/s3", "NotAuthorizedException"),
        ("app", "ValidationException"),
        ("alias/has space", "ValidationException"),
        ("alias/my:alias", "ValidationException"),
    ] {
        let r = kms
            .create_alias(AliasRequest {
                alias_name: Some(bad.into()),
                target_key_id: Some(k.key_id.clone()),
            })
            .await;
        assert_eq!(
            r.as_ref().err().map(KmsError::aws_name),
            Some(want),
            "{bad}: {r:?}"
        );
    }
    let alias_arn = format!("arn:aws:kms:us-east-1:111122223333:{name}");
    for id in [
        k.key_id.clone(),
        k.arn.clone(),
        name.clone(),
        alias_arn.clone(),
    ] {
        let e = encrypt(kms, &id, b"p", None).await.unwrap();
        assert_eq!(e.key_id, k.arn, "{id}");
        assert_eq!(
            kms.describe_key(KeyIdRequest {
                key_id: Some(id.clone())
            })
            .await
            .unwrap()
            .key_metadata
            .key_id,
            k.key_id
        );
    }
    // Aliases are refused where AWS refuses them.
    assert!(matches!(
        kms.disable_key(KeyIdRequest {
            key_id: Some(name.clone())
        })
        .await,
        Err(KmsError::NotFound(_))
    ));
    kms.update_alias(AliasRequest {
        alias_name: Some(name.clone()),
        target_key_id: Some(k2.key_id.clone()),
    })
    .await
    .unwrap();
    assert_eq!(
        encrypt(kms, &name, b"p", None).await.unwrap().key_id,
        k2.arn,
        "update takes effect at once on this node"
    );
    let listed = kms
        .list_aliases(ListAliasesRequest {
            key_id: Some(k2.key_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.aliases.len(), 1);
    assert_eq!(listed.aliases[0].alias_arn, alias_arn);
    kms.delete_alias(DeleteAliasRequest {
        alias_name: Some(name.clone()),
    })
    .await
    .unwrap();
    assert!(matches!(
        encrypt(kms, &name, b"p", None).await,
        Err(KmsError::NotFound(_))
    ));
    assert!(matches!(
        kms.delete_alias(DeleteAliasRequest {
            alias_name: Some(name)
        })
        .await,
        Err(KmsError::NotFound(_))
    ));
}

async fn paging_and_tags(kms: &Kms) {
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(new_key(kms).await.key_id);
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_keys(ListKeysRequest {
                limit: Some(2),
                marker: marker.take(),
            })
            .await
            .unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        if !page.truncated {
            break;
        }
        marker = page.next_marker;
    }
    for id in &made {
        assert!(seen.contains(id));
    }
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len());
    assert!(matches!(
        kms.list_keys(ListKeysRequest {
            limit: Some(2),
            marker: Some("!!".into())
        })
        .await,
        Err(KmsError::InvalidMarker(_))
    ));
    assert!(matches!(
        kms.list_keys(ListKeysRequest {
            limit: Some(0),
            marker: None
        })
        .await,
        Err(KmsError::Validation(_))
    ));

    let k = &made[0];
    let tag = |k: &str, v: &str| Tag {
        tag_key: Some(k.into()),
        tag_value: Some(v.into()),
    };
    kms.tag_resource(TagResourceRequest {
        key_id: Some(k.clone()),
        tags: Some(vec![tag("b", "2"), tag("a", "1")]),
    })
    .await
    .unwrap();
    kms.tag_resource(TagResourceRequest {
        key_id: Some(k.clone()),
        tags: Some(vec![tag("a", "one")]),
    })
    .await
    .unwrap();
    let t = kms
        .list_resource_tags(ListResourceTagsRequest {
            key_id: Some(k.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(t.tags, vec![tag("a", "one"), tag("b", "2")]);
    kms.untag_resource(UntagResourceRequest {
        key_id: Some(k.clone()),
        tag_keys: Some(vec!["a".into()]),
    })
    .await
    .unwrap();
    let t = kms
        .list_resource_tags(ListResourceTagsRequest {
            key_id: Some(k.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(t.tags, vec![tag("b", "2")]);
    let r = kms
        .tag_resource(TagResourceRequest {
            key_id: Some(k.clone()),
            tags: Some(vec![tag("aws:x", "1")]),
        })
        .await;
    assert!(matches!(r, Err(KmsError::Tag(_))));
}

async fn json_api(kms: &Kms) {
    let caller = Caller::default();
    let err = |r: Result<zeroize::Zeroizing<Vec<u8>>, KmsError>| r.unwrap_err().aws_name();
    assert_eq!(
        err(kms.execute(&caller, "Nope", b"{}").await),
        "UnknownOperationException"
    );
    assert_eq!(
        err(kms.execute(&caller, "GenerateRandom", b"{not json").await),
        "SerializationException"
    );
    assert_eq!(
        err(kms
            .execute(&caller, "GenerateRandom", br#"{"NumberOfBytes":"abc"}"#)
            .await),
        "SerializationException"
    );
    assert_eq!(
        err(kms
            .execute(&caller, "Encrypt", br#"{"Plaintext":"not base64!"}"#)
            .await),
        "SerializationException"
    );
    assert_eq!(
        err(kms
            .execute(&caller, "Encrypt", br#"{"Plaintext":"AA=="}"#)
            .await),
        "ValidationException"
    );
    let created = kms.execute(&caller, "CreateKey", b"").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&created).unwrap();
    assert_eq!(v["KeyMetadata"]["KeyState"], "Enabled");
    assert_eq!(v["KeyMetadata"]["AWSAccountId"], "111122223333");
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap();
    let body = format!(r#"{{"KeyId":"{id}","KeySpec":"AES_256"}}"#);
    let dk: serde_json::Value = serde_json::from_slice(
        &kms.execute(&caller, "GenerateDataKey", body.as_bytes())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(dk["KeyId"].as_str().unwrap().starts_with("arn:aws:kms:"));
    assert_eq!(dk["Plaintext"].as_str().unwrap().len(), 44);
}

/// Every key, alias and tag in the store, to prove that a refused request changed nothing.
async fn snapshot(kms: &Kms) -> Vec<String> {
    let mut out = Vec::new();
    let keys = kms
        .list_keys(ListKeysRequest {
            limit: Some(1000),
            marker: None,
        })
        .await
        .unwrap();
    assert!(!keys.truncated);
    for k in keys.keys {
        let md = kms
            .describe_key(KeyIdRequest {
                key_id: Some(k.key_id.clone()),
            })
            .await
            .unwrap()
            .key_metadata;
        out.push(format!(
            "key {} {:?} {}",
            md.key_id, md.key_state, md.description
        ));
        let tags = kms
            .list_resource_tags(ListResourceTagsRequest {
                key_id: Some(k.key_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!tags.truncated);
        for t in tags.tags {
            out.push(format!(
                "tag {} {:?}={:?}",
                k.key_id, t.tag_key, t.tag_value
            ));
        }
    }
    let aliases = kms
        .list_aliases(ListAliasesRequest {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    for a in aliases.aliases {
        out.push(format!("alias {} -> {}", a.alias_name, a.target_key_id));
    }
    out
}

/// Issue 14: requests AWS refuses are refused with AWS's error, and a refused request changes
/// nothing (keys, tags, aliases).
async fn refusals_change_nothing(kms: &Kms) {
    let tag = |k: &str, v: &str| Tag {
        tag_key: Some(k.into()),
        tag_value: Some(v.into()),
    };
    let k = new_key(kms).await.key_id;
    let other = new_key(kms).await.key_id;
    kms.tag_resource(TagResourceRequest {
        key_id: Some(k.clone()),
        tags: Some((0..48).map(|i| tag(&format!("t{i:02}"), "v")).collect()),
    })
    .await
    .unwrap();
    let alias = "alias/refusals".to_string();
    kms.create_alias(AliasRequest {
        alias_name: Some(alias.clone()),
        target_key_id: Some(k.clone()),
    })
    .await
    .unwrap();
    let before = snapshot(kms).await;
    let name = |r: Result<Empty, KmsError>| r.err().map(|e| e.aws_name());

    // TagResource that would leave 51 tags: refused whole, the values it updates included.
    let mut tags: Vec<Tag> = (0..10).map(|i| tag(&format!("t{i:02}"), "new")).collect();
    tags.extend((0..3).map(|i| tag(&format!("n{i}"), "x")));
    let r = kms
        .tag_resource(TagResourceRequest {
            key_id: Some(k.clone()),
            tags: Some(tags),
        })
        .await;
    assert_eq!(name(r), Some("TagException"));
    // Tag key and value lengths (ValidationException), a key given twice (TagException).
    for (tags, want) in [
        (vec![tag(&"k".repeat(129), "v")], "ValidationException"),
        (vec![tag("", "v")], "ValidationException"),
        (vec![tag("k", &"v".repeat(257))], "ValidationException"),
        (vec![tag("d", "1"), tag("d", "2")], "TagException"),
    ] {
        let r = kms
            .tag_resource(TagResourceRequest {
                key_id: Some(k.clone()),
                tags: Some(tags),
            })
            .await;
        assert_eq!(name(r), Some(want));
    }
    let r = kms
        .untag_resource(UntagResourceRequest {
            key_id: Some(k.clone()),
            tag_keys: Some(vec!["t00".into(), "k".repeat(129)]),
        })
        .await;
    assert_eq!(name(r), Some("ValidationException"));
    // CreateKey with one tag key twice was a 500 (the store's unique constraint): TagException,
    // and no key made.
    let r = kms
        .create_key(CreateKeyRequest {
            tags: Some(vec![tag("a", "1"), tag("a", "2")]),
            ..Default::default()
        })
        .await;
    assert_eq!(r.err().map(|e| e.aws_name()), Some("TagException"));
    let r = kms
        .create_key(CreateKeyRequest {
            policy: Some(String::new()),
            ..Default::default()
        })
        .await;
    assert_eq!(r.err().map(|e| e.aws_name()), Some("ValidationException"));
    // An alias as an alias's target; alias names AWS refuses.
    for (alias_name, target, want) in [
        (alias.as_str(), alias.clone(), "ValidationException"),
        ("alias/new-one", alias.clone(), "ValidationException"),
        ("alias/aws/mine", other.clone(), "NotAuthorizedException"),
        ("no-prefix", other.clone(), "ValidationException"),
        ("alias/bad!char", other.clone(), "ValidationException"),
        ("alias/bad:char", other.clone(), "ValidationException"),
    ] {
        let req = || AliasRequest {
            alias_name: Some(alias_name.into()),
            target_key_id: Some(target.clone()),
        };
        assert_eq!(
            name(kms.create_alias(req()).await),
            Some(want),
            "{alias_name}"
        );
        if alias_name == alias {
            assert_eq!(name(kms.update_alias(req()).await), Some(want));
        }
    }
    // Identifiers AWS does not take: another partition's ARN, `key/<id>` alone.
    for id in [
        format!("arn:aws-cn:kms:us-east-1:111122223333:key/{k}"),
        format!("key/{k}"),
    ] {
        let r = kms
            .describe_key(KeyIdRequest {
                key_id: Some(id.clone()),
            })
            .await;
        assert_eq!(
            r.err().map(|e| e.aws_name()),
            Some("NotFoundException"),
            "{id}"
        );
    }
    // The JSON layer: a repeated map key, an array for a structure, a 33-bit integer, deep
    // nesting in an unknown member, GrantTokens and markers out of bounds.
    let caller = Caller::default();
    let tokens: Vec<String> = (0..11).map(|i| format!("\"g{i}\"")).collect();
    for (op, body, want) in [
        (
            "Encrypt",
            format!(
                r#"{{"KeyId":"{k}","Plaintext":"eA==","EncryptionContext":{{"a":"1","a":"1"}}}}"#
            ),
            "SerializationException",
        ),
        (
            "CreateKey",
            r#"{"Tags":[["a","b"]]}"#.to_string(),
            "SerializationException",
        ),
        ("CreateKey", r#"[]"#.to_string(), "SerializationException"),
        (
            "TagResource",
            format!(r#"{{"KeyId":"{k}","Tags":[["t00","x"]]}}"#),
            "SerializationException",
        ),
        (
            "ListKeys",
            r#"{"Limit":2147483648}"#.to_string(),
            "SerializationException",
        ),
        (
            "ListKeys",
            r#"{"Limit":-0}"#.to_string(),
            "ValidationException",
        ),
        (
            "ListKeys",
            format!(r#"{{"Bogus":{}1{}}}"#, "[".repeat(3000), "]".repeat(3000)),
            "SerializationException",
        ),
        (
            "ListKeys",
            r#"{"Marker":""}"#.to_string(),
            "ValidationException",
        ),
        (
            "Encrypt",
            format!(
                r#"{{"KeyId":"{k}","Plaintext":"eA==","GrantTokens":[{}]}}"#,
                tokens.join(",")
            ),
            "ValidationException",
        ),
    ] {
        let r = kms.execute(&caller, op, body.as_bytes()).await;
        assert_eq!(
            r.err().map(|e| e.aws_name()),
            Some(want),
            "{op} {}",
            &body[..body.len().min(80)]
        );
    }
    assert_eq!(snapshot(kms).await, before);
    // Still within the limit: 48 + 2 new tags is 50, accepted.
    kms.tag_resource(TagResourceRequest {
        key_id: Some(k.clone()),
        tags: Some(vec![tag("t00", "new"), tag("n0", "x"), tag("n1", "x")]),
    })
    .await
    .unwrap();
}

async fn principals(kms: &Kms) {
    let (info, secret) = kms.create_principal("alice", None).await.unwrap();
    let secret = secret.unwrap();
    assert!(info.access_key_id.starts_with("AKIA") && info.access_key_id.len() == 20);
    assert_eq!(secret.len(), 40);
    let (arn, s) = kms
        .principal_secret(&info.access_key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(arn, "arn:aws:iam::111122223333:user/alice");
    assert_eq!(s.as_slice(), secret.as_bytes());
    // An adopted secret must be as strong as one AWS issues (issue 14): "s3cr3t" was accepted.
    let weak = (
        "AKIAADOPTED0000001".to_string(),
        zeroize::Zeroizing::new("s3cr3t".to_string()),
    );
    assert!(matches!(
        kms.create_principal("bob", Some(weak)).await,
        Err(KmsError::Validation(_))
    ));
    let adopted = (
        "AKIAADOPTED0000001".to_string(),
        zeroize::Zeroizing::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string()),
    );
    let (b, none) = kms.create_principal("bob", Some(adopted)).await.unwrap();
    assert!(none.is_none());
    assert_eq!(
        kms.principal_secret(&b.access_key_id)
            .await
            .unwrap()
            .unwrap()
            .1
            .as_slice(),
        b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert!(matches!(
        kms.create_principal("alice", None).await,
        Err(KmsError::AlreadyExists(_))
    ));
    assert!(matches!(
        kms.create_principal("bad name", None).await,
        Err(KmsError::Validation(_))
    ));
    kms.delete_principal("bob").await.unwrap();
    assert!(kms
        .store()
        .principal_by_access_key(&b.access_key_id)
        .await
        .unwrap()
        .is_none());
    assert!(kms
        .principal_secret("AKIAUNKNOWN000000000")
        .await
        .unwrap()
        .is_none());
}

/// A root of trust whose device is unavailable.
struct AwayRoot;

impl kms_core::RootOfTrust for AwayRoot {
    fn wrap(&self, _: &[u8], _: &[u8]) -> kms_core::Result<Vec<u8>> {
        Err(KmsError::Internal("away".into()))
    }
    fn unwrap(&self, _: &[u8], _: &[u8]) -> kms_core::Result<zeroize::Zeroizing<Vec<u8>>> {
        Err(KmsError::Internal("away".into()))
    }
    fn describe(&self) -> String {
        "away".into()
    }
    fn try_unwrap(
        &self,
        _: &[u8],
        _: &[u8],
    ) -> kms_core::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        Err(KmsError::Internal("away".into()))
    }
}

async fn root_key_is_checked(f: &Fixture) {
    let kms = kms_on(f).await;
    let k = new_key(&kms).await;
    drop(kms);
    let store = Store::connect(&f.url).await.unwrap();
    let r = Kms::open(store, root(8), KmsConfig::default()).await;
    assert!(
        matches!(r, Err(KmsError::InvalidState(ref m)) if m.contains("root key does not match")),
        "{r:?}"
    );
    // A root that cannot be asked (an HSM that is away) is not "the wrong root key".
    let store = Store::connect(&f.url).await.unwrap();
    let r = Kms::open(store, Arc::new(AwayRoot), KmsConfig::default()).await;
    assert!(matches!(r, Err(KmsError::Internal(_))), "{r:?}");
    let again = kms_on(f).await;
    assert_eq!(
        again
            .describe_key(kid(&k))
            .await
            .unwrap()
            .key_metadata
            .key_id,
        k.key_id,
        "data survives reopen"
    );
}

/// Two nodes on one store: a key disabled on one is refused by the other within the cache TTL plus
/// the refresh grace (1 s), and used normally before that.
async fn state_change_reaches_other_nodes(f: &Fixture) {
    let ttl = std::time::Duration::from_millis(300);
    let node = |ttl| async move {
        let store = Store::connect(&f.url).await.unwrap();
        Kms::open(
            store,
            root(7),
            KmsConfig {
                cache_ttl: ttl,
                ..KmsConfig::default()
            },
        )
        .await
        .unwrap()
    };
    let (a, b) = (node(ttl).await, node(ttl).await);
    let k = new_key(&a).await;
    encrypt(&b, &k.key_id, b"warm the cache", None)
        .await
        .unwrap();
    a.disable_key(kid(&k)).await.unwrap();
    assert!(
        matches!(
            encrypt(&a, &k.key_id, b"x", None).await,
            Err(KmsError::Disabled(_))
        ),
        "at once on the node that changed it"
    );
    let start = std::time::Instant::now();
    loop {
        match encrypt(&b, &k.key_id, b"x", None).await {
            Err(KmsError::Disabled(_)) => break,
            Ok(_) => assert!(
                start.elapsed() < ttl + std::time::Duration::from_millis(1300),
                "node b still uses a disabled key"
            ),
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

macro_rules! on_both_stores {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { let f = super::fixture("sqlite").await.unwrap(); super::$name(&super::kms_on(&f).await).await; } )* }
        mod postgres { $( #[tokio::test] async fn $name() { if let Some(f) = super::fixture("postgres").await { super::$name(&super::kms_on(&f).await).await; } } )* }
    };
}

on_both_stores!(
    key_states,
    context_binding_and_tampering,
    limits,
    rotation,
    deletion_destroys_material,
    aliases_and_identifiers,
    paging_and_tags,
    json_api,
    principals,
    refusals_change_nothing
);

#[tokio::test]
async fn state_change_reaches_other_nodes_sqlite() {
    state_change_reaches_other_nodes(&fixture("sqlite").await.unwrap()).await;
}

#[tokio::test]
async fn state_change_reaches_other_nodes_postgres() {
    if let Some(f) = fixture("postgres").await {
        state_change_reaches_other_nodes(&f).await;
    }
}

#[tokio::test]
async fn root_key_check_sqlite() {
    root_key_is_checked(&fixture("sqlite").await.unwrap()).await;
}

#[tokio::test]
async fn root_key_check_postgres() {
    if let Some(f) = fixture("postgres").await {
        root_key_is_checked(&f).await;
    }
}
