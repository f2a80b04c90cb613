//! The counts AWS's resource quotas are checked against (`ResourceQuotas`): an account's keys and
//! custom key stores. (Aliases per key are counted inside the statement that adds one.)

use super::Store;
use crate::error::Result;

impl Store {
    /// How many keys `account` has, in every state.
    pub async fn count_keys(&self, account: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM kms_keys WHERE account_id = $1")
                .bind(account)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// How many custom key stores `account` has.
    pub async fn count_custom_key_stores(&self, account: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM custom_key_stores WHERE account_id = $1")
                .bind(account)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
