//! Framed objects with server-side encryption, against Garage (which implements SSE-C, and accepts
//! and ignores the SSE-S3/SSE-KMS headers: for those, what is sent is checked header by header, as
//! `tests/s3ec/sse.rs` does for S3 Encryption Client objects).

use s3_crypto::esdk::s3::{get_framed_object, put_framed_object, GetOptions, PutOptions};
use s3_crypto::s3::{head_object, ServerSideEncryption, SseCustomerKey, SseKms, MIN_PART_SIZE};
use s3_crypto::{ByteRange, Error};

use crate::garage_store::{garage, unique_in, Sent};
use crate::{keyring, plaintext};

const FRAME: u32 = 4096;
const KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";

/// The plaintext of one full 5 MiB part with 4 KiB frames.
fn part_plaintext() -> usize {
    (MIN_PART_SIZE as u64).div_ceil(u64::from(FRAME) + 32) as usize * FRAME as usize
}

fn header<'a>(sent: &'a Sent, name: &str) -> Option<&'a str> {
    sent.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn methods(sent: &[Sent]) -> Vec<&str> {
    sent.iter()
        .map(|(r, _)| r.split(' ').next().unwrap_or(""))
        .collect()
}

async fn get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: GetOptions,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let got = get_framed_object(client, bucket, key, &keyring(), &options, &mut out).await;
    match got {
        Ok(_) => Ok(out),
        Err(e) => {
            assert!(out.is_empty(), "{} bytes written before: {e}", out.len());
            Err(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_framed_objects_round_trip_whole_and_ranged_and_need_the_key() {
    let Some(g) = garage() else { return };
    let (client, recorder) = g.recording_client();
    let sse_key = SseCustomerKey::new(&[0x35; 32]).unwrap();
    let other_key = SseCustomerKey::new(&[0x36; 32]).unwrap();
    let options = PutOptions::new()
        .frame_length(FRAME)
        .part_size(MIN_PART_SIZE)
        .concurrency(2)
        .sse(Some(ServerSideEncryption::Customer(sse_key.clone())));
    // One PutObject; a multipart upload of three parts.
    for (size, requests) in [(1000usize, 1usize), (2 * part_plaintext() + 777, 5)] {
        let what = format!("{size} B");
        let key = unique_in("framed-test", "sse-c");
        let data = plaintext(size);
        let before = recorder.requests();
        let summary = put_framed_object(
            &client,
            &g.bucket,
            &key,
            &keyring(),
            &options,
            std::io::Cursor::new(data.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(summary.parts as usize, requests.saturating_sub(2).max(1));
        // Every request of the upload (PutObject, or Create + each UploadPart + Complete) carried
        // the algorithm, the key and its MD5.
        let sent = recorder.since(before);
        assert_eq!(sent.len(), requests, "{what}: {:?}", methods(&sent));
        for s in &sent {
            assert_eq!(
                header(s, KEY_MD5),
                Some(sse_key.key_md5()),
                "{what}: {}",
                s.0
            );
            assert_eq!(
                header(s, "x-amz-server-side-encryption-customer-algorithm"),
                Some("AES256"),
                "{what}: {}",
                s.0
            );
            assert!(
                header(s, "x-amz-server-side-encryption-customer-key").is_some(),
                "{what}: {}",
                s.0
            );
        }

        // Without the key, and with another key, the store refuses: whole and ranged reads.
        let range = Some(ByteRange::Inclusive {
            first: 10,
            last: 20,
        });
        for (sse_c, name) in [(None, "no key"), (Some(other_key.clone()), "another key")] {
            for range in [None, range] {
                let e = get(
                    &client,
                    &g.bucket,
                    &key,
                    GetOptions::new()
                        .sse_customer_key(sse_c.clone())
                        .range(range),
                )
                .await
                .unwrap_err();
                assert!(
                    matches!(
                        &e,
                        Error::S3 {
                            operation: "GetObject",
                            ..
                        }
                    ),
                    "{what}, {name}, {range:?}: {e}"
                );
            }
        }

        // With it: HEAD reports SSE-C; whole and ranged reads decrypt, every GET with the key.
        let head = head_object(&client, &g.bucket, &key, Some(&sse_key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.sse_customer_algorithm.as_deref(), Some("AES256"));
        assert_eq!(
            head.sse_customer_key_md5.as_deref(),
            Some(sse_key.key_md5())
        );
        let with_key = GetOptions::new().sse_customer_key(Some(sse_key.clone()));
        let before = recorder.requests();
        let got = get(&client, &g.bucket, &key, with_key.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(got == data, "{what}: plaintext differs");
        let n = size as u64;
        for range in [
            ByteRange::Inclusive { first: 0, last: 0 },
            ByteRange::Inclusive {
                first: n / 2,
                last: n / 2 + 2 * u64::from(FRAME),
            },
            ByteRange::Suffix(100),
        ] {
            let got = get(
                &client,
                &g.bucket,
                &key,
                with_key.clone().range(Some(range)),
            )
            .await
            .unwrap_or_else(|e| panic!("{what} {range}: {e}"));
            let r = range.resolve(n).unwrap();
            assert!(
                got == data[r.start as usize..r.end as usize],
                "{what} {range}: bytes differ"
            );
        }
        let sent = recorder.since(before);
        assert!(sent.len() >= 4, "{what}: {:?}", methods(&sent));
        for s in &sent {
            assert_eq!(
                header(s, KEY_MD5),
                Some(sse_key.key_md5()),
                "{what}: {}",
                s.0
            );
        }
    }
    // The key itself never shows in a Debug print of the options.
    let shown = format!(
        "{options:?} {:?}",
        GetOptions::new().sse_customer_key(Some(sse_key))
    );
    let key_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([0x35; 32])
    };
    assert!(!shown.contains(&key_b64), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_s3_and_sse_kms_headers_go_on_framed_uploads_as_s3_defines_them() {
    let Some(g) = garage() else { return };
    let (client, recorder) = g.recording_client();
    let kms = SseKms::new()
        .key_id("arn:aws:kms:us-east-1:111122223333:key/sse-test")
        .context([("app".to_owned(), "pipeline".to_owned())].into())
        .bucket_key(true);
    for (sse, value) in [
        (ServerSideEncryption::S3, "AES256"),
        (ServerSideEncryption::Kms(kms), "aws:kms"),
    ] {
        let options = PutOptions::new()
            .frame_length(FRAME)
            .part_size(MIN_PART_SIZE)
            .concurrency(2)
            .sse(Some(sse));
        let before = recorder.requests();
        let single = unique_in("framed-test", "sse");
        let multi = unique_in("framed-test", "sse-multipart");
        let small = plaintext(10);
        let big = plaintext(part_plaintext() + 1);
        for (key, data) in [(&single, &small), (&multi, &big)] {
            put_framed_object(
                &client,
                &g.bucket,
                key,
                &keyring(),
                &options,
                std::io::Cursor::new(data.clone()),
            )
            .await
            .unwrap();
        }
        let sent = recorder.since(before);
        let all = |name: &str| -> Vec<&str> {
            sent.iter().map(|s| header(s, name).unwrap_or("")).collect()
        };
        // PutObject, CreateMultipartUpload: the SSE header; the two UploadParts and Complete:
        // none (S3 refuses SSE-S3/KMS headers there).
        assert_eq!(
            all("x-amz-server-side-encryption"),
            vec![value, value, "", "", ""],
            "{:?}",
            methods(&sent)
        );
        assert!(all(KEY_MD5).iter().all(|v| v.is_empty()));
        if value == "aws:kms" {
            let ids = all("x-amz-server-side-encryption-aws-kms-key-id");
            assert!(
                ids[0].ends_with("key/sse-test") && ids[1] == ids[0],
                "{ids:?}"
            );
            // base64 of {"app":"pipeline"}
            assert_eq!(
                all("x-amz-server-side-encryption-context")[..2],
                ["eyJhcHAiOiJwaXBlbGluZSJ9"; 2]
            );
            assert_eq!(
                all("x-amz-server-side-encryption-bucket-key-enabled")[..2],
                ["true"; 2]
            );
        }
        // The store keeps the objects (what it says about SSE is its own business; Garage: none),
        // and they decrypt, with no SSE-C key.
        let head = head_object(&client, &g.bucket, &single, None)
            .await
            .unwrap()
            .unwrap();
        assert!(
            head.server_side_encryption.is_none()
                || head.server_side_encryption.as_deref() == Some(value),
            "{head:?}"
        );
        for (key, data) in [(&single, &small), (&multi, &big)] {
            let got = get(&client, &g.bucket, key, GetOptions::new())
                .await
                .unwrap();
            assert!(&got == data, "{key}: plaintext differs");
        }
    }
}
