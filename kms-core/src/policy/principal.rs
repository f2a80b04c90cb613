//! The `Principal` and `NotPrincipal` elements: `"*"`, `{"AWS": …}` (an account id, an account's root
//! ARN, an IAM/STS ARN, a unique id, or `"*"`), `{"Service": …}`, `{"Federated": …}` and
//! `{"CanonicalUser": …}`, and how one matches the caller. As the IAM User Guide page on `Principal`
//! (reference_policies_elements_principal) says, a wildcard is allowed only as the whole principal
//! `"*"`, and naming an account delegates to that account's identity policies.

use super::context::{Principal, PrincipalType};
use super::document::{invalid, shown, strings, unknown_member, PrincipalMatch};
use super::json::Json;
use super::matcher::{eq_ignore_case, split_arn};
use super::PolicyError;

/// One entry of `{"AWS": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsPrincipal {
    Any,
    Account(String),
    Arn(String),
    UniqueId(String),
}

/// An IAM or STS identity a policy names, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedIdentity<'a> {
    /// `arn:aws:iam::ACCT:user/…`, `…:role/…`, `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`, …
    Arn(&'a str),
    /// A user's or role's unique id (`AIDA…`, `AROA…`).
    UniqueId(&'a str),
}

/// The principals a `Principal` or `NotPrincipal` names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Principals {
    aws: Vec<AwsPrincipal>,
    service: Vec<String>,
    federated: Vec<String>,
    canonical_user: Vec<String>,
}

impl Principals {
    pub(crate) fn matches(&self, p: &Principal) -> Option<PrincipalMatch> {
        let mut best = None;
        for entry in &self.aws {
            let m = match entry {
                AwsPrincipal::Any => Some(PrincipalMatch::Direct),
                AwsPrincipal::Account(a) if *a == p.account && p.kind != PrincipalType::Service => {
                    Some(if p.is_root() {
                        PrincipalMatch::Direct
                    } else {
                        PrincipalMatch::Account
                    })
                }
                AwsPrincipal::Arn(arn)
                    if *arn == p.arn || p.role_arn.as_deref() == Some(arn.as_str()) =>
                {
                    Some(PrincipalMatch::Direct)
                }
                AwsPrincipal::UniqueId(id) => {
                    let own = p
                        .user_id
                        .as_deref()
                        .map(|u| u.split(':').next().unwrap_or(u));
                    (own == Some(id.as_str())).then_some(PrincipalMatch::Direct)
                }
                _ => None,
            };
            best = best.max(m);
        }
        let named = |list: &[String], kind: PrincipalType| {
            p.kind == kind && list.iter().any(|s| s == "*" || eq_ignore_case(s, &p.arn))
        };
        if named(&self.service[..], PrincipalType::Service)
            || named(&self.federated[..], PrincipalType::FederatedUser)
            || self.canonical_user.contains(&p.arn)
        {
            best = Some(PrincipalMatch::Direct);
        }
        best
    }
}

impl Principals {
    /// The IAM and STS principals named by ARN or unique id (not `*`, not accounts): those a key
    /// policy may name only if they exist.
    pub(crate) fn named_identities(&self) -> impl Iterator<Item = NamedIdentity<'_>> {
        self.aws.iter().filter_map(|a| match a {
            AwsPrincipal::Arn(arn) => Some(NamedIdentity::Arn(arn)),
            AwsPrincipal::UniqueId(id) => Some(NamedIdentity::UniqueId(id)),
            AwsPrincipal::Any | AwsPrincipal::Account(_) => None,
        })
    }

    /// Whether a `NotPrincipal` naming these principals exempts the caller from its Deny. As the
    /// IAM User Guide page on NotPrincipal (reference_policies_elements_notprincipal) requires, every
    /// identity the request carries must be named: a user's ARN (or unique id) and its account; a role
    /// session's ARN, its role's ARN and its account; the root user's account.
    pub(crate) fn excludes(&self, p: &Principal) -> bool {
        let named = |want: &dyn Fn(&AwsPrincipal) -> bool| self.aws.iter().any(want);
        if named(&|a| *a == AwsPrincipal::Any) {
            return true;
        }
        if p.kind == PrincipalType::Service {
            return self.service.iter().any(|s| eq_ignore_case(s, &p.arn));
        }
        let account = named(&|a| matches!(a, AwsPrincipal::Account(acct) if *acct == p.account));
        if p.is_root() {
            return account;
        }
        let own_id = p
            .user_id
            .as_deref()
            .map(|u| u.split(':').next().unwrap_or(u));
        let itself = named(&|a| match a {
            AwsPrincipal::Arn(arn) => *arn == p.arn,
            AwsPrincipal::UniqueId(id) => own_id == Some(id.as_str()),
            _ => false,
        });
        let role = p
            .role_arn
            .as_deref()
            .is_none_or(|r| named(&|a| matches!(a, AwsPrincipal::Arn(arn) if arn == r)));
        account && itself && role
    }
}

pub(crate) fn parse_principals(j: &Json, path: &str) -> Result<Principals, PolicyError> {
    let members = match j {
        Json::String(s) if s == "*" => {
            return Ok(Principals {
                aws: vec![AwsPrincipal::Any],
                ..Principals::default()
            })
        }
        Json::Object(members) if !members.is_empty() => members,
        other => {
            return Err(invalid(
                path,
                format!(
                    "must be \"*\" or an object such as {{\"AWS\": …}}, not {}",
                    shown(other)
                ),
            ))
        }
    };
    let mut out = Principals::default();
    for (name, value) in members {
        let sub = format!("{path}.{name}");
        let values = strings(value, &sub)?;
        if values.iter().any(|v| v.is_empty()) {
            return Err(invalid(&sub, "must not hold an empty string".into()));
        }
        match name.as_str() {
            "AWS" => {
                for v in values {
                    out.aws.push(parse_aws_principal(&v, &sub)?);
                }
            }
            "Service" => out.service.extend(values),
            "Federated" => out.federated.extend(values),
            "CanonicalUser" => out.canonical_user.extend(values),
            _ => return Err(unknown_member(path, name)),
        }
    }
    Ok(out)
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_aws_principal(v: &str, path: &str) -> Result<AwsPrincipal, PolicyError> {
    if v == "*" {
        return Ok(AwsPrincipal::Any);
    }
    if is_account_id(v) {
        return Ok(AwsPrincipal::Account(v.to_owned()));
    }
    let bad = |why: &str| invalid(path, format!("invalid principal \"{v}\": {why}"));
    if v.starts_with("arn:") {
        let Some([_, _, service, _, account, resource]) = split_arn(v) else {
            return Err(bad("not an ARN"));
        };
        if service != "iam" && service != "sts" {
            return Err(bad("not an IAM or STS ARN"));
        }
        if !is_account_id(account) {
            return Err(bad("the account is not a 12-digit account id"));
        }
        if v.contains(['*', '?']) {
            return Err(bad(
                "wildcards are allowed only as the whole principal \"*\"",
            ));
        }
        if resource == "root" {
            return Ok(AwsPrincipal::Account(account.to_owned()));
        }
        return Ok(AwsPrincipal::Arn(v.to_owned()));
    }
    let unique_id = v.len() >= 16
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if unique_id {
        return Ok(AwsPrincipal::UniqueId(v.to_owned()));
    }
    Err(bad("not \"*\", an account id, an ARN or a unique id"))
}
