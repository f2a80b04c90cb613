//! The root of trust from the service's side: what each wrapped secret is bound to (its AAD), the
//! check value that tells whether a root is the one a store was made with, wrapping off the async
//! runtime, and re-wrapping everything under a new root.

use std::sync::Arc;

use uuid::Uuid;

use super::grants::{GRANT_TOKEN_KEY, GRANT_TOKEN_KEY_AAD};
use super::Kms;
use crate::error::{KmsError, Result};
use crate::material::{KeyMaterial, RootOfTrust};
use crate::store::{Store, WrappedSecret};

pub(super) const ROOT_CHECK: &str = "root_check";
pub(super) const ROOT_CHECK_AAD: &[u8] = b"envelope/root-check/v1";
pub(super) const ROOT_CHECK_VALUE: &[u8] = b"envelope root key check value";

pub(super) fn material_aad(id: &Uuid, version: u32) -> Vec<u8> {
    let mut aad = b"envelope/key-material/v1".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

pub(super) fn secret_aad(access_key_id: &str) -> Vec<u8> {
    let mut aad = b"envelope/principal-secret/v1".to_vec();
    aad.extend_from_slice(access_key_id.as_bytes());
    aad
}

pub(super) fn password_aad(store_id: &str) -> Vec<u8> {
    let mut aad = b"envelope/key-store-password/v1".to_vec();
    aad.extend_from_slice(store_id.as_bytes());
    aad
}

/// Runs a root-of-trust call on the blocking pool: an HSM-backed root blocks on its token.
pub(super) async fn off_runtime<T: Send + 'static>(
    root: &Arc<dyn RootOfTrust>,
    f: impl FnOnce(&dyn RootOfTrust) -> Result<T> + Send + 'static,
) -> Result<T> {
    let root = root.clone();
    tokio::task::spawn_blocking(move || f(root.as_ref()))
        .await
        .map_err(|_| KmsError::Internal("The root of trust call did not complete.".into()))?
}

impl Kms {
    /// Re-wraps everything `store` holds under the root of trust `from` (key material, principals'
    /// secrets, custom key store passwords, the root check value, the grant token key) under `to`, in one transaction: all or nothing. Run it while
    /// no server uses the store. Returns how many secrets were re-wrapped.
    pub async fn migrate_root(
        store: &Store,
        from: Arc<dyn RootOfTrust>,
        to: Arc<dyn RootOfTrust>,
    ) -> Result<usize> {
        store
            .rewrap_all(&[ROOT_CHECK, GRANT_TOKEN_KEY], |all| async move {
                tokio::task::spawn_blocking(move || {
                    all.iter()
                        .map(|w| {
                            let (aad, wrapped) = match w {
                                WrappedSecret::Material {
                                    key_id,
                                    version,
                                    wrapped,
                                } => (material_aad(key_id, *version), wrapped),
                                WrappedSecret::Principal {
                                    access_key_id,
                                    wrapped,
                                } => (secret_aad(access_key_id), wrapped),
                                WrappedSecret::KeyStorePassword { store_id, wrapped } => {
                                    (password_aad(store_id), wrapped)
                                }
                                WrappedSecret::Meta { name, wrapped }
                                    if name == GRANT_TOKEN_KEY =>
                                {
                                    (GRANT_TOKEN_KEY_AAD.to_vec(), wrapped)
                                }
                                WrappedSecret::Meta { wrapped, .. } => {
                                    (ROOT_CHECK_AAD.to_vec(), wrapped)
                                }
                            };
                            let plain = from.unwrap(&aad, wrapped)?;
                            to.wrap(&aad, &plain)
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .await
                .map_err(|_| KmsError::Internal("The re-wrapping task did not complete.".into()))?
            })
            .await
    }

    pub(super) async fn wrap_material(
        &self,
        id: &Uuid,
        version: u32,
        m: &KeyMaterial,
    ) -> Result<Vec<u8>> {
        let (aad, m) = (material_aad(id, version), m.clone());
        off_runtime(&self.root, move |root| root.wrap(&aad, m.expose())).await
    }
}
