//! Aliases: CreateAlias, UpdateAlias, DeleteAlias and ListAliases. An alias names a key that is not
//! pending deletion; resolving one goes through the alias cache.

use uuid::Uuid;

use super::keys::{alias_slot, check_not_pending_deletion};
use super::validate::{decode_marker, page, page_limit, required};
use super::{secs, Kms};
use crate::api::*;
use crate::error::{KmsError, Result};
use crate::ids::{validate_alias_name, Accepts, KeyRef};
use crate::now_millis;

impl Kms {
    /// An alias's target: a key, never another alias (AWS's ValidationException).
    async fn alias_target(&self, raw: Option<String>) -> Result<Uuid> {
        let raw = required(raw, "targetKeyId")?;
        if let Ok(KeyRef::Alias(_)) = self
            .config
            .partition
            .parse_key_ref(&raw, Accepts::KeyOrAlias)
        {
            return Err(KmsError::Validation(
                "Aliases must refer to keys. Not aliases".into(),
            ));
        }
        let id = self.resolve(&raw, Accepts::KeyOnly, false).await?;
        self.checked_key(&id, check_not_pending_deletion).await?;
        Ok(id)
    }

    pub(super) fn alias_not_found(&self, account: &str, name: &str) -> KmsError {
        KmsError::NotFound(format!(
            "Alias {} is not found.",
            self.config.partition.alias_arn_in(account, name)
        ))
    }

    /// CreateAlias.
    pub async fn create_alias(&self, req: AliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, true)?;
        let id = self.alias_target(req.target_key_id).await?;
        let account = self.account();
        self.store
            .create_alias(
                &account,
                &name,
                &id,
                now_millis(),
                self.config.quotas.aliases_per_key,
            )
            .await?;
        self.cache.key_auth.forget(&id.to_string());
        Ok(Empty {})
    }

    /// UpdateAlias.
    pub async fn update_alias(&self, req: AliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, true)?;
        let id = self.alias_target(req.target_key_id).await?;
        let account = self.account();
        let before = self.alias_key(&account, &name, false).await?;
        if !self
            .store
            .update_alias(
                &account,
                &name,
                &id,
                now_millis(),
                self.config.quotas.aliases_per_key,
            )
            .await?
        {
            return Err(self.alias_not_found(&account, &name));
        }
        self.cache.aliases.forget(&alias_slot(&account, &name));
        self.cache.key_auth.forget(&before.to_string());
        self.cache.key_auth.forget(&id.to_string());
        Ok(Empty {})
    }

    /// DeleteAlias.
    pub async fn delete_alias(&self, req: DeleteAliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, false)?;
        let account = self.account();
        let before = self.alias_key(&account, &name, false).await?;
        if !self.store.delete_alias(&account, &name).await? {
            return Err(self.alias_not_found(&account, &name));
        }
        self.cache.aliases.forget(&alias_slot(&account, &name));
        self.cache.key_auth.forget(&before.to_string());
        Ok(Empty {})
    }

    /// ListAliases.
    pub async fn list_aliases(&self, req: ListAliasesRequest) -> Result<ListAliasesResponse> {
        let limit = page_limit(req.limit, 100, 50)?;
        let key = match req.key_id {
            Some(k) => {
                let id = self.resolve(&k, Accepts::KeyOnly, false).await?;
                self.record(&id).await?;
                Some(id)
            }
            None => None,
        };
        let after = decode_marker(req.marker.as_deref())?;
        let account = self.account();
        let mut rows = self
            .store
            .list_aliases(&account, key.as_ref(), after.as_deref(), limit + 1)
            .await?;
        let (truncated, next_marker) = page(&mut rows, limit, |a| a.name.clone());
        Ok(ListAliasesResponse {
            aliases: rows
                .into_iter()
                .map(|a| AliasListEntry {
                    alias_arn: self.config.partition.alias_arn_in(&account, &a.name),
                    alias_name: a.name,
                    target_key_id: a.key_id.to_string(),
                    creation_date: secs(a.created_at),
                    last_updated_date: secs(a.updated_at),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }
}
