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

use std::collections::BTreeMap;

use super::query::{Params, Value};
use super::{IamError, IdentityPolicy};
use crate::policy::{
    self, Allowed, Decision, Denied, NamedPolicy, Policies, Policy, PolicyKind, PolicyType,
    Principal, RequestContext, StatementRef,
};
use crate::service::Kms;
use crate::Caller;

/// At most this many actions, resources and input policies per call.
const MAX_LIST: usize = 100;

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
        match resource.split_once('/') {
            Some(("user", _)) => Ok(self.principal_named(arn).await.map_err(|_| missing())?),
            Some(("role", path_name)) => {
                let name = path_name.rsplit('/').next().unwrap_or_default();
                let role = self
                    .store()
                    .role_by_name(account, name)
                    .await?
                    .ok_or_else(missing)?;
                Ok(Principal::assumed_role(
                    account,
                    &role.role_name,
                    "SimulatePrincipalPolicy",
                    &role.role_id,
                ))
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
        let mut resources = members(p, "ResourceArns")?;
        if resources.is_empty() {
            resources.push("*");
        }
        let mut identity: Vec<IdentityPolicy> = self.identity_policies(&principal).await?.to_vec();
        for (i, doc) in members(p, "PolicyInputList")?.into_iter().enumerate() {
            identity.push(IdentityPolicy {
                name: format!("PolicyInputList.{}", i + 1),
                source: "none",
                policy: Policy::parse(doc, PolicyType::Identity)?,
            });
        }
        let resource_policy = p
            .get("ResourcePolicy")
            .map(|doc| Policy::parse(doc, PolicyType::KeyPolicy))
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
        let mut results = Vec::new();
        for action in &actions {
            for resource in &resources {
                let mut ctx = RequestContext::new(principal.clone(), action)
                    .with_time(time::OffsetDateTime::now_utc());
                if *resource != "*" {
                    ctx = ctx.with_resource(resource);
                }
                let mut ec = BTreeMap::new();
                for (k, values) in &entries {
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
                let decision = policy::authorize(&ctx, &policies);
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
                            ("SourcePolicyType", Value::text(source_type(r, &identity))),
                        ])
                    })
                    .collect();
                results.push(Value::Struct(vec![
                    ("EvalActionName", Value::text(*action)),
                    ("EvalResourceName", Value::text(*resource)),
                    ("EvalDecision", Value::text(eval)),
                    ("MatchedStatements", Value::List(statements)),
                    ("MissingContextValues", Value::List(Vec::new())),
                ]));
            }
        }
        Ok(Some(Value::Struct(vec![
            ("EvaluationResults", Value::List(results)),
            ("IsTruncated", Value::bool(false)),
        ])))
    }
}
