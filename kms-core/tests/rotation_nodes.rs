//! Rotation with several nodes on one store (SQLite and, when ENVELOPE_TEST_POSTGRES_URL is set,
//! PostgreSQL): a ciphertext under a version another node made decrypts at once; two sweepers rotate
//! a due key once; a sweep racing DisableKeyRotation never rotates a key after the disable answered,
//! nor later. Each failed before rotation read the key's version and due date in the same
//! compare-and-swap as its write (and before a decrypt reloaded a key whose version it lacked).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::sync::Arc;

use kms_core::api::*;
use kms_core::{KeyMaterial, Kms, KmsConfig, SoftwareRootKey, Store};

mod common;
use common::{fixture, Fixture};

const DAY_MS: i64 = 86_400_000;
const KEYS: usize = 24;

async fn node(f: &Fixture) -> Kms {
    let root = Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[7; 32]).unwrap(),
    ));
    Kms::open(
        Store::connect(&f.url).await.unwrap(),
        root,
        KmsConfig::default(),
    )
    .await
    .unwrap()
}

fn kid(id: &str) -> KeyIdRequest {
    KeyIdRequest {
        key_id: Some(id.into()),
    }
}

async fn keys_rotating_yearly(kms: &Kms, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = kms
            .create_key(CreateKeyRequest::default())
            .await
            .unwrap()
            .key_metadata
            .key_id;
        kms.enable_key_rotation(EnableKeyRotationRequest {
            key_id: Some(id.clone()),
            rotation_period_in_days: Some(365),
        })
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

async fn rotations(kms: &Kms, id: &str) -> usize {
    kms.list_key_rotations(ListKeyRotationsRequest {
        key_id: Some(id.into()),
        limit: Some(1000),
        marker: None,
    })
    .await
    .unwrap()
    .rotations
    .len()
}

async fn rotated_elsewhere_decrypts_here_at_once(f: &Fixture) {
    let (a, b) = (node(f).await, node(f).await);
    let id = a
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_metadata
        .key_id;
    let encrypt = |text: &'static [u8]| {
        a.encrypt(EncryptRequest {
            key_id: Some(id.clone()),
            plaintext: Some(text.into()),
            ..Default::default()
        })
    };
    let decrypt_on_b = |blob: Vec<u8>| {
        b.decrypt(DecryptRequest {
            ciphertext_blob: Some(blob),
            ..Default::default()
        })
    };
    // b caches the key at version 1.
    let first = encrypt(b"one").await.unwrap().ciphertext_blob;
    assert_eq!(&decrypt_on_b(first).await.unwrap().plaintext[..], b"one");
    a.rotate_key_on_demand(kid(&id)).await.unwrap();
    let second = encrypt(b"two").await.unwrap().ciphertext_blob;
    // Within b's cache TTL, and still answered.
    assert_eq!(&decrypt_on_b(second).await.unwrap().plaintext[..], b"two");
}

async fn two_sweepers_rotate_a_due_key_once(f: &Fixture) {
    let (a, b) = (node(f).await, node(f).await);
    let ids = keys_rotating_yearly(&a, KEYS).await;
    let later = kms_core::now_millis() + 366 * DAY_MS;
    let (ra, rb) = tokio::join!(a.run_due_work(later), b.run_due_work(later));
    let (ra, rb) = (ra.unwrap().1, rb.unwrap().1);
    assert_eq!(ra + rb, KEYS, "rotations the two sweepers report");
    for id in &ids {
        assert_eq!(rotations(&a, id).await, 1, "key {id}");
    }
}

async fn a_sweep_racing_disable_key_rotation_leaves_disabled_keys_alone(f: &Fixture) {
    let (sweeper, admin) = (node(f).await, node(f).await);
    let ids = keys_rotating_yearly(&admin, KEYS).await;
    let later = kms_core::now_millis() + 366 * DAY_MS;
    let disable = async {
        // From the last key, as the sweep goes from the first.
        for id in ids.iter().rev() {
            admin.disable_key_rotation(kid(id)).await.unwrap();
        }
    };
    let (swept, ()) = tokio::join!(sweeper.run_due_work(later), disable);
    let rotated = swept.unwrap().1;
    let before: Vec<usize> = rotation_counts(&admin, &ids).await;
    assert_eq!(before.iter().sum::<usize>(), rotated);
    assert!(before.iter().all(|n| *n <= 1), "{before:?}");
    // A disabled key never rotates again: a year and more later, nothing is due.
    let (_, again) = sweeper.run_due_work(later + 400 * DAY_MS).await.unwrap();
    assert_eq!(again, 0, "keys with rotation disabled rotated later");
    assert_eq!(rotation_counts(&admin, &ids).await, before);
    for id in &ids {
        let st = admin.get_key_rotation_status(kid(id)).await.unwrap();
        assert!(!st.key_rotation_enabled && st.next_rotation_date.is_none());
    }
}

async fn a_disabled_key_rotates_when_enabled_again(f: &Fixture) {
    let kms = node(f).await;
    let id = keys_rotating_yearly(&kms, 1).await.remove(0);
    kms.disable_key(kid(&id)).await.unwrap();
    let later = kms_core::now_millis() + 366 * DAY_MS;
    assert_eq!(
        kms.run_due_work(later).await.unwrap().1,
        0,
        "a disabled key"
    );
    kms.enable_key(kid(&id)).await.unwrap();
    assert_eq!(kms.run_due_work(later).await.unwrap().1, 1, "enabled again");
    assert_eq!(rotations(&kms, &id).await, 1);
}

async fn rotation_counts(kms: &Kms, ids: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for id in ids {
        out.push(rotations(kms, id).await);
    }
    out
}

macro_rules! on_both_stores {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(&super::fixture("sqlite").await.unwrap()).await; } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { if let Some(f) = super::fixture("postgres").await { super::$name(&f).await; } } )* }
    };
}

on_both_stores!(
    rotated_elsewhere_decrypts_here_at_once,
    two_sweepers_rotate_a_due_key_once,
    a_sweep_racing_disable_key_rotation_leaves_disabled_keys_alone,
    a_disabled_key_rotates_when_enabled_again
);
