//! IAM roles: a trust policy (who may assume the role, evaluated by AssumeRole), a longest session,
//! and the policies its sessions act with (`policies.rs`).

use super::entity::Entity;
use super::query::{Params, Value};
use super::users::{check_name, conflict, path_of};
use super::{iam_arn, new_id, IamError};
use crate::audit::Caller;
use crate::policy::{check_characters, check_size, Policy, PolicyType, SizeLimit};
use crate::store::RoleRow;
use crate::Kms;

/// `MaxSessionDuration`'s range, seconds.
pub(crate) const MAX_SESSION_DURATION: std::ops::RangeInclusive<i64> = 3600..=43200;

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

impl Kms {
    pub(super) async fn create_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let name = p.required("RoleName")?;
        check_name(name, "roleName", 64)?;
        let path = path_of(p)?;
        let trust = p.required("AssumeRolePolicyDocument")?;
        let description = p.description()?;
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
        Ok(Some(Value::Struct(vec![("Role", r.value())])))
    }

    pub(super) async fn get_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let r = self
            .entity::<RoleRow>(caller, p.required("RoleName")?, "iam:GetRole", None)
            .await?;
        Ok(Some(Value::Struct(vec![("Role", r.value())])))
    }

    pub(super) async fn list_roles(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        self.list_entities::<RoleRow>(caller, p, "iam:ListRoles")
            .await
    }

    pub(super) async fn delete_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let r = self
            .entity::<RoleRow>(caller, p.required("RoleName")?, "iam:DeleteRole", None)
            .await?;
        if let Err(b) = self.store().delete_role(&r.role_id).await? {
            return Err(conflict(b));
        }
        self.identities_changed();
        Ok(None)
    }
}
