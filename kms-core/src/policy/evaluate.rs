//! The decision: AWS's policy evaluation logic as KMS keys and role trust policies use it (IAM User
//! Guide "Policy evaluation logic" and "Cross-account policy evaluation logic"; KMS Developer Guide
//! "Key policies" and "Grants in AWS KMS").
//!
//! 1. An explicit `Deny` in any applicable policy denies (grants cannot deny and cannot outweigh it).
//! 2. With a resource-based policy (a key policy, a trust policy):
//!    - same account: allowed if that policy allows the caller itself, or allows the caller's account
//!      (`arn:aws:iam::ACCT:root` or `ACCT`) and an identity policy allows;
//!    - another account: the resource policy must allow the caller or its account, and an identity
//!      policy of the caller must allow too;
//!    - else allowed if a grant allows (KMS);
//!    - else denied: "no resource-based policy allows" if the resource policy does not name the
//!      caller or its account, otherwise "no identity-based policy allows".
//! 3. Without one (account-level actions such as `kms:CreateKey`, IAM actions): an identity policy
//!    must allow.
//!
//! An account's root user is not restricted by identity policies; a key policy still has to allow its
//! account. A key policy without the account statement therefore makes IAM policies irrelevant.

use std::collections::BTreeMap;

use super::context::RequestContext;
use super::document::{Effect, Policy, PrincipalMatch};

/// Which kind of policy a statement came from, as AWS's messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A policy attached to the resource: a key policy or a role trust policy.
    ResourceBased,
    /// A policy attached to the caller: user, group or role, inline or managed.
    IdentityBased,
}

/// A policy handed to [`authorize`], with the name the decision reports it by
/// (`"key policy of arn:aws:kms:…"`, `"user inline policy ReadOnly"`, `"managed policy arn:aws:iam::…"`).
#[derive(Debug, Clone, Copy)]
pub struct NamedPolicy<'a> {
    /// How the decision names the policy.
    pub name: &'a str,
    /// The compiled policy.
    pub policy: &'a Policy,
}

/// A KMS grant as the engine checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The grant id, reported when the grant allows.
    pub grant_id: String,
    /// The grantee's ARN; a role's ARN covers its sessions.
    pub grantee_principal: String,
    /// Grant operations as KMS names them (`Decrypt`, `GenerateDataKey`, …).
    pub operations: Vec<String>,
    /// Encryption context constraints, if any.
    pub constraints: Option<GrantConstraints>,
}

/// A grant's encryption context constraints (`EncryptionContextSubset`, `EncryptionContextEquals`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantConstraints {
    /// The request's encryption context must include these pairs (and may hold more).
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    /// The request's encryption context must be exactly these pairs.
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
}

/// The grant a CreateGrant request would create, as a grant that allows CreateGrant weighs it:
/// its operations and constraints must lie within the allowing grant's ("child grants only
/// narrower", KMS Developer Guide "Grant constraints").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedGrant {
    /// The operations the new grant would allow.
    pub operations: Vec<String>,
    /// Its encryption context constraints.
    pub constraints: Option<GrantConstraints>,
}

/// Whether `ec` holds the pair `k`=`v`: in a grant constraint "the key in each key-value pair is
/// not case sensitive, but the value is case sensitive" (KMS API reference, GrantConstraints).
fn holds(ec: &BTreeMap<String, String>, k: &str, v: &str) -> bool {
    ec.iter()
        .any(|(ek, ev)| ek.eq_ignore_ascii_case(k) && ev == v)
}

/// Whether `ec` holds every pair of `want` (keys compared whatever their case).
fn holds_all(ec: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| holds(ec, k, v))
}

impl GrantConstraints {
    /// Whether the encryption context `ec` satisfies these constraints.
    pub fn admit(&self, ec: &BTreeMap<String, String>) -> bool {
        let subset = self
            .encryption_context_subset
            .as_ref()
            .is_none_or(|want| holds_all(ec, want));
        let equals = self
            .encryption_context_equals
            .as_ref()
            // Both ways: with keys compared whatever their case, two constraint keys differing
            // only in case could both match one pair and leave another pair unchecked.
            .is_none_or(|want| {
                want.len() == ec.len() && holds_all(ec, want) && holds_all(want, ec)
            });
        subset && equals
    }

    /// Whether every encryption context `child` admits, `parent` admits too (`None`: no
    /// constraint, every context). A child with `EncryptionContextEquals` admits one context (or
    /// none); one with only `EncryptionContextSubset` admits every superset of its pairs, which a
    /// parent's `EncryptionContextEquals` never covers.
    pub fn within(child: Option<&GrantConstraints>, parent: Option<&GrantConstraints>) -> bool {
        let Some(parent) = parent else {
            return true;
        };
        let empty = BTreeMap::new();
        let child_subset = child
            .and_then(|c| c.encryption_context_subset.as_ref())
            .unwrap_or(&empty);
        match child.and_then(|c| c.encryption_context_equals.as_ref()) {
            Some(only) => {
                let admits_any = holds_all(only, child_subset);
                !admits_any || parent.admit(only)
            }
            None => {
                parent.encryption_context_equals.is_none()
                    && parent
                        .encryption_context_subset
                        .as_ref()
                        .is_none_or(|want| holds_all(child_subset, want))
            }
        }
    }
}

impl Grant {
    /// Whether the grant allows the request. Constraints apply to operations with an encryption
    /// context; for a request without one (DescribeKey, RetireGrant), the service leaves
    /// [`RequestContext::with_encryption_context`] unset and the constraints are not checked. For
    /// `kms:CreateGrant` the grant allows only a [`RequestedGrant`] within it (and nothing when the
    /// request's grant is not known: fail closed).
    pub fn allows(&self, ctx: &RequestContext) -> bool {
        let p = ctx.principal();
        let grantee = self.grantee_principal == p.arn
            || p.role_arn.as_deref() == Some(self.grantee_principal.as_str());
        let has = |op: &str| self.operations.iter().any(|o| o.eq_ignore_ascii_case(op));
        let operation = ctx.action_lower.strip_prefix("kms:").is_some_and(has);
        if !grantee || !operation {
            return false;
        }
        if ctx.action_lower == "kms:creategrant" {
            let Some(child) = ctx.requested_grant() else {
                return false;
            };
            return child.operations.iter().all(|o| has(o))
                && GrantConstraints::within(child.constraints.as_ref(), self.constraints.as_ref());
        }
        match (&self.constraints, ctx.encryption_context()) {
            (Some(c), Some(ec)) => c.admit(ec),
            _ => true,
        }
    }
}

/// Where a deciding statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    /// The policy's name as passed in [`NamedPolicy`].
    pub policy: String,
    /// Resource- or identity-based.
    pub kind: PolicyKind,
    /// The statement's index in the policy (0-based, document order).
    pub index: usize,
    /// The statement's `Sid`.
    pub sid: Option<String>,
}

/// Why a request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// The resource policy allows the caller itself (same account).
    ResourcePolicy(StatementRef),
    /// The resource policy allows the caller or its account, and an identity policy allows; `None`
    /// when the caller is the root user, whom identity policies do not restrict.
    ResourceAndIdentity {
        /// The resource policy's statement.
        resource: StatementRef,
        /// The identity policy's statement.
        identity: Option<StatementRef>,
    },
    /// No resource policy takes part and an identity policy allows (`None`: the root user).
    IdentityPolicy(Option<StatementRef>),
    /// A grant allows.
    Grant(String),
}

/// Why a request is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A `Deny` statement applies.
    ExplicitDeny(StatementRef),
    /// The resource policy names neither the caller nor its account (and no grant allows).
    NoResourcePolicyAllows,
    /// No identity policy allows what needs one.
    NoIdentityPolicyAllows,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what.
    Allow(Allowed),
    /// Denied, and why.
    Deny(Denied),
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Everything that can allow or deny one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policies<'a> {
    /// The resource's policy (the key policy, the role's trust policy); `None` for account-level
    /// actions and resources without one.
    pub resource: Option<NamedPolicy<'a>>,
    /// The caller's identity policies: inline and managed, the user's and its groups', or the role's.
    pub identity: &'a [NamedPolicy<'a>],
    /// Grants on the resource (KMS keys).
    pub grants: &'a [Grant],
}

/// The first statement of `effect` in `policy` that applies, with how its principal matched.
fn find(
    named: &NamedPolicy<'_>,
    kind: PolicyKind,
    effect: Effect,
    ctx: &RequestContext,
    at_least: PrincipalMatch,
) -> Option<(StatementRef, PrincipalMatch)> {
    let mut best: Option<(usize, PrincipalMatch)> = None;
    for (i, s) in named.policy.statements().iter().enumerate() {
        if s.effect() != effect {
            continue;
        }
        if let Some(m) = s.applies(ctx).filter(|m| *m >= at_least) {
            if best.is_none_or(|(_, b)| m > b) {
                best = Some((i, m));
            }
            if m == PrincipalMatch::Direct {
                break;
            }
        }
    }
    best.map(|(index, m)| {
        let sid = named.policy.statements()[index].sid().map(str::to_owned);
        let r = StatementRef {
            policy: named.name.to_owned(),
            kind,
            index,
            sid,
        };
        (r, m)
    })
}

/// Decides one request.
pub fn authorize(ctx: &RequestContext, policies: &Policies<'_>) -> Decision {
    use PrincipalMatch::{Account, Direct};
    // 1. Explicit deny. A Deny naming the caller's account covers every principal of it.
    if let Some(rp) = &policies.resource {
        if let Some((r, _)) = find(rp, PolicyKind::ResourceBased, Effect::Deny, ctx, Account) {
            return Decision::Deny(Denied::ExplicitDeny(r));
        }
    }
    let caller = ctx.principal();
    for ip in policies.identity {
        if let Some((r, _)) = find(ip, PolicyKind::IdentityBased, Effect::Deny, ctx, Direct) {
            return Decision::Deny(Denied::ExplicitDeny(r));
        }
    }
    // 2. Allows. The root user needs no identity policy.
    let identity = || -> Option<Option<StatementRef>> {
        if caller.is_root() {
            return Some(None);
        }
        policies.identity.iter().find_map(|ip| {
            find(ip, PolicyKind::IdentityBased, Effect::Allow, ctx, Direct).map(|(r, _)| Some(r))
        })
    };
    let Some(rp) = &policies.resource else {
        return match identity() {
            Some(statement) => Decision::Allow(Allowed::IdentityPolicy(statement)),
            None => Decision::Deny(Denied::NoIdentityPolicyAllows),
        };
    };
    let resource_account = ctx
        .resource()
        .and_then(super::matcher::split_arn)
        .map(|parts| parts[4]);
    // A service principal has no account and no identity policies: the resource policy decides.
    let same_account = caller.kind == super::context::PrincipalType::Service
        || resource_account.is_none_or(|a| a.is_empty() || a == caller.account);
    let allow = find(rp, PolicyKind::ResourceBased, Effect::Allow, ctx, Account);
    if let Some((resource, m)) = &allow {
        if same_account && *m == Direct {
            return Decision::Allow(Allowed::ResourcePolicy(resource.clone()));
        }
        if let Some(identity) = identity() {
            return Decision::Allow(Allowed::ResourceAndIdentity {
                resource: resource.clone(),
                identity,
            });
        }
    }
    if let Some(g) = policies.grants.iter().find(|g| g.allows(ctx)) {
        return Decision::Allow(Allowed::Grant(g.grant_id.clone()));
    }
    Decision::Deny(match allow {
        None => Denied::NoResourcePolicyAllows,
        Some(_) => Denied::NoIdentityPolicyAllows,
    })
}
