//! The counts AWS's resource quotas are checked against, and the transaction that makes a count and
//! the write it allows one step.
//!
//! A quota checked by counting, then writing, lets every call that counted before the others wrote
//! pass: sixteen CreateKey calls racing for the last place of an account all saw room, and on SQLite
//! a deferred transaction that counted then failed to take the write lock (a 500). Every write under
//! a quota therefore counts and writes in a [`Store::begin_counted`] transaction for its scope: keys
//! and custom key stores per account, aliases and tags per key, access keys, attached policies and
//! inline policy size per IAM entity. (Grants lock their key's row for the same end; on-demand
//! rotations are versions, which a primary key keeps unique.)

use sqlx::{Any, Transaction};

use super::Store;
use crate::error::Result;

impl Store {
    /// Begins a transaction in which no other counted transaction of the same `kind` and `owner`
    /// (`"keys"` and an account id, `"aliases"` and a key id, …) runs until this one ends, on this
    /// node or another on the same database.
    ///
    /// SQLite has one writer: `BEGIN IMMEDIATE` takes its lock at the start, so what the transaction
    /// reads is what it writes over (a deferred transaction would read, then find another's write
    /// and fail with SQLITE_BUSY). PostgreSQL: a transaction-scoped advisory lock on a hash of the
    /// scope; at READ COMMITTED each later statement sees what the previous holder committed. Two
    /// scopes whose hashes collide only wait for each other.
    pub(crate) async fn begin_counted(
        &self,
        kind: &str,
        owner: &str,
    ) -> Result<Transaction<'static, Any>> {
        if self.sqlite {
            return Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?);
        }
        let mut tx = self.pool.begin().await?;
        // The lock function returns void, which the Any driver cannot decode: select around it.
        sqlx::query(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS held",
        )
        .bind(format!("{kind}/{owner}"))
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    /// How many keys `account` has, in every state (a first look, before any work; the insert
    /// counts again, in its counted transaction).
    pub async fn count_keys(&self, account: &str) -> Result<i64> {
        count_on(&self.pool, KEYS, account).await
    }

    /// How many custom key stores `account` has (a first look, as [`Self::count_keys`]).
    pub async fn count_custom_key_stores(&self, account: &str) -> Result<i64> {
        count_on(&self.pool, CUSTOM_KEY_STORES, account).await
    }
}

/// Counts an account's keys.
pub(super) const KEYS: &str = "SELECT COUNT(*) FROM kms_keys WHERE account_id = $1";
/// Counts an account's custom key stores.
pub(super) const CUSTOM_KEY_STORES: &str =
    "SELECT COUNT(*) FROM custom_key_stores WHERE account_id = $1";

/// Runs the count `sql` (one parameter, the owner) through `db`: the pool, or a counted
/// transaction.
pub(super) async fn count_on<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    sql: &'static str,
    owner: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(sql).bind(owner).fetch_one(db).await?)
}
