//! Rotation: EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand and
//! ListKeyRotations. Rotating adds a material version; old versions stay, so every ciphertext ever
//! returned still decrypts.

use uuid::Uuid;

use super::keys::{check_usable, refuse_for_custom_key_store};
use super::validate::{check_range, decode_marker, page, page_limit};
use super::{secs, Kms, DAY_MS};
use crate::api::*;
use crate::error::{KmsError, Result};
use crate::material::KeyMaterial;
use crate::now_millis;
use crate::store::{KeyRow, MaterialRow, StoredKeyState};

/// At most this many on-demand rotations per key (AWS's quota, "not adjustable"; it was 10 until
/// AWS raised it).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 25;

impl Kms {
    /// EnableKeyRotation: every 90 to 2560 days, 365 by default.
    pub async fn enable_key_rotation(&self, req: EnableKeyRotationRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let days = req.rotation_period_in_days.unwrap_or(365);
        check_range(days, 90, 2560, "rotationPeriodInDays")?;
        let now = now_millis();
        let rotatable = |k: &KeyRow, arn: &str| {
            refuse_for_custom_key_store(k, arn, "automatic key rotation")?;
            check_usable(k, arn)
        };
        self.change_key(&id, rotatable, |k| {
            k.rotation_period_days = Some(days);
            k.next_rotation = Some(now + days * DAY_MS);
            true
        })
        .await
    }

    /// DisableKeyRotation.
    pub async fn disable_key_rotation(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        self.change_key(&id, check_usable, |k| {
            let change = k.rotation_period_days.is_some();
            k.rotation_period_days = None;
            k.next_rotation = None;
            change
        })
        .await
    }

    /// GetKeyRotationStatus.
    pub async fn get_key_rotation_status(
        &self,
        req: KeyIdRequest,
    ) -> Result<KeyRotationStatusResponse> {
        let id = self.key_named(req.key_id).await?;
        let k = self.record(&id).await?;
        // AWS: "While a KMS key is pending deletion, its key rotation status is false"; the period
        // is kept, so CancelKeyDeletion brings the status back.
        let enabled = k.rotation_period_days.is_some()
            && k.state != crate::store::StoredKeyState::PendingDeletion;
        Ok(KeyRotationStatusResponse {
            key_rotation_enabled: enabled,
            key_id: self.arn(&id),
            rotation_period_in_days: k.rotation_period_days.filter(|_| enabled),
            next_rotation_date: k.next_rotation.filter(|_| enabled).map(secs),
            on_demand_rotation_start_date: None,
        })
    }

    /// Adds a material version. Old versions stay, so every earlier ciphertext still decrypts.
    /// `due_at`: none for RotateKeyOnDemand; for the sweeper, the time it sweeps at, and then the
    /// key rotates only if, as read in the same compare-and-swap as the write, its rotation is still
    /// on and due by then: false otherwise (another node's sweeper rotated it first, or
    /// DisableKeyRotation came between the sweep's list and this write).
    pub(super) async fn rotate(&self, id: &Uuid, due_at: Option<i64>) -> Result<bool> {
        let arn = self.arn(id);
        let rotation_type = if due_at.is_some() {
            "AUTOMATIC"
        } else {
            "ON_DEMAND"
        };
        for _ in 0..32 {
            let mut rec = self.record(id).await?;
            match (due_at, rec.rotation_period_days) {
                (None, _) => {}
                (Some(now), Some(days)) if rec.next_rotation.is_some_and(|t| t <= now) => {
                    rec.next_rotation = Some(now + days * DAY_MS);
                }
                _ => return Ok(false),
            }
            // Disabled or scheduled for deletion since the sweep listed it: not now (a disabled key
            // rotates at the first sweep after it is enabled again, as AWS does).
            if due_at.is_some() && rec.state != StoredKeyState::Enabled {
                return Ok(false);
            }
            refuse_for_custom_key_store(&rec, &arn, "key rotation")?;
            check_usable(&rec, &arn)?;
            let rows = self.store.get_materials(id).await?;
            if due_at.is_none() {
                let done = rows
                    .iter()
                    .filter(|r| r.rotation_type.as_deref() == Some("ON_DEMAND"))
                    .count();
                if done >= MAX_ON_DEMAND_ROTATIONS {
                    return Err(KmsError::LimitExceeded(format!(
                        "{arn} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations."
                    )));
                }
            }
            let version = rows.len() as u32 + 1;
            let material = KeyMaterial::generate()?;
            let row = MaterialRow {
                version,
                wrapped: self.wrap_material(id, version, &material).await?,
                created_at: now_millis(),
                rotation_type: Some(rotation_type.into()),
            };
            if self.store.add_material(&rec, &row).await? {
                self.invalidate(id);
                return Ok(true);
            }
        }
        Err(KmsError::Internal(
            "The key is being changed concurrently; try again.".into(),
        ))
    }

    /// RotateKeyOnDemand.
    pub async fn rotate_key_on_demand(&self, req: KeyIdRequest) -> Result<KeyIdResponse> {
        let id = self.key_named(req.key_id).await?;
        self.rotate(&id, None).await?;
        Ok(KeyIdResponse {
            key_id: self.arn(&id),
        })
    }

    /// ListKeyRotations: every rotation, oldest first.
    pub async fn list_key_rotations(
        &self,
        req: ListKeyRotationsRequest,
    ) -> Result<ListKeyRotationsResponse> {
        let id = self.key_named(req.key_id).await?;
        let limit = page_limit(req.limit, 1000, 100)?;
        let after: u32 = match decode_marker(req.marker.as_deref())? {
            Some(m) => m.parse().map_err(|_| {
                KmsError::InvalidMarker("The marker is not one this service returned.".into())
            })?,
            None => 0,
        };
        self.record(&id).await?;
        let mut rows: Vec<_> = self
            .store
            .get_materials(&id)
            .await?
            .into_iter()
            .filter(|r| r.version > 1 && r.version > after)
            .collect();
        let (truncated, next_marker) = page(&mut rows, limit, |r| r.version.to_string());
        let arn = self.arn(&id);
        Ok(ListKeyRotationsResponse {
            rotations: rows
                .iter()
                .map(|r| RotationListEntry {
                    key_id: arn.clone(),
                    rotation_date: secs(r.created_at),
                    rotation_type: r
                        .rotation_type
                        .clone()
                        .unwrap_or_else(|| "AUTOMATIC".into()),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }
}
