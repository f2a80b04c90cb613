//! Messages: every decryption path (sequential, parallel from a stream, parallel by positioned
//! reads, a byte range) against headers that announce more than the input holds.

use std::io::Cursor;

use s3_crypto::{
    ByteRange, Decryptor, Encryptor, Error, FrameKey, FrameKind, Header, MultiKeyring,
    RawAesKeyring, DEFAULT_MAX_BUFFERED_CONTENT, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};

use crate::{serial, within, MIB};

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("envelope-test", "memory", &[0x42u8; 32]).unwrap()
}

/// Threads of the parallel paths: more than this machine has, as a big server would use.
const THREADS: usize = 16;

/// A header for frames of `frame_length` bytes (the real one the encryptor writes, so it
/// authenticates), then the body `body` makes with the message's frame key. Nothing here allocates
/// by the frame length.
pub fn message(frame_length: u32, body: impl FnOnce(&FrameKey) -> Vec<u8>) -> Vec<u8> {
    let keyring = keyring();
    let encryptor = block_on(Encryptor::new(&keyring).frame_length(frame_length).begin()).unwrap();
    let mut message = encryptor.header().to_bytes();
    message.extend(body(encryptor.frame_key()));
    message
}

/// An empty final frame: a whole, authentic message of no plaintext.
fn empty_final(key: &FrameKey) -> Vec<u8> {
    key.seal_frame(1, FrameKind::Final, b"").unwrap()
}

/// The first fields of regular frame 1 (sequence number, IV), then `n` bytes of its body: a
/// message that ends inside its first frame.
fn cut_first_frame(n: usize) -> impl FnOnce(&FrameKey) -> Vec<u8> {
    move |_| {
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        body.extend(std::iter::repeat_n(0xA5, n));
        body
    }
}

/// Decrypts `message` by each path to an output that keeps nothing; returns each path's outcome.
fn every_path(decryptor: &Decryptor, message: &[u8]) -> Vec<(&'static str, Result<Header, Error>)> {
    let positioned = || -> Result<Header, Error> {
        let m = block_on(decryptor.begin(Cursor::new(message)))?;
        m.decrypt_at_parallel(message, std::io::sink(), THREADS)
    };
    let range = || -> Result<Header, Error> {
        let m = block_on(decryptor.begin(Cursor::new(message)))?;
        let range = ByteRange::Inclusive { first: 0, last: 0 };
        m.decrypt_range_to(range, std::io::sink())
            .map(|(h, _, _)| h)
    };
    vec![
        ("sequential", decryptor.decrypt(message, std::io::sink())),
        (
            "parallel",
            block_on(decryptor.begin(message))
                .and_then(|m| m.decrypt_to_parallel(std::io::sink(), THREADS)),
        ),
        ("positioned", positioned()),
        ("range", range()),
    ]
}

/// A frame length over the limit is refused with the limit's error before any of the body is
/// read, by every path, and the limit is the caller's to set.
#[test]
fn a_frame_length_over_the_limit_is_refused_before_the_body() {
    let _one = serial();
    let keyring = keyring();
    let huge = message(u32::MAX, empty_final);
    let decryptor = Decryptor::new(&keyring);
    within(MIB, || {
        for (path, outcome) in every_path(&decryptor, &huge) {
            match outcome {
                Err(Error::ContentTooLarge { len, max }) => {
                    assert_eq!(
                        (len, max),
                        (u64::from(u32::MAX), DEFAULT_MAX_BUFFERED_CONTENT)
                    )
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    });
    let two_mib = message(2 * MIB as u32, empty_final);
    let strict = Decryptor::new(&keyring).max_buffered_content(MIB as u64);
    within(MIB, || {
        for (path, outcome) in every_path(&strict, &two_mib) {
            assert!(
                matches!(outcome, Err(Error::ContentTooLarge { len, max }) if len == 2 * MIB as u64 && max == MIB as u64),
                "{path}: {outcome:?}"
            );
        }
    });
}

/// Frames of 255 MiB (under the limit) over a tiny body cost what the body holds, not what the
/// header announces: the cut message fails as truncated, the empty one decrypts, within 2 MiB
/// on every path, with 16 threads.
#[test]
fn a_long_frame_length_costs_only_the_bytes_that_arrive() {
    let _one = serial();
    let keyring = keyring();
    let decryptor = Decryptor::new(&keyring);
    let frame_length = 255 * MIB as u32;
    let cut = message(frame_length, cut_first_frame(1000));
    within(2 * MIB, || {
        for (path, outcome) in every_path(&decryptor, &cut) {
            assert!(
                matches!(outcome, Err(Error::Truncated(_))),
                "{path}: {outcome:?}"
            );
        }
    });
    let empty = message(frame_length, empty_final);
    within(2 * MIB, || {
        for (path, outcome) in every_path(&decryptor, &empty) {
            match (path, outcome) {
                ("range", Err(Error::RangeNotSatisfiable { total: 0, .. })) => {}
                (_, Ok(header)) => assert_eq!(header.frame_length(), frame_length),
                (_, other) => panic!("{path}: {other:?}"),
            }
        }
    });
}

/// The keys of the golden vectors (tests/testdata/generate.py).
fn golden_keys() -> MultiKeyring {
    let keys: Vec<Box<dyn s3_crypto::Keyring>> = [
        ("raw-aes-256", (0u8..32).collect::<Vec<u8>>()),
        ("raw-aes-192", (100u8..124).collect()),
        ("raw-aes-128", (200u8..216).collect()),
    ]
    .into_iter()
    .map(|(name, key)| {
        Box::new(RawAesKeyring::new("envelope-test", name, &key).unwrap())
            as Box<dyn s3_crypto::Keyring>
    })
    .collect();
    MultiKeyring::new(None, keys).unwrap()
}

/// A non-framed body (as older ESDKs write) whose length field says more than the body holds:
/// over the limit it is refused before it is read; under it, the bytes read are what arrived.
#[test]
fn a_non_framed_length_is_limited_and_costs_only_the_bytes_that_arrive() {
    let _one = serial();
    let keyring = golden_keys();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/testdata/py_0478_nonframed_775.bin"
    );
    let vector = std::fs::read(path).unwrap();
    let decryptor = Decryptor::new(&keyring);
    let header_len = block_on(decryptor.begin(&vector[..]))
        .unwrap()
        .header()
        .to_bytes()
        .len();
    // The body: IV (12 bytes), then the u64 content length.
    let with_length = |len: u64| {
        let mut m = vector.clone();
        m[header_len + 12..header_len + 20].copy_from_slice(&len.to_be_bytes());
        m
    };
    let over = with_length(1 << 30);
    let under = with_length(200 * MIB as u64);
    within(2 * MIB, || {
        for (path, outcome) in every_path(&decryptor, &over) {
            assert!(
                matches!(outcome, Err(Error::ContentTooLarge { len, .. }) if len == 1 << 30),
                "{path}: {outcome:?}"
            );
        }
        let outcome = decryptor.decrypt(&under[..], std::io::sink());
        assert!(
            matches!(outcome, Err(Error::Truncated("inside the non-framed body"))),
            "{outcome:?}"
        );
    });
}

/// Offset of the encrypted data key count in a version 2 header with an empty encryption
/// context: version, suite id, 32-byte message id, context length.
const EDK_COUNT_AT: usize = 1 + 2 + 32 + 2;

/// An encrypted data key count over the limit is refused before any key is read; a count the
/// caller allows, with keys of 64 KiB announced over a tiny header, costs only what arrived.
#[test]
fn huge_data_key_counts_and_lengths_fail_fast() {
    let _one = serial();
    let keyring = keyring();
    let real = message(4096, empty_final);
    let with_keys = |count: u16, first_len: u16| {
        let mut m = real[..EDK_COUNT_AT].to_vec();
        m.extend_from_slice(&count.to_be_bytes());
        m.extend_from_slice(&first_len.to_be_bytes());
        m.extend_from_slice(b"aws-kms");
        m
    };
    let decryptor = Decryptor::new(&keyring);
    let lenient = Decryptor::new(&keyring).max_encrypted_data_keys(usize::from(u16::MAX));
    within(MIB, || {
        match decryptor.decrypt(&with_keys(u16::MAX, 7)[..], std::io::sink()) {
            Err(Error::TooManyEncryptedDataKeys { count, max }) => {
                assert_eq!((count, max), (65_535, DEFAULT_MAX_ENCRYPTED_DATA_KEYS))
            }
            other => panic!("{other:?}"),
        }
        for d in [&decryptor, &lenient] {
            let outcome = d.decrypt(&with_keys(16, u16::MAX)[..], std::io::sink());
            assert!(
                matches!(outcome, Err(Error::Truncated("inside the header"))),
                "{outcome:?}"
            );
        }
        let outcome = lenient.decrypt(&with_keys(u16::MAX, u16::MAX)[..], std::io::sink());
        assert!(
            matches!(outcome, Err(Error::Truncated("inside the header"))),
            "{outcome:?}"
        );
    });
}

/// Parallel decryption holds its memory budget whatever the thread count: 1 MiB frames, 32
/// threads, a 4 MiB budget (the pool alone used to be 2 × 32 + 2 frames).
#[test]
fn parallel_decryption_stays_within_its_budget_whatever_the_threads() {
    let _one = serial();
    let keyring = keyring();
    let plaintext: Vec<u8> = (0..24 * MIB).map(|i| (i % 251) as u8).collect();
    let message = Encryptor::new(&keyring)
        .frame_length(MIB as u32)
        .encrypt_to_vec(&plaintext)
        .unwrap();
    drop(plaintext);
    let decryptor = Decryptor::new(&keyring).memory_budget(4 * MIB);
    // The budget, the input buffer of the stream path (64 KiB) and the threads' own small needs.
    within(4 * MIB + MIB, || {
        let m = block_on(decryptor.begin(&message[..])).unwrap();
        m.decrypt_to_parallel(std::io::sink(), 32).unwrap();
        let m = block_on(decryptor.begin(Cursor::new(&message[..]))).unwrap();
        m.decrypt_at_parallel(&message[..], std::io::sink(), 32)
            .unwrap();
    });
}
