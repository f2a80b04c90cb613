//! Tags: one row per (key, tag key). A key's tags are counted against their quota and written with
//! the key's row locked (`serial.rs`).

use sqlx::Row;
use uuid::Uuid;

use super::serial::lock_row;
use super::Store;
use crate::error::Result;

impl Store {
    /// Adds tags or replaces their values, counted and written with the key's row locked: when the key would have more than `max` tags, writes nothing and answers false.
    pub async fn put_tags(
        &self,
        key: &Uuid,
        tags: &[(String, String)],
        max: usize,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock_row(&mut tx, "kms_keys", "key_id", &key.to_string()).await?;
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT tag_key FROM kms_tags WHERE key_id = $1")
                .bind(key.to_string())
                .fetch_all(&mut *tx)
                .await?;
        let added = tags.iter().filter(|(k, _)| !existing.contains(k)).count();
        if existing.len() + added > max {
            tx.rollback().await?;
            return Ok(false);
        }
        for (k, v) in tags {
            sqlx::query(
                "INSERT INTO kms_tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
            )
            .bind(key.to_string())
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Removes tags by key, with the key's row locked as [`Self::put_tags`] locks it: two tag changes
    /// of one key run one after the other (on PostgreSQL, rows written in different orders by two
    /// transactions at once deadlock, 40P01).
    pub async fn delete_tags(&self, key: &Uuid, tag_keys: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        lock_row(&mut tx, "kms_keys", "key_id", &key.to_string()).await?;
        for k in tag_keys {
            sqlx::query("DELETE FROM kms_tags WHERE key_id = $1 AND tag_key = $2")
                .bind(key.to_string())
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Tags of a key in tag-key order after `after`.
    pub async fn list_tags(
        &self,
        key: &Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT tag_key, tag_value FROM kms_tags WHERE key_id = $1 AND tag_key > $2 \
             ORDER BY tag_key LIMIT $3",
        )
        .bind(key.to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tag_key")?, r.try_get("tag_value")?)))
            .collect()
    }

    /// Number of tags on a key.
    pub async fn count_tags(&self, key: &Uuid) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM kms_tags WHERE key_id = $1")
                .bind(key.to_string())
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
