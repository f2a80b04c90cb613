//! The byte layout this crate writes, checked field by field without the crate's parser, and the
//! key schedule recomputed independently (a keyring with a known data key).

use aws_lc_rs::{aead, hkdf};
use s3_crypto::{
    AlgorithmSuite, DataKey, DecryptionMaterials, Decryptor, EncryptedDataKey, EncryptionContext,
    EncryptionMaterials, Encryptor, Keyring, KeyringFuture, RawAesKeyring,
};

/// A keyring with a fixed data key, "wrapped" as itself: for tests only.
struct FixedKeyring([u8; 32]);

impl Keyring for FixedKeyring {
    fn on_encrypt<'a>(
        &'a self,
        mut m: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(async move {
            m.data_key = Some(DataKey::new(self.0.to_vec()));
            m.encrypted_data_keys.push(EncryptedDataKey {
                provider_id: "fixed".into(),
                provider_info: b"info".to_vec(),
                ciphertext: b"not-a-secret".to_vec(),
            });
            Ok(m)
        })
    }

    fn on_decrypt<'a>(
        &'a self,
        mut m: DecryptionMaterials,
        edks: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(async move {
            if edks.iter().any(|e| e.provider_id == "fixed") {
                m.data_key = Some(DataKey::new(self.0.to_vec()));
            }
            Ok(m)
        })
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (a, b) = buf.split_at(n);
    *buf = b;
    a
}

#[test]
fn raw_aes_edk_layout() {
    let keyring = RawAesKeyring::new("ns", "nm", &[4u8; 32]).unwrap();
    let ctx: EncryptionContext = [("k", "v")].into_iter().collect();
    let m = Encryptor::new(&keyring)
        .encryption_context(ctx)
        .frame_length(4)
        .encrypt_to_vec(b"123456789")
        .unwrap();
    let mut b = &m[..];
    assert_eq!(take(&mut b, 3), [0x02, 0x04, 0x78]);
    take(&mut b, 32);
    assert_eq!(take(&mut b, 2), [0, 8]);
    assert_eq!(take(&mut b, 8), b"\x00\x01\x00\x01k\x00\x01v");
    assert_eq!(take(&mut b, 2), [0, 1]);
    assert_eq!(take(&mut b, 4), b"\x00\x02ns");
    assert_eq!(take(&mut b, 2), [0, 22]);
    assert_eq!(take(&mut b, 10), b"nm\x00\x00\x00\x80\x00\x00\x00\x0c");
    take(&mut b, 12); // random wrapping IV
    assert_eq!(take(&mut b, 2), [0, 48]);
    take(&mut b, 48); // wrapped data key and tag
    assert_eq!(take(&mut b, 5), [0x02, 0, 0, 0, 4]);
    take(&mut b, 32 + 16); // commitment, header tag
    for seq in 1u8..=2 {
        assert_eq!(take(&mut b, 4), [0, 0, 0, seq]);
        assert_eq!(take(&mut b, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, seq]);
        take(&mut b, 4 + 16);
    }
    assert_eq!(take(&mut b, 8), [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3]);
    assert_eq!(take(&mut b, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(take(&mut b, 4), [0, 0, 0, 1]);
    take(&mut b, 1 + 16);
    assert!(b.is_empty(), "no footer for an unsigned suite");
}

#[test]
fn key_schedule_recomputed_independently() {
    let data_key = [0x42u8; 32];
    let keyring = FixedKeyring(data_key);
    // Exact multiple of the frame length: two regular frames and an empty final frame.
    let m = Encryptor::new(&keyring)
        .frame_length(8)
        .encrypt_to_vec(b"abcdefghABCDEFGH")
        .unwrap();
    let message_id = &m[3..35];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(&data_key);
    let mut commit = [0u8; 32];
    prk.expand(&[b"COMMITKEY"], Len(32))
        .unwrap()
        .fill(&mut commit)
        .unwrap();
    let mut key = [0u8; 32];
    prk.expand(&[&[0x04, 0x78], b"DERIVEKEY"], Len(32))
        .unwrap()
        .fill(&mut key)
        .unwrap();
    // Header: 3 + 32 + 2 (empty context) + 2 + EDK (2+5 + 2+4 + 2+12) + 1 + 4, then commitment, tag.
    let body_end = 3 + 32 + 2 + 2 + 27 + 1 + 4 + 32;
    assert_eq!(&m[body_end - 32..body_end], &commit);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &key).unwrap());
    let mut tag = m[body_end..body_end + 16].to_vec();
    key.open_in_place(
        aead::Nonce::assume_unique_for_key([0; 12]),
        aead::Aad::from(&m[..body_end]),
        &mut tag,
    )
    .expect("header tag");
    // Frames 1 and 2: AAD = message id ‖ "AWSKMSEncryptionClient Frame" ‖ u32 seq ‖ u64 8.
    let f1 = body_end + 16;
    for (seq, want) in [(1u32, b"abcdefgh"), (2, b"ABCDEFGH")] {
        let at = f1 + (seq as usize - 1) * (4 + 12 + 8 + 16);
        assert_eq!(&m[at..at + 4], seq.to_be_bytes());
        let mut aad = message_id.to_vec();
        aad.extend_from_slice(b"AWSKMSEncryptionClient Frame");
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.extend_from_slice(&8u64.to_be_bytes());
        let mut ct = m[at + 16..at + 16 + 8 + 16].to_vec();
        let pt = key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&m[at + 4..at + 16]).unwrap(),
                aead::Aad::from(&aad),
                &mut ct,
            )
            .expect("regular frame");
        assert_eq!(pt, want);
    }
    // Final frame: empty (as the AWS Encryption SDKs end an exact multiple), the final-frame AAD.
    let f3 = f1 + 2 * (4 + 12 + 8 + 16);
    assert_eq!(&m[f3..f3 + 8], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3]);
    assert_eq!(&m[f3 + 20..f3 + 24], [0, 0, 0, 0]);
    let mut aad = message_id.to_vec();
    aad.extend_from_slice(b"AWSKMSEncryptionClient Final Frame");
    aad.extend_from_slice(&3u32.to_be_bytes());
    aad.extend_from_slice(&0u64.to_be_bytes());
    let mut tag = m[f3 + 24..].to_vec();
    assert_eq!(tag.len(), 16);
    let pt = key
        .open_in_place(
            aead::Nonce::try_assume_unique_for_key(&m[f3 + 8..f3 + 20]).unwrap(),
            aead::Aad::from(&aad),
            &mut tag,
        )
        .expect("final frame");
    assert!(pt.is_empty());
    // And the crate reads it back through a user-defined keyring.
    let (out, _) = Decryptor::new(&keyring).decrypt_to_vec(&m).unwrap();
    assert_eq!(out, b"abcdefghABCDEFGH");
}

#[test]
fn signed_suite_carries_compressed_p384_key() {
    let keyring = FixedKeyring([1; 32]);
    let m = Encryptor::new(&keyring)
        .suite(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .encrypt_to_vec(b"x")
        .unwrap();
    let (_, header) = Decryptor::new(&keyring).decrypt_to_vec(&m).unwrap();
    let key = header
        .encryption_context()
        .get("aws-crypto-public-key")
        .unwrap();
    use base64::Engine as _;
    let point = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(point.len(), 49, "SEC 1 compressed P-384 point");
    assert!(point[0] == 2 || point[0] == 3);
    // Footer: u16 length 103 (the ESDK's canonical DER length for P-384) and the signature.
    let footer = &m[m.len() - 105..];
    assert_eq!(&footer[..2], [0, 103]);
    assert_eq!(footer[2], 0x30, "DER SEQUENCE");
}

/// Frames can be sealed and opened from several threads, and the async steps can run on a
/// multi-threaded runtime.
#[test]
fn parallel_and_async_friendly_types() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let keyring = FixedKeyring([5; 32]);
    let encryptor = Encryptor::new(&keyring);
    let begin = encryptor.begin();
    send(&begin);
    let session = futures_lite_block_on(begin).unwrap();
    send_sync(session.frame_key());
    let decryptor = Decryptor::new(&keyring);
    send(&decryptor.begin(&b""[..]));
    let multi: Box<dyn Keyring> = Box::new(keyring);
    send_sync(&multi);
}

/// The crate's own executor is private; a test-local one keeps this file dependency-free.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
