//! The S3EC KMS keyring (`kms+context`) against envelope's own KMS endpoint, in this process.

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use s3_crypto::s3ec::{ObjectDecryptor, ObjectEncryptor, CEK_ALG_CONTEXT_KEY};
use s3_crypto::{CommitmentPolicy, Error, KmsKeyring};

use crate::common::{context, plaintext};

async fn keyring() -> (KmsKeyring, kms_server::LocalEndpoint) {
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
    let client = aws_sdk_kms::Client::from_conf(config);
    let key = client.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    (KmsKeyring::new(client, [arn]).unwrap(), local)
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
