//! IAM users, their access keys, and groups with their members.

use super::entity::Entity;
use super::query::{listing, page, Params, Value};
use super::{iam_arn, new_id, IamError};
use crate::audit::Caller;
use crate::policy::PrincipalType;
use crate::store::{AccessKeyRow, Blocker, Checked, GroupRow, UserRow};
use crate::Kms;

/// IAM's quota of access keys per user.
pub(crate) const ACCESS_KEYS_PER_USER: i64 = 2;

/// Checks a name against IAM's pattern `[\w+=,.@-]+` and length 1 to `max`.
pub(crate) fn check_name(value: &str, field: &str, max: usize) -> Result<(), IamError> {
    if value.is_empty() || value.len() > max {
        return Err(IamError::constraint(
            value,
            field,
            &format!("Member must have length less than or equal to {max} and greater than or equal to 1"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(IamError::constraint(
            value,
            field,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

/// `Path`: `/` or `/…/` of printable ASCII, at most 512 characters; `/` when absent.
pub(crate) fn path_of(p: &Params) -> Result<String, IamError> {
    let path = p.get("Path").unwrap_or("/");
    let printable = path.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if path.len() > 512 || !path.starts_with('/') || !path.ends_with('/') || !printable {
        return Err(IamError::constraint(
            path,
            "path",
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(path.to_string())
}

fn key_value(k: &AccessKeyRow, user: &UserRow) -> Vec<(&'static str, Value)> {
    vec![
        ("UserName", Value::text(&user.user_name)),
        ("AccessKeyId", Value::text(&k.access_key_id)),
        (
            "Status",
            Value::text(if k.active { "Active" } else { "Inactive" }),
        ),
    ]
}

pub(crate) fn conflict(b: Blocker) -> IamError {
    IamError::DeleteConflict(
        match b {
            Blocker::AccessKeys => "Cannot delete entity, must delete access keys first.",
            Blocker::InlinePolicies => "Cannot delete entity, must delete policies first.",
            Blocker::AttachedPolicies => "Cannot delete entity, must detach all policies first.",
            Blocker::Membership => "Cannot delete entity, must remove users from group first.",
            Blocker::Attached => "Cannot delete a policy attached to entities.",
        }
        .into(),
    )
}

impl Kms {
    /// The user a request names with `UserName`, or the calling user when it names none; once
    /// `action` on it is allowed.
    async fn user_or_caller(
        &self,
        caller: &Caller,
        p: &Params,
        action: &str,
    ) -> Result<UserRow, IamError> {
        if let Some(name) = p.get("UserName") {
            return self.entity(caller, name, action, None).await;
        }
        let me = match (&caller.principal.kind, &caller.principal.user_id) {
            (PrincipalType::User, Some(id)) => self.store().user_by_id(id).await?,
            _ => None,
        };
        let me = me.ok_or_else(|| {
            IamError::Validation(
                "Must specify userName when calling with non-User credentials".into(),
            )
        })?;
        self.authorize_iam(caller, action, &me.arn(), None, None)
            .await?;
        Ok(me)
    }

    pub(super) async fn create_user(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let name = p.required("UserName")?;
        check_name(name, "userName", 64)?;
        let path = path_of(p)?;
        let tags = p.tags("Tags")?;
        let account = &caller.principal.account;
        let arn = iam_arn(account, "user", &path, name);
        self.authorize_iam(caller, "iam:CreateUser", &arn, Some(&tags), None)
            .await?;
        let u = UserRow {
            user_id: new_id("AIDA")?,
            account_id: account.clone(),
            user_name: name.to_string(),
            path,
            tags,
            created_at: crate::now_millis(),
        };
        self.store().insert_user(&u, None).await?;
        self.identities_changed();
        Ok(Some(Value::Struct(vec![("User", u.value())])))
    }

    pub(super) async fn get_user(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        if p.get("UserName").is_none() && caller.principal.is_root() {
            // The root user asks about itself.
            let acct = &caller.principal.account;
            self.authorize_iam(caller, "iam:GetUser", &caller.principal.arn, None, None)
                .await?;
            return Ok(Some(Value::Struct(vec![(
                "User",
                Value::Struct(vec![
                    ("UserId", Value::text(acct)),
                    ("Arn", Value::text(&caller.principal.arn)),
                    ("CreateDate", Value::time(0)),
                ]),
            )])));
        }
        let u = self.user_or_caller(caller, p, "iam:GetUser").await?;
        Ok(Some(Value::Struct(vec![("User", u.value())])))
    }

    pub(super) async fn list_users(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        self.list_entities::<UserRow>(caller, p, "iam:ListUsers")
            .await
    }

    pub(super) async fn delete_user(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let u = self
            .entity::<UserRow>(caller, p.required("UserName")?, "iam:DeleteUser", None)
            .await?;
        match self.store().delete_user(&u.user_id, false).await? {
            Ok(_) => {}
            Err(b) => return Err(conflict(b)),
        }
        self.identities_changed();
        Ok(None)
    }

    pub(super) async fn create_access_key(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let u = self
            .user_or_caller(caller, p, "iam:CreateAccessKey")
            .await?;
        let (row, secret) = self.new_access_key(&u.user_id, None).await?;
        let secret =
            secret.ok_or_else(|| IamError::ServiceFailure("No secret was generated.".into()))?;
        match self
            .store()
            .insert_access_key(&row, ACCESS_KEYS_PER_USER)
            .await?
        {
            Checked::Written => {}
            Checked::Full => {
                return Err(IamError::LimitExceeded(format!(
                    "Cannot exceed quota for AccessKeysPerUser: {ACCESS_KEYS_PER_USER}"
                )))
            }
            // Deleted since it was looked up.
            Checked::NoOwner | Checked::NoTarget => return Err(no_such_user(&u.user_name)),
        }
        self.access_key_created(&row.access_key_id).await;
        let mut m = key_value(&row, &u);
        m.push(("SecretAccessKey", Value::secret(secret.as_str())));
        m.push(("CreateDate", Value::time(row.created_at)));
        Ok(Some(Value::Struct(vec![("AccessKey", Value::Struct(m))])))
    }

    pub(super) async fn list_access_keys(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let u = self.user_or_caller(caller, p, "iam:ListAccessKeys").await?;
        let keys = self.store().list_access_keys(&u.user_id).await?;
        let (keys, next) = page(keys, |k| k.access_key_id.clone(), p)?;
        let items = keys
            .iter()
            .map(|k| {
                let mut m = key_value(k, &u);
                m.push(("CreateDate", Value::time(k.created_at)));
                Value::Struct(m)
            })
            .collect();
        Ok(listing("AccessKeyMetadata", items, next))
    }

    pub(super) async fn update_access_key(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let id = p.required("AccessKeyId")?;
        let active = match p.required("Status")? {
            "Active" => true,
            "Inactive" => false,
            other => {
                return Err(IamError::constraint(
                    other,
                    "status",
                    "Member must satisfy enum value set: [Active, Inactive]",
                ))
            }
        };
        let u = self
            .user_or_caller(caller, p, "iam:UpdateAccessKey")
            .await?;
        if !self
            .store()
            .set_access_key_status(&u.user_id, id, active)
            .await?
        {
            return Err(no_such_key(id));
        }
        self.forget_access_key(id);
        Ok(None)
    }

    pub(super) async fn delete_access_key(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let id = p.required("AccessKeyId")?;
        let u = self
            .user_or_caller(caller, p, "iam:DeleteAccessKey")
            .await?;
        if !self.store().delete_access_key(&u.user_id, id).await? {
            return Err(no_such_key(id));
        }
        self.forget_access_key(id);
        Ok(None)
    }

    // ----- groups --------------------------------------------------------------------------------

    pub(super) async fn create_group(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let name = p.required("GroupName")?;
        check_name(name, "groupName", 128)?;
        let path = path_of(p)?;
        let account = &caller.principal.account;
        self.authorize_iam(
            caller,
            "iam:CreateGroup",
            &iam_arn(account, "group", &path, name),
            None,
            None,
        )
        .await?;
        let g = GroupRow {
            group_id: new_id("AGPA")?,
            account_id: account.clone(),
            group_name: name.to_string(),
            path,
            created_at: crate::now_millis(),
        };
        self.store().insert_group(&g).await?;
        Ok(Some(Value::Struct(vec![("Group", g.value())])))
    }

    pub(super) async fn get_group(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let g = self
            .entity::<GroupRow>(caller, p.required("GroupName")?, "iam:GetGroup", None)
            .await?;
        let users = self.store().group_members(&g.group_id).await?;
        let (users, next) = page(users, |u| u.user_name.to_ascii_lowercase(), p)?;
        let Some(Value::Struct(mut m)) =
            listing("Users", users.iter().map(UserRow::value).collect(), next)
        else {
            unreachable!("a listing is a structure")
        };
        m.insert(0, ("Group", g.value()));
        Ok(Some(Value::Struct(m)))
    }

    pub(super) async fn list_groups(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        self.list_entities::<GroupRow>(caller, p, "iam:ListGroups")
            .await
    }

    pub(super) async fn list_groups_for_user(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let u = self
            .entity::<UserRow>(
                caller,
                p.required("UserName")?,
                "iam:ListGroupsForUser",
                None,
            )
            .await?;
        let groups = self.store().groups_of_user(&u.user_id).await?;
        let (groups, next) = page(groups, |g| g.group_name.to_ascii_lowercase(), p)?;
        Ok(listing(
            "Groups",
            groups.iter().map(GroupRow::value).collect(),
            next,
        ))
    }

    pub(super) async fn delete_group(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let g = self
            .entity::<GroupRow>(caller, p.required("GroupName")?, "iam:DeleteGroup", None)
            .await?;
        if let Err(b) = self.store().delete_group(&g.group_id).await? {
            return Err(conflict(b));
        }
        self.identities_changed();
        Ok(None)
    }

    pub(super) async fn add_user_to_group(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        self.membership(caller, p, true).await
    }

    pub(super) async fn remove_user_from_group(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        self.membership(caller, p, false).await
    }

    async fn membership(
        &self,
        caller: &Caller,
        p: &Params,
        add: bool,
    ) -> Result<Option<Value>, IamError> {
        let group = p.required("GroupName")?;
        let user = p.required("UserName")?;
        check_name(user, "userName", 64)?;
        let action = if add {
            "iam:AddUserToGroup"
        } else {
            "iam:RemoveUserFromGroup"
        };
        let g = self.entity::<GroupRow>(caller, group, action, None).await?;
        let u = self
            .store()
            .user_by_name(&caller.principal.account, user)
            .await?
            .ok_or_else(|| no_such_user(user))?;
        if add {
            // The group or the user may have been deleted since they were looked up.
            match self.store().add_member(&g.group_id, &u.user_id).await? {
                Checked::Written | Checked::Full => {}
                Checked::NoOwner => {
                    return Err(IamError::NoSuchEntity(format!(
                        "The group with name {group} cannot be found."
                    )))
                }
                Checked::NoTarget => return Err(no_such_user(user)),
            }
        } else if !self.store().remove_member(&g.group_id, &u.user_id).await? {
            return Err(IamError::NoSuchEntity(format!(
                "The user with name {user} cannot be found in group {group}."
            )));
        }
        self.identities_changed();
        Ok(None)
    }
}

fn no_such_user(name: &str) -> IamError {
    IamError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}

fn no_such_key(id: &str) -> IamError {
    IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
}
