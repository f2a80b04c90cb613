//! Framed objects through Garage: round trips, ranges (counting the requests and bytes), tampered
//! and truncated objects, an aborted upload, and the Python AWS Encryption SDK on a plain download.

use s3_crypto::esdk::s3::{
    get_framed_object, is_framed, put_framed_object, put_framed_object_from_reader, GetOptions,
    PutOptions, FORMAT_KEY,
};
use s3_crypto::s3::{get_object, put_object, MIN_PART_SIZE};
use s3_crypto::{ByteRange, Decryptor, EncryptionContext, Error};

use crate::garage_store::{garage, unique_in};
use crate::{keyring, plaintext};

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Bytes a `bytes=A-B` range asks for.
fn range_len(range: &str) -> u64 {
    let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
    b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
}

fn unique(name: &str) -> String {
    unique_in("framed-test", name)
}

fn context() -> EncryptionContext {
    [("purpose", "framed objects")].into_iter().collect()
}

async fn get_all(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    range: Option<ByteRange>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let options = GetOptions::new().required_context(context()).range(range);
    get_framed_object(client, bucket, key, &keyring(), &options, &mut out).await?;
    Ok(out)
}

async fn raw(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    get_object(client, bucket, key)
        .await
        .unwrap()
        .unwrap()
        .read_all()
        .await
        .unwrap()
}

const FRAME: u32 = 4096;

/// The plaintext of one full 5 MiB part with 4 KiB frames.
fn part_plaintext() -> usize {
    (MIN_PART_SIZE as u64).div_ceil(u64::from(FRAME) + 32) as usize * FRAME as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_objects_round_trip_and_decrypt_as_plain_messages() {
    let Some(s) = garage() else { return };
    let client = s.client();
    let fl = FRAME as usize;
    let per_part = part_plaintext();
    let sizes = [
        0,
        1,
        fl - 1,
        fl,
        fl + 1,
        per_part - 1,
        per_part,
        per_part + 1,
        2 * per_part,
        2 * per_part + fl + 3,
    ];
    let options = PutOptions::new()
        .frame_length(FRAME)
        .part_size(MIN_PART_SIZE)
        .encryption_context(context())
        .concurrency(3)
        .threads(2);
    let python_dir = tempfile::tempdir().unwrap();
    for size in sizes {
        let what = format!("{size} B");
        let key = unique("round-trip");
        let data = plaintext(size);
        let summary = put_framed_object(
            &client,
            &s.bucket,
            &key,
            &keyring(),
            &options,
            std::io::Cursor::new(data.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(summary.plaintext_len, size as u64, "{what}");
        let parts = size.div_ceil(per_part).max(1) as u32;
        assert_eq!(summary.parts, parts, "{what}");
        let head = client
            .head_object()
            .bucket(&s.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let etag = head.e_tag().unwrap().trim_matches('"').to_owned();
        if parts > 1 {
            assert!(etag.ends_with(&format!("-{parts}")), "{what}: ETag {etag}");
        } else {
            assert!(!etag.contains('-'), "{what}: ETag {etag}");
        }
        assert_eq!(
            head.content_length(),
            Some(summary.object_len as i64),
            "{what}"
        );
        let metadata = head
            .metadata()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(is_framed(&metadata), "{what}: {metadata:?}");
        // Streamed and decrypted.
        let got = get_all(&client, &s.bucket, &key, None).await.unwrap();
        assert!(got == data, "{what}: plaintext differs");
        // A plain download is the message `envelope decrypt` reads.
        let message = raw(&client, &s.bucket, &key).await;
        let (plain, _) = Decryptor::new(&keyring()).decrypt_to_vec(&message).unwrap();
        assert!(plain == data, "{what}: plain download differs");
        if size <= per_part + 1 {
            let base = python_dir.path().join(format!("framed_{size}"));
            std::fs::write(base.with_extension("msg"), &message).unwrap();
            std::fs::write(base.with_extension("plain"), &data).unwrap();
            std::fs::write(
                base.with_extension("key"),
                format!(
                    "{{\"namespace\": \"envelope-test\", \"name\": \"framed\", \"key\": \"{}\", \"context\": {{\"purpose\": \"framed objects\"}}}}",
                    "42".repeat(32)
                ),
            )
            .unwrap();
        }
    }
    // The AWS Encryption SDK (Python) decrypts the plain downloads.
    let Some(python) = std::env::var_os("ESDK_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but ESDK_PYTHON is not"
        );
        eprintln!("skipped the Python ESDK check: ESDK_PYTHON is not set");
        return;
    };
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/decrypt_check.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(python_dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_gets_fetch_only_the_header_the_final_frame_and_the_range() {
    let Some(s) = garage() else { return };
    let (client, seen) = s.recording_client();
    let key = unique("ranges");
    let size = 2 * part_plaintext() + 12_345;
    let data = plaintext(size);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &data).unwrap();
    put_framed_object_from_reader(
        &client,
        &s.bucket,
        &key,
        &keyring(),
        &PutOptions::new()
            .frame_length(FRAME)
            .part_size(MIN_PART_SIZE)
            .encryption_context(context())
            .expected_size(Some(size as u64)),
        std::fs::File::open(file.path()).unwrap(),
    )
    .await
    .unwrap();
    let fl = u64::from(FRAME);
    let n = size as u64;
    let per_part = part_plaintext() as u64;
    let cases = [
        ByteRange::Inclusive { first: 0, last: 0 },
        ByteRange::Inclusive {
            first: fl - 1,
            last: fl,
        },
        ByteRange::Inclusive {
            first: per_part - 10,
            last: per_part + 10,
        },
        ByteRange::Inclusive {
            first: 100_000,
            last: 300_000,
        },
        ByteRange::From(n - 5000),
        ByteRange::Suffix(1),
        ByteRange::Inclusive {
            first: n - 1,
            last: n + 100,
        },
    ];
    for range in cases {
        seen.clear();
        let got = get_all(&client, &s.bucket, &key, Some(range))
            .await
            .unwrap();
        let r = range.resolve(n).unwrap();
        assert!(
            got == data[r.start as usize..r.end as usize],
            "{range}: bytes differ"
        );
        let gets = seen.get_ranges();
        assert!(gets.len() <= 3, "{range}: {gets:?}");
        let asked: u64 = gets
            .iter()
            .map(|g| range_len(g.as_deref().expect("a ranged GET")))
            .sum();
        // Header guess (16 KiB) + final frame + the frames of the range.
        let frames = (r.end - 1) / fl - r.start / fl + 1;
        let bound = 16 * 1024 + (fl + 40) + frames * (fl + 32);
        assert!(
            asked <= bound,
            "{range}: asked for {asked} bytes, more than {bound}"
        );
    }
    // Past the end: a precise error.
    let e = get_all(&client, &s.bucket, &key, Some(ByteRange::From(n)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::RangeNotSatisfiable { total, .. } if total == n),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_truncated_objects_fail() {
    let Some(s) = garage() else { return };
    let client = s.client();
    let key = unique("tamper");
    let fl = FRAME as usize;
    let data = plaintext(10 * fl + 100);
    put_framed_object(
        &client,
        &s.bucket,
        &key,
        &keyring(),
        &PutOptions::new()
            .frame_length(FRAME)
            .encryption_context(context()),
        std::io::Cursor::new(data.clone()),
    )
    .await
    .unwrap();
    let message = raw(&client, &s.bucket, &key).await;
    let header_len = message.len() - (10 * (fl + 32) + 40 + 100);
    let frame3 = header_len + 2 * (fl + 32) + 100;
    let meta = [(FORMAT_KEY.to_owned(), "esdk-framed".to_owned())].into();

    // A flipped byte in frame 3: the whole object and a range over it fail; a range elsewhere is
    // authentic and reads.
    let mut tampered = message.clone();
    tampered[frame3] ^= 1;
    let bad = unique("tampered");
    put_object(&client, &s.bucket, &bad, tampered, &meta)
        .await
        .unwrap();
    let e = get_all(&client, &s.bucket, &bad, None).await.unwrap_err();
    assert!(matches!(e, Error::TamperedFrame { sequence: 3 }), "{e}");
    let over = ByteRange::Inclusive {
        first: 2 * fl as u64,
        last: 2 * fl as u64 + 5,
    };
    let e = get_all(&client, &s.bucket, &bad, Some(over))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TamperedFrame { sequence: 3 }), "{e}");
    let elsewhere = ByteRange::Inclusive { first: 0, last: 10 };
    assert_eq!(
        get_all(&client, &s.bucket, &bad, Some(elsewhere))
            .await
            .unwrap(),
        data[..11]
    );

    // Truncated inside the final frame, and cut at a frame boundary (no final frame).
    for cut in [message.len() - 10, message.len() - (40 + 100)] {
        let short = unique("truncated");
        put_object(&client, &s.bucket, &short, message[..cut].to_vec(), &meta)
            .await
            .unwrap();
        let mut out = Vec::new();
        let e = get_framed_object(
            &client,
            &s.bucket,
            &short,
            &keyring(),
            &GetOptions::new(),
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, Error::Truncated(_) | Error::TamperedFrame { .. }),
            "cut at {cut}: {e}"
        );
        assert!(
            out.len() < data.len(),
            "cut at {cut}: the output looks complete"
        );
        let e = get_all(&client, &s.bucket, &short, Some(elsewhere))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Truncated(_) | Error::TamperedFrame { .. } | Error::FrameSequence { .. }
            ),
            "cut at {cut}: {e}"
        );
    }

    // A frame cut out of the middle: the length no longer fits the frames, or the sequence breaks.
    let mut spliced = message[..frame3 - 100].to_vec();
    spliced.extend_from_slice(&message[frame3 - 100 + fl + 32..]);
    let short = unique("spliced");
    put_object(&client, &s.bucket, &short, spliced, &meta)
        .await
        .unwrap();
    let e = get_all(&client, &s.bucket, &short, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::FrameSequence {
                expected: 3,
                found: 4
            }
        ),
        "{e}"
    );
    let e = get_all(&client, &s.bucket, &short, Some(ByteRange::Suffix(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::FrameSequence { .. }), "{e}");

    // The wrong required context is refused before any byte is written.
    let mut out = Vec::new();
    let other: EncryptionContext = [("purpose", "something else")].into_iter().collect();
    let e = get_framed_object(
        &client,
        &s.bucket,
        &key,
        &keyring(),
        &GetOptions::new().required_context(other),
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::EncryptionContextMismatch(_)), "{e}");
    assert!(out.is_empty());
}

/// Gives `good` bytes, then fails.
struct BreaksAfter {
    good: usize,
}

impl std::io::Read for BreaksAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.good == 0 {
            return Err(std::io::Error::other("the input broke"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(7);
        self.good -= n;
        Ok(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_aborted_and_leaves_no_parts() {
    let Some(s) = garage() else { return };
    let client = s.client();
    let key = unique("aborted");
    let e = put_framed_object_from_reader(
        &client,
        &s.bucket,
        &key,
        &keyring(),
        &PutOptions::new()
            .frame_length(FRAME)
            .part_size(MIN_PART_SIZE)
            .threads(2)
            .concurrency(2),
        BreaksAfter {
            good: 3 * part_plaintext() + 10,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.to_string().contains("the input broke")),
        "{e}"
    );
    s.assert_nothing_left(&client, &key).await;

    // Parts below S3's minimum are refused before anything is sent.
    let e = put_framed_object(
        &client,
        &s.bucket,
        &unique("small-parts"),
        &keyring(),
        &PutOptions::new().part_size(MIN_PART_SIZE - 1),
        std::io::Cursor::new(vec![1u8; 10]),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::InvalidConfiguration(_)), "{e}");
}

/// An upload bounded to `concurrency + 1` part buffers (what the CLI asks for) holds no more than
/// that at once, and its object is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_bounded_in_parts_stays_within_them() {
    let Some(s) = garage() else { return };
    let client = s.client();
    for (concurrency, threads) in [(1, 2), (2, 2), (3, 1)] {
        let what = format!("concurrency {concurrency}, {threads} threads");
        let key = unique("bounded");
        let data = plaintext(8 * part_plaintext() + 99);
        let summary = put_framed_object(
            &client,
            &s.bucket,
            &key,
            &keyring(),
            &PutOptions::new()
                .frame_length(FRAME)
                .part_size(MIN_PART_SIZE)
                .encryption_context(context())
                .concurrency(concurrency)
                .threads(threads)
                .memory_parts(concurrency + 1),
            std::io::Cursor::new(data.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(summary.parts, 9, "{what}");
        // A part buffer: the part size rounded up to whole frames, and the header.
        let part_buffer = MIN_PART_SIZE + FRAME as usize + 32 + 1024;
        assert!(
            summary.memory <= (concurrency + 1) * part_buffer,
            "{what}: {summary:?}"
        );
        assert!(
            summary.peak_memory <= summary.memory && summary.peak_memory >= MIN_PART_SIZE,
            "{what}: {summary:?}"
        );
        let got = get_all(&client, &s.bucket, &key, None).await.unwrap();
        assert!(got == data, "{what}: plaintext differs");
    }
}

/// Input that cancels `token` once it has given `cancel_after` bytes, as Ctrl-C during an upload,
/// and ends after `len`.
struct CancelsAfter {
    given: usize,
    cancel_after: usize,
    len: usize,
    token: s3_crypto::s3::CancellationToken,
}

impl std::io::Read for CancelsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.given >= self.cancel_after {
            self.token.cancel();
            // Slow from now on: the upload must stop on the token, not at the end of the input.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let n = buf.len().min(self.len - self.given).min(1 << 16);
        buf[..n].fill(3);
        self.given += n;
        Ok(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_aborted_and_reports_cancelled() {
    let Some(s) = garage() else { return };
    let client = s.client();
    let key = unique("cancelled");
    let token = s3_crypto::s3::CancellationToken::new();
    let e = put_framed_object_from_reader(
        &client,
        &s.bucket,
        &key,
        &keyring(),
        &PutOptions::new()
            .frame_length(FRAME)
            .part_size(MIN_PART_SIZE)
            .concurrency(2)
            .memory_parts(3)
            .cancel_on(token.clone()),
        CancelsAfter {
            given: 0,
            cancel_after: 2 * part_plaintext() + 10,
            len: 40 * part_plaintext(),
            token,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    s.assert_nothing_left(&client, &key).await;
}
