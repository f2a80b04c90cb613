//! IAM roles: a trust policy (who may assume the role, evaluated by AssumeRole), a longest session,
//! and the policies its sessions act with (`policies.rs`).

use super::query::{listing, page, Params, Value};
use super::users::{check_name, conflict, path_of};
use super::{iam_arn, new_id, IamError};
use crate::audit::Caller;
use crate::policy::{check_characters, check_size, Policy, PolicyType, SizeLimit};
use crate::store::RoleRow;
use crate::Kms;

/// `MaxSessionDuration`'s range, seconds.
pub(crate) const MAX_SESSION_DURATION: std::ops::RangeInclusive<i64> = 3600..=43200;

pub(crate) fn role_arn(r: &RoleRow) -> String {
    iam_arn(&r.account_id, "role", &r.path, &r.role_name)
}

/// A policy document as IAM returns it: URL-encoded (botocore decodes it).
pub(crate) fn url_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks a trust policy as IAM does: its characters, its size, and its grammar.
pub(crate) fn check_trust_policy(text: &str) -> Result<Policy, IamError> {
    check_characters(text)?;
    check_size(text, SizeLimit::RoleTrustPolicy)?;
    Ok(Policy::parse(text, PolicyType::TrustPolicy)?)
}

fn role_value(r: &RoleRow) -> Value {
    let mut m = vec![
        ("Path", Value::text(&r.path)),
        ("RoleName", Value::text(&r.role_name)),
        ("RoleId", Value::text(&r.role_id)),
        ("Arn", Value::text(role_arn(r))),
        ("CreateDate", Value::time(r.created_at)),
        (
            "AssumeRolePolicyDocument",
            Value::text(url_encoded(&r.trust_policy)),
        ),
    ];
    if let Some(d) = &r.description {
        m.push(("Description", Value::text(d)));
    }
    m.push((
        "MaxSessionDuration",
        Value::text(r.max_session_duration.to_string()),
    ));
    if !r.tags.is_empty() {
        m.push(("Tags", Value::tags(&r.tags)));
    }
    Value::Struct(m)
}

impl Kms {
    /// The role `name` of the caller's account, once `action` on it is allowed (decided on its ARN
    /// with its path when it exists).
    pub(crate) async fn role_for(
        &self,
        caller: &Caller,
        name: &str,
        action: &str,
    ) -> Result<RoleRow, IamError> {
        self.role_for_with(caller, name, action, None).await
    }

    /// [`role_for`](Self::role_for) with one more condition key.
    pub(crate) async fn role_for_with(
        &self,
        caller: &Caller,
        name: &str,
        action: &str,
        key: Option<(&str, &str)>,
    ) -> Result<RoleRow, IamError> {
        check_name(name, "roleName", 64)?;
        let account = &caller.principal.account;
        let found = self.store().role_by_name(account, name).await?;
        let arn = found
            .as_ref()
            .map(role_arn)
            .unwrap_or_else(|| iam_arn(account, "role", "/", name));
        self.authorize_iam(caller, action, &arn, None, key).await?;
        found.ok_or_else(|| {
            IamError::NoSuchEntity(format!("The role with name {name} cannot be found."))
        })
    }

    pub(super) async fn create_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let name = p.required("RoleName")?;
        check_name(name, "roleName", 64)?;
        let path = path_of(p)?;
        let trust = p.required("AssumeRolePolicyDocument")?;
        let description = p.get("Description").map(str::to_owned);
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(IamError::constraint(
                "…",
                "description",
                "Member must have length less than or equal to 1000",
            ));
        }
        let max = match p.get("MaxSessionDuration") {
            None => 3600,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if MAX_SESSION_DURATION.contains(&n) => n,
                _ => {
                    return Err(IamError::constraint(
                        s,
                        "maxSessionDuration",
                        "Member must have value less than or equal to 43200 and greater than or equal to 3600",
                    ))
                }
            },
        };
        let tags = p.tags("Tags")?;
        let account = &caller.principal.account;
        let arn = iam_arn(account, "role", &path, name);
        self.authorize_iam(caller, "iam:CreateRole", &arn, Some(&tags), None)
            .await?;
        let policy = check_trust_policy(trust)?;
        if let Some(who) = self.missing_identity(&policy).await? {
            return Err(IamError::MalformedPolicyDocument(format!(
                "Invalid principal in policy: \"AWS\":\"{who}\""
            )));
        }
        let r = RoleRow {
            role_id: new_id("AROA")?,
            account_id: account.clone(),
            role_name: name.to_string(),
            path,
            trust_policy: trust.to_string(),
            description,
            max_session_duration: max,
            tags,
            created_at: crate::now_millis(),
        };
        self.store().insert_role(&r).await?;
        Ok(Some(Value::Struct(vec![("Role", role_value(&r))])))
    }

    pub(super) async fn get_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let r = self
            .role_for(caller, p.required("RoleName")?, "iam:GetRole")
            .await?;
        Ok(Some(Value::Struct(vec![("Role", role_value(&r))])))
    }

    pub(super) async fn list_roles(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let account = &caller.principal.account;
        self.authorize_iam(
            caller,
            "iam:ListRoles",
            &iam_arn(account, "role", "/", ""),
            None,
            None,
        )
        .await?;
        let prefix = p.get("PathPrefix").unwrap_or("/");
        let roles: Vec<RoleRow> = self
            .store()
            .list_roles(account)
            .await?
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect();
        let (roles, next) = page(roles, |r| r.role_name.to_ascii_lowercase(), p)?;
        Ok(listing(
            "Roles",
            roles.iter().map(role_value).collect(),
            next,
        ))
    }

    pub(super) async fn delete_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let r = self
            .role_for(caller, p.required("RoleName")?, "iam:DeleteRole")
            .await?;
        if let Err(b) = self.store().delete_role(&r.role_id).await? {
            return Err(conflict(b));
        }
        self.identities_changed();
        Ok(None)
    }
}
