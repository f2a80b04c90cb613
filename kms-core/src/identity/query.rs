//! The Query protocol's side in the core: a request is an action and its decoded form parameters
//! ([`Params`]), an answer is a tree of [`Value`]s that the endpoint writes as XML in botocore's
//! shapes. [`Kms::execute_query`] is the one entry for IAM and STS: the dispatch table and the one
//! audit record per call, as [`Kms::execute`] is for KMS.

use std::collections::BTreeMap;

use super::error::IamError;
use crate::audit::{AuditRecord, Caller};
use crate::policy::{keys, RequestContext};
use crate::Kms;

/// Which Query API a request is for, from its SigV4 credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryService {
    /// IAM, `Version=2010-05-08`.
    Iam,
    /// STS, `Version=2011-06-15`.
    Sts,
}

impl QueryService {
    /// The XML namespace of its responses.
    pub fn namespace(self) -> &'static str {
        match self {
            QueryService::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            QueryService::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
        }
    }

    /// The API version its requests name.
    pub fn version(self) -> &'static str {
        match self {
            QueryService::Iam => "2010-05-08",
            QueryService::Sts => "2011-06-15",
        }
    }
}

/// A response member: text, a list (each item an XML `<member>`), or a structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text (numbers, booleans and timestamps as AWS writes them).
    Text(String),
    /// Text that is a secret (a secret access key, a session token): zeroized when dropped and
    /// redacted in `Debug`; the writer puts it in a response buffer that is zeroized too.
    Secret(crate::SecretBytes),
    /// A list.
    List(Vec<Value>),
    /// A structure: members in order.
    Struct(Vec<(&'static str, Value)>),
}

impl Value {
    pub(crate) fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub(crate) fn secret(s: &str) -> Value {
        Value::Secret(crate::SecretBytes::new(s.as_bytes().to_vec()))
    }

    pub(crate) fn bool(b: bool) -> Value {
        Value::Text(if b { "true" } else { "false" }.into())
    }

    pub(crate) fn time(millis: i64) -> Value {
        // AWS writes IAM timestamps as ISO 8601 with seconds: 2026-01-02T03:04:05Z.
        Value::Text(crate::rfc3339(millis - millis.rem_euclid(1000)))
    }

    pub(crate) fn tags(tags: &BTreeMap<String, String>) -> Value {
        Value::List(
            tags.iter()
                .map(|(k, v)| {
                    Value::Struct(vec![("Key", Value::text(k)), ("Value", Value::text(v))])
                })
                .collect(),
        )
    }
}

/// An action's form parameters, decoded (`UserName`, `Tags.member.1.Key`, …).
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

/// `[("UserName", "alice")].into_iter().collect::<Params>()`: parameters from name-value pairs (a
/// name given twice keeps its last value, as a map does; the form reader refuses such a body first).
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Params {
    /// An optional parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, IamError> {
        self.get(name).ok_or_else(|| {
            let mut field = name.to_string();
            if let Some(c) = field.get_mut(..1) {
                c.make_ascii_lowercase();
            }
            IamError::missing(&field)
        })
    }

    /// `Name.member.N.Key`/`Value` pairs (tags), in order of N, each held to IAM's pattern: a key
    /// of 1 to 128 and a value of at most 256 letters, separators, digits and `_.:/=+-@`
    /// (`[\p{L}\p{Z}\p{N}_.:/=+\-@]`). Stored tags are answered in XML: a character IAM refuses
    /// (U+FFFE, a control character) would break every listing of its entity.
    pub(crate) fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, IamError> {
        let mut out = BTreeMap::new();
        for n in 1.. {
            let Some(k) = self.get(&format!("{name}.member.{n}.Key")) else {
                break;
            };
            let v = self
                .get(&format!("{name}.member.{n}.Value"))
                .unwrap_or_default();
            let field = |member| format!("tags.{n}.member.{member}");
            check_text(k, &field("key"), 1, 128, TAG_PATTERN, is_tag_char)?;
            check_text(v, &field("value"), 0, 256, TAG_PATTERN_EMPTY, is_tag_char)?;
            if out.insert(k.to_string(), v.to_string()).is_some() {
                return Err(IamError::InvalidInput(format!(
                    "Duplicate tag keys found. Please note that Tag keys are case insensitive: {k}"
                )));
            }
            if out.len() > 50 {
                return Err(IamError::LimitExceeded(
                    "The number of tags has reached the maximum limit of 50.".into(),
                ));
            }
        }
        Ok(out)
    }

    /// `Description` (of a role, of a managed policy): at most 1000 characters of tab, line ends,
    /// printable ASCII and U+00A1 to U+00FF, IAM's pattern.
    pub(crate) fn description(&self) -> Result<Option<String>, IamError> {
        self.description_of(
            DESCRIPTION_PATTERN,
            |c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a1}'..='\u{ff}'),
        )
    }

    /// A managed policy's `Description`: IAM holds it to 1000 characters and no pattern (a role's
    /// has one, [`description`](Self::description)); only what XML cannot carry is refused.
    pub(crate) fn policy_description(&self) -> Result<Option<String>, IamError> {
        self.description_of(
            "[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F]*",
            |c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..),
        )
    }

    /// `Description`, optional: at most 1000 characters, each `allowed` (`pattern` names them in
    /// the error).
    fn description_of(
        &self,
        pattern: &str,
        allowed: impl Fn(char) -> bool,
    ) -> Result<Option<String>, IamError> {
        let Some(d) = self.get("Description") else {
            return Ok(None);
        };
        check_text(d, "description", 0, 1000, pattern, allowed)?;
        Ok(Some(d.to_owned()))
    }
}

const TAG_PATTERN: &str = "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+";
const TAG_PATTERN_EMPTY: &str = "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*";
const DESCRIPTION_PATTERN: &str = "[\\u0009\\u000A\\u000D\\u0020-\\u007E\\u00A1-\\u00FF]*";

/// A character of IAM's tag pattern: a letter, a separator, a number (Unicode general categories
/// L, Z, N) or one of `_.:/=+-@`.
fn is_tag_char(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup as G, UnicodeGeneralCategory};
    "_.:/=+-@".contains(c)
        || matches!(
            c.general_category_group(),
            G::Letter | G::Separator | G::Number
        )
}

/// Refuses `value` unless it has `min` to `max` characters, each one `allowed`, with AWS's
/// wording (the length first, then the pattern).
fn check_text(
    value: &str,
    field: &str,
    min: usize,
    max: usize,
    pattern: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), IamError> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(IamError::constraint(
            value,
            field,
            &format!("Member must have length less than or equal to {max} and greater than or equal to {min}"),
        ));
    }
    if !value.chars().all(allowed) {
        return Err(IamError::constraint(
            value,
            field,
            &format!("Member must satisfy regular expression pattern: {pattern}"),
        ));
    }
    Ok(())
}

/// The request context of a call by `caller` for `action`: the principal's keys, the time, and the
/// request's `aws:SourceIp` and `aws:SecureTransport`.
pub(crate) fn request_context(caller: &Caller, action: &str) -> RequestContext {
    let mut ctx = RequestContext::new(caller.principal.clone(), action)
        .with_time(time::OffsetDateTime::now_utc())
        .with_bool(keys::SECURE_TRANSPORT, caller.secure_transport);
    if let Some(ip) = &caller.source_ip {
        ctx.set(keys::SOURCE_IP, ip);
    }
    ctx
}

impl Kms {
    /// Runs one IAM or STS action (`Action=CreateUser`) with its form parameters and returns the
    /// members of `<ActionResult>` (`None`: the action returns nothing). Records the call in the
    /// audit log.
    pub async fn execute_query(
        &self,
        caller: &Caller,
        service: QueryService,
        action: &str,
        params: &Params,
    ) -> Result<Option<Value>, IamError> {
        let (result, decisions) = self
            .in_call(caller, async {
                match service {
                    QueryService::Iam => self.iam_action(caller, action, params).await,
                    QueryService::Sts => self.sts_action(caller, action, params).await,
                }
            })
            .await;
        if let Some(log) = self.audit_log() {
            log.record(&AuditRecord {
                event_time: crate::rfc3339(crate::now_millis()),
                event_name: action,
                principal_arn: &caller.principal.arn,
                access_key_id: &caller.access_key_id,
                request_id: &caller.request_id,
                source_ip_address: caller.source_ip.as_deref(),
                key_id: None,
                error_code: result.as_ref().err().map(IamError::code),
                authorization: &decisions,
            });
        }
        result
    }

    /// Decides an IAM action on `resource` (identity-based policies only) through the one
    /// authorization point, with the request's tags and one more condition key (`iam:PolicyARN`)
    /// when the action has them.
    pub(crate) async fn authorize_iam(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
        request_tags: Option<&BTreeMap<String, String>>,
        key: Option<(&str, &str)>,
    ) -> Result<(), IamError> {
        let mut ctx = request_context(caller, action).with_resource(resource);
        if let Some(tags) = request_tags {
            ctx = ctx.with_request_tags(tags);
        }
        if let Some((k, v)) = key {
            ctx.set(k, v);
        }
        self.authorize(&ctx, None, &[]).await?;
        Ok(())
    }

    async fn iam_action(
        &self,
        caller: &Caller,
        action: &str,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        macro_rules! actions {
            ($($name:literal => $method:ident),* $(,)?) => {
                match action {
                    $($name => self.$method(caller, p).await,)*
                    _ => Err(IamError::InvalidAction(format!(
                        "Could not find operation {action} for version 2010-05-08"
                    ))),
                }
            };
        }
        actions! {
            "CreateUser" => create_user,
            "GetUser" => get_user,
            "ListUsers" => list_users,
            "DeleteUser" => delete_user,
            "CreateAccessKey" => create_access_key,
            "ListAccessKeys" => list_access_keys,
            "UpdateAccessKey" => update_access_key,
            "DeleteAccessKey" => delete_access_key,
            "CreateGroup" => create_group,
            "GetGroup" => get_group,
            "ListGroups" => list_groups,
            "ListGroupsForUser" => list_groups_for_user,
            "DeleteGroup" => delete_group,
            "AddUserToGroup" => add_user_to_group,
            "RemoveUserFromGroup" => remove_user_from_group,
            "CreateRole" => create_role,
            "GetRole" => get_role,
            "ListRoles" => list_roles,
            "DeleteRole" => delete_role,
            "PutUserPolicy" => put_user_policy,
            "GetUserPolicy" => get_user_policy,
            "ListUserPolicies" => list_user_policies,
            "DeleteUserPolicy" => delete_user_policy,
            "PutGroupPolicy" => put_group_policy,
            "GetGroupPolicy" => get_group_policy,
            "ListGroupPolicies" => list_group_policies,
            "DeleteGroupPolicy" => delete_group_policy,
            "PutRolePolicy" => put_role_policy,
            "GetRolePolicy" => get_role_policy,
            "ListRolePolicies" => list_role_policies,
            "DeleteRolePolicy" => delete_role_policy,
            "CreatePolicy" => create_policy,
            "GetPolicy" => get_policy,
            "GetPolicyVersion" => get_policy_version,
            "ListPolicies" => list_policies,
            "DeletePolicy" => delete_policy,
            "AttachUserPolicy" => attach_user_policy,
            "DetachUserPolicy" => detach_user_policy,
            "ListAttachedUserPolicies" => list_attached_user_policies,
            "AttachGroupPolicy" => attach_group_policy,
            "DetachGroupPolicy" => detach_group_policy,
            "ListAttachedGroupPolicies" => list_attached_group_policies,
            "AttachRolePolicy" => attach_role_policy,
            "DetachRolePolicy" => detach_role_policy,
            "ListAttachedRolePolicies" => list_attached_role_policies,
            "SimulatePrincipalPolicy" => simulate_principal_policy,
        }
    }

    async fn sts_action(
        &self,
        caller: &Caller,
        action: &str,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        match action {
            "GetCallerIdentity" => self.get_caller_identity(caller),
            "AssumeRole" => self.assume_role(caller, p).await,
            _ => Err(IamError::InvalidAction(format!(
                "Could not find operation {action} for version 2011-06-15"
            ))),
        }
    }
}

/// `MaxItems`: 1 to 1000, 100 when absent, as every paged IAM action takes it.
pub(crate) fn max_items(p: &Params) -> Result<usize, IamError> {
    match p.get("MaxItems") {
        None => Ok(100),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(IamError::constraint(
                s,
                "maxItems",
                "Member must have value between 1 and 1000",
            )),
        },
    }
}

/// One page of `items` in the order of `key` (bytewise, whatever order the database's collation
/// returned them in, so a marker means the same on SQLite and PostgreSQL): `Marker` is the key to
/// start at, `MaxItems` 1 to 1000 (default 100). Returns the page and the next marker when truncated.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    p: &Params,
) -> Result<(Vec<T>, Option<String>), IamError> {
    items.sort_by_cached_key(|i| key(i));
    let max = max_items(p)?;
    let rest: Vec<T> = match p.get("Marker") {
        Some(m) => items.into_iter().filter(|i| key(i).as_str() >= m).collect(),
        None => items,
    };
    Ok(split_page(rest, max, key))
}

/// `items`, in order from the marker on, cut to `max`: the page and, when items are left out, the
/// next marker (the key of the first of them).
pub(crate) fn split_page<T>(
    mut items: Vec<T>,
    max: usize,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if items.len() <= max {
        return (items, None);
    }
    let tail = items.split_off(max);
    let next = tail.first().map(&key);
    (items, next)
}

/// The members a listing ends with: `IsTruncated` and, when truncated, `Marker`.
pub(crate) fn listing(
    name: &'static str,
    items: Vec<Value>,
    next: Option<String>,
) -> Option<Value> {
    let mut members = vec![
        (name, Value::List(items)),
        ("IsTruncated", Value::bool(next.is_some())),
    ];
    if let Some(m) = next {
        members.push(("Marker", Value::Text(m)));
    }
    Some(Value::Struct(members))
}
