//! Tests of the policy engine as the service will use it: documents in, decisions and messages out.

mod conditions;
mod documents;
mod evaluation;
mod properties;

use super::*;

/// The key's account.
pub(super) const ACCT: &str = "111122223333";
/// Another account.
pub(super) const OTHER: &str = "444455556666";
/// A key of [`ACCT`].
pub(super) const KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

pub(super) fn alice() -> Principal {
    Principal::user(ACCT, "alice", "AIDAEXAMPLEALICE00")
}

pub(super) fn bob() -> Principal {
    Principal::user(ACCT, "bob", "AIDAEXAMPLEBOB0000")
}

pub(super) fn parse(kind: PolicyType, json: &str) -> Policy {
    match Policy::parse(json, kind) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{json}"),
    }
}

/// A 2012-10-17 identity policy with one statement.
pub(super) fn identity(statement: &str) -> Policy {
    parse(
        PolicyType::Identity,
        &format!(r#"{{"Version": "2012-10-17", "Statement": [{statement}]}}"#),
    )
}

/// A 2012-10-17 key policy with these statements.
pub(super) fn key_policy(statements: &str) -> Policy {
    parse(
        PolicyType::KeyPolicy,
        &format!(r#"{{"Version": "2012-10-17", "Statement": [{statements}]}}"#),
    )
}

/// The default key policy's statement that lets IAM policies of the account decide.
pub(super) const ROOT_STATEMENT: &str = r#"{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}"#;

/// Decides with an optional key policy and identity policies (named `identity policy N`).
pub(super) fn decide(ctx: &RequestContext, key: Option<&Policy>, ids: &[&Policy]) -> Decision {
    decide_with_grants(ctx, key, ids, &[])
}

pub(super) fn decide_with_grants(
    ctx: &RequestContext,
    key: Option<&Policy>,
    ids: &[&Policy],
    grants: &[Grant],
) -> Decision {
    let names: Vec<String> = (0..ids.len())
        .map(|i| format!("identity policy {i}"))
        .collect();
    let named: Vec<NamedPolicy<'_>> = ids
        .iter()
        .zip(&names)
        .map(|(p, n)| NamedPolicy { name: n, policy: p })
        .collect();
    authorize(
        ctx,
        &Policies {
            resource: key.map(|policy| NamedPolicy {
                name: "key policy",
                policy,
            }),
            identity: &named,
            grants,
        },
    )
}
