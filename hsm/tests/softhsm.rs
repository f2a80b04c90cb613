//! `HsmRootKey` against a real SoftHSMv2 token, a fresh one per test in a temporary directory.
//!
//! Needs SoftHSMv2 (`scripts/softhsm.sh install`); the token fixture is `common::Token`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use hsm::{
    Capabilities, HsmConfig, HsmError, HsmRootKey, IvSource, PinSource, TokenKeys, TokenSelector,
};
use kms_core::RootOfTrust;

mod common;
use common::Token;

impl Token {
    fn config(&self) -> HsmConfig {
        HsmConfig::new(
            &self.module,
            TokenSelector::Label(self.label.clone()),
            PinSource::File(self.pin_file()),
        )
        .with_key_label("root-under-test")
    }

    /// Runs `f` with a raw logged-in session of a module instance of its own (no `hsm` code), then
    /// finalizes it. Call only while no `HsmRootKey` is alive.
    fn raw<R>(&self, f: impl FnOnce(&cryptoki::session::Session) -> R) -> R {
        let ctx = Pkcs11::new(&self.module).unwrap();
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == self.label)
            .unwrap();
        let r = {
            let session = ctx.open_rw_session(slot).unwrap();
            session
                .login(UserType::User, Some(&AuthPin::from(self.pin.as_str())))
                .unwrap();
            f(&session)
        };
        ctx.finalize().unwrap();
        r
    }
}

fn find_root(session: &cryptoki::session::Session) -> Vec<cryptoki::object::ObjectHandle> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"root-under-test".to_vec()),
        ])
        .unwrap()
}

#[test]
fn wrap_round_trips_with_the_documented_layout() {
    let Some(token) = Token::new() else { return };
    let root = HsmRootKey::open(token.config()).unwrap();
    let secret = [0x5au8; 32];
    let w1 = root.wrap(b"aad-1", &secret).unwrap();
    let w2 = root.wrap(b"aad-1", &secret).unwrap();
    assert_eq!(w1.len(), 1 + hsm::IV_LEN + secret.len() + hsm::TAG_LEN);
    assert_eq!(w1[0], hsm::WRAP_FORMAT);
    assert_ne!(w1[1..13], w2[1..13], "every wrap gets a fresh IV");
    assert!(!w1.windows(8).any(|w| w == [0x5a; 8]), "secret in clear");
    assert_eq!(&root.unwrap(b"aad-1", &w1).unwrap()[..], &secret);
    assert_eq!(&root.unwrap(b"aad-1", &w2).unwrap()[..], &secret);
    // Empty secrets and empty AAD are fine too.
    let w3 = root.wrap(b"", b"").unwrap();
    assert!(root.unwrap(b"", &w3).unwrap().is_empty());
    assert!(root.describe().contains("root-under-test"));
}

#[test]
fn tampering_anywhere_is_refused_and_the_pool_keeps_working() {
    let Some(token) = Token::new() else { return };
    let root = HsmRootKey::open(token.config()).unwrap();
    let w = root
        .seal(b"aad", b"thirty-two bytes of key material")
        .unwrap();
    for i in 1..w.len() {
        let mut t = w.clone();
        t[i] ^= 0x01;
        assert_eq!(
            root.open_sealed(b"aad", &t).unwrap_err(),
            HsmError::TagMismatch,
            "flipped byte {i}"
        );
    }
    let mut t = w.clone();
    t[0] = 1; // the software root key's format
    assert!(matches!(
        root.open_sealed(b"aad", &t),
        Err(HsmError::Malformed(_))
    ));
    assert!(matches!(
        root.open_sealed(b"aad", &w[..20]),
        Err(HsmError::Malformed(_))
    ));
    let mut longer = w.clone();
    longer.push(0);
    assert_eq!(
        root.open_sealed(b"aad", &longer).unwrap_err(),
        HsmError::TagMismatch
    );
    // Through the trait, a failure is KMSInternalException and says nothing secret.
    let e = root.unwrap(b"aad", &longer).unwrap_err();
    assert_eq!(e.aws_name(), "KMSInternalException");
    assert_eq!(
        e.to_string(),
        "A wrapped secret does not open under the HSM root key."
    );
    // Failed sessions were dropped, not poisoned: the original still opens, and the module was
    // never re-initialised for a tag mismatch.
    assert_eq!(
        &root.open_sealed(b"aad", &w).unwrap()[..],
        b"thirty-two bytes of key material"
    );
    assert_eq!(root.session_stats().1, 0);
}

#[test]
fn wrong_aad_is_refused() {
    let Some(token) = Token::new() else { return };
    let root = HsmRootKey::open(token.config()).unwrap();
    let w = root.wrap(b"key-1/v1", b"secret").unwrap();
    assert_eq!(
        root.open_sealed(b"key-1/v2", &w).unwrap_err(),
        HsmError::TagMismatch
    );
    assert_eq!(
        root.open_sealed(b"", &w).unwrap_err(),
        HsmError::TagMismatch
    );
    assert_eq!(&root.unwrap(b"key-1/v1", &w).unwrap()[..], b"secret");
}

#[test]
fn wrong_pin_is_a_clear_error_and_touches_nothing() {
    let Some(token) = Token::new() else { return };
    std::fs::write(token.pin_file(), "not-the-pin\n").unwrap();
    let e = HsmRootKey::open(token.config()).unwrap_err();
    assert_eq!(e, HsmError::Login("CKR_PIN_INCORRECT"));
    let msg = e.to_string();
    assert!(msg.contains("refused the user PIN"), "{msg}");
    assert!(!msg.contains("not-the-pin"), "{msg}");
    // No key was created by the failed start.
    assert_eq!(token.raw(|s| find_root(s).len()), 0);
    // A missing PIN file is its own error.
    std::fs::remove_file(token.pin_file()).unwrap();
    let e = HsmRootKey::open(token.config()).unwrap_err();
    assert!(matches!(e, HsmError::Pin(_)), "{e:?}");
}

#[test]
fn missing_token_and_missing_key_are_reported() {
    let Some(token) = Token::new() else { return };
    let mut config = token.config();
    config.token = TokenSelector::Label("no-such-token".into());
    assert_eq!(
        HsmRootKey::open(config).unwrap_err(),
        HsmError::TokenNotFound("token labelled 'no-such-token'".into())
    );
    let e = HsmRootKey::open(token.config().with_create_key(false)).unwrap_err();
    assert_eq!(e, HsmError::KeyNotFound("root-under-test".into()));
    let mut config = token.config();
    config.module = token.dir.path().join("missing.so");
    assert!(matches!(
        HsmRootKey::open(config),
        Err(HsmError::Module { .. })
    ));
}

#[test]
fn the_root_key_is_not_extractable() {
    let Some(token) = Token::new() else { return };
    {
        let root = HsmRootKey::open(token.config()).unwrap();
        let a = root.key_attributes().unwrap();
        assert!(!a.extractable);
        assert!(a.sensitive);
        assert!(a.never_extractable);
        assert!(a.always_sensitive);
        assert!(a.token);
        assert_eq!(a.value_len, 32);
        assert!(!a.value_readable);
    }
    // Independently of the hsm crate: a session of our own asks the token directly.
    token.raw(|s| {
        let keys = find_root(s);
        assert_eq!(keys.len(), 1);
        let key = keys[0];
        let attrs = s
            .get_attributes(key, &[AttributeType::Extractable, AttributeType::Sensitive])
            .unwrap();
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        let info = s.get_attribute_info(key, &[AttributeType::Value]).unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{info:?}"
        );
        let value = s.get_attributes(key, &[AttributeType::Value]);
        assert!(
            !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
            "CKA_VALUE came back"
        );
        // Nor can it be made extractable, or wrapped out.
        assert!(s
            .update_attributes(key, &[Attribute::Extractable(true)])
            .is_err());
        assert!(s
            .update_attributes(key, &[Attribute::Sensitive(false)])
            .is_err());
        let wrapping = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Token(false),
                ],
            )
            .unwrap();
        assert!(s
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key)
            .is_err());
    });
}

#[test]
fn an_extractable_key_with_the_label_is_refused() {
    let Some(token) = Token::new() else { return };
    token.raw(|s| {
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"root-under-test".to_vec()),
            ],
        )
        .unwrap();
    });
    let e = HsmRootKey::open(token.config()).unwrap_err();
    assert!(
        matches!(&e, HsmError::KeyNotFit { reason, .. } if reason.contains("extractable")),
        "{e:?}"
    );
}

#[test]
fn a_restart_keeps_the_key() {
    let Some(token) = Token::new() else { return };
    let wrapped = {
        let root = HsmRootKey::open(token.config()).unwrap();
        root.wrap(b"aad", b"survives restarts").unwrap()
    }; // dropped: module finalized
       // A new module instance reads the token from disk again.
    let root = HsmRootKey::open(token.config().with_create_key(false)).unwrap();
    assert_eq!(
        &root.unwrap(b"aad", &wrapped).unwrap()[..],
        b"survives restarts"
    );
    drop(root);
    // And starting with create_key made no second key.
    let root = HsmRootKey::open(token.config()).unwrap();
    assert_eq!(
        &root.unwrap(b"aad", &wrapped).unwrap()[..],
        b"survives restarts"
    );
    drop(root);
    assert_eq!(token.raw(|s| find_root(s).len()), 1);
}

#[test]
fn many_threads_share_a_bounded_pool() {
    let Some(token) = Token::new() else { return };
    let root = Arc::new(HsmRootKey::open(token.config().with_max_sessions(3)).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    let aad = [t, i];
                    let secret = [t ^ i; 32];
                    let w = root.wrap(&aad, &secret).unwrap();
                    assert_eq!(&root.unwrap(&aad, &w).unwrap()[..], &secret);
                    if i % 10 == 0 {
                        // A failure in one thread does not disturb the others.
                        assert!(root.unwrap(&[t, i, 0], &w).is_err());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (open, reinits) = root.session_stats();
    assert!((1..=3).contains(&open), "{open} sessions open");
    assert_eq!(reinits, 0);
}

#[test]
fn a_token_that_does_not_generate_the_iv_is_caught() {
    let Some(token) = Token::new() else { return };
    // Tell envelope that SoftHSM generates IVs (it does not): the all-zero IV must be refused
    // rather than used.
    let config = token
        .config()
        .with_capabilities(Capabilities::softhsm2().with_iv_source(IvSource::Token));
    // The start-up self-test seals a probe, so the server never starts with it.
    let e = HsmRootKey::open(config).unwrap_err();
    assert!(
        matches!(&e, HsmError::Config(m) if m.contains("did not generate a GCM IV")
            && m.contains("iv=token") && m.contains("--hsm-capabilities")),
        "{e:?}"
    );
}

#[test]
fn a_gcm_structure_the_token_does_not_use_fails_at_start_up() {
    let Some(token) = Token::new() else { return };
    // SoftHSMv2 is built with the later CK_GCM_PARAMS (with ulIvBits): handing it the older,
    // shorter structure must fail the start, naming the capabilities, and not corrupt anything.
    let caps = Capabilities::softhsm2().apply("gcm=no-iv-bits").unwrap();
    let e = HsmRootKey::open(token.config().with_capabilities(caps)).unwrap_err();
    assert!(
        matches!(&e, HsmError::Config(m) if m.contains("gcm=no-iv-bits")
            && m.contains("C_EncryptInit")),
        "{e:?}"
    );
    // The standard structure still works on the same token afterwards.
    let root = HsmRootKey::open(token.config()).unwrap();
    let w = root.seal(b"aad", b"secret").unwrap();
    assert_eq!(&root.open_sealed(b"aad", &w).unwrap()[..], b"secret");
}

#[test]
fn debug_output_names_no_pin() {
    let Some(token) = Token::new() else { return };
    let root = HsmRootKey::open(token.config()).unwrap();
    let dbg = format!("{root:?} {:?}", token.config());
    assert!(!dbg.contains(&token.pin), "{dbg}");
    assert!(dbg.contains("user.pin"), "{dbg}");
}

#[test]
fn the_module_is_reinitialised_after_the_token_goes_away() {
    let Some(token) = Token::new() else { return };
    let root = HsmRootKey::open(token.config()).unwrap();
    let w = root.wrap(b"aad", b"secret").unwrap();
    assert_eq!(root.session_stats().1, 0);
    token.set_present(false);
    // The call fails (the retry after re-initialisation cannot find the token either)…
    let gone = root.seal(b"aad", b"secret").unwrap_err();
    assert!(
        matches!(
            gone,
            HsmError::Module { .. } | HsmError::Unavailable { .. } | HsmError::TokenNotFound(_)
        ),
        "{gone:?}"
    );
    assert!(root.session_stats().1 >= 1, "module was not re-initialised");
    // …and keeps failing while the token is away, without panicking or hanging; on the wire it is
    // KMSInternalException without the module's path or return codes.
    assert!(root.open_sealed(b"aad", &w).is_err());
    let e = root.unwrap(b"aad", &w).unwrap_err();
    assert_eq!(e.aws_name(), "KMSInternalException");
    assert!(!e.to_string().contains("softhsm"), "{e}");
    token.set_present(true);
    // Back: the next call initialises the module again, logs in and finds the key.
    assert_eq!(&root.unwrap(b"aad", &w).unwrap()[..], b"secret");
    let w2 = root.wrap(b"aad", b"after").unwrap();
    assert_eq!(&root.unwrap(b"aad", &w2).unwrap()[..], b"after");
}

#[test]
fn threads_ride_through_the_token_going_away_and_back() {
    let Some(token) = Token::new() else { return };
    let root = Arc::new(HsmRootKey::open(token.config().with_max_sessions(3)).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match root.wrap(&[t], &[t; 32]) {
                        Ok(w) => {
                            // Whatever was wrapped opens, before, during or after the outage.
                            if let Ok(p) = root.unwrap(&[t], &w) {
                                assert_eq!(&p[..], &[t; 32]);
                            }
                            ok += 1;
                        }
                        Err(_) => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    token.outage_under_traffic();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.join().unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
    let (open, reinits) = root.session_stats();
    assert!(reinits >= 1 && open <= 3, "open {open}, reinits {reinits}");
    // After the outage every thread's calls work again.
    let w = root.wrap(b"after", b"outage").unwrap();
    assert_eq!(&root.unwrap(b"after", &w).unwrap()[..], b"outage");
}

const ARN_1: &str = "arn:aws:kms:us-east-1:111122223333:key/0b3f6e8c-3a5e-4e0f-9d3c-1f2a3b4c5d6e";
const ARN_2: &str = "arn:aws:kms:us-east-1:111122223333:key/7c9d0e1f-2a3b-4c5d-8e9f-0a1b2c3d4e5f";

fn token_keys(token: &Token) -> TokenKeys {
    TokenKeys::open(token.config()).unwrap()
}

#[test]
fn token_keys_encrypt_inside_the_token_per_label() {
    let Some(token) = Token::new() else { return };
    let keys = token_keys(&token);
    assert!(!keys.contains(ARN_1).unwrap());
    keys.create_key(ARN_1).unwrap();
    keys.create_key(ARN_2).unwrap();
    assert_eq!(
        keys.create_key(ARN_1).unwrap_err(),
        HsmError::KeyExists(ARN_1.into())
    );
    let ct = keys.encrypt(ARN_1, b"ctx", b"data key bytes").unwrap();
    assert_eq!(ct[0], hsm::WRAP_FORMAT);
    assert_eq!(
        &keys.decrypt(ARN_1, b"ctx", &ct).unwrap()[..],
        b"data key bytes"
    );
    // Another key, another AAD, or a changed byte: refused.
    assert_eq!(
        keys.decrypt(ARN_2, b"ctx", &ct).unwrap_err(),
        HsmError::TagMismatch
    );
    assert_eq!(
        keys.decrypt(ARN_1, b"other", &ct).unwrap_err(),
        HsmError::TagMismatch
    );
    let mut bad = ct.clone();
    bad[5] ^= 0x80;
    assert_eq!(
        keys.decrypt(ARN_1, b"ctx", &bad).unwrap_err(),
        HsmError::TagMismatch
    );
    assert_eq!(
        keys.encrypt("arn:aws:kms:us-east-1:111122223333:key/none", b"", b"x")
            .unwrap_err(),
        HsmError::KeyNotFound("arn:aws:kms:us-east-1:111122223333:key/none".into())
    );
    let a = keys.key_attributes(ARN_2).unwrap();
    assert!(!a.extractable && a.sensitive && a.token && !a.value_readable);
    assert_eq!(a.value_len, 32);
    drop(keys);
    // Persistent: a new module instance finds both keys by label.
    let keys = token_keys(&token);
    assert_eq!(
        &keys.decrypt(ARN_1, b"ctx", &ct).unwrap()[..],
        b"data key bytes"
    );
    keys.destroy_key(ARN_1).unwrap();
    assert!(!keys.contains(ARN_1).unwrap());
    assert_eq!(
        keys.decrypt(ARN_1, b"ctx", &ct).unwrap_err(),
        HsmError::KeyNotFound(ARN_1.into())
    );
    assert!(keys.contains(ARN_2).unwrap());
    drop(keys);
    token.raw(|s| {
        let found = s
            .find_objects(&[Attribute::Label(ARN_2.as_bytes().to_vec())])
            .unwrap();
        assert_eq!(found.len(), 1);
        let info = s
            .get_attribute_info(found[0], &[AttributeType::Value])
            .unwrap();
        assert!(matches!(info.as_slice(), [AttributeInfo::Sensitive]));
    });
}

#[test]
fn token_key_handles_are_found_again_after_the_token_comes_back() {
    let Some(token) = Token::new() else { return };
    let keys = token_keys(&token);
    keys.create_key(ARN_1).unwrap();
    let ct = keys.encrypt(ARN_1, b"", b"before").unwrap();
    token.set_present(false);
    assert!(keys.encrypt(ARN_1, b"", b"during").is_err());
    token.set_present(true);
    // The module was re-initialised: the cached handle was dropped with it and the key found again.
    assert_eq!(&keys.decrypt(ARN_1, b"", &ct).unwrap()[..], b"before");
    let ct2 = keys.encrypt(ARN_1, b"", b"after").unwrap();
    assert_eq!(&keys.decrypt(ARN_1, b"", &ct2).unwrap()[..], b"after");
}

#[test]
fn two_pools_on_one_module_recover_together() {
    let Some(token) = Token::new() else { return };
    // A second token in the same SoftHSM directory (the same user PIN): the root of trust on one,
    // a custom key store's keys on the other, both through one initialised module.
    token.add_token("second");
    let root = HsmRootKey::open(token.config()).unwrap(); // initialises the module
    let keys = TokenKeys::open(HsmConfig::new(
        &token.module,
        TokenSelector::Label("second".into()),
        PinSource::File(token.pin_file()),
    ))
    .unwrap();
    keys.create_key(ARN_1).unwrap();
    let sealed = keys.encrypt(ARN_1, b"aad", b"store secret").unwrap();
    let wrapped = root.wrap(b"aad", b"root secret").unwrap();

    // Only the pool that did not initialise the module is used during the outage: its failure
    // must reset the module for both (SoftHSMv2 sees a returned token only after C_Initialize).
    token.set_present(false);
    assert!(keys.decrypt(ARN_1, b"aad", &sealed).is_err());
    token.set_present(true);
    assert_eq!(
        &keys.decrypt(ARN_1, b"aad", &sealed).unwrap()[..],
        b"store secret"
    );
    // The root's sessions died with the old module; it sets itself up again on its next call.
    assert_eq!(&root.unwrap(b"aad", &wrapped).unwrap()[..], b"root secret");
    assert!(root.session_stats().1 >= 1 && keys.session_stats().1 >= 1);

    // Traffic on both pools through a second outage: every result is right or an error, nothing
    // hangs, and both work afterwards.
    let root = Arc::new(root);
    let keys = Arc::new(keys);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..2u8 {
        let (root, halt) = (root.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(w) = root.wrap(&[t], &[t; 32]) {
                    if let Ok(p) = root.unwrap(&[t], &w) {
                        assert_eq!(&p[..], &[t; 32]);
                    }
                }
            }
        }));
        let (keys, halt) = (keys.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(c) = keys.encrypt(ARN_1, &[t], &[t; 32]) {
                    if let Ok(p) = keys.decrypt(ARN_1, &[t], &c) {
                        assert_eq!(&p[..], &[t; 32]);
                    }
                }
            }
        }));
    }
    token.outage_under_traffic();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(&root.unwrap(b"aad", &wrapped).unwrap()[..], b"root secret");
    assert_eq!(
        &keys.decrypt(ARN_1, b"aad", &sealed).unwrap()[..],
        b"store secret"
    );
}
