//! The key store's custom key store rows: insert, read, list, change under optimistic concurrency,
//! delete when no key is left in the store.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::serial::lock_row;
use super::{is_unique_violation, quotas, CustomKeyStoreRow, Store};
use crate::custom_key_store::ConnectionState;
use crate::error::{KmsError, Result};

/// The columns a row is read from, by name: the table's column order differs between a store made
/// at schema 6 and one migrated to it.
const COLUMNS: &str = "store_id, account_id, store_name, cluster_id, trust_anchor, \
    wrapped_password, connection_state, connection_error, created_at, revision";

/// What [`Store::insert_custom_key_store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum NewStore {
    /// Added.
    Created,
    /// Nothing written: the account has its quota of stores.
    Full,
    /// Nothing written: this store, of this account, is on the same cluster.
    ClusterInUse {
        /// Its id.
        store_id: String,
        /// Its account.
        account_id: String,
    },
}

impl Store {
    /// Adds a custom key store; `CustomKeyStoreNameInUse` when the name is taken. Nothing written
    /// when its account has `max` stores already ([`NewStore::Full`]) or another store, of any
    /// account, is on the same cluster (`same_cluster(its cluster id)`, [`NewStore::ClusterInUse`]).
    /// Checked and written in one counted transaction for the whole server: creates are rare, and a
    /// cluster is the server's.
    pub async fn insert_custom_key_store(
        &self,
        c: &CustomKeyStoreRow,
        max: i64,
        same_cluster: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<NewStore> {
        let mut tx = self.begin_counted("custom-key-stores", "").await?;
        if quotas::count_on(&mut *tx, quotas::CUSTOM_KEY_STORES, &c.account_id).await? >= max {
            return Ok(NewStore::Full);
        }
        let others = sqlx::query("SELECT store_id, account_id, cluster_id FROM custom_key_stores")
            .fetch_all(&mut *tx)
            .await?;
        for r in &others {
            if same_cluster(&r.try_get::<String, _>("cluster_id")?) {
                return Ok(NewStore::ClusterInUse {
                    store_id: r.try_get("store_id")?,
                    account_id: r.try_get("account_id")?,
                });
            }
        }
        match sqlx::query(
            "INSERT INTO custom_key_stores (store_id, store_name, cluster_id, trust_anchor, \
             wrapped_password, connection_state, connection_error, created_at, revision, \
             account_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.cluster_id)
        .bind(&c.trust_anchor)
        .bind(&c.wrapped_password)
        .bind(c.connection_state.as_str())
        .bind(c.connection_error.clone())
        .bind(c.created_at)
        .bind(c.revision)
        .bind(&c.account_id)
        .execute(&mut *tx)
        .await
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(KmsError::CustomKeyStoreNameInUse(format!(
                    "A custom key store named {} already exists.",
                    c.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(NewStore::Created)
    }

    /// A custom key store by id.
    pub async fn get_custom_key_store(&self, id: &str) -> Result<Option<CustomKeyStoreRow>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM custom_key_stores WHERE store_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(custom_key_store_from_row)
        .transpose()
    }

    /// Custom key stores in id order after `after`: those of `account` (every account's when
    /// `None`), optionally only the one named `name`.
    pub async fn list_custom_key_stores(
        &self,
        account: Option<&str>,
        name: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CustomKeyStoreRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM custom_key_stores WHERE store_id > $1 \
             AND ($2 = '' OR store_name = $2) AND ($3 = '' OR account_id = $3) \
             ORDER BY store_id LIMIT $4"
        ))
        .bind(after.unwrap_or(""))
        .bind(name.unwrap_or(""))
        .bind(account.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(custom_key_store_from_row).collect()
    }

    /// Writes a changed custom key store if nobody changed it since `c.revision` was read; false
    /// on a conflict. A name clash is `CustomKeyStoreNameInUse`.
    pub async fn update_custom_key_store(&self, c: &CustomKeyStoreRow) -> Result<bool> {
        match sqlx::query(
            "UPDATE custom_key_stores SET store_name = $1, cluster_id = $2, wrapped_password = $3, \
             connection_state = $4, connection_error = $5, revision = revision + 1 \
             WHERE store_id = $6 AND revision = $7",
        )
        .bind(&c.name)
        .bind(&c.cluster_id)
        .bind(&c.wrapped_password)
        .bind(c.connection_state.as_str())
        .bind(c.connection_error.clone())
        .bind(&c.id)
        .bind(c.revision)
        .execute(&self.pool)
        .await
        {
            Ok(r) => Ok(r.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Err(KmsError::CustomKeyStoreNameInUse(format!(
                "A custom key store named {} already exists.",
                c.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a custom key store at `revision` if no key is in it. `Ok(false)` on a revision
    /// conflict; `CustomKeyStoreHasCmks` when keys remain.
    pub async fn delete_custom_key_store(&self, c: &CustomKeyStoreRow) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // Locked first: a key being created in the store is either counted below or finds the
        // store gone (`insert_key`), never a foreign-key violation.
        if !lock_row(&mut tx, "custom_key_stores", "store_id", &c.id).await? {
            return Ok(false);
        }
        let keys: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM kms_keys WHERE custom_key_store_id = $1")
                .bind(&c.id)
                .fetch_one(&mut *tx)
                .await?;
        if keys > 0 {
            return Err(KmsError::CustomKeyStoreHasCmks(format!(
                "Custom key store {} still holds {keys} KMS key(s); delete them first \
                 (ScheduleKeyDeletion, then wait for the waiting period to end).",
                c.id
            )));
        }
        let n = sqlx::query("DELETE FROM custom_key_stores WHERE store_id = $1 AND revision = $2")
            .bind(&c.id)
            .bind(c.revision)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}

fn custom_key_store_from_row(r: &AnyRow) -> Result<CustomKeyStoreRow> {
    Ok(CustomKeyStoreRow {
        id: r.try_get("store_id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("store_name")?,
        cluster_id: r.try_get("cluster_id")?,
        trust_anchor: r.try_get("trust_anchor")?,
        wrapped_password: r.try_get("wrapped_password")?,
        connection_state: ConnectionState::parse(&r.try_get::<String, _>("connection_state")?)?,
        connection_error: r.try_get("connection_error")?,
        created_at: r.try_get("created_at")?,
        revision: r.try_get("revision")?,
    })
}
