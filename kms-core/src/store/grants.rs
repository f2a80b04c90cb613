//! The key store's grant rows: insert (with the per-key limit and Name idempotency in one
//! transaction), read, list by key or by retiring principal, delete. A key's grants go with it
//! (`ON DELETE CASCADE`).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::serial::lock_row;
use super::{is_unique_violation, uuid_of, Store};
use crate::error::{KmsError, Result};

/// One grant's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// 64 hex digits.
    pub grant_id: String,
    /// The key the grant is on.
    pub key_id: Uuid,
    /// The key's account.
    pub account_id: String,
    /// The grant's name (`Name` of CreateGrant), if any.
    pub name: Option<String>,
    /// Who the grant gives permissions to (an IAM ARN).
    pub grantee_principal: String,
    /// Who may retire the grant, besides the grantee when the grant allows RetireGrant.
    pub retiring_principal: Option<String>,
    /// The grant operations, as KMS names them, in the order given (no repeats).
    pub operations: Vec<String>,
    /// `EncryptionContextSubset`, if any.
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    /// `EncryptionContextEquals`, if any.
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    /// The account that created the grant.
    pub issuing_account: String,
    /// Unix millis.
    pub created_at: i64,
    /// For a named grant: a digest of the key, the name and every parameter (a retry with the same
    /// ones finds this grant).
    pub idempotency: Option<String>,
}

/// What [`Store::insert_grant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantInsert {
    /// The grant was added.
    Created,
    /// A grant with the same idempotency digest exists (a retried named CreateGrant): its id.
    Existing(String),
    /// The key already has the maximum number of grants; nothing was written.
    LimitReached,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StoredConstraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context_subset: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context_equals: Option<BTreeMap<String, String>>,
}

fn corrupt() -> KmsError {
    KmsError::Internal("The key store holds a malformed grant.".into())
}

fn grant_from_row(r: &AnyRow) -> Result<GrantRow> {
    let operations: String = r.try_get("operations")?;
    let constraints: Option<String> = r.try_get("constraints")?;
    let c: StoredConstraints = match constraints {
        Some(c) => serde_json::from_str(&c).map_err(|_| corrupt())?,
        None => StoredConstraints::default(),
    };
    Ok(GrantRow {
        grant_id: r.try_get("grant_id")?,
        key_id: uuid_of(&r.try_get::<String, _>("key_id")?)?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("grant_name")?,
        grantee_principal: r.try_get("grantee_principal")?,
        retiring_principal: r.try_get("retiring_principal")?,
        operations: serde_json::from_str(&operations).map_err(|_| corrupt())?,
        encryption_context_subset: c.encryption_context_subset,
        encryption_context_equals: c.encryption_context_equals,
        issuing_account: r.try_get("issuing_account")?,
        created_at: r.try_get("created_at")?,
        idempotency: r.try_get("idempotency")?,
    })
}

fn encode(g: &GrantRow) -> Result<(String, Option<String>)> {
    let ops = serde_json::to_string(&g.operations).map_err(|_| corrupt())?;
    let constraints = (g.encryption_context_subset.is_some()
        || g.encryption_context_equals.is_some())
    .then(|| {
        serde_json::to_string(&StoredConstraints {
            encryption_context_subset: g.encryption_context_subset.clone(),
            encryption_context_equals: g.encryption_context_equals.clone(),
        })
    })
    .transpose()
    .map_err(|_| corrupt())?;
    Ok((ops, constraints))
}

impl Store {
    /// Adds a grant in one transaction that first locks the key's row, so concurrent creations on
    /// one key are counted one after the other: a named grant whose digest exists answers the
    /// existing grant, a key with `max` grants answers [`GrantInsert::LimitReached`].
    pub async fn insert_grant(&self, g: &GrantRow, max: i64) -> Result<GrantInsert> {
        let (ops, constraints) = encode(g)?;
        let key = g.key_id.to_string();
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "kms_keys", "key_id", &key).await? {
            tx.rollback().await?;
            return Err(KmsError::NotFound("The key does not exist.".into()));
        }
        if let Some(digest) = &g.idempotency {
            let existing = sqlx::query("SELECT * FROM kms_grants WHERE idempotency = $1")
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(r) = existing {
                tx.rollback().await?;
                return Ok(GrantInsert::Existing(grant_from_row(&r)?.grant_id));
            }
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kms_grants WHERE key_id = $1")
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?;
        if count >= max {
            tx.rollback().await?;
            return Ok(GrantInsert::LimitReached);
        }
        let res = sqlx::query(
            "INSERT INTO kms_grants (grant_id, key_id, account_id, grant_name, grantee_principal, \
             retiring_principal, operations, constraints, issuing_account, created_at, idempotency) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&g.grant_id)
        .bind(&key)
        .bind(&g.account_id)
        .bind(g.name.clone())
        .bind(&g.grantee_principal)
        .bind(g.retiring_principal.clone())
        .bind(ops)
        .bind(constraints)
        .bind(&g.issuing_account)
        .bind(g.created_at)
        .bind(g.idempotency.clone())
        .execute(&mut *tx)
        .await;
        match res {
            Ok(_) => {}
            // Another node's identical named grant committed first.
            Err(e) if is_unique_violation(&e) && g.idempotency.is_some() => {
                tx.rollback().await?;
                return match &g.idempotency {
                    Some(d) => match self.grant_by_idempotency(d).await? {
                        Some(existing) => Ok(GrantInsert::Existing(existing.grant_id)),
                        None => Err(e.into()),
                    },
                    None => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(GrantInsert::Created)
    }

    async fn grant_by_idempotency(&self, digest: &str) -> Result<Option<GrantRow>> {
        sqlx::query("SELECT * FROM kms_grants WHERE idempotency = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    /// A grant by id.
    pub async fn get_grant(&self, grant_id: &str) -> Result<Option<GrantRow>> {
        sqlx::query("SELECT * FROM kms_grants WHERE grant_id = $1")
            .bind(grant_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    /// Every grant on a key, in grant id order.
    pub async fn grants_of_key(&self, key: &Uuid) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query("SELECT * FROM kms_grants WHERE key_id = $1 ORDER BY grant_id")
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// A key's grants in grant id order after `after`, at most `limit`, optionally only the grant
    /// `grant_id` and only those of `grantee`.
    pub async fn list_grants(
        &self,
        key: &Uuid,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query(
            "SELECT * FROM kms_grants WHERE key_id = $1 AND grant_id > $2 \
             AND ($3 = '' OR grant_id = $3) AND ($4 = '' OR grantee_principal = $4) \
             ORDER BY grant_id LIMIT $5",
        )
        .bind(key.to_string())
        .bind(after.unwrap_or(""))
        .bind(grant_id.unwrap_or(""))
        .bind(grantee.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// The grants `retiring` may retire as their retiring principal, in grant id order after
    /// `after`, at most `limit`.
    pub async fn list_retirable_grants(
        &self,
        retiring: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query(
            "SELECT * FROM kms_grants WHERE retiring_principal = $1 AND grant_id > $2 \
             ORDER BY grant_id LIMIT $3",
        )
        .bind(retiring)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Deletes a key's grant; false if the key has no grant of that id.
    pub async fn delete_grant(&self, key: &Uuid, grant_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM kms_grants WHERE key_id = $1 AND grant_id = $2")
                .bind(key.to_string())
                .bind(grant_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }
}
