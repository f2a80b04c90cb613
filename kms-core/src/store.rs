//! The key store: sqlx over SQLite (embedded default) or PostgreSQL, one schema for both.
//!
//! Writes that read-modify-write a key use optimistic concurrency on `kms_keys.revision`; a check and
//! the write it allows (a quota, a row the write needs, what blocks a delete) share one transaction
//! with a lock (`serial.rs`), which holds across nodes on one PostgreSQL.

use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};
use uuid::Uuid;

use crate::custom_key_store::ConnectionState;
use crate::error::{KmsError, Result};

mod aliases;
mod custom_key_stores;
mod grants;
mod identity;
mod quotas;
mod serial;
mod sqlite_file;
mod tags;

pub use custom_key_stores::NewStore;
pub use grants::{GrantInsert, GrantRow};
pub use identity::{
    AccessKeyRow, Blocker, EntityPage, GroupRow, ManagedPolicyRow, RoleRow, UserRow,
};
pub use serial::Checked;

use sqlite_file::restrict_sqlite_file;

/// A migration: portable SQL, or one form per backend where SQLite cannot say what PostgreSQL
/// says (dropping a constraint).
enum Migration {
    Portable(&'static str),
    PerBackend {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

const MIGRATIONS: &[(i64, Migration)] = &[
    (
        1,
        Migration::Portable(include_str!("../migrations/0001_init.sql")),
    ),
    (
        2,
        Migration::Portable(include_str!("../migrations/0002_custom_key_stores.sql")),
    ),
    (
        3,
        Migration::Portable(include_str!("../migrations/0003_accounts.sql")),
    ),
    (
        4,
        Migration::Portable(include_str!("../migrations/0004_identities.sql")),
    ),
    (
        5,
        Migration::Portable(include_str!("../migrations/0005_grants.sql")),
    ),
    (
        6,
        Migration::PerBackend {
            sqlite: include_str!("../migrations/0006_custom_key_store_names.sqlite.sql"),
            postgres: include_str!("../migrations/0006_custom_key_store_names.postgres.sql"),
        },
    ),
];

/// A key's state as the store keeps it. What DescribeKey shows is the service's to say (a key in a
/// custom key store that is not connected shows `Unavailable`, which is never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKeyState {
    /// Usable.
    Enabled,
    /// Not usable until enabled.
    Disabled,
    /// Scheduled for deletion; not usable; cancellable.
    PendingDeletion,
}

impl StoredKeyState {
    /// The stored name (`kms_keys.key_state`; the same as AWS's).
    pub fn as_str(self) -> &'static str {
        match self {
            StoredKeyState::Enabled => "Enabled",
            StoredKeyState::Disabled => "Disabled",
            StoredKeyState::PendingDeletion => "PendingDeletion",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Enabled" => StoredKeyState::Enabled,
            "Disabled" => StoredKeyState::Disabled,
            "PendingDeletion" => StoredKeyState::PendingDeletion,
            _ => return None,
        })
    }
}

/// One key's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Key id.
    pub id: Uuid,
    /// The account the key belongs to.
    pub account_id: String,
    /// Unix millis.
    pub created_at: i64,
    /// Description.
    pub description: String,
    /// State.
    pub state: StoredKeyState,
    /// Key usage.
    pub key_usage: String,
    /// Key spec.
    pub key_spec: String,
    /// Origin.
    pub origin: String,
    /// Key policy document, as given.
    pub policy: String,
    /// When the key will be deleted (unix millis), while pending deletion.
    pub deletion_date: Option<i64>,
    /// The window chosen when deletion was scheduled.
    pub pending_window_days: Option<i64>,
    /// Automatic rotation period; `None` when automatic rotation is off.
    pub rotation_period_days: Option<i64>,
    /// When automatic rotation is next due (unix millis).
    pub next_rotation: Option<i64>,
    /// Optimistic concurrency counter.
    pub revision: i64,
    /// The custom key store holding the key's material (origin `AWS_CLOUDHSM`); `None` for keys
    /// whose material is wrapped by the root of trust.
    pub custom_key_store_id: Option<String>,
}

/// One custom key store's row. The password stays wrapped by the root of trust.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomKeyStoreRow {
    /// `cks-` and 17 hex digits.
    pub id: String,
    /// The account that owns it.
    pub account_id: String,
    /// Friendly name, unique in its account.
    pub name: String,
    /// The CloudHSM cluster id (a token configured on the server).
    pub cluster_id: String,
    /// The trust anchor certificate as given (PEM).
    pub trust_anchor: String,
    /// The token's user PIN (`kmsuser`'s password), wrapped by the root of trust.
    pub wrapped_password: Vec<u8>,
    /// Connected or not (stored as AWS names it: `CONNECTED`, `DISCONNECTED`, ...).
    pub connection_state: ConnectionState,
    /// AWS's `ConnectionErrorCode` while `FAILED`.
    pub connection_error: Option<String>,
    /// Unix millis.
    pub created_at: i64,
    /// Optimistic concurrency counter.
    pub revision: i64,
}

impl std::fmt::Debug for CustomKeyStoreRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomKeyStoreRow")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("cluster_id", &self.cluster_id)
            .field("connection_state", &self.connection_state)
            .field("connection_error", &self.connection_error)
            .finish_non_exhaustive()
    }
}

/// One version of a key's material, wrapped by the root of trust.
#[derive(Debug, Clone)]
pub struct MaterialRow {
    /// Version, from 1.
    pub version: u32,
    /// Wrapped material.
    pub wrapped: Vec<u8>,
    /// Unix millis.
    pub created_at: i64,
    /// `AUTOMATIC`, `ON_DEMAND`, or `None` for the first version.
    pub rotation_type: Option<String>,
}

/// An alias row.
#[derive(Debug, Clone)]
pub struct AliasRow {
    /// `alias/...`.
    pub name: String,
    /// Target key.
    pub key_id: Uuid,
    /// Unix millis.
    pub created_at: i64,
    /// Unix millis.
    pub updated_at: i64,
}

/// One secret the store keeps wrapped by the root of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WrappedSecret {
    /// A version of a key's material.
    Material {
        /// The key.
        key_id: Uuid,
        /// The version.
        version: u32,
        /// Wrapped material.
        wrapped: Vec<u8>,
    },
    /// A user's secret access key.
    Principal {
        /// Its access key id.
        access_key_id: String,
        /// Wrapped secret.
        wrapped: Vec<u8>,
    },
    /// A custom key store's password.
    KeyStorePassword {
        /// The store's id.
        store_id: String,
        /// Wrapped password.
        wrapped: Vec<u8>,
    },
    /// A metadata value (the root key check value).
    Meta {
        /// Its name.
        name: String,
        /// Wrapped value.
        wrapped: Vec<u8>,
    },
}

/// The database behind a [`crate::Kms`].
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite (one writer) rather than PostgreSQL: how [`Store::begin_counted`] serializes.
    sqlite: bool,
}

fn uuid_of(s: &str) -> Result<Uuid> {
    Uuid::from_str(s)
        .map_err(|_| KmsError::Internal("The key store holds a malformed key id.".into()))
}

fn key_from_row(r: &AnyRow) -> Result<KeyRow> {
    let state: String = r.try_get("key_state")?;
    Ok(KeyRow {
        id: uuid_of(&r.try_get::<String, _>("key_id")?)?,
        account_id: r.try_get("account_id")?,
        created_at: r.try_get("created_at")?,
        description: r.try_get("description")?,
        state: StoredKeyState::parse(&state).ok_or_else(|| {
            KmsError::Internal("The key store holds an unknown key state.".into())
        })?,
        key_usage: r.try_get("key_usage")?,
        key_spec: r.try_get("key_spec")?,
        origin: r.try_get("origin")?,
        policy: r.try_get("policy")?,
        deletion_date: r.try_get("deletion_date")?,
        pending_window_days: r.try_get("pending_window_days")?,
        rotation_period_days: r.try_get("rotation_period_days")?,
        next_rotation: r.try_get("next_rotation")?,
        revision: r.try_get("revision")?,
        custom_key_store_id: r.try_get("custom_key_store_id")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// How long a call waits for a database connection before it fails with `KMSInternalException`.
/// While PostgreSQL is away (restarting, failing over) connecting is retried until then, so an
/// outage shorter than this is ridden out, and a longer one answers every call with a retryable 500
/// well within the endpoint's request timeout, never a hang.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long [`Store::connect`] waits for a database that refuses connections (still starting).
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Store {
    /// Connects (`sqlite://path?mode=rwc` or `postgres://...`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            restrict_sqlite_file(url)?;
        }
        let memory = url.contains(":memory:");
        let options = AnyPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // An in-memory SQLite database exists per connection: keep one, for ever (the pool
            // otherwise closes a connection after 30 minutes, or 10 idle, and the data with it).
            .max_connections(if memory {
                1
            } else if sqlite {
                4
            } else {
                16
            })
            .max_lifetime((!memory).then_some(std::time::Duration::from_secs(30 * 60)))
            .idle_timeout((!memory).then_some(std::time::Duration::from_secs(10 * 60)))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // WAL + FULL: a commit is on disk before the call returns (kill -9 and power
                        // loss safe); secure_delete overwrites destroyed key material in the file;
                        // foreign keys enforced as PostgreSQL enforces them (SQLite's default is off).
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                             PRAGMA busy_timeout=10000; PRAGMA secure_delete=ON; \
                             PRAGMA foreign_keys=ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            // A connection handed back inside a transaction (its ROLLBACK failed, as after SQLite
            // answered "disk full" and rolled back on its own) would keep the transaction, or
            // sqlx's count of it, open for the next caller: close it rather than reuse it. The
            // ping first lets a rollback that a dropped transaction queued finish.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        conn.ping().await?;
                    }
                    Ok(!conn.is_in_transaction())
                })
            });
        // A database still starting refuses connections: wait for it at start-up as before the
        // per-call wait was shortened, retrying what timed out.
        let started = std::time::Instant::now();
        let pool = loop {
            match options.clone().connect(url).await {
                Err(sqlx::Error::PoolTimedOut) if started.elapsed() < STARTUP_WAIT => continue,
                r => {
                    break r.map_err(|e| {
                        KmsError::Internal(format!("Cannot open the key store: {e}"))
                    })?
                }
            }
        };
        let store = Store { pool, sqlite };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS envelope_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, migration) in MIGRATIONS {
            let mut tx = self.begin_write().await?;
            let sql = match migration {
                Migration::Portable(sql) => sql,
                Migration::PerBackend { sqlite, postgres } => {
                    if tx.backend_name() == "SQLite" {
                        sqlite
                    } else {
                        postgres
                    }
                }
            };
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM envelope_schema WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            let res =
                sqlx::query("INSERT INTO envelope_schema (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(crate::now_millis())
                    .execute(&mut *tx)
                    .await;
            match res {
                // Another node applied it first: its transaction won, ours rolls back.
                Err(e) if is_unique_violation(&e) => continue,
                r => r?,
            };
            tx.commit().await?;
        }
        Ok(())
    }

    /// Gives every row the migration to accounts left without one (`''`) to `home`, the server's
    /// home account. Idempotent; a no-op once done.
    pub async fn adopt_unowned_rows(&self, home: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for table in ["kms_keys", "kms_aliases", "custom_key_stores"] {
            sqlx::query(&format!(
                "UPDATE {table} SET account_id = $1 WHERE account_id = ''"
            ))
            .bind(home)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A value from the metadata table.
    pub async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM envelope_meta WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a metadata value unless one exists; returns false if it existed.
    pub async fn meta_put_new(&self, name: &str, value: &[u8]) -> Result<bool> {
        match sqlx::query("INSERT INTO envelope_meta (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// True when the store holds no keys and no access keys (a new data directory).
    pub async fn is_empty(&self) -> Result<bool> {
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kms_keys")
            .fetch_one(&self.pool)
            .await?;
        let principals: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM iam_access_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(keys == 0 && principals == 0)
    }

    /// Inserts a new key with its first material version (none for a key in a custom key store,
    /// whose material is in the token) and tags, atomically, unless its account has `max_keys`
    /// keys already ([`Checked::Full`]) or its custom key store is gone or no longer connected
    /// ([`Checked::NoOwner`]). Counted and written in one counted transaction, the store's row
    /// locked.
    pub async fn insert_key(
        &self,
        k: &KeyRow,
        material: Option<&MaterialRow>,
        tags: &[(String, String)],
        max_keys: i64,
    ) -> Result<Checked> {
        let mut tx = self.begin_counted("keys", &k.account_id).await?;
        if quotas::count_on(&mut *tx, quotas::KEYS, &k.account_id).await? >= max_keys {
            return Ok(Checked::Full);
        }
        if let Some(store_id) = &k.custom_key_store_id {
            let connected = sqlx::query(
                "UPDATE custom_key_stores SET store_id = store_id \
                 WHERE store_id = $1 AND connection_state = 'CONNECTED'",
            )
            .bind(store_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if connected != 1 {
                return Ok(Checked::NoOwner);
            }
        }
        sqlx::query(
            "INSERT INTO kms_keys (key_id, created_at, description, key_state, key_usage, key_spec, origin, \
             policy, deletion_date, pending_window_days, rotation_period_days, next_rotation, revision, \
             custom_key_store_id, account_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(k.id.to_string())
        .bind(k.created_at)
        .bind(&k.description)
        .bind(k.state.as_str())
        .bind(&k.key_usage)
        .bind(&k.key_spec)
        .bind(&k.origin)
        .bind(&k.policy)
        .bind(k.deletion_date)
        .bind(k.pending_window_days)
        .bind(k.rotation_period_days)
        .bind(k.next_rotation)
        .bind(k.revision)
        .bind(k.custom_key_store_id.clone())
        .bind(&k.account_id)
        .execute(&mut *tx)
        .await?;
        if let Some(material) = material {
            insert_material(&mut tx, &k.id, material).await?;
        }
        for (tk, tv) in tags {
            sqlx::query("INSERT INTO kms_tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3)")
                .bind(k.id.to_string())
                .bind(tk)
                .bind(tv)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Checked::Written)
    }

    /// A key by id.
    pub async fn get_key(&self, id: &Uuid) -> Result<Option<KeyRow>> {
        sqlx::query("SELECT * FROM kms_keys WHERE key_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    /// Every material version of a key, oldest first.
    pub async fn get_materials(&self, id: &Uuid) -> Result<Vec<MaterialRow>> {
        let rows = sqlx::query(
            "SELECT version, wrapped, created_at, rotation_type FROM kms_key_material \
             WHERE key_id = $1 ORDER BY version",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MaterialRow {
                    version: u32::try_from(r.try_get::<i64, _>("version")?)
                        .map_err(|_| KmsError::Internal("Bad material version.".into()))?,
                    wrapped: r.try_get("wrapped")?,
                    created_at: r.try_get("created_at")?,
                    rotation_type: r.try_get("rotation_type")?,
                })
            })
            .collect()
    }

    /// Writes a changed key if nobody changed it since `k.revision` was read; false on a conflict.
    pub async fn update_key(&self, k: &KeyRow) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let ok = update_key_in(&mut tx, k).await?;
        tx.commit().await?;
        Ok(ok)
    }

    /// Adds a material version and writes the key (compare-and-swap), atomically.
    pub async fn add_material(&self, k: &KeyRow, material: &MaterialRow) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if !update_key_in(&mut tx, k).await? {
            return Ok(false);
        }
        match insert_material(&mut tx, &k.id, material).await {
            Err(KmsError::AlreadyExists(_)) => return Ok(false),
            r => r?,
        }
        tx.commit().await?;
        Ok(true)
    }

    /// An account's keys in id order after `after`, at most `limit` (+1 to tell whether more
    /// follow).
    pub async fn list_keys(
        &self,
        account: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT key_id FROM kms_keys WHERE account_id = $1 AND key_id > $2 ORDER BY key_id LIMIT $3",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|s| uuid_of(s)).collect()
    }

    /// Keys whose deletion date has passed.
    pub async fn keys_due_for_deletion(&self, now: i64) -> Result<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT key_id FROM kms_keys WHERE key_state = 'PendingDeletion' AND deletion_date <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|s| uuid_of(s)).collect()
    }

    /// Enabled keys whose automatic rotation is due.
    pub async fn keys_due_for_rotation(&self, now: i64) -> Result<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT key_id FROM kms_keys WHERE key_state = 'Enabled' AND next_rotation IS NOT NULL \
             AND next_rotation <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|s| uuid_of(s)).collect()
    }

    /// Deletes a key, its material, aliases and tags, if it is still pending deletion at
    /// `revision`. Returns whether it was deleted.
    pub async fn destroy_key(&self, k: &KeyRow) -> Result<bool> {
        let id = k.id.to_string();
        let mut tx = self.begin_write().await?;
        // Children first (foreign keys), then the key row under the revision check.
        for table in ["kms_aliases", "kms_tags", "kms_key_material"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE key_id = $1"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query(
            "DELETE FROM kms_keys WHERE key_id = $1 AND revision = $2 AND key_state = 'PendingDeletion'",
        )
        .bind(&id)
        .bind(k.revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            tx.commit().await?;
            Ok(true)
        } else {
            tx.rollback().await?;
            Ok(false)
        }
    }

    /// Replaces every wrapped secret (all key material versions, all access keys' secrets, all
    /// custom key store passwords, and the metadata values `meta_names` that exist) with what `rewrap` returns
    /// for it, in order: all or nothing. The secrets are read, then `rewrap` runs (it may take long:
    /// one HSM call per secret) with no transaction open, then one short transaction writes every
    /// new value under a compare-and-swap on the old one and checks that no secret was added
    /// meanwhile. Fails, changing nothing, if `rewrap` fails or the store changed. Returns how many
    /// secrets were rewritten.
    pub async fn rewrap_all<F, Fut>(&self, meta_names: &[&str], rewrap: F) -> Result<usize>
    where
        F: FnOnce(Vec<WrappedSecret>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Vec<u8>>>>,
    {
        let all = self.wrapped_secrets(meta_names).await?;
        let count = all.len();
        let new = rewrap(all.clone()).await?;
        if new.len() != count {
            return Err(KmsError::Internal(
                "Re-wrapping returned the wrong number of secrets.".into(),
            ));
        }
        let changed = || {
            KmsError::Internal(
                "The key store changed while re-wrapping; nothing was changed.".into(),
            )
        };
        let mut tx = self.begin_write().await?;
        for (old, new) in all.iter().zip(&new) {
            let q = match old {
                WrappedSecret::Material {
                    key_id,
                    version,
                    wrapped,
                } => sqlx::query(
                    "UPDATE kms_key_material SET wrapped = $1 WHERE key_id = $2 AND version = $3 \
                     AND wrapped = $4",
                )
                .bind(new)
                .bind(key_id.to_string())
                .bind(i64::from(*version))
                .bind(wrapped),
                WrappedSecret::Principal {
                    access_key_id,
                    wrapped,
                } => sqlx::query(
                    "UPDATE iam_access_keys SET wrapped_secret = $1 WHERE access_key_id = $2 \
                     AND wrapped_secret = $3",
                )
                .bind(new)
                .bind(access_key_id)
                .bind(wrapped),
                WrappedSecret::KeyStorePassword { store_id, wrapped } => sqlx::query(
                    "UPDATE custom_key_stores SET wrapped_password = $1, revision = revision + 1 \
                     WHERE store_id = $2 AND wrapped_password = $3",
                )
                .bind(new)
                .bind(store_id)
                .bind(wrapped),
                WrappedSecret::Meta { name, wrapped } => sqlx::query(
                    "UPDATE envelope_meta SET value = $1 WHERE name = $2 AND value = $3",
                )
                .bind(new)
                .bind(name)
                .bind(wrapped),
            };
            if q.execute(&mut *tx).await?.rows_affected() != 1 {
                return Err(changed());
            }
        }
        // Rows added meanwhile would stay under the old root: count again before committing.
        let mut now = 0i64;
        for table in ["kms_key_material", "iam_access_keys", "custom_key_stores"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut *tx)
                .await?;
            now += n;
        }
        let seen = all
            .iter()
            .filter(|w| !matches!(w, WrappedSecret::Meta { .. }))
            .count();
        if usize::try_from(now).ok() != Some(seen) {
            return Err(changed());
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Every secret the store keeps wrapped by the root of trust, in a fixed order.
    async fn wrapped_secrets(&self, meta_names: &[&str]) -> Result<Vec<WrappedSecret>> {
        let mut all = Vec::new();
        for r in sqlx::query(
            "SELECT key_id, version, wrapped FROM kms_key_material ORDER BY key_id, version",
        )
        .fetch_all(&self.pool)
        .await?
        {
            all.push(WrappedSecret::Material {
                key_id: uuid_of(&r.try_get::<String, _>("key_id")?)?,
                version: u32::try_from(r.try_get::<i64, _>("version")?)
                    .map_err(|_| KmsError::Internal("Bad material version.".into()))?,
                wrapped: r.try_get("wrapped")?,
            });
        }
        for r in sqlx::query(
            "SELECT access_key_id, wrapped_secret FROM iam_access_keys ORDER BY access_key_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            all.push(WrappedSecret::Principal {
                access_key_id: r.try_get("access_key_id")?,
                wrapped: r.try_get("wrapped_secret")?,
            });
        }
        for r in sqlx::query(
            "SELECT store_id, wrapped_password FROM custom_key_stores ORDER BY store_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            all.push(WrappedSecret::KeyStorePassword {
                store_id: r.try_get("store_id")?,
                wrapped: r.try_get("wrapped_password")?,
            });
        }
        for name in meta_names {
            if let Some(wrapped) = self.meta_get(name).await? {
                all.push(WrappedSecret::Meta {
                    name: name.to_string(),
                    wrapped,
                });
            }
        }
        Ok(all)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_material(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &Uuid,
    m: &MaterialRow,
) -> Result<()> {
    match sqlx::query(
        "INSERT INTO kms_key_material (key_id, version, wrapped, created_at, rotation_type) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(i64::from(m.version))
    .bind(&m.wrapped)
    .bind(m.created_at)
    .bind(m.rotation_type.clone())
    .execute(&mut **tx)
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => {
            Err(KmsError::AlreadyExists("material version exists".into()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn update_key_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, k: &KeyRow) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE kms_keys SET description = $1, key_state = $2, deletion_date = $3, pending_window_days = $4, \
         rotation_period_days = $5, next_rotation = $6, policy = $7, revision = revision + 1 \
         WHERE key_id = $8 AND revision = $9",
    )
    .bind(&k.description)
    .bind(k.state.as_str())
    .bind(k.deletion_date)
    .bind(k.pending_window_days)
    .bind(k.rotation_period_days)
    .bind(k.next_rotation)
    .bind(&k.policy)
    .bind(k.id.to_string())
    .bind(k.revision)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn sqlite_enforces_foreign_keys_as_postgresql_does() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(on, 1);
        let orphan = sqlx::query(
            "INSERT INTO kms_tags (key_id, tag_key, tag_value) VALUES ('no-such-key', 'k', 'v')",
        )
        .execute(&store.pool)
        .await;
        assert!(orphan.is_err(), "a tag of no key was stored");
    }

    /// Schema 6 rebuilds `custom_key_stores` on SQLite (names unique per account): the stores and
    /// the keys in them come through it, and foreign keys still hold.
    #[tokio::test]
    async fn schema_6_keeps_stores_and_their_keys_and_scopes_names_to_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        {
            // A store at schema 5, as the previous release left it.
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|c, _| {
                    Box::pin(async move { c.execute("PRAGMA foreign_keys=ON;").await.map(|_| ()) })
                });
            sqlx::any::install_default_drivers();
            let pool = pool.connect(&url).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE envelope_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for (version, m) in &MIGRATIONS[..5] {
                let Migration::Portable(sql) = m else {
                    unreachable!()
                };
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                sqlx::query("INSERT INTO envelope_schema VALUES ($1, 0)")
                    .bind(version)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            sqlx::raw_sql(
                "INSERT INTO custom_key_stores (store_id, store_name, cluster_id, trust_anchor, \
                 wrapped_password, connection_state, created_at, revision, account_id) VALUES \
                 ('cks-1', 'shared-name', 'cluster-1', 'pem', x'00', 'CONNECTED', 1, 3, '111122223333'); \
                 INSERT INTO kms_keys (key_id, created_at, description, key_state, key_usage, key_spec, \
                 origin, policy, revision, custom_key_store_id, account_id) VALUES \
                 ('k-in-store', 1, '', 'Enabled', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_CLOUDHSM', \
                 '', 0, 'cks-1', '111122223333'), \
                 ('k-plain', 1, '', 'Enabled', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', '', 0, \
                 NULL, '111122223333');",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = Store::connect(&url).await.unwrap();
        let row = store.get_custom_key_store("cks-1").await.unwrap().unwrap();
        assert_eq!(
            (row.name.as_str(), row.account_id.as_str(), row.revision),
            ("shared-name", "111122223333", 3)
        );
        let links: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT key_id, custom_key_store_id FROM kms_keys ORDER BY key_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            links,
            vec![
                ("k-in-store".to_string(), Some("cks-1".to_string())),
                ("k-plain".to_string(), None)
            ]
        );
        // The same name in another account is allowed, twice in one account it is not.
        let mut other = row.clone();
        other.id = "cks-2".into();
        other.account_id = "444455556666".into();
        assert_eq!(
            store
                .insert_custom_key_store(&other, 10, &|_| false)
                .await
                .unwrap(),
            NewStore::Created
        );
        other.id = "cks-3".into();
        let e = store
            .insert_custom_key_store(&other, 10, &|_| false)
            .await
            .unwrap_err();
        assert!(matches!(e, KmsError::CustomKeyStoreNameInUse(_)), "{e:?}");
        // Foreign keys still hold against the rebuilt table; a store with keys cannot be dropped.
        let dangling = sqlx::query(
            "UPDATE kms_keys SET custom_key_store_id = 'cks-9' WHERE key_id = 'k-plain'",
        )
        .execute(&store.pool)
        .await;
        assert!(
            dangling.is_err(),
            "a key was put in a store that does not exist"
        );
        let e = store.delete_custom_key_store(&row).await.unwrap_err();
        assert!(matches!(e, KmsError::CustomKeyStoreHasCmks(_)), "{e:?}");
    }
}
