//! Aliases, key identifiers, paging and tags, each refusal followed by a [`snapshot`] that proves it
//! changed nothing.

use super::*;

pub(crate) async fn aliases_and_identifiers(kms: &Kms) {
    let k = new_key(kms).await;
    let k2 = new_key(kms).await;
    let name = format!("alias/app-{}", &k.key_id[..8]);
    kms.create_alias(AliasRequest {
        alias_name: Some(name.clone()),
        target_key_id: Some(k.arn.clone()),
    })
    .await
    .unwrap();
    let before = snapshot(kms).await;
    let r = kms
        .create_alias(AliasRequest {
            alias_name: Some(name.clone()),
            target_key_id: Some(k2.key_id.clone()),
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
    // UpdateAlias of an alias that does not exist, or to a key that does not.
    for (alias_name, target) in [
        ("alias/not-there", k2.key_id.clone()),
        (
            name.as_str(),
            "0b7fa5ab-0000-4000-8000-000000000000".to_string(),
        ),
    ] {
        let r = kms
            .update_alias(AliasRequest {
                alias_name: Some(alias_name.into()),
                target_key_id: Some(target),
            })
            .await;
        assert!(matches!(r, Err(KmsError::NotFound(_))), "{r:?}");
    }
    assert_eq!(snapshot(kms).await, before, "a refused alias change");
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
    let before = snapshot(kms).await;
    assert!(matches!(
        kms.disable_key(KeyIdRequest {
            key_id: Some(name.clone())
        })
        .await,
        Err(KmsError::NotFound(_))
    ));
    assert_eq!(snapshot(kms).await, before, "DisableKey through an alias");
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
    let before = snapshot(kms).await;
    assert!(matches!(
        kms.delete_alias(DeleteAliasRequest {
            alias_name: Some(name)
        })
        .await,
        Err(KmsError::NotFound(_))
    ));
    assert_eq!(snapshot(kms).await, before, "a refused DeleteAlias");
}

pub(crate) async fn paging_and_tags(kms: &Kms) {
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
    let before = snapshot(kms).await;
    // A refused tag beside a valid one: neither is applied.
    let r = kms
        .tag_resource(TagResourceRequest {
            key_id: Some(k.clone()),
            tags: Some(vec![tag("b", "changed"), tag("aws:x", "1")]),
        })
        .await;
    assert!(matches!(r, Err(KmsError::Tag(_))));
    assert_eq!(snapshot(kms).await, before, "a refused TagResource");
}
