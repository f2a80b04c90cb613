//! Golden vectors for the ciphertext blob. Every `*.json` in `tests/testdata/` is checked; a `fail_`
//! prefix means the blob must be rejected. The layout must never change by accident: if this fails
//! after a change, the change broke every ciphertext ever returned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;

use kms_core::blob::{self, BlobHeader};
use kms_core::{EncryptionContext, KeyMaterial, KmsError};

#[derive(serde::Deserialize)]
struct Vector {
    material: String,
    key_id: String,
    version: u32,
    salt: String,
    context: BTreeMap<String, String>,
    plaintext: String,
    blob: String,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

#[test]
fn golden_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut seen = (0, 0);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let v: Vector = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let material = KeyMaterial::from_slice(&unhex(&v.material)).unwrap();
        let ctx = EncryptionContext::new(v.context).unwrap();
        let blob_bytes = unhex(&v.blob);
        if name.starts_with("fail_") {
            let r = blob::open(&blob_bytes, &material, &ctx);
            assert!(
                matches!(r, Err(KmsError::InvalidCiphertext(_))),
                "{name} must be rejected"
            );
            seen.1 += 1;
            continue;
        }
        let header = BlobHeader {
            key_id: v.key_id.parse().unwrap(),
            version: v.version,
        };
        let salt: [u8; 32] = unhex(&v.salt).try_into().unwrap();
        let sealed =
            blob::seal_with_salt(header, &material, &ctx, &unhex(&v.plaintext), salt).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            v.blob,
            "{name}: the byte layout changed"
        );
        assert_eq!(blob::parse_header(&blob_bytes).unwrap(), header, "{name}");
        assert_eq!(
            &blob::open(&blob_bytes, &material, &ctx).unwrap()[..],
            &unhex(&v.plaintext)[..],
            "{name}"
        );
        seen.0 += 1;
    }
    assert!(seen.0 >= 2 && seen.1 >= 3, "vectors missing: {seen:?}");
}

/// Prints fresh vectors: `cargo test -p kms-core --test vectors -- --ignored --nocapture print`.
#[test]
#[ignore]
fn print_vectors() {
    let material = KeyMaterial::from_slice(&[0x11; 32]).unwrap();
    for (name, pt, ctx) in [
        ("empty_context", "68656c6c6f", BTreeMap::new()),
        (
            "with_context",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            BTreeMap::from([
                ("purpose".to_string(), "test".to_string()),
                ("app".to_string(), "envelope".to_string()),
            ]),
        ),
    ] {
        let header = BlobHeader {
            key_id: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b".parse().unwrap(),
            version: 3,
        };
        let b = blob::seal_with_salt(
            header,
            &material,
            &EncryptionContext::new(ctx.clone()).unwrap(),
            &unhex(pt),
            [0x22; 32],
        )
        .unwrap();
        println!("{name}: {}", hex::encode(b));
    }
}
