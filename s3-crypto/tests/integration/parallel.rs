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
fn decrypt_with(message: &[u8], threads: usize) -> (Vec<u8>, Result<(), String>) {
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

#[test]
fn parallel_decrypt_writes_and_fails_exactly_as_the_sequential_path() {
    let mut rng = Rng::new(11);
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for case in 0..30 {
            let frame = 1 + rng.below(200) as u32;
            let len = rng.below(u64::from(frame) * 12) as usize;
            let plaintext = rng.bytes(len);
            let message = encrypt_parallel(suite, frame, &plaintext, 2);
            let threads = 2 + rng.below(3) as usize;
            assert_eq!(
                decrypt_with(&message, threads),
                (plaintext.clone(), Ok(())),
                "case {case}"
            );
            // Damage: a flipped bit, a cut, an extra byte, two frames swapped (equal length).
            let mut damaged = Vec::new();
            for _ in 0..6 {
                let mut m = message.clone();
                let at = rng.below(m.len() as u64) as usize;
                m[at] ^= 1 << rng.below(8);
                damaged.push(m);
            }
            damaged.push(message[..rng.below(message.len() as u64) as usize].to_vec());
            let mut longer = message.clone();
            longer.push(0);
            damaged.push(longer);
            for m in damaged {
                let sequential = decrypt_with(&m, 1);
                assert!(sequential.1.is_err(), "case {case}: damage undetected");
                assert_eq!(decrypt_with(&m, threads), sequential, "case {case}");
            }
        }
    }
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
