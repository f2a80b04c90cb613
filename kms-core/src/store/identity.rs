//! IAM rows: accounts, users and their access keys (secrets wrapped by the root of trust), groups
//! and membership, roles, inline and customer managed policies, attachments. Entities are keyed by
//! their unique ids; names are unique per account whatever their case (`name_key`).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::serial::{lock_owner, lock_row, Checked};
use super::{is_unique_violation, Store};
use crate::error::{KmsError, Result};
use crate::identity::ADMINISTRATOR_ACCESS;
use crate::policy::SizeLimit;

/// Which of an account's users, groups or roles a listing reads (ListUsers, ListGroups, ListRoles):
/// those whose path starts with `path_prefix`, whose name (`name_key`: any case, lower-cased) is
/// `from` or after it, in bytewise name order, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct EntityPage<'a> {
    /// `PathPrefix` (`/` lists every path).
    pub path_prefix: &'a str,
    /// `Marker`, the lower-cased name to start at (empty: the first).
    pub from: &'a str,
    /// The most rows to read.
    pub limit: i64,
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Unique id (`AIDA…`).
    pub user_id: String,
    /// Twelve-digit account id.
    pub account_id: String,
    /// Name as created.
    pub user_name: String,
    /// Path (`/`, `/division/`).
    pub path: String,
    /// Tags (`aws:PrincipalTag/…`).
    pub tags: BTreeMap<String, String>,
    /// Unix millis.
    pub created_at: i64,
}

/// An access key of a user (the secret stays wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    /// `AKIA…` (or an adopted id).
    pub access_key_id: String,
    /// The owning user's unique id.
    pub user_id: String,
    /// The secret access key wrapped by the root of trust.
    pub wrapped_secret: Vec<u8>,
    /// Whether requests signed with it are accepted.
    pub active: bool,
    /// Unix millis.
    pub created_at: i64,
}

/// An IAM group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// Unique id (`AGPA…`).
    pub group_id: String,
    /// Account id.
    pub account_id: String,
    /// Name as created.
    pub group_name: String,
    /// Path.
    pub path: String,
    /// Unix millis.
    pub created_at: i64,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    /// Unique id (`AROA…`).
    pub role_id: String,
    /// Account id.
    pub account_id: String,
    /// Name as created.
    pub role_name: String,
    /// Path.
    pub path: String,
    /// The trust policy (`AssumeRolePolicyDocument`) as given.
    pub trust_policy: String,
    /// Description.
    pub description: Option<String>,
    /// Longest session, seconds (3600 to 43200).
    pub max_session_duration: i64,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Unix millis.
    pub created_at: i64,
}

/// A customer managed policy (one version, `v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicyRow {
    /// Unique id (`ANPA…`).
    pub policy_id: String,
    /// Account id.
    pub account_id: String,
    /// Name.
    pub policy_name: String,
    /// Path.
    pub path: String,
    /// `arn:aws:iam::ACCT:policy{path}NAME`.
    pub arn: String,
    /// The document as given.
    pub document: String,
    /// Description.
    pub description: Option<String>,
    /// Unix millis.
    pub created_at: i64,
}

/// What keeps an entity from being deleted (IAM's DeleteConflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// It has access keys.
    AccessKeys,
    /// It has inline policies.
    InlinePolicies,
    /// It has attached policies.
    AttachedPolicies,
    /// It is in a group (a user) or has members (a group).
    Membership,
    /// The policy is attached to something.
    Attached,
}

fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn tags_of(r: &AnyRow) -> Result<BTreeMap<String, String>> {
    let text: String = r.try_get("tags")?;
    serde_json::from_str(&text)
        .map_err(|_| KmsError::Internal("The key store holds malformed tags.".into()))
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

fn user_from(r: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        user_id: r.try_get("user_id")?,
        account_id: r.try_get("account_id")?,
        user_name: r.try_get("user_name")?,
        path: r.try_get("path")?,
        tags: tags_of(r)?,
        created_at: r.try_get("created_at")?,
    })
}

fn key_from(r: &AnyRow) -> Result<AccessKeyRow> {
    Ok(AccessKeyRow {
        access_key_id: r.try_get("access_key_id")?,
        user_id: r.try_get("user_id")?,
        wrapped_secret: r.try_get("wrapped_secret")?,
        active: r.try_get::<String, _>("status")? == "Active",
        created_at: r.try_get("created_at")?,
    })
}

fn group_from(r: &AnyRow) -> Result<GroupRow> {
    Ok(GroupRow {
        group_id: r.try_get("group_id")?,
        account_id: r.try_get("account_id")?,
        group_name: r.try_get("group_name")?,
        path: r.try_get("path")?,
        created_at: r.try_get("created_at")?,
    })
}

fn role_from(r: &AnyRow) -> Result<RoleRow> {
    Ok(RoleRow {
        role_id: r.try_get("role_id")?,
        account_id: r.try_get("account_id")?,
        role_name: r.try_get("role_name")?,
        path: r.try_get("path")?,
        trust_policy: r.try_get("trust_policy")?,
        description: r.try_get("description")?,
        max_session_duration: r.try_get("max_session_duration")?,
        tags: tags_of(r)?,
        created_at: r.try_get("created_at")?,
    })
}

fn policy_from(r: &AnyRow) -> Result<ManagedPolicyRow> {
    Ok(ManagedPolicyRow {
        policy_id: r.try_get("policy_id")?,
        account_id: r.try_get("account_id")?,
        policy_name: r.try_get("policy_name")?,
        path: r.try_get("path")?,
        arn: r.try_get("arn")?,
        document: r.try_get("document")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

/// An insert's unique violation as AlreadyExists with `what`.
fn exists(e: sqlx::Error, what: String) -> KmsError {
    if is_unique_violation(&e) {
        KmsError::AlreadyExists(what)
    } else {
        e.into()
    }
}

impl Store {
    /// Gives rows a migration wrote without an account (`''`) the home account, and records the
    /// home account. Idempotent; every node may run it at start.
    pub async fn adopt_home_account(&self, home: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for table in [
            "iam_users",
            "iam_groups",
            "iam_roles",
            "iam_managed_policies",
        ] {
            sqlx::query(&format!(
                "UPDATE {table} SET account_id = $1 WHERE account_id = ''"
            ))
            .bind(home)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.ensure_account(home).await
    }

    /// Records an account (no-op if known).
    pub async fn ensure_account(&self, account_id: &str) -> Result<()> {
        match sqlx::query("INSERT INTO iam_accounts (account_id, created_at) VALUES ($1, $2)")
            .bind(account_id)
            .bind(crate::now_millis())
            .execute(&self.pool)
            .await
        {
            Err(e) if !is_unique_violation(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    // ----- users and access keys ----------------------------------------------------------------

    /// Adds a user, with `key` (if any) in the same transaction; AlreadyExists if the name is taken.
    pub async fn insert_user(&self, u: &UserRow, key: Option<&AccessKeyRow>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO iam_users (user_id, account_id, user_name, name_key, path, tags, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&u.user_id)
        .bind(&u.account_id)
        .bind(&u.user_name)
        .bind(name_key(&u.user_name))
        .bind(&u.path)
        .bind(tags_text(&u.tags))
        .bind(u.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists(e, format!("User with name {} already exists.", u.user_name)))?;
        if let Some(k) = key {
            insert_key_in(&mut tx, k).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A user by name (any case) in an account.
    pub async fn user_by_name(&self, account: &str, name: &str) -> Result<Option<UserRow>> {
        let r = sqlx::query("SELECT * FROM iam_users WHERE account_id = $1 AND name_key = $2")
            .bind(account)
            .bind(name_key(name))
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(user_from).transpose()
    }

    /// A user by unique id.
    pub async fn user_by_id(&self, user_id: &str) -> Result<Option<UserRow>> {
        let r = sqlx::query("SELECT * FROM iam_users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(user_from).transpose()
    }

    /// Whether any account has a user (a first start has none).
    pub async fn has_users(&self) -> Result<bool> {
        let one: Option<i32> = sqlx::query_scalar("SELECT 1 FROM iam_users LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(one.is_some())
    }

    /// Every account's users, by account and name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT * FROM iam_users ORDER BY account_id, name_key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from).collect()
    }

    /// A page of an account's users (ListUsers).
    pub async fn users_page(&self, account: &str, page: &EntityPage<'_>) -> Result<Vec<UserRow>> {
        self.entity_page("iam_users", user_from, account, page)
            .await
    }

    /// A page of `account`'s rows of `table` (`iam_users`, `iam_groups`, `iam_roles`), read by
    /// `read`. Only the page leaves the database: SQLite walks the `(account_id, name_key)` index
    /// from `page.from` and stops at the limit (reading on past rows the path prefix leaves out);
    /// PostgreSQL sorts the account's rows by bytes (a top-N sort). Names compare bytewise on both
    /// (SQLite's default collation does; PostgreSQL's may not, hence `COLLATE "C"`), so a page and
    /// its marker are the same on either.
    async fn entity_page<T>(
        &self,
        table: &'static str,
        read: fn(&AnyRow) -> Result<T>,
        account: &str,
        page: &EntityPage<'_>,
    ) -> Result<Vec<T>> {
        let bytewise = if self.sqlite { "" } else { r#" COLLATE "C""# };
        let sql = format!(
            "SELECT * FROM {table} WHERE account_id = $1 AND substr(path, 1, $2) = $3 \
             AND name_key{bytewise} >= $4 ORDER BY name_key{bytewise} LIMIT $5"
        );
        // substr counts characters on both databases, as `chars` does.
        let prefix_chars = i32::try_from(page.path_prefix.chars().count())
            .map_err(|_| KmsError::Internal("A path prefix of over 2^31 characters.".into()))?;
        let rows = sqlx::query(&sql)
            .bind(account)
            .bind(prefix_chars)
            .bind(page.path_prefix)
            .bind(page.from)
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read).collect()
    }

    /// Deletes a user that has nothing attached; the blocker otherwise (IAM's DeleteConflict). With
    /// `everything`, deletes its access keys, policies and memberships first, in the same
    /// transaction (what `envelope principal delete` does). False if there was no such user.
    pub async fn delete_user(
        &self,
        user_id: &str,
        everything: bool,
    ) -> Result<std::result::Result<bool, Blocker>> {
        let mut tx = self.begin_write().await?;
        // Locked first: a write that needs the user waits, then finds it gone (serial.rs).
        if !lock_row(&mut tx, "iam_users", "user_id", user_id).await? {
            return Ok(Ok(false));
        }
        let dependents = [
            (
                "DELETE FROM iam_access_keys WHERE user_id = $1",
                Blocker::AccessKeys,
            ),
            (
                "DELETE FROM iam_inline_policies WHERE owner_id = $1",
                Blocker::InlinePolicies,
            ),
            (
                "DELETE FROM iam_attachments WHERE owner_id = $1",
                Blocker::AttachedPolicies,
            ),
            (
                "DELETE FROM iam_group_members WHERE user_id = $1",
                Blocker::Membership,
            ),
        ];
        for (sql, blocker) in dependents {
            let n = sqlx::query(sql)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 && !everything {
                return Ok(Err(blocker));
            }
        }
        let n = sqlx::query("DELETE FROM iam_users WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(n == 1))
    }

    /// Adds an access key unless its user already has `max` (IAM: 2, then [`Checked::Full`]) or is
    /// gone ([`Checked::NoOwner`]).
    pub async fn insert_access_key(&self, k: &AccessKeyRow, max: i64) -> Result<Checked> {
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "iam_users", "user_id", &k.user_id).await? {
            return Ok(Checked::NoOwner);
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM iam_access_keys WHERE user_id = $1")
            .bind(&k.user_id)
            .fetch_one(&mut *tx)
            .await?;
        if n >= max {
            return Ok(Checked::Full);
        }
        insert_key_in(&mut tx, k).await?;
        tx.commit().await?;
        Ok(Checked::Written)
    }

    /// An access key with its user.
    pub async fn access_key(&self, access_key_id: &str) -> Result<Option<(AccessKeyRow, UserRow)>> {
        let r = sqlx::query(
            "SELECT k.access_key_id, k.wrapped_secret, k.status, k.created_at AS key_created, u.* \
             FROM iam_access_keys k JOIN iam_users u ON u.user_id = k.user_id \
             WHERE k.access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = r else { return Ok(None) };
        let user = user_from(&r)?;
        let key = AccessKeyRow {
            access_key_id: r.try_get("access_key_id")?,
            user_id: user.user_id.clone(),
            wrapped_secret: r.try_get("wrapped_secret")?,
            active: r.try_get::<String, _>("status")? == "Active",
            created_at: r.try_get("key_created")?,
        };
        Ok(Some((key, user)))
    }

    /// An access key by id, whatever its status.
    pub async fn principal_by_access_key(
        &self,
        access_key_id: &str,
    ) -> Result<Option<AccessKeyRow>> {
        Ok(self.access_key(access_key_id).await?.map(|(k, _)| k))
    }

    /// A user's access keys, oldest first.
    pub async fn list_access_keys(&self, user_id: &str) -> Result<Vec<AccessKeyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM iam_access_keys WHERE user_id = $1 ORDER BY created_at, access_key_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from).collect()
    }

    /// Sets a user's access key Active or Inactive; false if the user has no such key.
    pub async fn set_access_key_status(
        &self,
        user_id: &str,
        access_key_id: &str,
        active: bool,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE iam_access_keys SET status = $1 WHERE user_id = $2 AND access_key_id = $3",
        )
        .bind(if active { "Active" } else { "Inactive" })
        .bind(user_id)
        .bind(access_key_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Deletes a user's access key; false if the user has no such key.
    pub async fn delete_access_key(&self, user_id: &str, access_key_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM iam_access_keys WHERE user_id = $1 AND access_key_id = $2")
                .bind(user_id)
                .bind(access_key_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Every access key id (the set that answers unknown access keys without a query).
    pub async fn access_key_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT access_key_id FROM iam_access_keys")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    // ----- groups --------------------------------------------------------------------------------

    /// Adds a group; AlreadyExists if the name is taken.
    pub async fn insert_group(&self, g: &GroupRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_groups (group_id, account_id, group_name, name_key, path, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&g.group_id)
        .bind(&g.account_id)
        .bind(&g.group_name)
        .bind(name_key(&g.group_name))
        .bind(&g.path)
        .bind(g.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| exists(e, format!("Group with name {} already exists.", g.group_name)))?;
        Ok(())
    }

    /// A group by name (any case).
    pub async fn group_by_name(&self, account: &str, name: &str) -> Result<Option<GroupRow>> {
        let r = sqlx::query("SELECT * FROM iam_groups WHERE account_id = $1 AND name_key = $2")
            .bind(account)
            .bind(name_key(name))
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(group_from).transpose()
    }

    /// A page of an account's groups (ListGroups).
    pub async fn groups_page(&self, account: &str, page: &EntityPage<'_>) -> Result<Vec<GroupRow>> {
        self.entity_page("iam_groups", group_from, account, page)
            .await
    }

    /// The groups a user is in, by name.
    pub async fn groups_of_user(&self, user_id: &str) -> Result<Vec<GroupRow>> {
        let rows = sqlx::query(
            "SELECT g.* FROM iam_groups g JOIN iam_group_members m ON m.group_id = g.group_id \
             WHERE m.user_id = $1 ORDER BY g.name_key",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from).collect()
    }

    /// A group's members, by name.
    pub async fn group_members(&self, group_id: &str) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(
            "SELECT u.* FROM iam_users u JOIN iam_group_members m ON m.user_id = u.user_id \
             WHERE m.group_id = $1 ORDER BY u.name_key",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from).collect()
    }

    /// Adds a user to a group (no-op if already in it); nothing if the group
    /// ([`Checked::NoOwner`]) or the user ([`Checked::NoTarget`]) is gone.
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<Checked> {
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "iam_groups", "group_id", group_id).await? {
            return Ok(Checked::NoOwner);
        }
        if !lock_row(&mut tx, "iam_users", "user_id", user_id).await? {
            return Ok(Checked::NoTarget);
        }
        sqlx::query(
            "INSERT INTO iam_group_members (group_id, user_id) VALUES ($1, $2) \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Checked::Written)
    }

    /// Removes a user from a group; false if it was not in it.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM iam_group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Deletes a group without members or policies; the blocker otherwise.
    pub async fn delete_group(&self, group_id: &str) -> Result<std::result::Result<bool, Blocker>> {
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "iam_groups", "group_id", group_id).await? {
            return Ok(Ok(false));
        }
        for (sql, blocker) in [
            (
                "SELECT COUNT(*) FROM iam_group_members WHERE group_id = $1",
                Blocker::Membership,
            ),
            (
                "SELECT COUNT(*) FROM iam_inline_policies WHERE owner_id = $1",
                Blocker::InlinePolicies,
            ),
            (
                "SELECT COUNT(*) FROM iam_attachments WHERE owner_id = $1",
                Blocker::AttachedPolicies,
            ),
        ] {
            let n: i64 = sqlx::query_scalar(sql)
                .bind(group_id)
                .fetch_one(&mut *tx)
                .await?;
            if n > 0 {
                return Ok(Err(blocker));
            }
        }
        let n = sqlx::query("DELETE FROM iam_groups WHERE group_id = $1")
            .bind(group_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(n == 1))
    }

    // ----- roles ---------------------------------------------------------------------------------

    /// Adds a role; AlreadyExists if the name is taken.
    pub async fn insert_role(&self, r: &RoleRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_roles (role_id, account_id, role_name, name_key, path, trust_policy, \
             description, max_session_duration, tags, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.role_id)
        .bind(&r.account_id)
        .bind(&r.role_name)
        .bind(name_key(&r.role_name))
        .bind(&r.path)
        .bind(&r.trust_policy)
        .bind(r.description.clone())
        .bind(r.max_session_duration)
        .bind(tags_text(&r.tags))
        .bind(r.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| exists(e, format!("Role with name {} already exists.", r.role_name)))?;
        Ok(())
    }

    /// A role by name (any case).
    pub async fn role_by_name(&self, account: &str, name: &str) -> Result<Option<RoleRow>> {
        let r = sqlx::query("SELECT * FROM iam_roles WHERE account_id = $1 AND name_key = $2")
            .bind(account)
            .bind(name_key(name))
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(role_from).transpose()
    }

    /// A role by unique id.
    pub async fn role_by_id(&self, role_id: &str) -> Result<Option<RoleRow>> {
        let r = sqlx::query("SELECT * FROM iam_roles WHERE role_id = $1")
            .bind(role_id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(role_from).transpose()
    }

    /// A page of an account's roles (ListRoles).
    pub async fn roles_page(&self, account: &str, page: &EntityPage<'_>) -> Result<Vec<RoleRow>> {
        self.entity_page("iam_roles", role_from, account, page)
            .await
    }

    /// Deletes a role without policies; the blocker otherwise.
    pub async fn delete_role(&self, role_id: &str) -> Result<std::result::Result<bool, Blocker>> {
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "iam_roles", "role_id", role_id).await? {
            return Ok(Ok(false));
        }
        for (sql, blocker) in [
            (
                "SELECT COUNT(*) FROM iam_inline_policies WHERE owner_id = $1",
                Blocker::InlinePolicies,
            ),
            (
                "SELECT COUNT(*) FROM iam_attachments WHERE owner_id = $1",
                Blocker::AttachedPolicies,
            ),
        ] {
            let n: i64 = sqlx::query_scalar(sql)
                .bind(role_id)
                .fetch_one(&mut *tx)
                .await?;
            if n > 0 {
                return Ok(Err(blocker));
            }
        }
        let n = sqlx::query("DELETE FROM iam_roles WHERE role_id = $1")
            .bind(role_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(n == 1))
    }

    // ----- policies ------------------------------------------------------------------------------

    /// Puts (adds or replaces) an inline policy of a user, group or role, unless the owner's inline
    /// policies would then measure more than `limit` allows (false, nothing written). Measured and
    /// written with the owner's row locked.
    pub async fn put_inline_policy(
        &self,
        owner_id: &str,
        name: &str,
        document: &str,
        limit: SizeLimit,
    ) -> Result<Checked> {
        let mut tx = self.begin_write().await?;
        if !lock_owner(&mut tx, owner_id).await? {
            return Ok(Checked::NoOwner);
        }
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT document FROM iam_inline_policies WHERE owner_id = $1 AND policy_name <> $2",
        )
        .bind(owner_id)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let size = others.iter().map(|d| limit.measure(d)).sum::<usize>() + limit.measure(document);
        if size > limit.max() {
            return Ok(Checked::Full);
        }
        sqlx::query("DELETE FROM iam_inline_policies WHERE owner_id = $1 AND policy_name = $2")
            .bind(owner_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO iam_inline_policies (owner_id, policy_name, document) VALUES ($1, $2, $3)",
        )
        .bind(owner_id)
        .bind(name)
        .bind(document)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Checked::Written)
    }

    /// The inline policies of an owner: (name, document), by name.
    pub async fn inline_policies(&self, owner_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT policy_name, document FROM iam_inline_policies WHERE owner_id = $1 \
             ORDER BY policy_name",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("policy_name")?, r.try_get("document")?)))
            .collect()
    }

    /// Deletes an inline policy; false if there was none of that name.
    pub async fn delete_inline_policy(&self, owner_id: &str, name: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM iam_inline_policies WHERE owner_id = $1 AND policy_name = $2")
                .bind(owner_id)
                .bind(name)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Adds a customer managed policy; AlreadyExists if the name is taken.
    pub async fn insert_managed_policy(&self, p: &ManagedPolicyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO iam_managed_policies (policy_id, account_id, policy_name, name_key, path, arn, \
             document, description, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&p.policy_id)
        .bind(&p.account_id)
        .bind(&p.policy_name)
        .bind(name_key(&p.policy_name))
        .bind(&p.path)
        .bind(&p.arn)
        .bind(&p.document)
        .bind(p.description.clone())
        .bind(p.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            exists(
                e,
                format!("A policy called {} already exists. Duplicate names are not allowed.", p.policy_name),
            )
        })?;
        Ok(())
    }

    /// A customer managed policy by ARN.
    pub async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicyRow>> {
        let r = sqlx::query("SELECT * FROM iam_managed_policies WHERE arn = $1")
            .bind(arn)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(policy_from).transpose()
    }

    /// An account's customer managed policies, by name.
    pub async fn list_managed_policies(&self, account: &str) -> Result<Vec<ManagedPolicyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM iam_managed_policies WHERE account_id = $1 ORDER BY name_key",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from).collect()
    }

    /// Deletes a customer managed policy attached to nothing; the blocker otherwise.
    pub async fn delete_managed_policy(
        &self,
        arn: &str,
    ) -> Result<std::result::Result<bool, Blocker>> {
        let mut tx = self.begin_write().await?;
        if !lock_row(&mut tx, "iam_managed_policies", "arn", arn).await? {
            return Ok(Ok(false));
        }
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM iam_attachments WHERE policy_arn = $1")
                .bind(arn)
                .fetch_one(&mut *tx)
                .await?;
        if n > 0 {
            return Ok(Err(Blocker::Attached));
        }
        let n = sqlx::query("DELETE FROM iam_managed_policies WHERE arn = $1")
            .bind(arn)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(n == 1))
    }

    /// How many users, groups and roles a managed policy is attached to.
    pub async fn attachment_count(&self, arn: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM iam_attachments WHERE policy_arn = $1")
                .bind(arn)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Attaches a managed policy (no-op if attached), unless the owner has `max` attached already
    /// (false, nothing written). Counted and written with the owner's row locked.
    pub async fn attach_policy(&self, owner_id: &str, arn: &str, max: usize) -> Result<Checked> {
        let mut tx = self.begin_write().await?;
        if !lock_owner(&mut tx, owner_id).await? {
            return Ok(Checked::NoOwner);
        }
        // A customer managed policy has a row to lock; AWS's own (AdministratorAccess, the one this
        // server knows) has none. (Not a test of the ARN's text: a path may hold ":iam::aws:policy/".)
        if arn != ADMINISTRATOR_ACCESS
            && !lock_row(&mut tx, "iam_managed_policies", "arn", arn).await?
        {
            return Ok(Checked::NoTarget);
        }
        let attached: Vec<String> =
            sqlx::query_scalar("SELECT policy_arn FROM iam_attachments WHERE owner_id = $1")
                .bind(owner_id)
                .fetch_all(&mut *tx)
                .await?;
        if attached.iter().any(|a| a == arn) {
            return Ok(Checked::Written);
        }
        if attached.len() >= max {
            return Ok(Checked::Full);
        }
        sqlx::query(
            "INSERT INTO iam_attachments (owner_id, policy_arn, attached_at) VALUES ($1, $2, $3)",
        )
        .bind(owner_id)
        .bind(arn)
        .bind(crate::now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Checked::Written)
    }

    /// Detaches a managed policy; false if it was not attached.
    pub async fn detach_policy(&self, owner_id: &str, arn: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM iam_attachments WHERE owner_id = $1 AND policy_arn = $2")
                .bind(owner_id)
                .bind(arn)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// The ARNs of the managed policies attached to an owner, in ARN order.
    pub async fn attached_policies(&self, owner_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT policy_arn FROM iam_attachments WHERE owner_id = $1 ORDER BY policy_arn",
        )
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Everything that makes the identity-based policies of the owners `ids` (a user and its
    /// groups, or a role), in two queries: inline policies as (owner, name, document), and the
    /// attached ARNs with the customer managed document when the policy is one (AWS managed
    /// policies have none here).
    #[allow(clippy::type_complexity)]
    pub async fn policies_of(
        &self,
        user_id: Option<&str>,
        role_id: Option<&str>,
    ) -> Result<(
        Vec<(String, String, String)>,
        Vec<(String, String, Option<String>)>,
    )> {
        // The owners: the user and its groups, or the role.
        let owners = "SELECT CAST($1 AS TEXT) AS id UNION SELECT group_id FROM iam_group_members \
                      WHERE user_id = $1 UNION SELECT CAST($2 AS TEXT)";
        let inline = sqlx::query(&format!(
            "SELECT owner_id, policy_name, document FROM iam_inline_policies \
             WHERE owner_id IN ({owners}) ORDER BY owner_id, policy_name"
        ))
        .bind(user_id.unwrap_or(""))
        .bind(role_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let attached = sqlx::query(&format!(
            "SELECT a.owner_id, a.policy_arn, p.document FROM iam_attachments a \
             LEFT JOIN iam_managed_policies p ON p.arn = a.policy_arn \
             WHERE a.owner_id IN ({owners}) ORDER BY a.owner_id, a.policy_arn"
        ))
        .bind(user_id.unwrap_or(""))
        .bind(role_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let inline = inline
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("owner_id")?,
                    r.try_get("policy_name")?,
                    r.try_get("document")?,
                ))
            })
            .collect::<Result<_>>()?;
        let attached = attached
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("owner_id")?,
                    r.try_get("policy_arn")?,
                    r.try_get("document")?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok((inline, attached))
    }
}

async fn insert_key_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, k: &AccessKeyRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO iam_access_keys (access_key_id, user_id, wrapped_secret, status, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&k.access_key_id)
    .bind(&k.user_id)
    .bind(&k.wrapped_secret)
    .bind(if k.active { "Active" } else { "Inactive" })
    .bind(k.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        exists(
            e,
            format!("An access key with id {} already exists.", k.access_key_id),
        )
    })?;
    Ok(())
}
