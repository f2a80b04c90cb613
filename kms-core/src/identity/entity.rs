//! What users, groups and roles have in common as IAM entities: a name unique in its account, a
//! path, an ARN built from both, and the same two ways to be reached: by name, once the action on
//! it is allowed, and listed by path prefix.

use std::future::Future;

use super::query::{listing, max_items, split_page, Params, Value};
use super::users::check_name;
use super::{iam_arn, IamError};
use crate::audit::Caller;
use crate::error::Result;
use crate::store::{EntityPage, GroupRow, RoleRow, Store, UserRow};
use crate::Kms;

/// A user, a group or a role as the Query actions reach it.
pub(crate) trait Entity: Sized + Send {
    /// The ARN's resource type, also the word in messages: `user`, `group`, `role`.
    const KIND: &'static str;
    /// The name's field in validation messages, and its longest length.
    const NAME_FIELD: &'static str;
    const MAX_NAME: usize;
    /// The element a listing's members go in: `Users`, `Groups`, `Roles`.
    const LIST: &'static str;

    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn path(&self) -> &str;
    fn account(&self) -> &str;
    /// The entity as IAM returns it (the `User` of GetUser, a member of ListUsers).
    fn value(&self) -> Value;

    /// `arn:aws:iam::ACCOUNT:KIND/PATH…NAME`.
    fn arn(&self) -> String {
        iam_arn(self.account(), Self::KIND, self.path(), self.name())
    }

    fn by_name(
        store: &Store,
        account: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Self>>> + Send;

    /// A page of the account's entities of this kind (ListUsers, ListGroups, ListRoles).
    fn page(
        store: &Store,
        account: &str,
        page: &EntityPage<'_>,
    ) -> impl Future<Output = Result<Vec<Self>>> + Send;
}

impl Kms {
    /// The entity `name` of the caller's account, once `action` on it is allowed (with one more
    /// condition key when `key` is given). The decision is made on the entity's ARN with its path
    /// when it exists, and on the path `/` when it does not, so a denial never tells which.
    pub(crate) async fn entity<E: Entity>(
        &self,
        caller: &Caller,
        name: &str,
        action: &str,
        key: Option<(&str, &str)>,
    ) -> std::result::Result<E, IamError> {
        check_name(name, E::NAME_FIELD, E::MAX_NAME)?;
        let account = &caller.principal.account;
        let found = E::by_name(self.store(), account, name).await?;
        let arn = found
            .as_ref()
            .map(E::arn)
            .unwrap_or_else(|| iam_arn(account, E::KIND, "/", name));
        self.authorize_iam(caller, action, &arn, None, key).await?;
        found.ok_or_else(|| {
            IamError::NoSuchEntity(format!("The {} with name {name} cannot be found.", E::KIND))
        })
    }

    /// ListUsers, ListGroups, ListRoles: the caller's account's entities under `PathPrefix`, in
    /// name order, a page at a time.
    pub(super) async fn list_entities<E: Entity>(
        &self,
        caller: &Caller,
        p: &Params,
        action: &str,
    ) -> std::result::Result<Option<Value>, IamError> {
        let account = &caller.principal.account;
        let every = iam_arn(account, E::KIND, "/", "");
        self.authorize_iam(caller, action, &every, None, None)
            .await?;
        let max = max_items(p)?;
        let page = EntityPage {
            path_prefix: p.get("PathPrefix").unwrap_or("/"),
            from: p.get("Marker").unwrap_or(""),
            // one more than the page, to know whether there is a next
            limit: max as i64 + 1,
        };
        let rows = E::page(self.store(), account, &page).await?;
        let (rows, next) = split_page(rows, max, |e| e.name().to_ascii_lowercase());
        Ok(listing(E::LIST, rows.iter().map(E::value).collect(), next))
    }
}

impl Entity for UserRow {
    const KIND: &'static str = "user";
    const NAME_FIELD: &'static str = "userName";
    const MAX_NAME: usize = 64;
    const LIST: &'static str = "Users";

    fn id(&self) -> &str {
        &self.user_id
    }
    fn name(&self) -> &str {
        &self.user_name
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn account(&self) -> &str {
        &self.account_id
    }

    fn value(&self) -> Value {
        let mut m = vec![
            ("Path", Value::text(&self.path)),
            ("UserName", Value::text(&self.user_name)),
            ("UserId", Value::text(&self.user_id)),
            ("Arn", Value::text(self.arn())),
            ("CreateDate", Value::time(self.created_at)),
        ];
        if !self.tags.is_empty() {
            m.push(("Tags", Value::tags(&self.tags)));
        }
        Value::Struct(m)
    }

    async fn by_name(store: &Store, account: &str, name: &str) -> Result<Option<Self>> {
        store.user_by_name(account, name).await
    }

    async fn page(store: &Store, account: &str, page: &EntityPage<'_>) -> Result<Vec<Self>> {
        store.users_page(account, page).await
    }
}

impl Entity for GroupRow {
    const KIND: &'static str = "group";
    const NAME_FIELD: &'static str = "groupName";
    const MAX_NAME: usize = 128;
    const LIST: &'static str = "Groups";

    fn id(&self) -> &str {
        &self.group_id
    }
    fn name(&self) -> &str {
        &self.group_name
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn account(&self) -> &str {
        &self.account_id
    }

    fn value(&self) -> Value {
        Value::Struct(vec![
            ("Path", Value::text(&self.path)),
            ("GroupName", Value::text(&self.group_name)),
            ("GroupId", Value::text(&self.group_id)),
            ("Arn", Value::text(self.arn())),
            ("CreateDate", Value::time(self.created_at)),
        ])
    }

    async fn by_name(store: &Store, account: &str, name: &str) -> Result<Option<Self>> {
        store.group_by_name(account, name).await
    }

    async fn page(store: &Store, account: &str, page: &EntityPage<'_>) -> Result<Vec<Self>> {
        store.groups_page(account, page).await
    }
}

impl Entity for RoleRow {
    const KIND: &'static str = "role";
    const NAME_FIELD: &'static str = "roleName";
    const MAX_NAME: usize = 64;
    const LIST: &'static str = "Roles";

    fn id(&self) -> &str {
        &self.role_id
    }
    fn name(&self) -> &str {
        &self.role_name
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn account(&self) -> &str {
        &self.account_id
    }

    fn value(&self) -> Value {
        let mut m = vec![
            ("Path", Value::text(&self.path)),
            ("RoleName", Value::text(&self.role_name)),
            ("RoleId", Value::text(&self.role_id)),
            ("Arn", Value::text(self.arn())),
            ("CreateDate", Value::time(self.created_at)),
            (
                "AssumeRolePolicyDocument",
                Value::text(super::roles::url_encoded(&self.trust_policy)),
            ),
        ];
        if let Some(d) = &self.description {
            m.push(("Description", Value::text(d)));
        }
        m.push((
            "MaxSessionDuration",
            Value::text(self.max_session_duration.to_string()),
        ));
        if !self.tags.is_empty() {
            m.push(("Tags", Value::tags(&self.tags)));
        }
        Value::Struct(m)
    }

    async fn by_name(store: &Store, account: &str, name: &str) -> Result<Option<Self>> {
        store.role_by_name(account, name).await
    }

    async fn page(store: &Store, account: &str, page: &EntityPage<'_>) -> Result<Vec<Self>> {
        store.roles_page(account, page).await
    }
}
