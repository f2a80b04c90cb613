//! Properties: decrypt(encrypt(x)) == x for random sizes and frame lengths; any single flipped bit
//! makes decryption fail.

use s3_crypto::{
    body_len, AlgorithmSuite, Decryptor, EncryptionContext, Encryptor, Error, Keyring,
    MultiKeyring, RawAesKeyring,
};

use crate::common::Rng;

const SUITES: [AlgorithmSuite; 2] = [
    AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
    AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
];

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("prop", "key", &[9u8; 32]).unwrap()
}

#[test]
fn round_trip_random_sizes_and_frame_lengths() {
    let keyring = keyring();
    let mut rng = Rng::new(1);
    for i in 0..300 {
        let frame_length = match rng.below(4) {
            0 => 1 + rng.below(8) as u32,
            1 => 1 + rng.below(300) as u32,
            2 => 4096,
            _ => 1 + rng.below(70_000) as u32,
        };
        let size = match rng.below(3) {
            0 => rng.below(4) as usize * frame_length as usize, // exact multiples, including 0
            1 => rng.below(3 * u64::from(frame_length) + 2) as usize,
            _ => rng.below(200_000) as usize,
        }
        .min(300_000);
        let suite = SUITES[i % 2];
        let data = rng.bytes(size);
        let mut ctx = EncryptionContext::new();
        if rng.below(2) == 0 {
            ctx.insert(format!("k{}", rng.below(100)), "v");
        }
        let message = Encryptor::new(&keyring)
            .suite(suite)
            .frame_length(frame_length)
            .encryption_context(ctx.clone())
            .encrypt_to_vec(&data)
            .unwrap();
        let (out, header) = Decryptor::new(&keyring)
            .required_context(ctx)
            .decrypt_to_vec(&message)
            .unwrap_or_else(|e| panic!("case {i}: size {size}, frame {frame_length}: {e}"));
        assert_eq!(out, data, "case {i}");
        assert_eq!(header.suite(), suite);
        // The body length is predictable (what a ranged read or a Content-Length needs).
        let header_len = header.to_bytes().len() as u64;
        let footer_len = if suite.is_signed() { 2 + 103 } else { 0 };
        assert_eq!(
            message.len() as u64,
            header_len + body_len(size as u64, frame_length) + footer_len,
            "case {i}"
        );
    }
}

fn assert_every_bit_flip_fails(message: &[u8], keyring: &dyn Keyring) {
    let decryptor = Decryptor::new(keyring);
    assert!(decryptor.decrypt_to_vec(message).is_ok());
    for byte in 0..message.len() {
        for bit in 0..8 {
            let mut m = message.to_vec();
            m[byte] ^= 1 << bit;
            let r = decryptor.decrypt_to_vec(&m);
            assert!(
                r.is_err(),
                "flipping bit {bit} of byte {byte} went unnoticed"
            );
        }
    }
}

#[test]
fn every_single_bit_flip_fails() {
    let keyring = keyring();
    let ctx: EncryptionContext = [("a", "b"), ("tenant", "t1")].into_iter().collect();
    for suite in SUITES {
        // Three regular frames and a short final frame.
        let message = Encryptor::new(&keyring)
            .suite(suite)
            .frame_length(16)
            .encryption_context(ctx.clone())
            .encrypt_to_vec(&[0x5a; 55])
            .unwrap();
        assert_every_bit_flip_fails(&message, &keyring);
        // Empty plaintext: one empty final frame.
        let message = Encryptor::new(&keyring)
            .suite(suite)
            .encrypt_to_vec(&[])
            .unwrap();
        assert_every_bit_flip_fails(&message, &keyring);
    }
}

#[test]
fn random_bit_flips_in_larger_messages_fail() {
    let keyring = keyring();
    let mut rng = Rng::new(7);
    for i in 0..40 {
        let len = rng.below(20_000) as usize;
        let data = rng.bytes(len);
        let message = Encryptor::new(&keyring)
            .suite(SUITES[i % 2])
            .frame_length(1 + rng.below(5000) as u32)
            .encrypt_to_vec(&data)
            .unwrap();
        for _ in 0..25 {
            let mut m = message.clone();
            let at = rng.below(m.len() as u64) as usize;
            m[at] ^= 1 << rng.below(8);
            assert!(
                Decryptor::new(&keyring).decrypt_to_vec(&m).is_err(),
                "case {i}, byte {at}"
            );
        }
    }
}

#[test]
fn truncation_at_every_length_fails_and_never_releases_the_final_frame() {
    let keyring = keyring();
    let data: Vec<u8> = (0..100u8).collect();
    for suite in SUITES {
        let message = Encryptor::new(&keyring)
            .suite(suite)
            .frame_length(32)
            .encrypt_to_vec(&data)
            .unwrap();
        for cut in 0..message.len() {
            let mut out = Vec::new();
            let r = Decryptor::new(&keyring).decrypt(&message[..cut], &mut out);
            assert!(matches!(r, Err(Error::Truncated(_))), "cut at {cut}: {r:?}");
            // At most the three full regular frames; never the final 4 bytes.
            assert!(out.len() <= 96 && out == data[..out.len()], "cut at {cut}");
        }
    }
}

#[test]
fn wrong_key_and_multi_keyring() {
    let a = RawAesKeyring::new("ns", "a", &[1u8; 32]).unwrap();
    let b = RawAesKeyring::new("ns", "b", &[2u8; 16]).unwrap();
    let wrong_bits = RawAesKeyring::new("ns", "a", &[3u8; 32]).unwrap();
    let multi = MultiKeyring::new(
        Some(Box::new(RawAesKeyring::new("ns", "a", &[1u8; 32]).unwrap())),
        vec![Box::new(RawAesKeyring::new("ns", "b", &[2u8; 16]).unwrap())],
    )
    .unwrap();
    let message = Encryptor::new(&multi).encrypt_to_vec(b"two keys").unwrap();
    for k in [&a as &dyn Keyring, &b, &multi] {
        let (out, header) = Decryptor::new(k).decrypt_to_vec(&message).unwrap();
        assert_eq!(out, b"two keys");
        assert_eq!(header.encrypted_data_keys().len(), 2);
    }
    let err = Decryptor::new(&wrong_bits)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(
        matches!(err, Error::NoDataKeyDecrypted { count: 2 }),
        "{err:?}"
    );
    let err = Decryptor::new(&a)
        .max_encrypted_data_keys(1)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyEncryptedDataKeys { count: 2, max: 1 }),
        "{err:?}"
    );
    // Error messages never carry key bytes.
    assert!(!format!("{err} {err:?}").contains("0101"));
}

#[test]
fn a_keyring_for_objects_only_passes_on_a_message_in_a_multi_keyring() {
    // The S3 Encryption Client's AES keyring wraps no message keys: inside a multi keyring it
    // finds none of its own (no error) and the next keyring opens the message.
    let raw = RawAesKeyring::new("ns", "a", &[1u8; 32]).unwrap();
    let message = Encryptor::new(&raw)
        .encrypt_to_vec(b"objects only")
        .unwrap();
    let multi = MultiKeyring::new(
        None,
        vec![
            Box::new(s3_crypto::s3ec::AesKeyring::new(&[1u8; 32]).unwrap()),
            Box::new(RawAesKeyring::new("ns", "a", &[1u8; 32]).unwrap()),
        ],
    )
    .unwrap();
    let (out, _) = Decryptor::new(&multi).decrypt_to_vec(&message).unwrap();
    assert_eq!(out, b"objects only");
    // With no keyring that opens it, the failure is the usual one, not the object keyring's.
    let objects_only = MultiKeyring::new(
        None,
        vec![
            Box::new(s3_crypto::s3ec::AesKeyring::new(&[1u8; 32]).unwrap()),
            Box::new(RawAesKeyring::new("ns", "a", &[2u8; 32]).unwrap()),
        ],
    )
    .unwrap();
    let e = Decryptor::new(&objects_only)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(matches!(e, Error::NoDataKeyDecrypted { count: 1 }), "{e:?}");
}

#[test]
fn a_raw_aes_key_of_a_wrong_length_is_named_as_such() {
    let e = RawAesKeyring::new("ns", "a", &[1u8; 20]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: a raw AES wrapping key is 16, 24 or 32 bytes, not 20"
    );
}

#[test]
fn refuses_what_it_must_not_write() {
    let k = keyring();
    let r = Encryptor::new(&k)
        .suite(AlgorithmSuite::Aes256GcmIv12Tag16HkdfSha256)
        .encrypt_to_vec(b"x");
    assert!(matches!(r, Err(Error::UnsupportedAlgorithmSuite(0x0178))));
    let r = Encryptor::new(&k).frame_length(0).encrypt_to_vec(b"x");
    assert!(matches!(r, Err(Error::InvalidConfiguration(_))));
    let ctx: EncryptionContext = [("aws-crypto-public-key", "x")].into_iter().collect();
    let r = Encryptor::new(&k)
        .encryption_context(ctx)
        .encrypt_to_vec(b"x");
    assert!(matches!(r, Err(Error::InvalidEncryptionContext(_))));
    assert!(RawAesKeyring::new("aws-kms", "x", &[0; 32]).is_err());
    assert!(RawAesKeyring::new("ns", "x", &[0; 20]).is_err());
}

#[test]
fn header_limits_apply_before_keys_are_used() {
    // A frame length above the buffering limit is refused before any frame is read.
    let k = keyring();
    let message = Encryptor::new(&k)
        .frame_length(1 << 20)
        .encrypt_to_vec(b"abc")
        .unwrap();
    let err = Decryptor::new(&k)
        .max_buffered_content(1 << 16)
        .decrypt_to_vec(&message)
        .unwrap_err();
    assert!(matches!(err, Error::ContentTooLarge { .. }), "{err:?}");
}

#[test]
fn random_multi_byte_corruption_never_panics_or_passes() {
    let keyring = keyring();
    let mut rng = Rng::new(11);
    let message = Encryptor::new(&keyring)
        .suite(SUITES[1])
        .frame_length(64)
        .encrypt_to_vec(&rng.bytes(300))
        .unwrap();
    for _ in 0..2000 {
        let mut m = message.clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(m.len() as u64) as usize;
            m[at] = rng.next() as u8;
        }
        if m == message {
            continue;
        }
        let cut = if rng.below(4) == 0 {
            rng.below(m.len() as u64) as usize
        } else {
            m.len()
        };
        assert!(Decryptor::new(&keyring).decrypt_to_vec(&m[..cut]).is_err());
    }
    for _ in 0..500 {
        let len = rng.below(400) as usize;
        let garbage = rng.bytes(len);
        assert!(Decryptor::new(&keyring).decrypt_to_vec(&garbage).is_err());
    }
}
