//! The S3EC KMS keyring (`kms+context`) against envelope's own KMS endpoint, in this process.

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use s3_crypto::s3ec::{ContentMetadata, ObjectDecryptor, ObjectEncryptor, CEK_ALG_CONTEXT_KEY};
use s3_crypto::{CommitmentPolicy, DiscoveryFilter, Error, KmsArn, KmsKeyring};

use crate::common::{context, plaintext};

async fn keyring() -> (KmsKeyring, kms_server::LocalEndpoint) {
    let (client, local) = client().await;
    let arn = new_key(&client).await;
    (KmsKeyring::new(client, [arn]).unwrap(), local)
}

/// A client of a fresh in-process endpoint.
async fn client() -> (aws_sdk_kms::Client, kms_server::LocalEndpoint) {
    let local = kms_server::LocalEndpoint::start().await.unwrap();
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(local.url())
        .credentials_provider(Credentials::new(
            local.access_key_id().to_string(),
            local.secret_access_key().to_string(),
            None,
            None,
            "test",
        ))
        .build();
    (aws_sdk_kms::Client::from_conf(config), local)
}

/// A new key's ARN.
async fn new_key(client: &aws_sdk_kms::Client) -> String {
    let key = client.create_key().send().await.unwrap();
    key.key_metadata().unwrap().arn().unwrap().to_owned()
}

/// An object (V2 or V3) encrypted under `keyring`: its metadata and body.
async fn encrypt(keyring: &KmsKeyring, v2: bool, data: &[u8]) -> (ContentMetadata, Vec<u8>) {
    let mut sealer = ObjectEncryptor::new(keyring)
        .commitment_policy(policy(v2))
        .begin()
        .await
        .unwrap();
    let metadata = sealer.metadata().clone();
    let mut body = Vec::new();
    sealer.update(data, &mut body).unwrap();
    sealer.finish(&mut body);
    (metadata, body)
}

fn policy(v2: bool) -> CommitmentPolicy {
    if v2 {
        CommitmentPolicy::ForbidEncryptAllowDecrypt
    } else {
        CommitmentPolicy::RequireEncryptRequireDecrypt
    }
}

/// Decrypts an object with `keyring` (V2 allowed).
async fn decrypt(
    keyring: &KmsKeyring,
    metadata: &ContentMetadata,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    let dec = ObjectDecryptor::new(keyring)
        .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let mut opener = dec.begin(metadata).await?;
    let mut out = Vec::new();
    opener.update(body, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keyring_round_trips_v3_and_v2_with_context() {
    let (keyring, _server) = keyring().await;
    let ctx = context(&[("tenant", "alpha"), ("purpose", "s3ec")]);
    let data = plaintext(5000);
    for v2 in [false, true] {
        let enc = ObjectEncryptor::new(&keyring)
            .encryption_context(ctx.clone())
            .commitment_policy(if v2 {
                CommitmentPolicy::ForbidEncryptAllowDecrypt
            } else {
                CommitmentPolicy::RequireEncryptRequireDecrypt
            });
        let mut sealer = enc.begin().await.unwrap();
        let metadata = sealer.metadata().clone();
        assert_eq!(
            metadata.context.get(CEK_ALG_CONTEXT_KEY),
            Some(if v2 { "AES/GCM/NoPadding" } else { "115" })
        );
        let mut body = Vec::new();
        sealer.update(&data, &mut body).unwrap();
        sealer.finish(&mut body);

        let dec = ObjectDecryptor::new(&keyring)
            .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
            .encryption_context(ctx.clone());
        let mut opener = dec.begin(&metadata).await.unwrap();
        let mut out = Vec::new();
        opener.update(&body, &mut out).unwrap();
        opener.finish(&mut out).unwrap();
        assert_eq!(out, data);

        // Another context: refused before KMS is asked.
        let e = ObjectDecryptor::new(&keyring)
            .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
            .encryption_context(context(&[("tenant", "beta"), ("purpose", "s3ec")]))
            .begin(&metadata)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::EncryptionContextMismatch(_)), "{e}");

        // A pair added to the stored context (and claimed by the caller): KMS refuses, because
        // the context is bound to the wrapped key.
        let mut forged = metadata.clone();
        forged.context.insert("extra", "pair");
        let mut claimed = ctx.clone();
        claimed.insert("extra".into(), "pair".into());
        let e = ObjectDecryptor::new(&keyring)
            .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
            .encryption_context(claimed)
            .begin(&forged)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Keyring(_)), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_context_key_is_refused() {
    let (keyring, _server) = keyring().await;
    let e = ObjectEncryptor::new(&keyring)
        .encryption_context(context(&[(CEK_ALG_CONTEXT_KEY, "115")]))
        .begin()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidEncryptionContext(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_opens_v3_and_v2_objects_within_its_filter() {
    let (client, _server) = client().await;
    let arn = new_key(&client).await;
    let parsed = KmsArn::parse_key_arn(&arn).unwrap();
    let strict = KmsKeyring::new(client.clone(), [arn.clone()]).unwrap();
    let data = plaintext(3000);
    let own = DiscoveryFilter::new(parsed.partition(), [parsed.account()]).unwrap();
    let other_account = if parsed.account() == "999999999999" {
        "888888888888"
    } else {
        "999999999999"
    };
    let other = DiscoveryFilter::new(parsed.partition(), [other_account]).unwrap();
    for v2 in [false, true] {
        let (metadata, body) = encrypt(&strict, v2, &data).await;
        for filter in [None, Some(own.clone())] {
            let discovery = KmsKeyring::discovery(client.clone(), filter);
            assert_eq!(
                decrypt(&discovery, &metadata, &body).await.unwrap(),
                data,
                "v2: {v2}"
            );
        }
        let refused = KmsKeyring::discovery(client.clone(), Some(other.clone()));
        let e = decrypt(&refused, &metadata, &body).await.unwrap_err();
        assert!(
            e.to_string().contains("discovery filter does not allow"),
            "v2: {v2}: {e}"
        );
        // A discovery keyring cannot encrypt.
        let e = ObjectEncryptor::new(&refused)
            .commitment_policy(policy(v2))
            .begin()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_keyrings_open_only_their_keys_objects_trying_each_key() {
    let (client, _server) = client().await;
    let (a, b) = (new_key(&client).await, new_key(&client).await);
    let key_a = KmsKeyring::new(client.clone(), [a.clone()]).unwrap();
    let data = plaintext(3000);
    for v2 in [false, true] {
        let (metadata, body) = encrypt(&key_a, v2, &data).await;
        // B's keyring refuses A's object.
        let key_b = KmsKeyring::new(client.clone(), [b.clone()]).unwrap();
        let e = decrypt(&key_b, &metadata, &body).await.unwrap_err();
        assert!(matches!(e, Error::Keyring(_)), "v2: {v2}: {e}");
        // Both keys, B first: B fails, A opens it.
        let both = KmsKeyring::new(client.clone(), [b.clone(), a.clone()]).unwrap();
        assert_eq!(
            decrypt(&both, &metadata, &body).await.unwrap(),
            data,
            "v2: {v2}"
        );
        // An alias of A, resolved to A's ARN, opens it; an alias of B does not.
        for (alias, target, opens) in [("alias/s3ec-a", &a, true), ("alias/s3ec-b", &b, false)] {
            if !v2 {
                client
                    .create_alias()
                    .alias_name(alias)
                    .target_key_id(target)
                    .send()
                    .await
                    .unwrap();
            }
            let resolved = KmsKeyring::with_key_arns(client.clone(), [alias])
                .await
                .unwrap();
            assert_eq!(resolved.key_ids(), std::slice::from_ref(target));
            assert_eq!(
                decrypt(&resolved, &metadata, &body).await.is_ok(),
                opens,
                "{alias} v2: {v2}"
            );
        }
    }
    // Two B-side failures: each is reported, not only the last.
    let (metadata, body) = encrypt(&key_a, false, &data).await;
    let c = new_key(&client).await;
    let neither = KmsKeyring::new(client.clone(), [b.clone(), c.clone()]).unwrap();
    let e = decrypt(&neither, &metadata, &body)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("all 2 KMS keys failed") && e.contains(&b) && e.contains(&c),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_keyring_with_two_keys_refuses_to_encrypt_an_object() {
    let (client, _server) = client().await;
    let both = KmsKeyring::new(
        client.clone(),
        [new_key(&client).await, new_key(&client).await],
    )
    .unwrap();
    for v2 in [false, true] {
        let e = ObjectEncryptor::new(&both)
            .commitment_policy(policy(v2))
            .begin()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("one wrapped data key"), "{e}");
    }
}
