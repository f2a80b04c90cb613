//! Server-side encryption against Garage. Garage implements SSE-C (it encrypts with the key sent
//! and refuses reads without it); it accepts the SSE-S3 and SSE-KMS headers and ignores them (it
//! stores the object unencrypted and reports no SSE). So for SSE-S3/KMS these tests check what
//! envelope sends, header by header, and that the store accepts it.

use s3_crypto::s3::{
    copy_object, get_object, get_object_with, head_object, put_object_with, put_stream, EtagCheck,
    PutOptions, ServerSideEncryption, SseCustomerKey, SseKms,
};
use s3_crypto::s3ec::{
    get_decrypted_object, get_decrypted_object_with, put_encrypted_object_stream, AesKeyring,
    MetadataStorage, ObjectDecryptor, ObjectEncryptor,
};
use s3_crypto::Error;

use crate::common::plaintext;
use crate::garage::{garage, unique};
use crate::garage_store::Recorder;

#[tokio::test]
async fn sse_c_objects_round_trip_and_cannot_be_read_without_the_key() {
    let Some(g) = garage() else { return };
    let recorder = Recorder::default();
    let client = aws_sdk_s3::Client::from_conf(
        g.client()
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let sse_key = SseCustomerKey::new(&[0x33; 32]).unwrap();
    let keyring = AesKeyring::new(&[0x44; 32]).unwrap();
    let options = PutOptions::default()
        .part_size(5 << 20)
        .concurrency(2)
        .sse(ServerSideEncryption::Customer(sse_key.clone()));
    for size in [1usize, 11 << 20] {
        let key = unique("sse-c");
        let data = plaintext(size);
        let before = recorder.requests();
        put_encrypted_object_stream(
            &client,
            &g.bucket,
            &key,
            &ObjectEncryptor::new(&keyring),
            &mut &data[..],
            MetadataStorage::ObjectMetadata,
            &options,
        )
        .await
        .unwrap();
        // Every request of the upload (PutObject, or Create + each UploadPart + Complete) carried
        // the key and its MD5.
        let sent = recorder.requests() - before;
        assert!(sent == 1 || sent == 5, "{sent} requests for {size} B");
        let md5s = recorder.header_values("x-amz-server-side-encryption-customer-key-md5");
        assert!(md5s[md5s.len() - sent..]
            .iter()
            .all(|m| m == sse_key.key_md5()));

        // The store refuses to read it without the key, and with another key.
        let e = get_object(&client, &g.bucket, &key).await.unwrap_err();
        assert!(e.to_string().contains("InvalidRequest"), "{e}");
        let other = SseCustomerKey::new(&[0x34; 32]).unwrap();
        assert!(get_object_with(&client, &g.bucket, &key, Some(&other))
            .await
            .is_err());
        let e = get_decrypted_object(
            &client,
            &g.bucket,
            &key,
            &ObjectDecryptor::new(&keyring),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::S3 { .. }), "{e}");

        // With it: HEAD reports SSE-C, and the object decrypts.
        let head = head_object(&client, &g.bucket, &key, Some(&sse_key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.sse_customer_algorithm.as_deref(), Some("AES256"));
        assert_eq!(
            head.sse_customer_key_md5.as_deref(),
            Some(sse_key.key_md5())
        );
        let mut out = Vec::new();
        get_decrypted_object_with(
            &client,
            &g.bucket,
            &key,
            &ObjectDecryptor::new(&keyring),
            &mut out,
            Some(&sse_key),
        )
        .await
        .unwrap();
        assert!(out == data, "{size} B: plaintext differs");
    }
    // The key itself never shows in a Debug print of the options.
    let shown = format!("{options:?}");
    assert!(!shown.contains(&base64_of(&[0x33; 32])), "{shown}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn copy_object_re_keys_an_sse_c_object_and_keeps_its_metadata() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let old = SseCustomerKey::new(&[1; 32]).unwrap();
    let new = SseCustomerKey::new(&[2; 32]).unwrap();
    let keyring = AesKeyring::new(&[3; 32]).unwrap();
    let (src, dst) = (unique("copy-src"), unique("copy-dst"));
    put_encrypted_object_stream(
        &client,
        &g.bucket,
        &src,
        &ObjectEncryptor::new(&keyring),
        &mut &b"copied across"[..],
        MetadataStorage::ObjectMetadata,
        &PutOptions::default().sse(ServerSideEncryption::Customer(old.clone())),
    )
    .await
    .unwrap();
    copy_object(
        &client,
        (&g.bucket, &src),
        (&g.bucket, &dst),
        Some(&old),
        Some(&ServerSideEncryption::Customer(new.clone())),
    )
    .await
    .unwrap();
    assert!(get_object_with(&client, &g.bucket, &dst, Some(&old))
        .await
        .is_err());
    let mut out = Vec::new();
    get_decrypted_object_with(
        &client,
        &g.bucket,
        &dst,
        &ObjectDecryptor::new(&keyring),
        &mut out,
        Some(&new),
    )
    .await
    .unwrap();
    assert_eq!(out, b"copied across");
}

#[tokio::test]
async fn sse_s3_and_sse_kms_headers_are_sent_as_s3_defines_them() {
    let Some(g) = garage() else { return };
    let recorder = Recorder::default();
    let client = aws_sdk_s3::Client::from_conf(
        g.client()
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let kms = SseKms::new()
        .key_id("arn:aws:kms:us-east-1:111122223333:key/sse-test")
        .context([("app".to_owned(), "pipeline".to_owned())].into())
        .bucket_key(true);
    for (sse, header) in [
        (ServerSideEncryption::S3, "AES256"),
        (ServerSideEncryption::Kms(kms), "aws:kms"),
    ] {
        let before = recorder.requests();
        let single = unique("sse");
        put_object_with(
            &client,
            &g.bucket,
            &single,
            b"x".to_vec(),
            &Default::default(),
            &PutOptions::default().sse(sse.clone()),
        )
        .await
        .unwrap();
        let multi = unique("sse-multipart");
        put_stream(
            &client,
            &g.bucket,
            &multi,
            &mut &plaintext(6 << 20)[..],
            &Default::default(),
            &PutOptions::default().part_size(5 << 20).sse(sse.clone()),
        )
        .await
        .unwrap();
        let all = recorder.0.lock().unwrap()[before..].to_vec();
        let with = |name: &str| -> Vec<String> {
            all.iter()
                .map(|(_, h)| {
                    h.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        };
        // PutObject, CreateMultipartUpload: the SSE header; UploadPart and Complete: none
        // (S3 refuses SSE-S3/KMS headers there).
        let sse_headers = with("x-amz-server-side-encryption");
        assert_eq!(
            sse_headers,
            vec![header, header, "", "", ""],
            "{:?}",
            all.iter().map(|(r, _)| r).collect::<Vec<_>>()
        );
        if header == "aws:kms" {
            let ids = with("x-amz-server-side-encryption-aws-kms-key-id");
            assert!(ids[0].ends_with("key/sse-test") && ids[1] == ids[0]);
            // base64 of {"app":"pipeline"}
            assert_eq!(
                with("x-amz-server-side-encryption-context")[0],
                "eyJhcHAiOiJwaXBlbGluZSJ9"
            );
            assert_eq!(
                with("x-amz-server-side-encryption-bucket-key-enabled")[0],
                "true"
            );
        }
        // The store keeps the object; what it says about SSE is its own business (Garage: none).
        let head = head_object(&client, &g.bucket, &single, None)
            .await
            .unwrap()
            .unwrap();
        assert!(
            head.server_side_encryption.is_none()
                || head.server_side_encryption.as_deref() == Some(header),
            "{head:?}"
        );
        let object = get_object(&client, &g.bucket, &multi)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            object.etag_check,
            EtagCheck::MultipartMd5 { parts: 2, .. }
        ));
        assert_eq!(object.read_all().await.unwrap(), plaintext(6 << 20));
    }
}
