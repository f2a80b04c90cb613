//! Proofs that a refused request changed nothing: [`snapshot`] of everything a call can change, and
//! the refusals AWS answers with its error names (issue 14). The behaviour tests in `service.rs` take
//! a snapshot around their own refusals too.

use super::*;

/// Everything a call can change, to prove that a refused request changed nothing: every key (its
/// metadata, tags, rotation status and rotations), every alias, every principal.
pub(crate) async fn snapshot(kms: &Kms) -> Vec<String> {
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
        let id = || KeyIdRequest {
            key_id: Some(k.key_id.clone()),
        };
        let md = kms.describe_key(id()).await.unwrap().key_metadata;
        out.push(format!("key {md:?}"));
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
        // A key's state may refuse these: the refusal is part of the state.
        let status = kms.get_key_rotation_status(id()).await;
        out.push(format!(
            "rotation {} {:?}",
            k.key_id,
            status.map_err(|e| e.aws_name())
        ));
        let rotations = kms
            .list_key_rotations(ListKeyRotationsRequest {
                key_id: Some(k.key_id.clone()),
                limit: Some(1000),
                marker: None,
            })
            .await;
        out.push(format!(
            "rotations {} {:?}",
            k.key_id,
            rotations.map(|r| r.rotations).map_err(|e| e.aws_name())
        ));
    }
    let aliases = kms
        .list_aliases(ListAliasesRequest {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!aliases.truncated);
    for a in aliases.aliases {
        out.push(format!("alias {a:?}"));
    }
    for p in kms.list_principals().await.unwrap() {
        out.push(format!("principal {p:?}"));
    }
    out
}

/// Issue 14: requests AWS refuses are refused with AWS's error, and a refused request changes
/// nothing (keys, tags, aliases).
pub(crate) async fn refusals_change_nothing(kms: &Kms) {
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
