//! Golden vectors in tests/testdata: `py_*` files written by the Python AWS Encryption SDK must
//! decrypt to `plaintext(n)`; `fail_<reason>_*` files must be rejected with the error `<reason>` names.

use std::path::PathBuf;

use s3_crypto::{AlgorithmSuite, ByteRange, CommitmentPolicy, ContentType, Decryptor, Error};

use crate::common::{all_keys, block_on, context, plaintext};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

fn expected_error(reason: &str, e: &Error) -> bool {
    match reason {
        "wrongkey" => matches!(e, Error::NoDataKeyDecrypted { .. }),
        "tamperedheader" => matches!(e, Error::TamperedHeader | Error::MalformedHeader(_)),
        "commitment" => matches!(e, Error::CommitmentMismatch),
        "tamperedframe" => matches!(e, Error::TamperedFrame { .. }),
        "truncated" => matches!(e, Error::Truncated(_)),
        "sequence" => matches!(e, Error::FrameSequence { .. }),
        "trailing" => matches!(e, Error::TrailingData),
        "signature" => matches!(e, Error::BadSignature),
        "toomanykeys" => matches!(e, Error::TooManyEncryptedDataKeys { count: 17, max: 16 }),
        "unsupported" => {
            matches!(
                e,
                Error::UnsupportedVersion(_) | Error::UnsupportedAlgorithmSuite(_)
            )
        }
        other => panic!("unknown failure reason `{other}` in a vector name"),
    }
}

#[test]
fn golden_vectors() {
    let keyring = all_keys();
    let allow_v1 =
        Decryptor::new(&keyring).commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let strict = Decryptor::new(&keyring);
    let (mut good, mut bad) = (0, 0);
    let mut names: Vec<_> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    for name in names {
        let message = std::fs::read(testdata().join(&name)).unwrap();
        let stem = name.trim_end_matches(".bin");
        if let Some(rest) = stem.strip_prefix("fail_") {
            let reason = rest.split('_').next().unwrap();
            let mut out = Vec::new();
            match allow_v1.decrypt(&message[..], &mut out) {
                Ok(_) => panic!("{name}: decrypted, but must be rejected"),
                Err(e) => assert!(expected_error(reason, &e), "{name}: wrong error: {e:?}"),
            }
            // Only verified regular frames may have been released, never the final frame.
            if matches!(
                reason,
                "tamperedframe" | "sequence" | "truncated" | "signature" | "trailing"
            ) {
                let full = plaintext(3 * 256 + 7);
                assert!(out.len() < full.len() && out == full[..out.len()], "{name}");
            } else {
                assert!(out.is_empty(), "{name}: released {} bytes", out.len());
            }
            bad += 1;
            continue;
        }
        // py_<suite>_<framed<len>|nonframed>_<n>[_<key name>]
        let parts: Vec<&str> = stem.split('_').collect();
        assert_eq!(parts[0], "py", "{name}: unknown vector name");
        let suite = AlgorithmSuite::from_id(u16::from_str_radix(parts[1], 16).unwrap()).unwrap();
        let n: usize = parts[3].parse().unwrap();
        let (out, header) = allow_v1
            .decrypt_to_vec(&message)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out, plaintext(n), "{name}: wrong plaintext");
        assert_eq!(header.suite(), suite, "{name}");
        match parts[2].strip_prefix("framed") {
            Some(len) => {
                assert_eq!(header.content_type(), ContentType::Framed, "{name}");
                assert_eq!(header.frame_length(), len.parse::<u32>().unwrap(), "{name}");
            }
            None => assert_eq!(header.content_type(), ContentType::NonFramed, "{name}"),
        }
        if stem.ends_with("_empty-context") {
            let public_key_only = usize::from(suite.is_signed());
            assert_eq!(header.encryption_context().len(), public_key_only, "{name}");
        } else {
            for (k, v) in context().iter() {
                assert_eq!(header.encryption_context().get(k), Some(v), "{name}");
            }
        }
        assert_eq!(
            header
                .encryption_context()
                .get("aws-crypto-public-key")
                .is_some(),
            suite.is_signed(),
            "{name}"
        );
        // The default policy refuses non-committing messages before touching any key.
        let strict_result = strict.decrypt_to_vec(&message);
        if suite.is_committing() {
            assert!(strict_result.is_ok(), "{name}: {strict_result:?}");
        } else {
            assert!(
                matches!(strict_result, Err(Error::CommitmentPolicyViolation(id)) if id == suite.id()),
                "{name}: {strict_result:?}"
            );
        }
        good += 1;
    }
    // 11 suites x 6 sizes x framed/non-framed, plus extras; guard against an empty directory.
    assert!(good >= 132, "only {good} good vectors");
    assert!(bad >= 18, "only {bad} failure vectors");
}

#[test]
fn required_context_mismatch_is_reported() {
    let keyring = all_keys();
    let message = std::fs::read(testdata().join("py_0478_framed256_1.bin")).unwrap();
    let mut required = context();
    required.insert("tenant", "someone-else");
    let err = Decryptor::new(&keyring)
        .required_context(required)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(
        matches!(err, Error::EncryptionContextMismatch(_)),
        "{err:?}"
    );
    let mut required = context();
    required.insert("missing", "x");
    let err = Decryptor::new(&keyring)
        .required_context(required)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(
        matches!(err, Error::EncryptionContextMismatch(_)),
        "{err:?}"
    );
}

#[test]
fn edk_limit_is_configurable() {
    let keyring = all_keys();
    let message = std::fs::read(testdata().join("fail_toomanykeys_0578_17-keys.bin")).unwrap();
    let (out, header) = Decryptor::new(&keyring)
        .max_encrypted_data_keys(17)
        .decrypt_to_vec(&message)
        .unwrap();
    assert_eq!(out, plaintext(10));
    assert_eq!(header.encrypted_data_keys().len(), 17);
}

/// Every vector through the parallel path and, for the unsigned ones, a few byte ranges: the same
/// plaintext, the same errors. The Python ESDK ends an exact multiple of the frame length with an
/// empty final frame, a layout envelope never writes, so this is where ranges meet it.
#[test]
fn golden_vectors_decrypt_in_parallel_and_by_range() {
    let keyring = all_keys();
    let dec =
        Decryptor::new(&keyring).commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt);
    let mut ranged = 0;
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let message = std::fs::read(&path).unwrap();
        let mut seq_out = Vec::new();
        let sequential = dec.decrypt(&message[..], &mut seq_out).map(|_| ());
        let mut par_out = Vec::new();
        let parallel = block_on(dec.begin(&message[..]))
            .and_then(|m| m.decrypt_to_parallel(&mut par_out, 3))
            .map(|_| ());
        assert_eq!(format!("{parallel:?}"), format!("{sequential:?}"), "{name}");
        assert_eq!(par_out, seq_out, "{name}");
        let Ok(()) = sequential else { continue };
        let n = seq_out.len() as u64;
        for range in [
            ByteRange::From(0),
            ByteRange::Suffix(1),
            ByteRange::Inclusive {
                first: 200,
                last: 300,
            },
            ByteRange::Inclusive {
                first: 255,
                last: 256,
            },
        ] {
            let m = block_on(dec.begin(std::io::Cursor::new(&message[..]))).unwrap();
            let mut out = Vec::new();
            match (m.decrypt_range_to(range, &mut out), range.resolve(n)) {
                (Err(Error::RangeOfSignedMessage), _) => {
                    assert!(name.contains("_0578_") || is_signed(&name), "{name}")
                }
                (Ok((_, r, total)), Some(want)) => {
                    assert_eq!((r.clone(), total), (want, n), "{name} {range}");
                    assert_eq!(out, &seq_out[r.start as usize..r.end as usize], "{name}");
                    ranged += 1;
                }
                (Err(Error::RangeNotSatisfiable { .. }), None) => {}
                (got, want) => panic!("{name} {range}: {got:?}, want {want:?}"),
            }
        }
    }
    assert!(ranged >= 100, "only {ranged} ranges decrypted");
}

/// The signed suites' ids, as vector names write them.
fn is_signed(name: &str) -> bool {
    ["_0214_", "_0346_", "_0378_", "_0578_"]
        .iter()
        .any(|s| name.contains(s))
}
