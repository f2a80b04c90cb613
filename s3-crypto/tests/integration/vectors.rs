//! Golden vectors in tests/testdata: `py_*` files written by the Python AWS Encryption SDK must
//! decrypt to `plaintext(n)`; `fail_<reason>_*` files must be rejected with the error `<reason>` names.

use std::path::PathBuf;

use s3_crypto::{AlgorithmSuite, CommitmentPolicy, ContentType, Decryptor, Error};

use crate::common::{all_keys, context, plaintext};

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
