//! Differential: our ESDK decryptor against the message our encryptor wrote. For a fuzzed suite,
//! frame length, encryption context and plaintext, `decrypt(encrypt(x)) == x` on the sequential,
//! parallel and positioned paths, with the context the encryptor was given (plus the public key
//! of a signed suite); and a message one byte shorter never decrypts.
//!
//! Input (`arbitrary::Unstructured`): the suite, the frame length (1 to 70,000), up to three
//! context pairs, then the plaintext.
#![no_main]

use std::io::Cursor;

use envelope_fuzz::{block_on, esdk_keyring};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use s3_crypto::{
    AlgorithmSuite, CommitmentPolicy, Decryptor, EncryptionContext, Encryptor,
    PUBLIC_KEY_CONTEXT_KEY,
};

fn run(mut u: Unstructured<'_>) -> Result<()> {
    let keyring = esdk_keyring();
    let suite = *u.choose(&AlgorithmSuite::ALL)?;
    let frame_length: u32 = u.int_in_range(1..=70_000)?;
    let mut context = EncryptionContext::new();
    for _ in 0..u.int_in_range(0..=3)? {
        context.insert(u.arbitrary::<String>()?, u.arbitrary::<String>()?);
    }
    let plaintext = u.take_rest();
    let enc = Encryptor::new(&keyring)
        .suite(suite)
        .frame_length(frame_length)
        .encryption_context(context.clone());
    let message = match enc.encrypt_to_vec(plaintext) {
        Ok(m) => m,
        Err(e) => {
            // Only the committing suites encrypt; a context the format cannot hold (a key in
            // the reserved `aws-crypto-` namespace, over 64 KiB) is refused as such.
            assert!(
                !suite.is_committing()
                    || matches!(e, s3_crypto::Error::InvalidEncryptionContext(_)),
                "{suite:?}: {e:?}"
            );
            return Ok(());
        }
    };
    assert!(suite.is_committing(), "{suite:?} encrypted");
    let dec =
        Decryptor::new(&keyring).commitment_policy(CommitmentPolicy::RequireEncryptRequireDecrypt);
    let (out, header) = dec.decrypt_to_vec(&message).unwrap();
    assert!(out == plaintext);
    assert_eq!(header.suite(), suite);
    assert_eq!(header.frame_length(), frame_length);
    let mut got = header.encryption_context().clone();
    if suite.is_signed() {
        assert!(got.remove(PUBLIC_KEY_CONTEXT_KEY).is_some());
    }
    assert_eq!(got, context);
    let mut parallel = Vec::new();
    block_on(dec.begin(message.as_slice()))
        .and_then(|m| m.decrypt_to_parallel(&mut parallel, 2))
        .unwrap();
    assert!(parallel == plaintext);
    let mut positioned = Vec::new();
    block_on(dec.begin(Cursor::new(message.as_slice())))
        .and_then(|m| m.decrypt_at_parallel(message.as_slice(), &mut positioned, 2))
        .unwrap();
    assert!(positioned == plaintext);
    assert!(dec.decrypt_to_vec(&message[..message.len() - 1]).is_err());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(Unstructured::new(data));
});
