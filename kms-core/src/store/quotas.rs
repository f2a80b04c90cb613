//! The counts AWS's resource quotas are checked against. Each write under a quota counts again in
//! its counted transaction ([`Store::begin_counted`], `serial.rs`); the counts here are a first look
//! before any work.

use sqlx::Any;

use super::Store;
use crate::error::Result;

impl Store {
    /// How many keys `account` has, in every state: a first look before a key is made in a custom
    /// key store's token (the insert counts again, in its counted transaction).
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
