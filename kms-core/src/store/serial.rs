//! Write transactions, and the locks that make a check and the write it allows one step.
//!
//! A check, then a write in another step, lets concurrent calls slip between them: sixteen CreateKey
//! calls racing for the last place of an account all saw room; an AttachUserPolicy racing the
//! policy's DeletePolicy left an attachment to a deleted policy (in force again once a policy of that
//! name was made); a CreateAccessKey racing its user's DeleteUser was a foreign-key violation (a
//! 500); and on SQLite a deferred transaction that read, then wrote, failed with SQLITE_BUSY while
//! anything else wrote (a 500 again). So:
//! - every write transaction begins with [`Store::begin_write`]: SQLite's write lock is taken at
//!   `BEGIN IMMEDIATE`, so what a transaction reads is what it writes over;
//! - a write under a quota counts and writes with its scope locked: the row the quota is counted
//!   under (the key, for aliases, tags and grants; the user, group or role, for access keys,
//!   attachments and inline policy size), or, where there is no such row, a
//!   [`Store::begin_counted`] lock (keys and custom key stores per account);
//! - a write that needs a parent row (a user's access key, an entity's policy, a membership, an
//!   attachment's policy) locks that row first ([`lock_row`], [`lock_owner`]) and writes nothing if
//!   it is gone; a delete locks its row before it counts what would block it. On PostgreSQL the row
//!   lock orders the two; on SQLite the one writer does.
//!
//! (On-demand rotations are versions, which a primary key keeps unique.)

use sqlx::{Any, Transaction};

use super::Store;
use crate::error::{KmsError, Result};

/// What a checked write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Checked {
    /// Written (or already so).
    Written,
    /// Nothing written: the quota is reached.
    Full,
    /// Nothing written: the owner (the user, group or role, or the group of a membership) is gone.
    NoOwner,
    /// Nothing written: the other party (the managed policy of an attachment, the user of a
    /// membership) is gone.
    NoTarget,
}

impl Store {
    /// Begins a transaction that writes: `BEGIN IMMEDIATE` on SQLite (its one write lock taken at
    /// the start; a deferred transaction that reads first cannot take it later while another
    /// writes, and fails with SQLITE_BUSY), a plain `BEGIN` on PostgreSQL.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        Ok(if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }

    /// Begins a write transaction in which no other counted transaction of the same `kind` and
    /// `owner` (`"keys"` and an account id, `"aliases"` and a key id, …) runs until this one ends,
    /// on this node or another on the same database. SQLite: [`Self::begin_write`] (one writer).
    /// PostgreSQL: a transaction-scoped advisory lock on a hash of the scope; at READ COMMITTED each
    /// later statement sees what the previous holder committed. Two scopes whose hashes collide only
    /// wait for each other.
    pub(crate) async fn begin_counted(
        &self,
        kind: &str,
        owner: &str,
    ) -> Result<Transaction<'static, Any>> {
        let mut tx = self.begin_write().await?;
        if !self.sqlite {
            // The lock function returns void, which the Any driver cannot decode: select around it.
            sqlx::query(
                "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS held",
            )
            .bind(format!("{kind}/{owner}"))
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx)
    }
}

/// Locks the row of `table` whose `column` is `value` until `tx` ends; false if there is no such
/// row. PostgreSQL: `FOR NO KEY UPDATE`, the lock an UPDATE takes (a delete of the row, or another
/// lock of it, waits; a row that refers to it may still be inserted). SQLite: a read, as the
/// transaction holds the database's one write lock since `BEGIN IMMEDIATE` ([`Store::begin_write`]);
/// an UPDATE that changed nothing, as this once was, rewrote the row and its indexes and checked
/// every table that refers to it, which cost a quarter of TagResource's throughput.
pub(super) async fn lock_row(
    tx: &mut Transaction<'_, Any>,
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<bool> {
    let sqlite = tx.backend_name() == "SQLite";
    let lock = if sqlite { "" } else { " FOR NO KEY UPDATE" };
    let found: Option<i32> =
        sqlx::query_scalar(&format!("SELECT 1 FROM {table} WHERE {column} = $1{lock}"))
            .bind(value)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// Locks the row of an IAM user, group or role by its unique id, whose prefix names its kind (AIDA…,
/// AGPA…, AROA…); false if it is gone.
pub(super) async fn lock_owner(tx: &mut Transaction<'_, Any>, owner_id: &str) -> Result<bool> {
    let (table, column) = match owner_id.get(..4) {
        Some("AIDA") => ("iam_users", "user_id"),
        Some("AGPA") => ("iam_groups", "group_id"),
        Some("AROA") => ("iam_roles", "role_id"),
        _ => {
            return Err(KmsError::Internal(
                "An IAM entity id of no known kind.".into(),
            ))
        }
    };
    lock_row(tx, table, column, owner_id).await
}
