//! Helpers the fuzz targets share: the golden-vector keys, a poll-once executor for keyrings that
//! never wait, a key service on an in-memory store, and a splitter that turns one fuzz input into
//! several fields.
//!
//! The targets are in `fuzz_targets/`; what each checks is in its opening comment, and the layout,
//! the corpora and the caps are in the README's Fuzzing section.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic is the fuzzer's report

use s3_crypto::{Keyring, MultiKeyring, RawAesKeyring};

/// The raw AES keys of `s3-crypto/tests/testdata` (see its `generate.py`): name, key bytes.
pub fn esdk_keys() -> [(&'static str, Vec<u8>); 3] {
    [
        ("raw-aes-256", (0u8..32).collect()),
        ("raw-aes-192", (100u8..124).collect()),
        ("raw-aes-128", (200u8..216).collect()),
    ]
}

/// A keyring that opens every golden-vector message (the three raw AES keys of namespace
/// `envelope-test`) and encrypts with the first (a data key wrapped by each).
pub fn esdk_keyring() -> MultiKeyring {
    let mut keys = esdk_keys()
        .into_iter()
        .map(|(name, key)| {
            Box::new(RawAesKeyring::new("envelope-test", name, &key).unwrap()) as Box<dyn Keyring>
        })
        .collect::<Vec<_>>();
    let generator = keys.remove(0);
    MultiKeyring::new(Some(generator), keys).unwrap()
}

/// A current-thread runtime and a `Kms` on an in-memory SQLite store (no file, no fsync) with a
/// fixed software root key: the key service targets' fixture, made once per process.
///
/// The runtime's blocking pool (where the service runs root-of-trust calls) is one thread, started
/// here and never retired: tokio's default starts threads on demand and ends each after 10 s idle,
/// so threads would start and end around the leak checks libFuzzer runs between inputs. The one
/// LeakSanitizer report a key service target has had (`iam_query`, session 12) was a pool thread's
/// start closure, which the thread frees only as it ends (SECURITY.md, "Fuzz figures"). The
/// service's code is the same on any pool size.
pub fn kms_in_memory() -> (tokio::runtime::Runtime, kms_core::Kms) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .thread_keep_alive(std::time::Duration::from_secs(100 * 365 * 24 * 3600))
        .build()
        .unwrap();
    rt.block_on(rt.spawn_blocking(|| ())).unwrap();
    let kms = rt.block_on(async {
        let store = kms_core::Store::connect("sqlite::memory:").await.unwrap();
        let root = std::sync::Arc::new(kms_core::SoftwareRootKey::new(
            kms_core::KeyMaterial::from_slice(&[7; 32]).unwrap(),
        ));
        kms_core::Kms::open(store, root, kms_core::KmsConfig::default())
            .await
            .unwrap()
    });
    (rt, kms)
}

/// Polls a future once: raw AES keyrings answer at once, so a `Pending` is a bug.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a raw AES keyring never waits"),
    }
}

/// The separator of [`fields`]: a byte that no seed uses inside a field.
pub const SEP: u8 = 0xff;

/// Splits `data` at every [`SEP`] byte; the corpora are written with the same separator, so a
/// mutation that keeps the separators changes one field at a time.
pub fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == SEP).collect()
}

/// Field `i` of `f` as text (lossy), or empty when absent.
pub fn text(f: &[&[u8]], i: usize) -> String {
    f.get(i)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}
