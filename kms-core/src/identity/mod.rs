//! Identities: who may call, and the identity-based policies that apply to them.
//!
//! Today every principal SigV4 knows is an IAM user of the server's home account with full rights
//! (the `AdministratorAccess` policy), as before access control. Issue 13 puts the IAM model here:
//! accounts, users and access keys, groups, roles, inline and managed policies, STS sessions.
//!
//! The seam with the key service: [`Kms::identity_policies`] answers, for an authenticated
//! principal, the policies the policy engine weighs as identity-based.

use std::sync::{Arc, OnceLock};

use crate::error::Result;
use crate::policy::{Policy, PolicyType, Principal};
use crate::Kms;

/// An identity-based policy that applies to a principal, with the name decisions report it by
/// (`user inline policy ReadOnly`, `managed policy arn:aws:iam::aws:policy/AdministratorAccess`).
#[derive(Debug)]
pub struct IdentityPolicy {
    /// How decisions name the policy.
    pub name: String,
    /// The compiled document.
    pub policy: Policy,
}

/// `arn:aws:iam::aws:policy/AdministratorAccess`: every action on every resource.
pub(crate) fn administrator_access() -> Arc<[IdentityPolicy]> {
    static ADMIN: OnceLock<Arc<[IdentityPolicy]>> = OnceLock::new();
    ADMIN
        .get_or_init(|| {
            let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
            let policy = Policy::parse(doc, PolicyType::Identity)
                .unwrap_or_else(|_| unreachable!("the built-in policy parses"));
            Arc::from(vec![IdentityPolicy {
                name: "managed policy arn:aws:iam::aws:policy/AdministratorAccess".into(),
                policy,
            }])
        })
        .clone()
}

impl Kms {
    /// The identity-based policies that apply to `principal`: for a user its inline and attached
    /// policies and its groups'; for a role session the role's. The root user needs none.
    pub(crate) async fn identity_policies(
        &self,
        principal: &Principal,
    ) -> Result<Arc<[IdentityPolicy]>> {
        let _ = principal;
        Ok(administrator_access())
    }
}
