//! Streaming uploads against Garage: PutObject for input that fits in one part, multipart beyond,
//! parts in flight at once, a damaged part retried, cancellation and failure abort the upload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use aws_sdk_s3::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use s3_crypto::s3::{
    get_object, put_stream, CancellationToken, EtagCheck, PutOptions, RetryPolicy,
};
use s3_crypto::s3ec::{
    get_decrypted_object, put_encrypted_object_stream, AesKeyring, MetadataStorage,
    ObjectDecryptor, ObjectEncryptor,
};
use s3_crypto::{CommitmentPolicy, Error};
use tokio::io::{AsyncRead, ReadBuf};

use crate::common::plaintext;
use crate::garage::{garage, unique, FailingReader};

const PART: usize = 5 << 20;

/// Hands out its data in small reads, as a pipe does; then either ends or (with `stall`) never
/// answers again, as an idle stdin.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    stall: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at == self.data.len() && self.stall {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.data.len() - self.at).min(64 << 10);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_input_is_one_put_and_long_input_is_multipart() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let keyring = AesKeyring::new(&[0x61; 32]).unwrap();
    // (plaintext size, expected number of parts; 0 = a single PutObject)
    for (size, v2, parts) in [
        (0usize, false, 0u32),
        (1, true, 0),
        (PART - 16, false, 0),
        (PART, false, 0),
        (PART + 1, false, 2),
        (17 * 1024 * 1024 + 3, true, 4),
    ] {
        let what = format!("{size} B v2={v2}");
        let key = unique("stream");
        let data = plaintext(size);
        let encryptor = ObjectEncryptor::new(&keyring).commitment_policy(if v2 {
            CommitmentPolicy::ForbidEncryptAllowDecrypt
        } else {
            CommitmentPolicy::RequireEncryptRequireDecrypt
        });
        let mut input = Trickle {
            data: data.clone(),
            at: 0,
            stall: false,
        };
        let (n, _) = put_encrypted_object_stream(
            &client,
            &g.bucket,
            &key,
            &encryptor,
            &mut input,
            MetadataStorage::ObjectMetadata,
            &PutOptions::default().part_size(PART).concurrency(3),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(n as usize, size, "{what}");
        let object = get_object(&client, &g.bucket, &key).await.unwrap().unwrap();
        match object.etag_check {
            EtagCheck::Md5 => assert_eq!(parts, 0, "{what}"),
            EtagCheck::MultipartMd5 {
                parts: p,
                part_size,
            } => {
                assert_eq!((p, part_size), (parts, PART as u64), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
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
}

/// Counts UploadPart requests in flight, and the most at once.
#[derive(Debug, Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

fn is_upload_part(uri: &str) -> bool {
    uri.contains("partNumber=")
}

impl Intercept for InFlight {
    fn name(&self) -> &'static str {
        "InFlight"
    }
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if is_upload_part(context.request().uri()) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
        }
        Ok(())
    }
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if context.request().is_some_and(|r| is_upload_part(r.uri())) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_upload_concurrently_and_a_damaged_part_is_retried() {
    let Some(g) = garage() else { return };
    let counter = InFlight::default();
    let client = aws_sdk_s3::Client::from_conf(
        g.client()
            .config()
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    let data = plaintext(4 * PART + 10);
    let key = unique("concurrent");
    let n = put_stream(
        &client,
        &g.bucket,
        &key,
        &mut &data[..],
        &Default::default(),
        &PutOptions::default().part_size(PART).concurrency(4),
    )
    .await
    .unwrap();
    assert_eq!(n as usize, data.len());
    assert!(
        counter.max.load(Ordering::SeqCst) >= 2,
        "parts went up one at a time"
    );
    assert_eq!(
        get_object(&client, &g.bucket, &key)
            .await
            .unwrap()
            .unwrap()
            .read_all()
            .await
            .unwrap(),
        data
    );

    // The first part body is damaged on the way once: the store says BadDigest, the part is sent
    // again, the upload completes.
    let (client, sent) = g.corrupting_client(1);
    let key = unique("part-retry");
    put_stream(
        &client,
        &g.bucket,
        &key,
        &mut &data[..2 * PART],
        &Default::default(),
        &PutOptions::default().part_size(PART).concurrency(1),
    )
    .await
    .unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), 3, "two parts, one sent twice");
    let object = get_object(&g.client(), &g.bucket, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(object.read_all().await.unwrap(), &data[..2 * PART]);

    // Damaged every time: the retries run out, the error says BadDigest, the upload is aborted.
    let (client, _) = g.corrupting_client(u32::MAX);
    let key = unique("part-always-bad");
    let e = put_stream(
        &client,
        &g.bucket,
        &key,
        &mut &data[..2 * PART],
        &Default::default(),
        &PutOptions::default()
            .part_size(PART)
            .retry(RetryPolicy::attempts(2)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::ContentDigestMismatch { attempts: 2 }),
        "{e}"
    );
    g.assert_nothing_left(&g.client(), &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_or_failing_aborts_the_multipart_upload() {
    let Some(g) = garage() else { return };
    let client = g.client();
    let keyring = AesKeyring::new(&[0x62; 32]).unwrap();

    // Cancelled (Ctrl-C) once parts are in the store, while the input is idle.
    let key = unique("cancelled");
    let token = CancellationToken::new();
    let watcher = {
        let (client, bucket, key, token) =
            (client.clone(), g.bucket.clone(), key.clone(), token.clone());
        tokio::spawn(async move {
            // Whatever ends the watch (parts seen, none seen in time, a failed request) cancels
            // the upload, whose input never ends: the test fails, it does not hang.
            let _cancel = token.drop_guard();
            // Up to 5 minutes: the watch only ends early on success, and a slow store under a
            // loaded CI machine must not make the test fail.
            for _ in 0..6000 {
                let uploads = client
                    .list_multipart_uploads()
                    .bucket(&bucket)
                    .prefix(&key)
                    .send()
                    .await
                    .unwrap();
                if let Some(id) = uploads.uploads().first().and_then(|u| u.upload_id()) {
                    let parts = client
                        .list_parts()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(id)
                        .send()
                        .await
                        .unwrap();
                    if !parts.parts().is_empty() {
                        return true;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            false
        })
    };
    let mut idle = Trickle {
        data: plaintext(2 * PART + 7),
        at: 0,
        stall: true,
    };
    let e = put_encrypted_object_stream(
        &client,
        &g.bucket,
        &key,
        &ObjectEncryptor::new(&keyring),
        &mut idle,
        MetadataStorage::ObjectMetadata,
        &PutOptions::default().part_size(PART).cancel(token),
    )
    .await
    .unwrap_err();
    assert!(watcher.await.unwrap(), "no part ever reached the store");
    assert!(matches!(e, Error::Cancelled), "{e}");
    g.assert_nothing_left(&client, &key).await;

    // The input breaks after two parts: aborted too.
    let key = unique("broken-input");
    let mut broken = FailingReader {
        data: plaintext(2 * PART + 100),
        at: 0,
    };
    let e = put_encrypted_object_stream(
        &client,
        &g.bucket,
        &key,
        &ObjectEncryptor::new(&keyring),
        &mut broken,
        MetadataStorage::ObjectMetadata,
        &PutOptions::default().part_size(PART).concurrency(2),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    g.assert_nothing_left(&client, &key).await;
}
