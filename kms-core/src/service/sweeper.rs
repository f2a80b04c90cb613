//! Scheduled work, run by the server's sweeper: destroying keys whose deletion date has passed (and
//! their keys in a custom key store's token, best effort) and rotating keys whose automatic rotation
//! is due.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::cache::LoadedKey;
use super::custom_key_stores::in_token;
use super::Kms;
use crate::error::Result;
use crate::store::{KeyRow, StoredKeyState};

impl Kms {
    /// Destroys keys whose deletion date is at or before `now` (unix millis) and rotates keys whose
    /// automatic rotation is due. Returns (keys destroyed, keys rotated).
    pub async fn run_due_work(&self, now: i64) -> Result<(usize, usize)> {
        let mut destroyed = 0;
        for id in self.store.keys_due_for_deletion(now).await? {
            if let Some(rec) = self.store.get_key(&id).await? {
                if rec.state == StoredKeyState::PendingDeletion
                    && rec.deletion_date.is_some_and(|d| d <= now)
                    && self.store.destroy_key(&rec).await?
                {
                    self.invalidate(&id);
                    self.destroy_in_token(&rec).await;
                    tracing::info!(key = %self.arn(&id), "key deleted: its material is destroyed");
                    destroyed += 1;
                }
            }
        }
        let mut rotated = 0;
        for id in self.store.keys_due_for_rotation(now).await? {
            match self.rotate(&id, Some(now)).await {
                Ok(true) => rotated += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(key = %self.arn(&id), error = %e, "automatic rotation failed")
                }
            }
        }
        Ok((destroyed, rotated))
    }

    /// After a key in a custom key store is deleted, destroys its key in the token, if this node can
    /// reach the token now (best effort, as AWS: otherwise the object stays in the token, labelled
    /// with the deleted key's ARN, for an operator to remove).
    async fn destroy_in_token(&self, rec: &KeyRow) {
        let Some(store_id) = &rec.custom_key_store_id else {
            return;
        };
        let label = self.arn(&rec.id);
        let loaded = LoadedKey {
            record: rec.clone(),
            arn: label.clone(),
            materials: Vec::new(),
            wrapped: Vec::new(),
            loaded: Instant::now(),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        };
        let result = match self.token_of(&loaded).await {
            Ok(token) => {
                let l = label.clone();
                in_token(token, move |t| t.destroy_key(&l)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(key = %label, store = %store_id, error = %e,
                "the deleted key's material is still in the token; remove the object labelled with its ARN");
        }
    }
}
