//! Objects written here, read by the official Amazon S3 Encryption Client for Python (if
//! `S3EC_PYTHON` names a Python of the venv of `tests/requirements-s3ec.txt`; skipped otherwise,
//! and required when `CI` is set).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use s3_crypto::s3ec::{ContentAlgorithm, ObjectEncryptor};
use s3_crypto::CommitmentPolicy;

use crate::common::{context, plaintext, testdata, FakeKms};

fn python() -> Option<std::ffi::OsString> {
    let python = std::env::var_os("S3EC_PYTHON");
    if python.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but S3EC_PYTHON is not"
        );
        eprintln!(
            "skipped: set S3EC_PYTHON to a python with amazon-s3-encryption-client-python==4.0.0"
        );
    }
    python
}

/// One object for the official client to decrypt.
struct Request {
    what: String,
    metadata: BTreeMap<String, String>,
    body: Vec<u8>,
    instruction_file: Option<String>,
    context: BTreeMap<String, String>,
    policy: &'static str,
}

/// Asks the official client to decrypt each (one Python process for all); per request,
/// `Ok(plaintext)` or `Err(its error message)`.
fn official_decrypt(
    python: &std::ffi::OsStr,
    requests: &[Request],
) -> Vec<Result<Vec<u8>, String>> {
    let batch: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "metadata": r.metadata,
                "body_b64": B64.encode(&r.body),
                "instruction_file": r.instruction_file,
                "encryption_context": r.context,
                "policy": r.policy,
            })
        })
        .collect();
    let mut child = Command::new(python)
        .arg(testdata().join("s3ec_py.py"))
        .arg("decrypt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::Value::Array(batch).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "s3ec_py.py decrypt failed");
    let replies: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replies.len(), requests.len());
    replies
        .into_iter()
        .map(|reply| {
            if reply["ok"].as_bool().unwrap() {
                Ok(B64
                    .decode(reply["plaintext_b64"].as_str().unwrap())
                    .unwrap())
            } else {
                Err(reply["error"].as_str().unwrap().to_owned())
            }
        })
        .collect()
}

#[test]
fn official_python_client_reads_our_objects() {
    let Some(python) = python() else { return };
    let keyring = FakeKms::new();
    let ctx = context(&[("purpose", "interop"), ("tenant", "rust")]);
    let mut requests = Vec::new();
    let mut plaintexts = Vec::new();
    for (algorithm, policy, policy_name) in [
        (
            ContentAlgorithm::AesGcmCommitKey,
            CommitmentPolicy::RequireEncryptRequireDecrypt,
            "RequireEncryptRequireDecrypt",
        ),
        (
            ContentAlgorithm::AesGcm,
            CommitmentPolicy::ForbidEncryptAllowDecrypt,
            "RequireEncryptAllowDecrypt",
        ),
    ] {
        for size in [0usize, 1, 17, 70 * 1024 + 5, (1 << 20) + 3] {
            for with_context in [false, true] {
                let c = if with_context {
                    ctx.clone()
                } else {
                    BTreeMap::new()
                };
                let data = plaintext(size);
                let (body, metadata) = ObjectEncryptor::new(&keyring)
                    .content_algorithm(algorithm)
                    .commitment_policy(policy)
                    .encryption_context(c.clone())
                    .encrypt_to_vec(&data)
                    .unwrap();
                let what = format!("{algorithm:?} {size} B context={with_context}");
                // With an instruction file too (the Python client reads them, it does not write them).
                if size == 17 {
                    let (object, file) = metadata.to_instruction_file().unwrap();
                    requests.push(Request {
                        what: format!("{what}, instruction file"),
                        metadata: object,
                        body: body.clone(),
                        instruction_file: Some(file),
                        context: c.clone(),
                        policy: policy_name,
                    });
                    plaintexts.push(data.clone());
                }
                requests.push(Request {
                    what,
                    metadata: metadata.to_object_metadata().unwrap(),
                    body,
                    instruction_file: None,
                    context: c,
                    policy: policy_name,
                });
                plaintexts.push(data);
            }
        }
    }
    assert_eq!(requests.len(), 24);
    for ((r, got), data) in requests
        .iter()
        .zip(official_decrypt(&python, &requests))
        .zip(plaintexts)
    {
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{}: {e}", r.what)),
            data,
            "{}",
            r.what
        );
    }
}

#[test]
fn official_python_client_rejects_our_tampered_objects() {
    let Some(python) = python() else { return };
    let keyring = FakeKms::new();
    let ctx = context(&[("purpose", "interop")]);
    let data = plaintext(100);
    let (body, metadata) = ObjectEncryptor::new(&keyring)
        .encryption_context(ctx.clone())
        .encrypt_to_vec(&data)
        .unwrap();
    let object = metadata.to_object_metadata().unwrap();
    let request = |what: &str,
                   metadata: &BTreeMap<String, String>,
                   body: &[u8],
                   c: &BTreeMap<String, String>| Request {
        what: what.to_owned(),
        metadata: metadata.clone(),
        body: body.to_vec(),
        instruction_file: None,
        context: c.clone(),
        policy: "RequireEncryptRequireDecrypt",
    };
    let mut bad_body = body.clone();
    bad_body[50] ^= 1;
    let mut bad_meta = object.clone();
    let mut d = B64.decode(&bad_meta["x-amz-d"]).unwrap();
    d[0] ^= 1;
    bad_meta.insert("x-amz-d".into(), B64.encode(d));
    let requests = [
        // Untouched: accepted (so the rejections below are about the tampering).
        request("untouched", &object, &body, &ctx),
        request("body", &object, &bad_body, &ctx),
        request("commitment", &bad_meta, &body, &ctx),
        request("context", &object, &body, &BTreeMap::new()),
    ];
    let got = official_decrypt(&python, &requests);
    assert_eq!(got[0].as_deref().unwrap(), &data[..]);
    assert!(got[1].is_err());
    let e = got[2].as_ref().unwrap_err();
    assert!(e.contains("commitment"), "{e}");
    let e = got[3].as_ref().unwrap_err();
    assert!(e.contains("encryption context"), "{e}");
}
