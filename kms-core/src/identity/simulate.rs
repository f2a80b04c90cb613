//! SimulatePrincipalPolicy: IAM's policy simulator on the endpoint (`aws iam
//! simulate-principal-policy`), deciding by the same engine the requests are decided by.
//!
//! As IAM's simulator: the identity policies of the user or role `PolicySourceArn` names, plus any
//! `PolicyInputList` documents, are weighed for each of `ActionNames` on each of `ResourceArns`
//! (default `*`), with the `ContextEntries` as condition keys. A `ResourcePolicy`, when given, takes
//! part as a key policy does (so the answer is KMS's for a key with that policy); without one only
//! identity policies decide, as in IAM's simulator. Key policies and grants stored on the server are
//! not consulted: `envelope authz explain` answers for a real key. `EvalDecision` is `allowed`,
//! `explicitDeny` or `implicitDeny`; `MatchedStatements` names the deciding statements.
//!
//! What one call may cost is bounded, because every action × resource pair is weighed against every
//! statement: each input document is held to a managed policy's size (as IAM does), the results come
//! a page at a time (`MaxItems`, default 100, and `Marker`, as IAM pages them), and a page also ends
//! early once its estimated work reaches [`WORK_PER_CALL`] (IAM "might return fewer than the
//! MaxItems number of results even when there are more results available").

use std::collections::BTreeMap;

use super::entity::Entity;
use super::query::{listing, max_items, Params, Value};
use super::{user_principal, IamError, IdentityPolicy};
use crate::policy::{
    self, check_characters, Allowed, Decision, Denied, NamedPolicy, Policies, Policy, PolicyKind,
    PolicyType, Principal, RequestContext, StatementRef,
};
use crate::service::Kms;
use crate::store::{RoleRow, UserRow};
use crate::Caller;

/// At most this many actions, resources, input policies and context entries per call.
const MAX_LIST: usize = 100;

/// The most work one call does, in character comparisons, estimated before it is done: weighing
/// one action × resource pair can compare every pattern of every policy against the action, the
/// resource and the context values, so a pair is estimated at (bytes of policy) × (bytes of action,
/// resource and context). A page ends before the pair that would pass this; a single pair that
/// would is refused. A worst-case page at 2^27 took 5.6 s of CPU unoptimized (a debug build), far
/// inside the 30 s request timeout; without a bound, 100 × 100 pairs over long wildcards took 86 s.
pub(crate) const WORK_PER_CALL: u64 = 1 << 27;

/// `ActionNames` members: 3 to 128 characters; `ResourceArns` members: 1 to 2048 (IAM's
/// `ActionNameType` and `ResourceNameType`).
const ACTION_NAME_LENGTH: (usize, usize) = (3, 128);
const RESOURCE_NAME_LENGTH: (usize, usize) = (1, 2048);

/// The values of `Name.member.1`, `Name.member.2`, … in order.
fn members<'p>(p: &'p Params, name: &str) -> Result<Vec<&'p str>, IamError> {
    let mut out = Vec::new();
    while let Some(v) = p.get(&format!("{name}.member.{}", out.len() + 1)) {
        if out.len() == MAX_LIST {
            return Err(IamError::Validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: \
                 Member must have length less than or equal to {MAX_LIST}"
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// `ContextEntries`: key name to values. `kms:EncryptionContext:…` keys become the request's
/// encryption context, as a real request's context would.
fn context_entries(p: &Params) -> Result<Vec<(String, Vec<String>)>, IamError> {
    let mut out = Vec::new();
    for n in 1.. {
        let prefix = format!("ContextEntries.member.{n}");
        let Some(name) = p.get(&format!("{prefix}.ContextKeyName")) else {
            break;
        };
        if n > MAX_LIST {
            return Err(IamError::Validation(format!(
                "1 validation error detected: Value at 'contextEntries' failed to satisfy \
                 constraint: Member must have length less than or equal to {MAX_LIST}"
            )));
        }
        if name.is_empty() || name.len() > 256 {
            return Err(IamError::constraint(
                name,
                "contextKeyName",
                "Member must have length between 5 and 256",
            ));
        }
        let values = members(p, &format!("{prefix}.ContextKeyValues"))?;
        out.push((
            name.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
    }
    Ok(out)
}

/// Refuses a member of `values` whose length in characters is outside `(min, max)`.
fn check_lengths(values: &[&str], field: &str, (min, max): (usize, usize)) -> Result<(), IamError> {
    match values
        .iter()
        .find(|v| !(min..=max).contains(&v.chars().count()))
    {
        Some(v) => Err(IamError::constraint(
            v,
            field,
            &format!("Member must have length between {min} and {max}"),
        )),
        None => Ok(()),
    }
}

/// The API's length limit on a `PolicyInputList` member and the `ResourcePolicy` (a key policy
/// may be up to 32 KiB, so a managed policy's 6,144 would refuse real ones); the work budget, not
/// this, bounds what a call costs.
const INPUT_POLICY_MAX_CHARS: usize = 131_072;

/// A policy document given in the request (a `PolicyInputList` member or the `ResourcePolicy`):
/// its characters and the API's length limit, then its grammar.
fn input_policy(text: &str, field: &str, kind: PolicyType) -> Result<Policy, IamError> {
    check_characters(text)?;
    let len = text.chars().count();
    if len > INPUT_POLICY_MAX_CHARS {
        return Err(IamError::constraint(
            "...",
            field,
            &format!("Member must have length less than or equal to {INPUT_POLICY_MAX_CHARS}"),
        ));
    }
    Ok(Policy::parse(text, kind)?)
}

/// Where a page starts: `Marker` is the index of the first pair it holds, as the page before
/// returned it.
fn first_pair(p: &Params, pairs: usize) -> Result<usize, IamError> {
    match p.get("Marker") {
        None => Ok(0),
        Some(m) => match m.parse::<usize>() {
            Ok(n) if n < pairs => Ok(n),
            _ => Err(IamError::InvalidInput(format!(
                "The marker {m} is not one this simulation returned."
            ))),
        },
    }
}

/// IAM's `PolicySourceType` of the policy a matched statement is in: the resource policy, or
/// the identity policy of that name.
fn source_type(r: &StatementRef, identity: &[IdentityPolicy]) -> &'static str {
    if r.kind == PolicyKind::ResourceBased {
        return "resource";
    }
    identity
        .iter()
        .find(|i| i.name == r.policy)
        .map_or("none", |i| i.source)
}

fn matched(decision: &Decision) -> Vec<&StatementRef> {
    match decision {
        Decision::Allow(Allowed::ResourcePolicy(r)) => vec![r],
        Decision::Allow(Allowed::ResourceAndIdentity { resource, identity }) => {
            std::iter::once(resource).chain(identity).collect()
        }
        Decision::Allow(Allowed::IdentityPolicy(r)) => r.iter().collect(),
        Decision::Deny(Denied::ExplicitDeny(r)) => vec![r],
        Decision::Allow(Allowed::Grant(_)) | Decision::Deny(_) => Vec::new(),
    }
}

impl Kms {
    /// The principal a simulation is for: a user or a role of the caller's account. Another
    /// account's entity is answered as one that does not exist.
    async fn simulated_principal(&self, caller: &Caller, arn: &str) -> Result<Principal, IamError> {
        let missing = || IamError::NoSuchEntity(format!("The entity {arn} cannot be found."));
        let invalid = || {
            IamError::InvalidInput(format!(
                "Invalid PolicySourceArn {arn}: give the ARN of an IAM user or role."
            ))
        };
        let [_, _, service, _, account, resource] = policy::split_arn(arn).ok_or_else(invalid)?;
        if service != "iam" {
            return Err(invalid());
        }
        if account != caller.principal.account {
            return Err(missing());
        }
        // Found by name, then held to the ARN the call was authorized on: a user allowed to
        // simulate `user/sandbox/*` must not read the permissions of `user/admins/x` by naming
        // it `user/sandbox/x`. Any other path is answered as a missing entity.
        let name = resource.rsplit('/').next().unwrap_or_default();
        match resource.split_once('/') {
            Some(("user", _)) => {
                let user = UserRow::by_name(self.store(), account, name)
                    .await?
                    .filter(|u| u.arn() == arn)
                    .ok_or_else(missing)?;
                Ok(user_principal(&user))
            }
            Some(("role", _)) => {
                let role = RoleRow::by_name(self.store(), account, name)
                    .await?
                    .filter(|r| r.arn() == arn)
                    .ok_or_else(missing)?;
                // As its sessions are: with the role's tags (aws:PrincipalTag/…).
                let mut p = Principal::assumed_role(
                    account,
                    &role.role_name,
                    "SimulatePrincipalPolicy",
                    &role.role_id,
                );
                p.tags = role.tags.clone();
                Ok(p)
            }
            _ => Err(invalid()),
        }
    }

    pub(super) async fn simulate_principal_policy(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let source = p.required("PolicySourceArn")?;
        self.authorize_iam(caller, "iam:SimulatePrincipalPolicy", source, None, None)
            .await?;
        let principal = self.simulated_principal(caller, source).await?;
        let actions = members(p, "ActionNames")?;
        if actions.is_empty() {
            return Err(IamError::missing("actionNames"));
        }
        check_lengths(&actions, "actionNames", ACTION_NAME_LENGTH)?;
        let mut resources = members(p, "ResourceArns")?;
        check_lengths(&resources, "resourceArns", RESOURCE_NAME_LENGTH)?;
        if resources.is_empty() {
            resources.push("*");
        }
        let max = max_items(p)?;
        let first = first_pair(p, actions.len() * resources.len())?;
        let mut identity: Vec<IdentityPolicy> = self.identity_policies(&principal).await?.to_vec();
        for (i, doc) in members(p, "PolicyInputList")?.into_iter().enumerate() {
            identity.push(IdentityPolicy {
                name: format!("PolicyInputList.{}", i + 1),
                source: "none",
                policy: input_policy(doc, "policyInputList", PolicyType::Identity)?,
            });
        }
        let resource_policy = p
            .get("ResourcePolicy")
            .map(|doc| input_policy(doc, "resourcePolicy", PolicyType::KeyPolicy))
            .transpose()?;
        let entries = context_entries(p)?;
        let named: Vec<NamedPolicy<'_>> = identity
            .iter()
            .map(|i| NamedPolicy {
                name: &i.name,
                policy: &i.policy,
            })
            .collect();
        let policies = Policies {
            resource: resource_policy.as_ref().map(|policy| NamedPolicy {
                name: "ResourcePolicy",
                policy,
            }),
            identity: &named,
            grants: &[],
        };
        let weight = identity.iter().map(|i| i.policy.size()).sum::<usize>()
            + resource_policy.as_ref().map_or(0, Policy::size);
        let context: usize = entries
            .iter()
            .map(|(k, values)| k.len() + values.iter().map(String::len).sum::<usize>())
            .sum();
        let cost = |action: &str, resource: &str| {
            (weight as u64).saturating_mul((1 + action.len() + resource.len() + context) as u64)
        };
        // Pairs in order, action by action: pair i is action i / n on resource i % n.
        let (mut results, mut spent, mut next) = (Vec::new(), 0u64, None);
        for i in first..actions.len() * resources.len() {
            let (action, resource) = (actions[i / resources.len()], resources[i % resources.len()]);
            let c = cost(action, resource);
            if results.len() == max || (!results.is_empty() && spent + c > WORK_PER_CALL) {
                next = Some(i.to_string());
                break;
            }
            if c > WORK_PER_CALL {
                return Err(IamError::LimitExceeded(format!(
                    "The simulation is too large: weighing {weight} bytes of policies against \
                     {action} on a {} byte resource with {context} bytes of context is more than \
                     one call evaluates. Give fewer or smaller policies or context values.",
                    resource.len()
                )));
            }
            spent += c;
            results.push(evaluate(
                &principal, action, resource, &entries, &policies, &identity,
            ));
            // Let the worker's other requests run between pairs.
            tokio::task::yield_now().await;
        }
        Ok(listing("EvaluationResults", results, next))
    }
}

/// One `EvaluationResults` member: `action` on `resource` weighed by `policies`.
fn evaluate(
    principal: &Principal,
    action: &str,
    resource: &str,
    entries: &[(String, Vec<String>)],
    policies: &Policies<'_>,
    identity: &[IdentityPolicy],
) -> Value {
    let mut ctx =
        RequestContext::new(principal.clone(), action).with_time(time::OffsetDateTime::now_utc());
    if resource != "*" {
        ctx = ctx.with_resource(resource);
    }
    let mut ec = BTreeMap::new();
    for (k, values) in entries {
        let lower = k.to_ascii_lowercase();
        match lower.strip_prefix("kms:encryptioncontext:") {
            Some(_) if values.len() == 1 => {
                ec.insert(
                    k["kms:EncryptionContext:".len()..].to_string(),
                    values[0].clone(),
                );
            }
            _ => ctx.set_values(k, values),
        }
    }
    if !ec.is_empty() {
        ctx = ctx.with_encryption_context(&ec);
    }
    let decision = policy::authorize(&ctx, policies);
    let eval = match &decision {
        Decision::Allow(_) => "allowed",
        Decision::Deny(Denied::ExplicitDeny(_)) => "explicitDeny",
        Decision::Deny(_) => "implicitDeny",
    };
    let statements = matched(&decision)
        .into_iter()
        .map(|r| {
            Value::Struct(vec![
                ("SourcePolicyId", Value::text(&r.policy)),
                ("SourcePolicyType", Value::text(source_type(r, identity))),
            ])
        })
        .collect();
    Value::Struct(vec![
        ("EvalActionName", Value::text(action)),
        ("EvalResourceName", Value::text(resource)),
        ("EvalDecision", Value::text(eval)),
        ("MatchedStatements", Value::List(statements)),
        ("MissingContextValues", Value::List(Vec::new())),
    ])
}
