//! Whether an identity a key policy, a trust policy or a grant names exists. AWS refuses a policy
//! or grant naming an IAM user or role that does not exist (a typo, a deleted role), because it
//! stores the principal's unique id, not its ARN; so does envelope, at the same points:
//! MalformedPolicyDocument(Exception) for policies, InvalidArnException for grants.
//!
//! Accounts (`ACCT`, `arn:aws:iam::ACCT:root`) are not checked: an account exists here once its
//! first principal is made (`envelope principal create --account-id`), and a key policy may name
//! an account before that. Federated users are not IAM entities and are not checked.

use super::iam_arn;
use crate::error::Result;
use crate::policy::{split_arn, NamedIdentity};
use crate::service::Kms;

impl Kms {
    /// Whether `id` names a principal that can be named: an account's root, an existing user or role (by ARN with its
    /// path, or by unique id), a session of an existing role, or a federated user. A group or any
    /// other IAM resource is never a principal.
    pub(crate) async fn identity_exists(&self, id: NamedIdentity<'_>) -> Result<bool> {
        let store = self.store();
        let arn = match id {
            NamedIdentity::UniqueId(u) => {
                return Ok(
                    store.user_by_id(u).await?.is_some() || store.role_by_id(u).await?.is_some()
                )
            }
            NamedIdentity::Arn(arn) => arn,
        };
        let Some([_, _, service, _, account, resource]) = split_arn(arn) else {
            return Ok(false);
        };
        let (kind, rest) = resource.split_once('/').unwrap_or((resource, ""));
        let name = rest.rsplit('/').next().unwrap_or_default();
        match (service, kind) {
            ("iam", "root") => Ok(rest.is_empty()),
            (_, "federated-user") => Ok(!rest.is_empty()),
            ("iam", "user") => Ok(store
                .user_by_name(account, name)
                .await?
                .is_some_and(|u| iam_arn(account, "user", &u.path, &u.user_name) == arn)),
            ("iam", "role") => Ok(store
                .role_by_name(account, name)
                .await?
                .is_some_and(|r| iam_arn(account, "role", &r.path, &r.role_name) == arn)),
            ("sts", "assumed-role") => match rest.split_once('/') {
                Some((role, session)) if !session.is_empty() => {
                    Ok(store.role_by_name(account, role).await?.is_some())
                }
                _ => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// The first identity `policy` names that does not exist, if any.
    pub(crate) async fn missing_identity<'p>(
        &self,
        policy: &'p crate::policy::Policy,
    ) -> Result<Option<&'p str>> {
        for id in policy.named_identities() {
            if !self.identity_exists(id).await? {
                return Ok(Some(match id {
                    NamedIdentity::Arn(s) | NamedIdentity::UniqueId(s) => s,
                }));
            }
        }
        Ok(None)
    }
}
