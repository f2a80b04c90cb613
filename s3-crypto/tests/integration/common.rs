//! Keys and plaintexts shared with tests/testdata/generate.py.

use s3_crypto::{EncryptionContext, Keyring, MultiKeyring, RawAesKeyring};

pub const NAMESPACE: &str = "envelope-test";

/// (key name, wrapping key) exactly as generate.py defines them.
pub fn keys() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("raw-aes-256", (0u8..32).collect()),
        ("raw-aes-192", (100u8..124).collect()),
        ("raw-aes-128", (200u8..216).collect()),
    ]
}

pub fn keyring(name: &str) -> RawAesKeyring {
    let (_, key) = keys().into_iter().find(|(n, _)| *n == name).unwrap();
    RawAesKeyring::new(NAMESPACE, name, &key).unwrap()
}

/// A multi-keyring holding all the test keys (no generator: decrypt only).
pub fn all_keys() -> MultiKeyring {
    let children: Vec<Box<dyn Keyring>> = keys()
        .into_iter()
        .map(|(n, _)| Box::new(keyring(n)) as Box<dyn Keyring>)
        .collect();
    MultiKeyring::new(None, children).unwrap()
}

/// Byte i is (i * 31 + 7) % 251.
pub fn plaintext(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

pub fn context() -> EncryptionContext {
    [
        ("purpose", "golden-vector"),
        ("tenant", "envelope"),
        ("été", "summer"),
    ]
    .into_iter()
    .collect()
}

/// SplitMix64: a small deterministic PRNG for property loops.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The crate's async `begin` with a raw keyring completes without a runtime: poll it once.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("raw AES keyring future was pending"),
    }
}
