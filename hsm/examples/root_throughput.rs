//! Measures the HSM root key's wrap+unwrap rate: one session, then N threads over N sessions.
//!
//!     eval "$(scripts/softhsm.sh init /tmp/hsm-bench | sed 's/^/export /')"
//!     cargo run --release -p hsm --example root_throughput -- 4 3
//!
//! Arguments: threads (default 4), seconds per run (default 3). Reads ENVELOPE_TEST_HSM_MODULE,
//! ENVELOPE_TEST_HSM_TOKEN_LABEL and ENVELOPE_TEST_HSM_PIN_FILE (what scripts/softhsm.sh prints).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hsm::{HsmConfig, HsmRootKey, PinSource, TokenSelector};

fn var(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set (see scripts/softhsm.sh init)").into())
}

fn run(root: &Arc<HsmRootKey>, threads: usize, secs: u64) -> Result<f64, hsm::HsmError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || -> Result<u64, hsm::HsmError> {
                let aad = (t as u64).to_be_bytes();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let w = root.seal(&aad, &[7u8; 32])?;
                    root.open_sealed(&aad, &w)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| hsm::HsmError::Busy)??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let config = |sessions| {
        Ok::<_, Box<dyn std::error::Error>>(
            HsmConfig::new(
                var("ENVELOPE_TEST_HSM_MODULE")?,
                TokenSelector::Label(var("ENVELOPE_TEST_HSM_TOKEN_LABEL")?),
                PinSource::File(var("ENVELOPE_TEST_HSM_PIN_FILE")?.into()),
            )
            .with_max_sessions(sessions),
        )
    };
    let one = Arc::new(HsmRootKey::open(config(1)?)?);
    let single = run(&one, 1, secs)?;
    drop(one);
    let many = Arc::new(HsmRootKey::open(config(threads)?)?);
    let multi = run(&many, threads, secs)?;
    println!("one session:            {single:>9.0} wrap+unwrap pairs/s");
    println!(
        "{threads} threads, {threads} sessions: {multi:>9.0} wrap+unwrap pairs/s ({:.2}x)",
        multi / single
    );
    Ok(())
}
