//! The token's raw rate for custom key store keys: AES-GCM encrypt and decrypt of a 32-byte data key
//! with one key held in the token ([`hsm::TokenKeys`], no HTTP, no key service), on one session and
//! then on N threads over N sessions. Prints one JSON line per measurement.
//!
//!     eval "$(scripts/softhsm.sh init /tmp/hsm-bench | sed 's/^/export /')"
//!     cargo run --release -p hsm --example token_throughput -- 4 3
//!
//! Arguments: sessions (default 4), seconds per run (default 3). Reads ENVELOPE_TEST_HSM_MODULE,
//! ENVELOPE_TEST_HSM_TOKEN_LABEL and ENVELOPE_TEST_HSM_PIN_FILE (what scripts/softhsm.sh prints).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hsm::{HsmConfig, HsmError, PinSource, TokenKeys, TokenSelector};

const LABEL: &str = "envelope-token-throughput";

fn var(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set (see scripts/softhsm.sh init)").into())
}

/// Operations per second over `threads` threads for `secs`.
fn run(keys: &Arc<TokenKeys>, threads: usize, secs: u64, decrypt: bool) -> Result<f64, HsmError> {
    let sealed = keys.encrypt(LABEL, b"aad", &[7u8; 32])?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (keys, sealed) = (keys.clone(), sealed.clone());
            std::thread::spawn(move || -> Result<u64, HsmError> {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if decrypt {
                        keys.decrypt(LABEL, b"aad", &sealed)?;
                    } else {
                        keys.encrypt(LABEL, b"aad", &[7u8; 32])?;
                    }
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| HsmError::Busy)??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let config = |n| {
        Ok::<_, Box<dyn std::error::Error>>(
            HsmConfig::new(
                var("ENVELOPE_TEST_HSM_MODULE")?,
                TokenSelector::Label(var("ENVELOPE_TEST_HSM_TOKEN_LABEL")?),
                PinSource::File(var("ENVELOPE_TEST_HSM_PIN_FILE")?.into()),
            )
            .with_max_sessions(n),
        )
    };
    let one = Arc::new(TokenKeys::open(config(1)?)?);
    if !one.contains(LABEL)? {
        one.create_key(LABEL)?;
    }
    for (op, decrypt) in [("encrypt", false), ("decrypt", true)] {
        let single = run(&one, 1, secs, decrypt)?;
        println!(r#"{{"target":"token-raw","op":"{op}","sessions":1,"ops_per_s":{single:.1}}}"#);
    }
    drop(one);
    let many = Arc::new(TokenKeys::open(config(sessions)?)?);
    for (op, decrypt) in [("encrypt", false), ("decrypt", true)] {
        let multi = run(&many, sessions, secs, decrypt)?;
        println!(
            r#"{{"target":"token-raw","op":"{op}","sessions":{sessions},"ops_per_s":{multi:.1}}}"#
        );
    }
    many.destroy_key(LABEL)?;
    Ok(())
}
