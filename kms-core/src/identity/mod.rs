//! Identities: the IAM model (accounts, users and their access keys, groups, roles, inline and
//! managed policies and their attachments), STS sessions, and the identity-based policies that
//! apply to a caller.
//!
//! - [`Kms::identity_policies`] answers, for an authenticated principal, the policies the policy
//!   engine weighs as identity-based: for a user its inline and attached policies and its groups';
//!   for a role session the role's. Cached for the service's cache TTL, dropped on every change made
//!   on this node.
//! - [`Kms::execute_query`] (`query.rs`) is the one entry of the IAM and STS Query APIs: `users.rs`
//!   (users, access keys, groups), `roles.rs`, `policies.rs` (inline, customer managed, attachments)
//!   and `sts.rs` (GetCallerIdentity, AssumeRole, and the session behind a session token). Every
//!   action is decided by the one authorization point ([`Kms::authorize`]); none checks access itself.
//! - `token.rs`: the stateless session token's layout.
//!
//! Entities are stored by unique id (`store/identity.rs`); every principal that existed before
//! (schema 1's `principals`) is a user of the home account with `AdministratorAccess` attached.

mod entity;
mod error;
mod exists;
mod policies;
mod query;
mod roles;
mod simulate;
mod sts;
#[cfg(test)]
mod tests;
pub mod token;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use zeroize::Zeroizing;

pub use error::IamError;
pub(crate) use query::request_context;
pub use query::{Params, QueryService, Value};
pub use sts::Session;

use crate::error::{KmsError, Result};
use crate::policy::{Policy, PolicyType, Principal, PrincipalType};
use crate::store::UserRow;
use crate::Kms;

/// `arn:aws:iam::aws:policy/AdministratorAccess`, the one AWS managed policy built in.
pub const ADMINISTRATOR_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const ADMINISTRATOR_ACCESS_DOCUMENT: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// An identity-based policy that applies to a principal, with the name decisions report it by
/// (`user inline policy ReadOnly`, `managed policy arn:aws:iam::aws:policy/AdministratorAccess`).
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// How decisions name the policy.
    pub name: String,
    /// Where it comes from, as IAM's policy simulator names it (`PolicySourceType`): `user`,
    /// `group` or `role` for an inline policy, `aws-managed` or `user-managed`, and `none` for
    /// a policy given to the simulator.
    pub source: &'static str,
    /// The compiled document.
    pub policy: Policy,
}

fn administrator_access() -> &'static IdentityPolicy {
    static ADMIN: OnceLock<IdentityPolicy> = OnceLock::new();
    ADMIN.get_or_init(|| IdentityPolicy {
        name: format!("managed policy {ADMINISTRATOR_ACCESS}"),
        source: "aws-managed",
        policy: Policy::parse(ADMINISTRATOR_ACCESS_DOCUMENT, PolicyType::Identity)
            .unwrap_or_else(|_| unreachable!("the built-in policy parses")),
    })
}

/// Compiled identity policies and when they were read.
type CachedPolicies = (Arc<[IdentityPolicy]>, Instant);

/// A role's tags while it exists (`None`: it does not), and when that was read.
type CachedRole = (Option<Arc<BTreeMap<String, String>>>, Instant);

/// What the service keeps for identities: the identity-based policies by principal, and the
/// session token key once read.
#[derive(Default)]
pub(crate) struct IdentityState {
    /// By the user's or role's unique id: the compiled policies and when they were read.
    policies: RwLock<HashMap<String, CachedPolicies>>,
    /// By the role's unique id: its tags while it exists (`None`: deleted), and when read. A
    /// session of a role that no longer exists is refused.
    roles: RwLock<HashMap<String, CachedRole>>,
    /// Bumped by every local change: a read that began before one must not fill the cache.
    generation: AtomicU64,
    /// The session token key, unwrapped.
    pub(crate) token_key: tokio::sync::OnceCell<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityState")
    }
}

/// A new unique id: `prefix` and 17 characters of AWS's id alphabet (21 in all, as AWS's).
pub(crate) fn new_id(prefix: &str) -> Result<String> {
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut r = [0u8; 17];
    crate::material::random_bytes(&mut r)?;
    Ok(std::iter::once(prefix.to_string())
        .chain(
            r.iter()
                .map(|b| (B32[(b & 31) as usize] as char).to_string()),
        )
        .collect())
}

/// `arn:aws:iam::ACCT:KIND{path}NAME` (KIND: user, group, role, policy).
pub(crate) fn iam_arn(account: &str, kind: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:{kind}{path}{name}")
}

/// The principal a user authenticates as: its ARN (with its path), unique id and tags.
pub(crate) fn user_principal(u: &UserRow) -> Principal {
    let mut p = Principal::user(&u.account_id, &u.user_name, &u.user_id);
    p.arn = iam_arn(&u.account_id, "user", &u.path, &u.user_name);
    p.tags = u.tags.clone();
    p
}

impl Kms {
    /// The identity-based policies that apply to `principal`: for a user its inline and attached
    /// policies and its groups'; for a role session the role's. The root user and others: none.
    pub(crate) async fn identity_policies(
        &self,
        principal: &Principal,
    ) -> Result<Arc<[IdentityPolicy]>> {
        let owner = match principal.kind {
            PrincipalType::User => principal.user_id.clone(),
            PrincipalType::AssumedRole => principal
                .user_id
                .as_deref()
                .and_then(|u| u.split(':').next())
                .map(str::to_owned),
            _ => None,
        };
        let Some(owner) = owner else {
            return Ok(Arc::from(Vec::new()));
        };
        let state = self.identity_state();
        if let Some((p, at)) = state
            .policies
            .read()
            .ok()
            .and_then(|m| m.get(&owner).cloned())
        {
            if at.elapsed() < self.cache_ttl() {
                return Ok(p);
            }
        }
        let generation = state.generation.load(Ordering::Acquire);
        let is_role = principal.kind == PrincipalType::AssumedRole;
        let (user, role) = if is_role {
            (None, Some(owner.as_str()))
        } else {
            (Some(owner.as_str()), None)
        };
        let (inline, attached) = self.store().policies_of(user, role).await?;
        let mut out = Vec::with_capacity(inline.len() + attached.len());
        let compile = |doc: &str, name: String, source: &'static str| {
            Policy::parse(doc, PolicyType::Identity)
                .map(|policy| IdentityPolicy {
                    name: name.clone(),
                    source,
                    policy,
                })
                .map_err(|e| {
                    // Fail closed: a stored policy that no longer compiles could hold a Deny.
                    tracing::error!(policy = %name, error = %e, "a stored identity policy does not compile");
                    KmsError::Internal(format!("The {name} cannot be evaluated."))
                })
        };
        for (owner_id, name, doc) in &inline {
            let whose = if owner_id == &owner {
                if is_role {
                    "role"
                } else {
                    "user"
                }
            } else {
                "group"
            };
            out.push(compile(
                doc,
                format!("{whose} inline policy {name}"),
                whose,
            )?);
        }
        for (_, arn, doc) in &attached {
            match doc {
                Some(doc) => out.push(compile(
                    doc,
                    format!("managed policy {arn}"),
                    "user-managed",
                )?),
                None if arn == ADMINISTRATOR_ACCESS => out.push(administrator_access().clone()),
                None => {}
            }
        }
        let policies: Arc<[IdentityPolicy]> = Arc::from(out);
        if let Ok(mut map) = state.policies.write() {
            if state.generation.load(Ordering::Acquire) == generation {
                map.insert(owner, (policies.clone(), Instant::now()));
            }
        }
        Ok(policies)
    }

    /// Forgets what this node cached about identities after a local change.
    pub(crate) fn identities_changed(&self) {
        let state = self.identity_state();
        state.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = state.policies.write() {
            map.clear();
        }
        if let Ok(mut map) = state.roles.write() {
            map.clear();
        }
    }

    /// The tags of the role with unique id `role_id`, or `None` when it no longer exists (deleted,
    /// or deleted and made again under the same name, which gives it a new id). Cached for the
    /// cache TTL, as identity policies are.
    pub(crate) async fn live_role(
        &self,
        role_id: &str,
    ) -> Result<Option<Arc<BTreeMap<String, String>>>> {
        let state = self.identity_state();
        if let Some((tags, at)) = state
            .roles
            .read()
            .ok()
            .and_then(|m| m.get(role_id).cloned())
        {
            if at.elapsed() < self.cache_ttl() {
                return Ok(tags);
            }
        }
        let generation = state.generation.load(Ordering::Acquire);
        let tags = self
            .store()
            .role_by_id(role_id)
            .await?
            .map(|r| Arc::new(r.tags));
        if let Ok(mut map) = state.roles.write() {
            if state.generation.load(Ordering::Acquire) == generation {
                map.insert(role_id.to_owned(), (tags.clone(), Instant::now()));
            }
        }
        Ok(tags)
    }
}
