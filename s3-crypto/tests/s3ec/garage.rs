//! Against a real S3-compatible server that checks `Content-MD5` (Garage: see
//! `tests/common/garage.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RequestChecksumCalculation, RuntimeComponents};
use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use s3_crypto::md5::content_md5;
use s3_crypto::s3::{get_object, put_object, PUT_ATTEMPTS};
use s3_crypto::s3ec::{
    get_decrypted_object, put_encrypted_object, put_encrypted_object_multipart, AesKeyring,
    MetadataStorage, ObjectDecryptor, ObjectEncryptor,
};
use s3_crypto::{CommitmentPolicy, Error};

use crate::common::plaintext;

pub use crate::garage_store::{garage, Garage};

impl Garage {
    /// A client that flips a byte of the first `corrupt` PutObject bodies after Content-MD5 was
    /// computed (and before signing, so the signature still matches): damage on the way.
    pub fn corrupting_client(&self, corrupt: u32) -> (aws_sdk_s3::Client, Arc<AtomicU32>) {
        let sent = Arc::new(AtomicU32::new(0));
        let config = self
            .config()
            // Only Content-MD5: the SDK's own CRC32 would also catch the damage.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .interceptor(Corrupt {
                remaining: AtomicU32::new(corrupt),
                sent: sent.clone(),
            })
            .build();
        (aws_sdk_s3::Client::from_conf(config), sent)
    }
}

#[derive(Debug)]
struct Corrupt {
    remaining: AtomicU32,
    sent: Arc<AtomicU32>,
}

impl Intercept for Corrupt {
    fn name(&self) -> &'static str {
        "Corrupt"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if context.request().method() != "PUT" {
            return Ok(());
        }
        self.sent.fetch_add(1, Ordering::SeqCst);
        let left = self.remaining.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        self.remaining.store(left - 1, Ordering::SeqCst);
        let mut bytes = context
            .request()
            .body()
            .bytes()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        if let Some(b) = bytes.first_mut() {
            *b ^= 0x01;
        }
        *context.request_mut().body_mut() = SdkBody::from(bytes);
        Ok(())
    }
}

pub fn unique(name: &str) -> String {
    crate::garage_store::unique_in("s3ec-test", name)
}

#[tokio::test]
async fn the_store_rejects_a_wrong_content_md5_and_stores_nothing() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let key = unique("bad-md5");
    let err = client
        .put_object()
        .bucket(&g.bucket)
        .key(&key)
        .content_md5(content_md5(b"something else"))
        .body(ByteStream::from_static(b"the real bytes"))
        .send()
        .await
        .unwrap_err();
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&err).map(str::to_owned);
    assert_eq!(code.as_deref(), Some("BadDigest"), "{err:?}");
    assert!(get_object(&client, &g.bucket, &key)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn put_object_sends_content_md5_and_the_etag_is_checked() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let key = unique("plain");
    let meta = [("color".to_owned(), "blue".to_owned())].into();
    let etag = put_object(&client, &g.bucket, &key, b"hello".to_vec(), &meta)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(etag.trim_matches('"'), "5d41402abc4b2a76b9719d911017c592"); // MD5("hello")
    let object = get_object(&client, &g.bucket, &key).await.unwrap().unwrap();
    assert_eq!(object.metadata["color"], "blue");
    assert_eq!(object.read_all().await.unwrap(), b"hello");
}

#[tokio::test]
async fn damaged_uploads_are_retried_then_reported() {
    let Some(g) = garage() else { return };
    // Damaged once: the second attempt goes through.
    let (client, sent) = g.corrupting_client(1);
    let key = unique("retry");
    put_object(
        &client,
        &g.bucket,
        &key,
        b"payload".to_vec(),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), 2);
    let got = get_object(&g.client(), &g.bucket, &key)
        .await
        .unwrap()
        .unwrap()
        .read_all()
        .await
        .unwrap();
    assert_eq!(got, b"payload");
    // Damaged every time: a clear error, and nothing stored.
    let (client, sent) = g.corrupting_client(u32::MAX);
    let key = unique("always-bad");
    let e = put_object(
        &client,
        &g.bucket,
        &key,
        b"payload".to_vec(),
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::ContentDigestMismatch { attempts } if attempts == PUT_ATTEMPTS),
        "{e}"
    );
    assert!(e.to_string().contains("BadDigest"), "{e}");
    assert_eq!(sent.load(Ordering::SeqCst), PUT_ATTEMPTS);
    assert!(get_object(&g.client(), &g.bucket, &key)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn s3ec_objects_round_trip_through_the_store() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let keyring = AesKeyring::new(&[0x5Au8; 32]).unwrap();
    for (size, v2, storage) in [
        (0usize, false, MetadataStorage::ObjectMetadata),
        (1, false, MetadataStorage::ObjectMetadata),
        (17 * 1024 * 1024 + 3, false, MetadataStorage::ObjectMetadata),
        (1000, true, MetadataStorage::ObjectMetadata),
        (1000, false, MetadataStorage::InstructionFile),
        (1000, true, MetadataStorage::InstructionFile),
    ] {
        let what = format!("{size} B v2={v2} {storage:?}");
        let key = unique("object");
        let data = plaintext(size);
        let encryptor = ObjectEncryptor::new(&keyring).commitment_policy(if v2 {
            CommitmentPolicy::ForbidEncryptAllowDecrypt
        } else {
            CommitmentPolicy::RequireEncryptRequireDecrypt
        });
        put_encrypted_object(&client, &g.bucket, &key, &encryptor, &data, storage)
            .await
            .unwrap();
        let stored = get_object(&client, &g.bucket, &key).await.unwrap().unwrap();
        assert_eq!(stored.content_length, Some(size as i64 + 16), "{what}");
        let has_key =
            stored.metadata.contains_key("x-amz-3") || stored.metadata.contains_key("x-amz-key-v2");
        assert_eq!(
            has_key,
            storage == MetadataStorage::ObjectMetadata,
            "{what}"
        );
        let decryptor = ObjectDecryptor::new(&keyring)
            .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
        let mut out = Vec::new();
        let n = get_decrypted_object(&client, &g.bucket, &key, &decryptor, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(n as usize, size, "{what}");
        assert!(out == data, "{what}: plaintext differs");
    }
}

#[tokio::test]
async fn tampered_metadata_in_the_store_fails_with_no_output() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let keyring = AesKeyring::new(&[0x5Bu8; 32]).unwrap();
    let key = unique("tampered");
    let metadata = put_encrypted_object(
        &client,
        &g.bucket,
        &key,
        &ObjectEncryptor::new(&keyring),
        b"small secret",
        MetadataStorage::ObjectMetadata,
    )
    .await
    .unwrap();
    // Rewrite the object with a forged Message ID (same body).
    let body = get_object(&client, &g.bucket, &key)
        .await
        .unwrap()
        .unwrap()
        .read_all()
        .await
        .unwrap();
    let mut meta = metadata.to_object_metadata().unwrap();
    meta.insert("x-amz-i".into(), {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([7u8; 28])
    });
    put_object(&client, &g.bucket, &key, body, &meta)
        .await
        .unwrap();
    let mut out = Vec::new();
    let e = get_decrypted_object(
        &client,
        &g.bucket,
        &key,
        &ObjectDecryptor::new(&keyring),
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::CommitmentMismatch), "{e}");
    assert!(out.is_empty());
}

/// The official Python client and this crate through the same store, both ways: single PutObject
/// and the official client's multipart upload (17 MiB in 5 MiB parts), V3 and V2, 0 B to 17 MiB,
/// an instruction file. KMS is the stand-in of `s3ec_py.py` on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_and_this_crate_through_the_store() {
    use crate::common::{context, testdata, FakeKms};
    use std::io::Write as _;

    let Some(g) = garage() else { return };
    let Some(python) = std::env::var_os("S3EC_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but S3EC_PYTHON is not"
        );
        eprintln!("skipped: S3EC_PYTHON is not set");
        return;
    };
    let client = g.client();
    let keyring = FakeKms::new();
    let ctx = context(&[("purpose", "live interop")]);
    let big = 17 * 1024 * 1024 + 3;
    let prefix = unique("live");

    // This crate writes; the official client reads.
    let ours = [
        ("rs-v3-0", 0usize, false, MetadataStorage::ObjectMetadata),
        ("rs-v3-1", 1, false, MetadataStorage::ObjectMetadata),
        ("rs-v3-17m", big, false, MetadataStorage::ObjectMetadata),
        ("rs-v2-1000", 1000, true, MetadataStorage::ObjectMetadata),
        (
            "rs-v3-instruction",
            1000,
            false,
            MetadataStorage::InstructionFile,
        ),
    ];
    let mut commands = Vec::new();
    for (name, size, v2, storage) in ours {
        let key = format!("{prefix}/{name}");
        let encryptor = ObjectEncryptor::new(&keyring)
            .encryption_context(ctx.clone())
            .commitment_policy(if v2 {
                CommitmentPolicy::ForbidEncryptAllowDecrypt
            } else {
                CommitmentPolicy::RequireEncryptRequireDecrypt
            });
        put_encrypted_object(
            &client,
            &g.bucket,
            &key,
            &encryptor,
            &plaintext(size),
            storage,
        )
        .await
        .unwrap();
        commands.push(serde_json::json!({
            "op": "get", "key": key, "encryption_context": ctx,
            "policy": if v2 { "RequireEncryptAllowDecrypt" } else { "RequireEncryptRequireDecrypt" },
        }));
    }
    // And a multipart upload of ours.
    let multipart_key = format!("{prefix}/rs-v3-17m-multipart");
    put_encrypted_object_multipart(
        &client,
        &g.bucket,
        &multipart_key,
        &ObjectEncryptor::new(&keyring).encryption_context(ctx.clone()),
        &mut &plaintext(big)[..],
        s3_crypto::s3::MIN_PART_SIZE,
        3,
        MetadataStorage::ObjectMetadata,
    )
    .await
    .unwrap();
    commands.push(serde_json::json!({
        "op": "get", "key": multipart_key, "encryption_context": ctx,
    }));
    let ours_len = commands.len();
    // The official client writes; this crate reads.
    let theirs = [
        ("py-v3-0", 0usize, false, None),
        ("py-v3-1", 1, false, None),
        ("py-v3-17m-multipart", big, false, Some(5 * 1024 * 1024)),
        (
            "py-v2-6m-multipart",
            6 * 1024 * 1024 + 1,
            true,
            Some(5 * 1024 * 1024),
        ),
    ];
    for (name, size, v2, part_size) in theirs {
        commands.push(serde_json::json!({
            "op": "put", "key": format!("{prefix}/{name}"), "size": size, "v2": v2,
            "part_size": part_size, "encryption_context": ctx,
        }));
    }
    let mut child = std::process::Command::new(&python)
        .arg(testdata().join("s3ec_py.py"))
        .arg("live")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::Value::Array(commands).to_string().as_bytes())
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ours_sizes: Vec<(&str, usize)> = ours
        .iter()
        .map(|(name, size, _, _)| (*name, *size))
        .chain([("rs-v3-17m-multipart", big)])
        .collect();
    assert_eq!(ours_sizes.len(), ours_len);
    for ((name, size), r) in ours_sizes.iter().zip(&results) {
        assert_eq!(r["ok"], true, "{name}: {r}");
        assert_eq!(r["len"], *size as u64, "{name}");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &plaintext(*size));
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r["sha256"], hex, "{name}");
    }
    assert_eq!(results.len(), ours_len + theirs.len());
    for ((name, size, v2, _), r) in theirs.iter().zip(&results[ours_len..]) {
        assert_eq!(r["ok"], true, "{name}: {r}");
        let key = format!("{prefix}/{name}");
        let decryptor = ObjectDecryptor::new(&keyring)
            .encryption_context(ctx.clone())
            .commitment_policy(if *v2 {
                CommitmentPolicy::RequireEncryptAllowDecrypt
            } else {
                CommitmentPolicy::RequireEncryptRequireDecrypt
            });
        let mut got = Vec::new();
        get_decrypted_object(&client, &g.bucket, &key, &decryptor, &mut got)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == plaintext(*size), "{name}: plaintext differs");
    }
}

/// Yields `remaining` bytes of the plaintext pattern, then fails (a broken pipe on stdin).
pub struct FailingReader {
    pub data: Vec<u8>,
    pub at: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at == self.data.len() {
            return std::task::Poll::Ready(Err(std::io::Error::other("input broke")));
        }
        let n = buf.remaining().min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn multipart_s3ec_objects_round_trip_and_abort_cleanly() {
    use s3_crypto::s3::MIN_PART_SIZE;

    let Some(g) = garage() else { return };
    let client = g.client();
    let keyring = AesKeyring::new(&[0x5Cu8; 32]).unwrap();
    let big = 17 * 1024 * 1024 + 3;
    for (size, v2, storage, parts, concurrency) in [
        (big, false, MetadataStorage::ObjectMetadata, 4, 3),
        (big, false, MetadataStorage::ObjectMetadata, 4, 1),
        (
            2 * MIN_PART_SIZE,
            false,
            MetadataStorage::ObjectMetadata,
            2,
            2,
        ),
        (0, false, MetadataStorage::ObjectMetadata, 1, 2),
        (
            MIN_PART_SIZE + 1,
            true,
            MetadataStorage::InstructionFile,
            2,
            4,
        ),
    ] {
        let what = format!("{size} B v2={v2} {storage:?} concurrency {concurrency}");
        let key = unique("multipart");
        let data = plaintext(size);
        let encryptor = ObjectEncryptor::new(&keyring).commitment_policy(if v2 {
            CommitmentPolicy::ForbidEncryptAllowDecrypt
        } else {
            CommitmentPolicy::RequireEncryptRequireDecrypt
        });
        let (n, _) = put_encrypted_object_multipart(
            &client,
            &g.bucket,
            &key,
            &encryptor,
            &mut &data[..],
            MIN_PART_SIZE,
            concurrency,
            storage,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(n as usize, size);
        let head = client
            .head_object()
            .bucket(&g.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert!(
            head.e_tag()
                .unwrap()
                .trim_matches('"')
                .ends_with(&format!("-{parts}")),
            "{what}: ETag {:?}",
            head.e_tag()
        );
        assert_eq!(head.content_length(), Some(size as i64 + 16), "{what}");
        let mut out = Vec::new();
        get_decrypted_object(
            &client,
            &g.bucket,
            &key,
            &ObjectDecryptor::new(&keyring)
                .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt),
            &mut out,
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(out == data, "{what}: plaintext differs");
    }

    // The input breaks after two parts' worth: the upload is aborted, nothing is left.
    let key = unique("aborted");
    let mut broken = FailingReader {
        data: plaintext(2 * MIN_PART_SIZE + 100),
        at: 0,
    };
    let e = put_encrypted_object_multipart(
        &client,
        &g.bucket,
        &key,
        &ObjectEncryptor::new(&keyring),
        &mut broken,
        MIN_PART_SIZE,
        2,
        MetadataStorage::ObjectMetadata,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    g.assert_nothing_left(&client, &key).await;

    // Parts below S3's minimum are refused up front.
    let e = put_encrypted_object_multipart(
        &client,
        &g.bucket,
        &unique("small-parts"),
        &ObjectEncryptor::new(&keyring),
        &mut &b"x"[..],
        MIN_PART_SIZE - 1,
        2,
        MetadataStorage::ObjectMetadata,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
}
