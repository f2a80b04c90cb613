//! The one SoftHSMv2 token fixture of the hsm tests: a fresh token per test, made by
//! `scripts/softhsm.sh init` (the script the interop tests use too) in a temporary directory.
//!
//! SoftHSM reads `SOFTHSM2_CONF` when the module is initialised, and one process has one initialised
//! module: a test holds a lock while its token is alive, points `SOFTHSM2_CONF` at its own token
//! directory, and finalizes the module (drops every `hsm` object) before giving the lock back.
//! Without SoftHSMv2 the tests skip, except under CI (`CI` set), where they fail.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

static MODULE_LOCK: Mutex<()> = Mutex::new(());

/// The token's label.
pub const LABEL: &str = "envelope-test";

/// A fresh token in its own directory; holds the module lock while alive.
pub struct Token {
    _lock: MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub module: PathBuf,
    pub label: String,
    /// The user PIN (random, also in `pin_file()`).
    pub pin: String,
}

impl Token {
    pub fn new() -> Option<Self> {
        let module = std::env::var_os("ENVELOPE_TEST_HSM_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        if !module.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "SoftHSMv2 module {} not found and CI is set: run scripts/softhsm.sh install",
                module.display()
            );
            eprintln!(
                "skipping: SoftHSMv2 module {} not found (scripts/softhsm.sh install)",
                module.display()
            );
            return None;
        }
        let lock = MODULE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/softhsm.sh"
            ))
            .arg("init")
            .arg(dir.path())
            .arg(LABEL),
        );
        // Only this test touches the module while the lock is held.
        std::env::set_var("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"));
        let pin = std::fs::read_to_string(dir.path().join("user.pin"))
            .unwrap()
            .trim()
            .to_string();
        Some(Self {
            _lock: lock,
            dir,
            module,
            label: LABEL.into(),
            pin,
        })
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("user.pin")
    }

    pub fn tokens_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Initialises another token, `label`, in this token's directory: the same module, the same
    /// user PIN.
    pub fn add_token(&self, label: &str) {
        let so_pin = std::fs::read_to_string(self.dir.path().join("so.pin")).unwrap();
        run_ok(
            Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label])
                .args(["--so-pin", so_pin.trim(), "--pin", &self.pin])
                .env("SOFTHSM2_CONF", self.dir.path().join("softhsm2.conf")),
        );
    }

    /// Takes the tokens away (their directory renamed: to SoftHSMv2, the token was removed) or
    /// brings them back.
    pub fn set_present(&self, present: bool) {
        let dir = self.tokens_dir();
        let away = dir.with_extension("away");
        if present {
            std::fs::rename(&away, dir).unwrap();
        } else {
            std::fs::rename(dir, &away).unwrap();
        }
    }

    /// An outage while other threads use the token: 200 ms of traffic, 300 ms with the token away,
    /// 300 ms with it back.
    pub fn outage_under_traffic(&self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.set_present(false);
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.set_present(true);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// A SQLite key store in the token's directory.
    pub fn db(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("kms.db").display()
        )
    }
}

/// Runs `cmd`; fails the test with its standard error unless it succeeds.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
