//! Keys and their states: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey,
//! DisableKey, ScheduleKeyDeletion and CancelKeyDeletion; resolving a key identifier; reading and
//! changing a key's row; and the checks of a key's state the other families use.

use std::sync::Arc;

use uuid::Uuid;

use super::custom_key_stores::in_token;
use super::validate::{check_description, check_range, decode_marker, page, page_limit, required};
use super::{secs, tags::validate_tags, Kms, DAY_MS, SYMMETRIC_DEFAULT};
use crate::api::*;
use crate::error::{KmsError, Result};
use crate::ids::{Accepts, KeyRef};
use crate::material::KeyMaterial;
use crate::now_millis;
use crate::store::{Checked, KeyRow, MaterialRow, StoredKeyState};

/// Where the alias cache keeps an alias of an account.
pub(super) fn alias_slot(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

/// The stored state as AWS names it (the service decides when a key shows `Unavailable`).
impl From<StoredKeyState> for KeyState {
    fn from(s: StoredKeyState) -> Self {
        match s {
            StoredKeyState::Enabled => KeyState::Enabled,
            StoredKeyState::Disabled => KeyState::Disabled,
            StoredKeyState::PendingDeletion => KeyState::PendingDeletion,
        }
    }
}

/// A key usable for cryptography: Enabled. AWS's errors for the other states.
pub(super) fn check_usable(k: &KeyRow, arn: &str) -> Result<()> {
    match k.state {
        StoredKeyState::Enabled => Ok(()),
        StoredKeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
        StoredKeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
            "{arn} is pending deletion."
        ))),
    }
}

/// Keys in a custom key store have their material in the token: no rotation, no import.
pub(super) fn refuse_for_custom_key_store(k: &KeyRow, arn: &str, what: &str) -> Result<()> {
    if let Some(store) = &k.custom_key_store_id {
        return Err(KmsError::UnsupportedOperation(format!(
            "{arn} is in custom key store {store}: {what} is not supported for keys in a custom key store."
        )));
    }
    Ok(())
}

pub(super) fn check_not_pending_deletion(k: &KeyRow, arn: &str) -> Result<()> {
    if k.state == StoredKeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{arn} is pending deletion."
        )));
    }
    Ok(())
}

const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
];

impl Kms {
    // ----- resolution ---------------------------------------------------------------------------

    /// Resolves a key identifier to a key id. `cached` allows a cached alias mapping.
    /// A key id or alias names a key of the account its ARN names, else of the caller's: a bare key
    /// id of another account's key is NotFoundException, as for a key that does not exist (the
    /// message names the key in the account asked about, never the one that holds it).
    pub(super) async fn resolve(&self, raw: &str, accepts: Accepts, cached: bool) -> Result<Uuid> {
        let named = self.config.partition.parse_key_name(raw, accepts)?;
        let account = named.account.unwrap_or_else(|| self.account());
        match named.key {
            KeyRef::Key(id) => match self.account_of_key(&id).await? {
                Some(holder) if *holder != *account => Err(KmsError::NotFound(format!(
                    "Key '{}' does not exist",
                    self.config.partition.key_arn_in(&account, &id)
                ))),
                // A key id that names no key is the operation's to refuse.
                _ => Ok(id),
            },
            KeyRef::Alias(name) => self.alias_key(&account, &name, cached).await,
        }
    }

    /// The account that holds key `id` (`None`: no such key). A key never changes account, so
    /// once read this is answered from memory.
    pub(super) async fn account_of_key(&self, id: &Uuid) -> Result<Option<Arc<str>>> {
        let known = self.known_account(id);
        if known.is_some() {
            return Ok(known);
        }
        Ok(match self.store.get_key(id).await? {
            Some(row) => {
                self.learn_account(&row);
                Some(Arc::from(row.account_id.as_str()))
            }
            None => None,
        })
    }

    /// The key an alias of `account` names. `cached` allows a cached mapping.
    pub(super) async fn alias_key(&self, account: &str, name: &str, cached: bool) -> Result<Uuid> {
        let slot = alias_slot(account, name);
        if cached {
            if let Some(id) = self.cache.aliases.fresh(&slot, self.config.cache_ttl) {
                return Ok(id);
            }
        }
        let ticket = self.cache.aliases.ticket(&slot);
        let alias = self
            .store
            .get_alias(account, name)
            .await?
            .ok_or_else(|| self.alias_not_found(account, name))?;
        self.cache.aliases.put(slot, alias.key_id, ticket);
        Ok(alias.key_id)
    }

    /// The key a request's `KeyId` names: a key id or key ARN, not an alias.
    pub(super) async fn key_named(&self, key_id: Option<String>) -> Result<Uuid> {
        self.resolve(&required(key_id, "keyId")?, Accepts::KeyOnly, false)
            .await
    }

    pub(super) async fn record(&self, id: &Uuid) -> Result<KeyRow> {
        let rec = self
            .store
            .get_key(id)
            .await?
            .ok_or_else(|| self.not_found(id))?;
        self.learn_account(&rec);
        Ok(rec)
    }

    /// A key's row, if `check` accepts its state (`check` gets the row and the key ARN).
    pub(super) async fn checked_key(
        &self,
        id: &Uuid,
        check: impl FnOnce(&KeyRow, &str) -> Result<()>,
    ) -> Result<KeyRow> {
        let rec = self.record(id).await?;
        check(&rec, &self.arn(id))?;
        Ok(rec)
    }

    /// The shape of the operations that change one key and answer nothing: `check` its state (it
    /// gets the row and the key ARN), then `change` the row (false: nothing to write), written as
    /// [`Kms::modify`] writes.
    pub(super) async fn change_key(
        &self,
        id: &Uuid,
        check: impl Fn(&KeyRow, &str) -> Result<()>,
        mut change: impl FnMut(&mut KeyRow) -> bool,
    ) -> Result<Empty> {
        let arn = self.arn(id);
        self.modify(id, |k| {
            check(k, &arn)?;
            Ok(change(k))
        })
        .await?;
        Ok(Empty {})
    }

    /// Reads a key, lets `f` change it, writes it back under optimistic concurrency, retrying on a
    /// conflict. `f` returns false when nothing needs writing.
    pub(super) async fn modify(
        &self,
        id: &Uuid,
        mut f: impl FnMut(&mut KeyRow) -> Result<bool>,
    ) -> Result<KeyRow> {
        for _ in 0..32 {
            let mut rec = self.record(id).await?;
            if !f(&mut rec)? {
                return Ok(rec);
            }
            if self.store.update_key(&rec).await? {
                self.invalidate(id);
                rec.revision += 1;
                return Ok(rec);
            }
        }
        Err(KmsError::Internal(
            "The key is being changed concurrently; try again.".into(),
        ))
    }

    async fn metadata(&self, k: &KeyRow) -> Result<KeyMetadata> {
        let key_state = self.shown_state(k).await?;
        let cloud_hsm_cluster_id = self.cluster_of(k).await?;
        Ok(KeyMetadata {
            aws_account_id: k.account_id.clone(),
            key_id: k.id.to_string(),
            arn: self.config.partition.key_arn_in(&k.account_id, &k.id),
            creation_date: secs(k.created_at),
            enabled: key_state == KeyState::Enabled,
            description: k.description.clone(),
            key_usage: k.key_usage.clone(),
            key_state,
            deletion_date: k.deletion_date.map(secs),
            origin: k.origin.clone(),
            key_manager: "CUSTOMER".into(),
            customer_master_key_spec: k.key_spec.clone(),
            key_spec: k.key_spec.clone(),
            encryption_algorithms: vec![SYMMETRIC_DEFAULT.into()],
            multi_region: false,
            pending_deletion_window_in_days: k.pending_window_days,
            custom_key_store_id: k.custom_key_store_id.clone(),
            cloud_hsm_cluster_id,
        })
    }

    // ----- key management -----------------------------------------------------------------------

    /// CreateKey.
    pub async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadataResponse> {
        let in_store =
            req.custom_key_store_id.is_some() || req.origin.as_deref() == Some("AWS_CLOUDHSM");
        for (field, spec) in [
            ("keySpec", &req.key_spec),
            ("customerMasterKeySpec", &req.customer_master_key_spec),
        ] {
            match spec.as_deref() {
                None | Some(SYMMETRIC_DEFAULT) => {}
                Some(s) if KEY_SPECS.contains(&s) && in_store => {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "Custom key stores support only SYMMETRIC_DEFAULT keys; {s} cannot be created in one."
                    )))
                }
                Some(s) if KEY_SPECS.contains(&s) => {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "envelope supports only SYMMETRIC_DEFAULT keys; {s} is not supported."
                    )))
                }
                Some(s) => {
                    return Err(KmsError::constraint(
                        s,
                        field,
                        "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSA_2048, ...]",
                    ))
                }
            }
        }
        match req.key_usage.as_deref() {
            None | Some("ENCRYPT_DECRYPT") => {}
            Some(u @ ("SIGN_VERIFY" | "GENERATE_VERIFY_MAC" | "KEY_AGREEMENT")) => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "envelope supports only ENCRYPT_DECRYPT keys; {u} is not supported."
                )))
            }
            Some(u) => {
                return Err(KmsError::constraint(
                    u,
                    "keyUsage",
                    "Member must satisfy enum value set: [SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]",
                ))
            }
        }
        match (req.origin.as_deref(), req.custom_key_store_id.is_some()) {
            (None | Some("AWS_KMS"), false) | (Some("AWS_CLOUDHSM"), true) => {}
            (Some("AWS_CLOUDHSM"), false) => return Err(KmsError::missing("customKeyStoreId")),
            (None | Some("AWS_KMS"), true) => {
                return Err(KmsError::Validation(
                    "A key in a custom key store must have the Origin AWS_CLOUDHSM.".into(),
                ))
            }
            (Some("EXTERNAL"), true) => {
                return Err(KmsError::UnsupportedOperation(
                    "Keys in a custom key store cannot have imported key material (Origin EXTERNAL)."
                        .into(),
                ))
            }
            (Some(o @ ("EXTERNAL" | "EXTERNAL_KEY_STORE")), _) => {
                return Err(KmsError::UnsupportedOperation(format!("Origin {o} is not supported by this server.")))
            }
            (Some(o), _) => {
                return Err(KmsError::constraint(
                    o,
                    "origin",
                    "Member must satisfy enum value set: [EXTERNAL, AWS_KMS, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]",
                ))
            }
        }
        if req.multi_region == Some(true) {
            return Err(KmsError::UnsupportedOperation(
                "Multi-Region keys are not supported.".into(),
            ));
        }
        if req.xks_key_id.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "External key stores (XKS) are not supported by this server.".into(),
            ));
        }
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let id = Uuid::new_v4();
        let account = self.account();
        let tags = validate_tags(req.tags.as_deref().unwrap_or_default())?;
        // The insert counts, atomically. A key in a token is counted first as well, before the key
        // is made in the token; a software key is not (a count reads every key of the account, and
        // under the write lock once is enough).
        let quota = self.config.quotas.keys_per_account;
        if req.custom_key_store_id.is_some() && self.store.count_keys(&account).await? >= quota {
            return Err(keys_full(&account, quota));
        }
        let policy = match req.policy {
            Some(text) => {
                let arn = self.config.partition.key_arn_in(&account, &id);
                let bypass = req.bypass_policy_lockout_safety_check == Some(true);
                let later = crate::identity::request_context(&self.caller(), "kms:PutKeyPolicy")
                    .with_resource(&arn)
                    .with_resource_tags(&tags.iter().cloned().collect());
                self.checked_key_policy(text, later, bypass).await?
            }
            None => String::new(),
        };
        let now = now_millis();
        let mut rec = KeyRow {
            id,
            account_id: account,
            created_at: now,
            description,
            state: StoredKeyState::Enabled,
            key_usage: "ENCRYPT_DECRYPT".into(),
            key_spec: SYMMETRIC_DEFAULT.into(),
            origin: "AWS_KMS".into(),
            policy,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation: None,
            revision: 0,
            custom_key_store_id: None,
        };
        if let Some(store_id) = req.custom_key_store_id {
            // The material is born in the token, labelled with the key ARN, and never leaves it.
            let token = self
                .connected_token(&store_id, "keys can be created only in a CONNECTED store")
                .await?;
            let label = self.arn(&id);
            in_token(token.clone(), {
                let label = label.clone();
                move |t| t.create_key(&label)
            })
            .await?;
            rec.origin = "AWS_CLOUDHSM".into();
            rec.custom_key_store_id = Some(store_id.clone());
            let refusal = match self.store.insert_key(&rec, None, &tags, quota).await {
                Ok(Checked::Written) => None,
                Ok(Checked::Full) => Some(keys_full(&rec.account_id, quota)),
                // Disconnected or deleted meanwhile: the answer a call made now would get.
                Ok(Checked::NoOwner | Checked::NoTarget) => Some(
                    self.connected_token(
                        &store_id,
                        "keys can be created only in a CONNECTED store",
                    )
                    .await
                    .err()
                    .unwrap_or_else(|| {
                        KmsError::CustomKeyStoreInvalidState(format!(
                            "Custom key store {store_id} changed state; keys can be created \
                                 only in a CONNECTED store."
                        ))
                    }),
                ),
                Err(e) => Some(e),
            };
            if let Some(e) = refusal {
                let _ = in_token(token, move |t| t.destroy_key(&label)).await;
                return Err(e);
            }
        } else {
            let material = KeyMaterial::generate()?;
            let row = MaterialRow {
                version: 1,
                wrapped: self.wrap_material(&id, 1, &material).await?,
                created_at: now,
                rotation_type: None,
            };
            if self
                .store
                .insert_key(&rec, Some(&row), &tags, quota)
                .await?
                != Checked::Written
            {
                return Err(keys_full(&rec.account_id, quota));
            }
        }
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&rec).await?,
        })
    }

    /// DescribeKey.
    pub async fn describe_key(&self, req: KeyIdRequest) -> Result<KeyMetadataResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOrAlias, false)
            .await?;
        let rec = self.record(&id).await?;
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&rec).await?,
        })
    }

    /// ListKeys.
    pub async fn list_keys(&self, req: ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = page_limit(req.limit, 1000, 100)?;
        let after = decode_marker(req.marker.as_deref())?;
        let account = self.account();
        let mut ids = self
            .store
            .list_keys(&account, after.as_deref(), limit + 1)
            .await?;
        let (truncated, next_marker) = page(&mut ids, limit, Uuid::to_string);
        Ok(ListKeysResponse {
            keys: ids
                .iter()
                .map(|id| KeyListEntry {
                    key_id: id.to_string(),
                    key_arn: self.config.partition.key_arn_in(&account, id),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }

    /// UpdateKeyDescription.
    pub async fn update_key_description(&self, req: UpdateKeyDescriptionRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        let description = required(req.description, "description")?;
        check_description(&description)?;
        self.change_key(&id, check_not_pending_deletion, |k| {
            k.description = description.clone();
            true
        })
        .await
    }

    /// EnableKey.
    pub async fn enable_key(&self, req: KeyIdRequest) -> Result<Empty> {
        self.set_state(req.key_id, StoredKeyState::Enabled).await
    }

    /// DisableKey.
    pub async fn disable_key(&self, req: KeyIdRequest) -> Result<Empty> {
        self.set_state(req.key_id, StoredKeyState::Disabled).await
    }

    /// ScheduleKeyDeletion: 7 to 30 days, 30 by default. The material is destroyed when due.
    pub async fn schedule_key_deletion(
        &self,
        req: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse> {
        let id = self.key_named(req.key_id).await?;
        let days = req.pending_window_in_days.unwrap_or(30);
        check_range(days, 7, 30, "pendingWindowInDays")?;
        let now = now_millis();
        let deletion_date = now + days * DAY_MS;
        self.change_key(&id, check_not_pending_deletion, |k| {
            k.state = StoredKeyState::PendingDeletion;
            k.deletion_date = Some(deletion_date);
            k.pending_window_days = Some(days);
            true
        })
        .await?;
        Ok(ScheduleKeyDeletionResponse {
            key_id: self.arn(&id),
            deletion_date: secs(deletion_date),
            key_state: KeyState::PendingDeletion,
            pending_window_in_days: days,
        })
    }

    /// CancelKeyDeletion: the key returns Disabled.
    pub async fn cancel_key_deletion(&self, req: KeyIdRequest) -> Result<KeyIdResponse> {
        let id = self.key_named(req.key_id).await?;
        let pending = |k: &KeyRow, arn: &str| {
            if k.state != StoredKeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!(
                    "{arn} is not pending deletion."
                )));
            }
            Ok(())
        };
        self.change_key(&id, pending, |k| {
            k.state = StoredKeyState::Disabled;
            k.deletion_date = None;
            k.pending_window_days = None;
            true
        })
        .await?;
        Ok(KeyIdResponse {
            key_id: self.arn(&id),
        })
    }

    /// EnableKey and DisableKey: any state but PendingDeletion.
    async fn set_state(&self, key_id: Option<String>, state: StoredKeyState) -> Result<Empty> {
        let id = self.key_named(key_id).await?;
        self.change_key(&id, check_not_pending_deletion, |k| {
            let change = k.state != state;
            k.state = state;
            change
        })
        .await
    }
}

/// LimitExceededException for an account at its keys quota.
fn keys_full(account: &str, quota: i64) -> KmsError {
    KmsError::LimitExceeded(format!(
        "Account {account} has {quota} KMS keys, its quota of customer managed keys."
    ))
}
