//! Parallel encryption: same message layout as the sequential path, decrypts, bounded failure.

use s3_crypto::{AlgorithmSuite, Decryptor, Encryptor};

use crate::common::{block_on, context, keyring, Rng};

fn encrypt_parallel(
    suite: AlgorithmSuite,
    frame: u32,
    plaintext: &[u8],
    threads: usize,
) -> Vec<u8> {
    let kr = keyring("raw-aes-256");
    let enc = Encryptor::new(&kr)
        .suite(suite)
        .frame_length(frame)
        .encryption_context(context());
    let message = block_on(enc.begin()).unwrap();
    let mut out = Vec::new();
    message
        .encrypt_stream_parallel(plaintext, &mut out, threads)
        .unwrap();
    out
}

#[test]
fn parallel_output_decrypts_and_has_the_sequential_layout() {
    let mut rng = Rng::new(7);
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for _ in 0..40 {
            let frame = 1 + rng.below(300) as u32;
            let len = rng.below(u64::from(frame) * 9) as usize;
            let plaintext = rng.bytes(len);
            let threads = 2 + rng.below(3) as usize;
            let message = encrypt_parallel(suite, frame, &plaintext, threads);
            let kr = keyring("raw-aes-256");
            let sequential = Encryptor::new(&kr)
                .suite(suite)
                .frame_length(frame)
                .encryption_context(context())
                .encrypt_to_vec(&plaintext)
                .unwrap();
            assert_eq!(
                message.len(),
                sequential.len(),
                "frame {frame}, len {len}, threads {threads}"
            );
            let (back, _) = Decryptor::new(&kr).decrypt_to_vec(&message).unwrap();
            assert_eq!(
                back, plaintext,
                "frame {frame}, len {len}, threads {threads}"
            );
        }
    }
}

/// A writer that fails after some bytes: the error comes back, no thread is left blocked.
struct FailingWriter(usize);

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            return Err(std::io::Error::other("disk full"));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_stops_every_thread() {
    let kr = keyring("raw-aes-256");
    let plaintext = vec![5u8; 4 << 20];
    for fail_after in [0, 100, 70_000, 1 << 20] {
        let enc = Encryptor::new(&kr).frame_length(4096);
        let message = block_on(enc.begin()).unwrap();
        let r = message.encrypt_stream_parallel(&plaintext[..], FailingWriter(fail_after), 3);
        assert!(r.is_err(), "fail_after {fail_after}");
    }
}

/// Decrypts with `threads` (1 = the sequential path); returns what was written and the outcome.
fn decrypt_with(message: &[u8], threads: usize) -> Outcome {
    let kr = keyring("raw-aes-256");
    let dec = Decryptor::new(&kr);
    let mut out = Vec::new();
    let r = block_on(dec.begin(message)).and_then(|m| {
        if threads == 1 {
            m.decrypt_to(&mut out)
        } else {
            m.decrypt_to_parallel(&mut out, threads)
        }
    });
    (out, r.map(|_| ()).map_err(|e| e.to_string()))
}

/// What a decryption wrote, and its outcome.
type Outcome = (Vec<u8>, Result<(), String>);

/// Random messages of both committing suites (`cases` of each, frames of 1–200 bytes, up to 12
/// frames, drawn from `seed`), decrypted whole by `decrypt` on 2–4 threads, then damaged: `flips`
/// single flipped bits (within `near_end` bytes of the end if given: where the positioned path
/// differs), a cut, an extra byte, and the first two regular frames swapped (unsigned messages of
/// 3 frames or more; a signed one has its footer after the body). Each damaged message must fail
/// sequentially, and `decrypt` must write and report exactly what the sequential path does.
fn same_as_sequential(
    seed: u64,
    cases: usize,
    flips: usize,
    near_end: impl Fn(u32) -> Option<usize>,
    decrypt: impl Fn(&[u8], usize) -> Outcome,
) {
    let mut rng = Rng::new(seed);
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for case in 0..cases {
            let frame = 1 + rng.below(200) as u32;
            let len = rng.below(u64::from(frame) * 12) as usize;
            let plaintext = rng.bytes(len);
            let message = encrypt_parallel(suite, frame, &plaintext, 2);
            let threads = 2 + rng.below(3) as usize;
            assert_eq!(
                decrypt(&message, threads),
                (plaintext.clone(), Ok(())),
                "case {case}"
            );
            let mut damaged = Vec::new();
            for _ in 0..flips {
                let mut m = message.clone();
                let at = match near_end(frame) {
                    Some(n) => m.len() - 1 - rng.below(m.len().min(n) as u64) as usize,
                    None => rng.below(m.len() as u64) as usize,
                };
                m[at] ^= 1 << rng.below(8);
                damaged.push(m);
            }
            damaged.push(message[..rng.below(message.len() as u64) as usize].to_vec());
            let mut longer = message.clone();
            longer.push(0);
            damaged.push(longer);
            let regular = 32 + frame as usize;
            if suite == AlgorithmSuite::Aes256GcmHkdfSha512CommitKey && len >= 3 * frame as usize {
                let body = message.len() - s3_crypto::body_len(len as u64, frame) as usize;
                let mut swapped = message.clone();
                let (a, b) = swapped[body..].split_at_mut(regular);
                a.swap_with_slice(&mut b[..regular]);
                damaged.push(swapped);
            }
            for m in damaged {
                let sequential = decrypt_with(&m, 1);
                assert!(sequential.1.is_err(), "case {case}: damage undetected");
                assert_eq!(decrypt(&m, threads), sequential, "case {case}");
            }
        }
    }
}

#[test]
fn parallel_decrypt_writes_and_fails_exactly_as_the_sequential_path() {
    same_as_sequential(11, 30, 6, |_| None, decrypt_with);
}

#[test]
fn parallel_decrypt_with_a_failing_writer_stops_every_thread() {
    let plaintext = vec![9u8; 4 << 20];
    let message = encrypt_parallel(
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        4096,
        &plaintext,
        2,
    );
    let kr = keyring("raw-aes-256");
    for fail_after in [0, 100, 70_000, 1 << 20] {
        let m = block_on(Decryptor::new(&kr).begin(&message[..])).unwrap();
        let r = m.decrypt_to_parallel(FailingWriter(fail_after), 3);
        assert!(
            matches!(r, Err(s3_crypto::Error::Io(_))),
            "fail_after {fail_after}: {r:?}"
        );
    }
}

/// Encrypts with positioned reads (`encrypt_at_parallel`) of `input[start..start + len]`.
fn encrypt_at(
    suite: AlgorithmSuite,
    frame: u32,
    input: &[u8],
    start: u64,
    len: u64,
    threads: usize,
) -> s3_crypto::Result<Vec<u8>> {
    let kr = keyring("raw-aes-256");
    let enc = Encryptor::new(&kr)
        .suite(suite)
        .frame_length(frame)
        .encryption_context(context());
    let message = block_on(enc.begin()).unwrap();
    let mut out = Vec::new();
    message.encrypt_at_parallel(input, start, len, &mut out, threads)?;
    Ok(out)
}

#[test]
fn positioned_encryption_has_the_sequential_layout_and_decrypts() {
    let mut rng = Rng::new(13);
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for case in 0..40 {
            let frame = 1 + rng.below(300) as u32;
            // Exact multiples of the frame length (an empty final frame) come up often.
            let len = match rng.below(3) {
                0 => (rng.below(9) * u64::from(frame)) as usize,
                _ => rng.below(u64::from(frame) * 9) as usize,
            };
            let start = rng.below(50) as usize;
            let input = rng.bytes(start + len);
            let plaintext = &input[start..];
            let threads = 1 + rng.below(4) as usize;
            let message =
                encrypt_at(suite, frame, &input, start as u64, len as u64, threads).unwrap();
            let sequential = encrypt_parallel(suite, frame, plaintext, 1);
            let what = format!("case {case}: frame {frame}, len {len}, threads {threads}");
            assert_eq!(message.len(), sequential.len(), "{what}");
            let kr = keyring("raw-aes-256");
            let (back, _) = Decryptor::new(&kr).decrypt_to_vec(&message).unwrap();
            assert_eq!(back, plaintext, "{what}");
        }
    }
}

#[test]
fn positioned_encryption_fails_when_the_input_is_not_the_length_given() {
    let input = vec![3u8; 10_000];
    for threads in [1, 2, 3] {
        for (start, len) in [(0, 10_001), (0, 9_999), (1, 10_000), (5_000, 4_000)] {
            let r = encrypt_at(
                AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
                1000,
                &input,
                start,
                len,
                threads,
            );
            let e = r.expect_err("the input changed size");
            assert!(
                e.to_string().contains("changed size"),
                "threads {threads}, {start}+{len}: {e}"
            );
        }
    }
}

/// Decrypts with positioned reads (`decrypt_at_parallel`); what was written and the outcome.
fn decrypt_at(message: &[u8], threads: usize) -> Outcome {
    let kr = keyring("raw-aes-256");
    let dec = Decryptor::new(&kr);
    let mut out = Vec::new();
    let r = block_on(dec.begin(std::io::Cursor::new(message)))
        .and_then(|m| m.decrypt_at_parallel(message, &mut out, threads));
    (out, r.map(|_| ()).map_err(|e| e.to_string()))
}

#[test]
fn positioned_decryption_writes_and_fails_exactly_as_the_sequential_path() {
    same_as_sequential(
        17,
        40,
        8,
        |frame| Some(4 * frame as usize + 200),
        decrypt_at,
    );
}
