//! Messages written here, decrypted by the Python AWS Encryption SDK (if `ESDK_PYTHON` names a
//! Python with `aws_encryption_sdk` and the MPL installed; skipped otherwise).

use std::path::PathBuf;
use std::process::Command;

use s3_crypto::{AlgorithmSuite, EncryptionContext, Encryptor, RawAesKeyring};

use crate::common::{plaintext, NAMESPACE};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn python_esdk_decrypts_our_messages() {
    let Some(python) = std::env::var_os("ESDK_PYTHON") else {
        // In CI (scripts/test sets ESDK_PYTHON) the interop run is required, never silently skipped.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but ESDK_PYTHON is not"
        );
        eprintln!(
            "skipped: set ESDK_PYTHON to a python with aws-encryption-sdk[MPL]==4.0.7 installed"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let context: EncryptionContext = [("purpose", "interop"), ("été", "summer"), ("a", "")]
        .into_iter()
        .collect();
    let keys: [(&str, Vec<u8>); 3] = [
        ("rust-256", (0u8..32).collect()),
        ("rust-192", (50u8..74).collect()),
        ("rust-128", (90u8..106).collect()),
    ];
    let mut count = 0;
    for (key_name, key) in &keys {
        let keyring = RawAesKeyring::new(NAMESPACE, *key_name, key).unwrap();
        // One key's messages go without an encryption context (it serializes to no bytes at all).
        let context = if *key_name == "rust-192" {
            EncryptionContext::new()
        } else {
            context.clone()
        };
        for suite in [
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        ] {
            for frame in [1u32, 256, 4096, s3_crypto::DEFAULT_FRAME_LENGTH] {
                let f = frame as usize;
                let sizes: std::collections::BTreeSet<usize> =
                    [0, 1, f - 1, f, f + 1, 3 * f + 7].into_iter().collect();
                for size in sizes {
                    if *key_name != "rust-256" && frame != 256 {
                        continue;
                    }
                    let data = plaintext(size);
                    let message = Encryptor::new(&keyring)
                        .suite(suite)
                        .frame_length(frame)
                        .encryption_context(context.clone())
                        .encrypt_to_vec(&data)
                        .unwrap();
                    let name = format!("{key_name}_{:04x}_frame{frame}_{size}", suite.id());
                    let base = dir.path().join(&name);
                    std::fs::write(base.with_extension("msg"), &message).unwrap();
                    std::fs::write(base.with_extension("plain"), &data).unwrap();
                    let ctx_json: Vec<String> = context
                        .iter()
                        .map(|(k, v)| format!("\"{k}\": \"{v}\""))
                        .collect();
                    std::fs::write(
                        base.with_extension("key"),
                        format!(
                            "{{\"namespace\": \"{NAMESPACE}\", \"name\": \"{key_name}\", \"key\": \"{}\", \"context\": {{{}}}}}",
                            hex(key),
                            ctx_json.join(", ")
                        ),
                    )
                    .unwrap();
                    count += 1;
                }
            }
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/decrypt_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python ESDK rejected messages:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{count} passed, 0 failed")),
        "{stdout}"
    );
}
