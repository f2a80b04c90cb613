//! Parallel encryption: same message layout as the sequential path, decrypts, bounded failure.

use s3_crypto::{AlgorithmSuite, Decryptor, Encryptor};

use crate::common::{context, keyring, Rng};

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
    let message = futures_lite_block_on(enc.begin()).unwrap();
    let mut out = Vec::new();
    message
        .encrypt_stream_parallel(plaintext, &mut out, threads)
        .unwrap();
    out
}

/// The crate's async `begin` with a raw keyring completes without a runtime: poll it once.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("raw AES keyring future was pending"),
    }
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
        let message = futures_lite_block_on(enc.begin()).unwrap();
        let r = message.encrypt_stream_parallel(&plaintext[..], FailingWriter(fail_after), 3);
        assert!(r.is_err(), "fail_after {fail_after}");
    }
}
