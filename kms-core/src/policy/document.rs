//! Policy documents: parsing, validation and the compiled form. The grammar is the IAM JSON policy
//! grammar (IAM User Guide, reference_policies_grammar and reference_policies_elements_*): `Version`,
//! `Id`, `Statement` (one object or a non-empty list) of `Sid`, `Effect`, `Principal`/`NotPrincipal`,
//! `Action`/`NotAction`, `Resource`/`NotResource` and `Condition`. What a policy must or must not hold
//! depends on where it is attached ([`PolicyType`]). Parsing compiles: actions are lowercased token
//! lists, resources and condition values templates, so evaluating never re-reads the text.

use super::condition::Condition;
use super::context::{Principal, RequestContext};
use super::json::Json;
use super::matcher::{arn_match, compile_glob, glob_match, Tok};
use super::principal::{parse_principals, NamedIdentity, Principals};
use super::variables::{Syntax, Template};
use super::PolicyError;

/// Where a policy is attached, which decides the members its statements need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    /// An IAM identity policy (user, group or role; inline or managed): no principal, a resource.
    Identity,
    /// A KMS key policy: a principal and a resource in every statement.
    KeyPolicy,
    /// A role's trust policy (`AssumeRolePolicyDocument`): a principal, no resource.
    TrustPolicy,
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `2012-10-17`: the current version, with policy variables.
    V2012_10_17,
    /// `2008-10-17` (also what a document without `Version` means): `${…}` is literal text.
    V2008_10_17,
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement allows.
    Allow,
    /// The statement denies, whatever else allows.
    Deny,
}

/// How a statement's `Principal` matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PrincipalMatch {
    /// Through the caller's account (`arn:aws:iam::ACCT:root` or `ACCT`, caller not the root user):
    /// the account delegates to its identity policies.
    Account,
    /// The caller itself (its ARN, its role, `*`, a service name, or the root user by its account).
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalBlock {
    /// Identity policies: the principal is whoever the policy is attached to.
    Implicit,
    Is(Principals),
    Not(Principals),
}

/// One compiled statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    principal: PrincipalBlock,
    not_action: bool,
    actions: Vec<Vec<Tok>>,
    not_resource: bool,
    /// `None`: no resource element (trust policies), which matches any resource.
    resources: Option<Vec<Template>>,
    conditions: Vec<Condition>,
}

/// A parsed, validated and compiled policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: Version,
    id: Option<String>,
    statements: Vec<Statement>,
    /// The length of the document it was parsed from, bytes (see [`Policy::size`]).
    size: usize,
}

impl Policy {
    /// Every IAM or STS identity the policy's `Principal` and `NotPrincipal` elements name by ARN or
    /// unique id, in order, repeats included.
    pub fn named_identities(&self) -> impl Iterator<Item = NamedIdentity<'_>> {
        self.statements
            .iter()
            .flat_map(|s| match &s.principal {
                PrincipalBlock::Is(p) | PrincipalBlock::Not(p) => Some(p.named_identities()),
                PrincipalBlock::Implicit => None,
            })
            .flatten()
    }

    /// Parses and compiles `text` as a policy of `kind`. The error says what is wrong and where, in
    /// words fit for a MalformedPolicyDocument(Exception) message.
    pub fn parse(text: &str, kind: PolicyType) -> Result<Policy, PolicyError> {
        let root = Json::parse(text).map_err(PolicyError::Json)?;
        let members = match root {
            Json::Object(members) => members,
            other => {
                return Err(PolicyError::InvalidValue {
                    path: "policy".into(),
                    message: format!("must be a JSON object, not {}", other.kind()),
                })
            }
        };
        let (mut version, mut id, mut statement) = (None, None, None);
        for (name, value) in &members {
            match name.as_str() {
                "Version" => version = Some(value),
                "Id" => id = Some(string(value, "Id")?),
                "Statement" => statement = Some(value),
                _ => return Err(unknown_member("policy", name)),
            }
        }
        let version = match version {
            None => Version::V2008_10_17,
            Some(Json::String(v)) if v == "2012-10-17" => Version::V2012_10_17,
            Some(Json::String(v)) if v == "2008-10-17" => Version::V2008_10_17,
            Some(other) => {
                let shown = match other {
                    Json::String(s) => format!("\"{s}\""),
                    j => j.kind().to_owned(),
                };
                return Err(PolicyError::UnsupportedVersion(shown));
            }
        };
        let items: Vec<(String, &Json)> = match statement {
            None => return Err(missing_member("policy", "Statement")),
            Some(obj @ Json::Object(_)) => vec![("Statement".to_owned(), obj)],
            Some(Json::Array(list)) if list.is_empty() => return Err(PolicyError::EmptyStatement),
            Some(Json::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("Statement[{i}]"), s))
                .collect(),
            Some(other) => {
                return Err(PolicyError::InvalidValue {
                    path: "Statement".into(),
                    message: format!(
                        "must be an object or a list of objects, not {}",
                        other.kind()
                    ),
                })
            }
        };
        let mut statements = Vec::with_capacity(items.len());
        for (path, json) in items {
            let s = parse_statement(json, &path, version, kind)?;
            if let Some(sid) = &s.sid {
                if statements
                    .iter()
                    .any(|o: &Statement| o.sid.as_deref() == Some(sid.as_str()))
                {
                    return Err(PolicyError::DuplicateSid(sid.clone()));
                }
            }
            statements.push(s);
        }
        Ok(Policy {
            version,
            id,
            statements,
            size: text.len(),
        })
    }

    /// The policy language version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The `Id` element.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The length of the document, bytes: a bound on the patterns and values weighing one request
    /// against it compares, so what a caller may ask to be evaluated can be bounded in advance
    /// (SimulatePrincipalPolicy).
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Statement {
    /// The `Sid`.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The `Effect`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// How the statement applies to the request: `None` if its principal, action, resource or
    /// conditions do not match; otherwise how the principal matched.
    pub(crate) fn applies(&self, ctx: &RequestContext) -> Option<PrincipalMatch> {
        let principal = self.principal_match(&ctx.principal)?;
        let action = self
            .actions
            .iter()
            .any(|p| glob_match(p, &ctx.action_lower, true));
        if action == self.not_action {
            return None;
        }
        if let Some(resources) = &self.resources {
            let target = ctx.resource().unwrap_or("*");
            let lookup = |k: &str| ctx.get_lower(k);
            let hit = resources
                .iter()
                .any(|t| t.resolve(lookup).is_some_and(|p| arn_match(&p, target)));
            if hit == self.not_resource {
                return None;
            }
        }
        self.conditions
            .iter()
            .all(|c| c.holds(ctx))
            .then_some(principal)
    }

    fn principal_match(&self, p: &Principal) -> Option<PrincipalMatch> {
        match &self.principal {
            PrincipalBlock::Implicit => Some(PrincipalMatch::Direct),
            PrincipalBlock::Is(list) => list.matches(p),
            PrincipalBlock::Not(list) => (!list.excludes(p)).then_some(PrincipalMatch::Direct),
        }
    }
}

pub(crate) fn unknown_member(path: &str, name: &str) -> PolicyError {
    PolicyError::UnknownMember {
        path: path.to_owned(),
        name: name.to_owned(),
    }
}

fn missing_member(path: &str, name: &str) -> PolicyError {
    PolicyError::MissingMember {
        path: path.to_owned(),
        name: name.to_owned(),
    }
}

pub(crate) fn invalid(path: &str, message: String) -> PolicyError {
    PolicyError::InvalidValue {
        path: path.to_owned(),
        message,
    }
}

fn string(j: &Json, path: &str) -> Result<String, PolicyError> {
    match j {
        Json::String(s) => Ok(s.clone()),
        other => Err(invalid(
            path,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// A string or a non-empty list of strings.
pub(crate) fn strings(j: &Json, path: &str) -> Result<Vec<String>, PolicyError> {
    match j {
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(list) if list.is_empty() => {
            Err(invalid(path, "must not be an empty list".into()))
        }
        Json::Array(list) => list.iter().map(|s| string(s, path)).collect(),
        other => Err(invalid(
            path,
            format!(
                "must be a string or a list of strings, not {}",
                other.kind()
            ),
        )),
    }
}

fn parse_statement(
    json: &Json,
    path: &str,
    version: Version,
    kind: PolicyType,
) -> Result<Statement, PolicyError> {
    let Json::Object(members) = json else {
        return Err(invalid(
            path,
            format!("must be an object, not {}", json.kind()),
        ));
    };
    let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    for (name, _) in members {
        let known = [
            "Sid",
            "Effect",
            "Principal",
            "NotPrincipal",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ];
        if !known.contains(&name.as_str()) {
            return Err(unknown_member(path, name));
        }
    }
    let both = |a: &str, b: &str| PolicyError::Conflict {
        path: path.to_owned(),
        first: a.to_owned(),
        second: b.to_owned(),
    };
    let sid = get("Sid")
        .map(|s| string(s, &format!("{path}.Sid")))
        .transpose()?;
    if let Some(sid) = &sid {
        if kind == PolicyType::Identity && !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                &format!("{path}.Sid"),
                format!("\"{sid}\" may hold only letters A-Z, a-z and digits 0-9"),
            ));
        }
    }
    let effect = match get("Effect") {
        None => return Err(missing_member(path, "Effect")),
        Some(Json::String(e)) if e == "Allow" => Effect::Allow,
        Some(Json::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(invalid(
                &format!("{path}.Effect"),
                format!("must be \"Allow\" or \"Deny\", not {}", shown(other)),
            ))
        }
    };
    let principal = match (get("Principal"), get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(both("Principal", "NotPrincipal")),
        (Some(_), None) | (None, Some(_)) if kind == PolicyType::Identity => {
            return Err(PolicyError::PrincipalInIdentityPolicy(path.to_owned()));
        }
        (Some(p), None) => PrincipalBlock::Is(parse_principals(p, &format!("{path}.Principal"))?),
        // AWS: NotPrincipal only with Deny, and not in a role trust policy.
        (None, Some(_)) if kind == PolicyType::TrustPolicy => {
            return Err(invalid(
                &format!("{path}.NotPrincipal"),
                "a role trust policy cannot use NotPrincipal".into(),
            ));
        }
        (None, Some(_)) if effect == Effect::Allow => {
            return Err(invalid(
                &format!("{path}.NotPrincipal"),
                "NotPrincipal can be used only with \"Effect\": \"Deny\"".into(),
            ));
        }
        (None, Some(p)) => {
            PrincipalBlock::Not(parse_principals(p, &format!("{path}.NotPrincipal"))?)
        }
        (None, None) if kind == PolicyType::Identity => PrincipalBlock::Implicit,
        (None, None) => return Err(missing_member(path, "Principal")),
    };
    // AWS: a key policy statement without Action or Resource "has no effect", and CreateKey and
    // PutKeyPolicy accept it; it is kept as a statement that matches nothing.
    let (not_action, actions) = match (get("Action"), get("NotAction")) {
        (Some(_), Some(_)) => return Err(both("Action", "NotAction")),
        (None, None) if kind == PolicyType::KeyPolicy => (false, Vec::new()),
        (None, None) => return Err(missing_member(path, "Action")),
        (Some(a), None) => (false, parse_actions(a, &format!("{path}.Action"))?),
        (None, Some(a)) => (true, parse_actions(a, &format!("{path}.NotAction"))?),
    };
    let variables = version == Version::V2012_10_17;
    let resource_syntax = Syntax {
        wildcards: true,
        ignore_case: false,
        variables,
    };
    let (not_resource, resources) = match (get("Resource"), get("NotResource")) {
        (Some(_), Some(_)) => return Err(both("Resource", "NotResource")),
        (Some(_), None) | (None, Some(_)) if kind == PolicyType::TrustPolicy => {
            return Err(PolicyError::ResourceInTrustPolicy(path.to_owned()))
        }
        (None, None) if kind == PolicyType::TrustPolicy => (false, None),
        (None, None) if kind == PolicyType::KeyPolicy => (false, Some(Vec::new())),
        (None, None) => return Err(missing_member(path, "Resource")),
        (Some(r), None) => (
            false,
            Some(parse_resources(
                r,
                &format!("{path}.Resource"),
                resource_syntax,
            )?),
        ),
        (None, Some(r)) => (
            true,
            Some(parse_resources(
                r,
                &format!("{path}.NotResource"),
                resource_syntax,
            )?),
        ),
    };
    let conditions = match get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(c, &format!("{path}.Condition"), variables)?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        not_action,
        actions,
        not_resource,
        resources,
        conditions,
    })
}

pub(crate) fn shown(j: &Json) -> String {
    match j {
        Json::String(s) => format!("\"{s}\""),
        other => other.kind().to_owned(),
    }
}

fn parse_actions(j: &Json, path: &str) -> Result<Vec<Vec<Tok>>, PolicyError> {
    strings(j, path)?
        .iter()
        .map(|a| {
            let valid = a == "*"
                || a.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && service
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "*?-_".contains(c))
                });
            if valid {
                Ok(compile_glob(a, true))
            } else {
                Err(invalid(
                    path,
                    format!("\"{a}\" is not an action (service:Action or *)"),
                ))
            }
        })
        .collect()
}

fn parse_resources(j: &Json, path: &str, syntax: Syntax) -> Result<Vec<Template>, PolicyError> {
    strings(j, path)?
        .iter()
        .map(|r| {
            let arn_like =
                r.starts_with("arn:") && r.split(':').nth(2).is_some_and(|s| !s.is_empty());
            if r != "*" && !arn_like {
                return Err(invalid(path, format!("\"{r}\" must be an ARN or \"*\"")));
            }
            Template::parse(r, syntax).map_err(|e| invalid(path, e))
        })
        .collect()
}

fn parse_conditions(j: &Json, path: &str, variables: bool) -> Result<Vec<Condition>, PolicyError> {
    let Json::Object(ops) = j else {
        return Err(invalid(
            path,
            format!("must be an object, not {}", j.kind()),
        ));
    };
    let mut out = Vec::new();
    for (operator, block) in ops {
        let sub = format!("{path}.{operator}");
        let Json::Object(entries) = block else {
            return Err(invalid(
                &sub,
                format!("must be an object of condition keys, not {}", block.kind()),
            ));
        };
        if entries.is_empty() {
            return Err(invalid(&sub, "must name at least one condition key".into()));
        }
        for (key, value) in entries {
            let scalar = |v: &Json| match v {
                Json::String(s) | Json::Number(s) => Ok(s.clone()),
                Json::Bool(b) => Ok(b.to_string()),
                other => Err(invalid(
                    &format!("{sub}.{key}"),
                    format!(
                        "values must be strings, numbers or booleans, not {}",
                        other.kind()
                    ),
                )),
            };
            let raw = match value {
                Json::Array(list) => list.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
                v => vec![scalar(v)?],
            };
            out.push(
                Condition::compile(operator, key, &raw, variables).map_err(|e| invalid(&sub, e))?,
            );
        }
    }
    Ok(out)
}
