//! Golden vectors written by the official Amazon S3 Encryption Client for Python
//! (`testdata/s3ec/s3ec_py.py generate`); a `fail_` name must be rejected, with the error named in
//! the vector's `expect`.

use std::collections::BTreeMap;

use s3_crypto::s3ec::{ContentMetadata, MetadataLookup, ObjectDecryptor, TAG_LENGTH};
use s3_crypto::{CommitmentPolicy, Error};

use crate::common::{testdata, variant, FakeKms};

struct Vector {
    name: String,
    metadata: BTreeMap<String, String>,
    context: BTreeMap<String, String>,
    policy: CommitmentPolicy,
    instruction_file: Option<String>,
    expect: String,
    body: Vec<u8>,
    plain: Option<Vec<u8>>,
}

fn policy(name: &str) -> CommitmentPolicy {
    match name {
        "ForbidEncryptAllowDecrypt" => CommitmentPolicy::ForbidEncryptAllowDecrypt,
        "RequireEncryptAllowDecrypt" => CommitmentPolicy::RequireEncryptAllowDecrypt,
        "RequireEncryptRequireDecrypt" => CommitmentPolicy::RequireEncryptRequireDecrypt,
        other => panic!("unknown policy {other}"),
    }
}

fn strings(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn load() -> Vec<Vector> {
    let dir = testdata();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                    .unwrap();
            Vector {
                metadata: strings(&doc["metadata"]),
                context: strings(&doc["encryption_context"]),
                policy: policy(doc["policy"].as_str().unwrap()),
                instruction_file: doc["instruction_file"].as_str().map(str::to_owned),
                expect: doc["expect"].as_str().unwrap().to_owned(),
                body: std::fs::read(dir.join(format!("{name}.body"))).unwrap(),
                plain: std::fs::read(dir.join(format!("{name}.plain"))).ok(),
                name,
            }
        })
        .collect()
}

fn read_metadata(v: &Vector) -> Result<ContentMetadata, Error> {
    match (
        ContentMetadata::from_object_metadata(&v.metadata)?,
        &v.instruction_file,
    ) {
        (MetadataLookup::Complete(m), None) => Ok(m),
        (MetadataLookup::NeedsInstructionFile, Some(file)) => {
            ContentMetadata::from_instruction_file(&v.metadata, file.as_bytes())
        }
        (lookup, file) => panic!(
            "{}: lookup {lookup:?} with instruction file {:?}",
            v.name,
            file.is_some()
        ),
    }
}

fn decrypt(v: &Vector, chunk: usize) -> Result<Vec<u8>, (Error, usize)> {
    let keyring = FakeKms::new();
    let metadata = read_metadata(v).map_err(|e| (e, 0))?;
    let decryptor = ObjectDecryptor::new(&keyring)
        .commitment_policy(v.policy)
        .encryption_context(v.context.clone());
    let mut dec = futures_block_on(decryptor.begin(&metadata)).map_err(|e| (e, 0))?;
    let mut out = Vec::new();
    for part in v.body.chunks(chunk.max(1)) {
        dec.update(part, &mut out).map_err(|e| (e, 0))?;
    }
    let released = out.len();
    dec.finish(&mut out).map_err(|e| (e, released))?;
    Ok(out)
}

/// The keyrings here are synchronous underneath; a tiny executor is enough.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn official_client_vectors() {
    let vectors = load();
    let (fail, ok): (Vec<_>, Vec<_>) = vectors.iter().partition(|v| v.name.starts_with("fail_"));
    // The generator writes 14 good and 14 bad ones; a lost file must not pass silently.
    assert!(ok.len() >= 14, "only {} good vectors", ok.len());
    assert!(fail.len() >= 14, "only {} fail_ vectors", fail.len());
    for v in ok {
        let plain = v.plain.as_ref().unwrap();
        assert_eq!(v.expect, "ok", "{}", v.name);
        for chunk in [1, 7, 4096, usize::MAX] {
            let got = decrypt(v, chunk).unwrap_or_else(|(e, _)| panic!("{}: {e}", v.name));
            assert_eq!(&got, plain, "{} (chunks of {chunk})", v.name);
        }
    }
    for v in fail {
        for chunk in [5, usize::MAX] {
            match decrypt(v, chunk) {
                Ok(_) => panic!("{} decrypted", v.name),
                Err((e, released)) => {
                    assert_eq!(variant(&e), v.expect, "{}: {e}", v.name);
                    // Nothing like a complete plaintext came out before the failure.
                    assert!(
                        released == 0 || released < v.body.len() - TAG_LENGTH,
                        "{}: released {released} bytes",
                        v.name
                    );
                }
            }
        }
    }
}

#[test]
fn vectors_have_the_official_layouts() {
    for v in load().iter().filter(|v| !v.name.starts_with("fail_")) {
        let m = read_metadata(v).unwrap();
        let all = m.to_object_metadata().unwrap();
        if v.name.starts_with("v3_") {
            assert_eq!(all["x-amz-c"], "115", "{}", v.name);
            assert_eq!(all["x-amz-w"], "12", "{}", v.name);
            assert!(all.contains_key("x-amz-t"), "{}", v.name);
        } else {
            assert_eq!(all["x-amz-cek-alg"], "AES/GCM/NoPadding", "{}", v.name);
            assert_eq!(all["x-amz-wrap-alg"], "kms+context", "{}", v.name);
            assert_eq!(all["x-amz-tag-len"], "128", "{}", v.name);
        }
        // Our serialization of what we read reads back the same (the JSON spacing differs from
        // Python's, the content may not).
        match ContentMetadata::from_object_metadata(&all).unwrap() {
            MetadataLookup::Complete(again) => assert_eq!(again, m, "{}", v.name),
            other => panic!("{other:?}"),
        }
        assert_eq!(v.body.len(), v.plain.as_ref().unwrap().len() + TAG_LENGTH);
    }
}
