//! Aliases: one row per (account, alias name), naming a key of that account.

use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::serial::lock_row;
use super::{is_unique_violation, uuid_of, AliasRow, Store};
use crate::error::{KmsError, Result};

impl Store {
    /// Creates an alias of `key` (`AlreadyExists` when the name is taken), unless the key has
    /// `max_per_key` aliases already (then LimitExceededException). Counted and written with the
    /// key's row locked, so racing creates cannot pass the quota.
    pub async fn create_alias(
        &self,
        account: &str,
        name: &str,
        key: &Uuid,
        now: i64,
        max_per_key: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_row(&mut tx, "kms_keys", "key_id", &key.to_string()).await?;
        let created = match sqlx::query(
            "INSERT INTO kms_aliases (account_id, alias_name, key_id, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $4 \
             WHERE (SELECT COUNT(*) FROM kms_aliases WHERE key_id = $3) < $5",
        )
        .bind(account)
        .bind(name)
        .bind(key.to_string())
        .bind(now)
        .bind(max_per_key)
        .execute(&mut *tx)
        .await
        {
            Ok(r) => r.rows_affected() == 1,
            Err(e) if is_unique_violation(&e) => return Err(alias_exists(name)),
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        match created {
            true => Ok(()),
            // Nothing inserted: the name is taken (AlreadyExists comes first, as without the
            // quota) or the key is full.
            false => match self.get_alias(account, name).await? {
                Some(_) => Err(alias_exists(name)),
                None => Err(aliases_full(key, max_per_key)),
            },
        }
    }

    /// Points an alias at another key; false if the alias does not exist. LimitExceededException
    /// when the key has `max_per_key` aliases already (counted as by [`create_alias`](Self::create_alias)).
    pub async fn update_alias(
        &self,
        account: &str,
        name: &str,
        key: &Uuid,
        now: i64,
        max_per_key: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock_row(&mut tx, "kms_keys", "key_id", &key.to_string()).await?;
        let updated = sqlx::query(
            "UPDATE kms_aliases SET key_id = $1, updated_at = $2 \
                 WHERE account_id = $3 AND alias_name = $4 \
                 AND (key_id = $1 OR (SELECT COUNT(*) FROM kms_aliases WHERE key_id = $1) < $5)",
        )
        .bind(key.to_string())
        .bind(now)
        .bind(account)
        .bind(name)
        .bind(max_per_key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        if !updated && self.get_alias(account, name).await?.is_some() {
            return Err(aliases_full(key, max_per_key));
        }
        Ok(updated)
    }

    /// Deletes an alias; false if it did not exist.
    pub async fn delete_alias(&self, account: &str, name: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM kms_aliases WHERE account_id = $1 AND alias_name = $2")
                .bind(account)
                .bind(name)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// An alias by name.
    pub async fn get_alias(&self, account: &str, name: &str) -> Result<Option<AliasRow>> {
        let row =
            sqlx::query("SELECT * FROM kms_aliases WHERE account_id = $1 AND alias_name = $2")
                .bind(account)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(alias_from_row).transpose()
    }

    /// Aliases in name order after `after`, optionally of one key.
    pub async fn list_aliases(
        &self,
        account: &str,
        key: Option<&Uuid>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AliasRow>> {
        let rows = sqlx::query(
            "SELECT * FROM kms_aliases WHERE account_id = $1 AND alias_name > $2 \
             AND ($3 = '' OR key_id = $3) ORDER BY alias_name LIMIT $4",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(key.map(|k| k.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alias_from_row).collect()
    }

    /// The names of every alias of a key, in name order (`kms:ResourceAliases`).
    pub async fn aliases_of_key(&self, key: &Uuid) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT alias_name FROM kms_aliases WHERE key_id = $1 ORDER BY alias_name",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?)
    }
}

fn alias_from_row(r: &AnyRow) -> Result<AliasRow> {
    Ok(AliasRow {
        name: r.try_get("alias_name")?,
        key_id: uuid_of(&r.try_get::<String, _>("key_id")?)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn aliases_full(key: &Uuid, max: i64) -> KmsError {
    KmsError::LimitExceeded(format!(
        "The KMS key {key} has {max} aliases, the most a key may have."
    ))
}

fn alias_exists(name: &str) -> KmsError {
    KmsError::AlreadyExists(format!("An alias with the name {name} already exists"))
}
