//! The `Condition` element: every condition operator a KMS policy uses, their `…IfExists` forms and
//! the `ForAnyValue:`/`ForAllValues:` set qualifiers, as the IAM User Guide pages "Condition
//! operators" (reference_policies_elements_condition_operators) and "Single-valued vs. multivalued
//! context keys" (reference_policies_condition-single-vs-multi-valued-context-keys) define them.
//!
//! Within one key the policy's values are OR'ed; keys and operators of a block are AND'ed. A missing
//! key (or an empty set) makes a positive operator false and a negated one true; `…IfExists` makes it
//! true; `ForAllValues` is true and `ForAnyValue` false. A negated operator is true for a request
//! value that matches none of the policy's values. Policy values are parsed when the policy is
//! compiled; request values are parsed per request, and one that does not parse matches nothing.

use std::net::IpAddr;

use base64::Engine as _;

use super::context::RequestContext;
use super::matcher::{arn_match, glob_match, split_arn, Tok};
use super::variables::{Syntax, Template};

/// The base operators, without qualifier or `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

const OPS: [(&str, Op); 27] = [
    ("StringEquals", Op::StringEquals),
    ("StringNotEquals", Op::StringNotEquals),
    ("StringEqualsIgnoreCase", Op::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Op::StringNotEqualsIgnoreCase),
    ("StringLike", Op::StringLike),
    ("StringNotLike", Op::StringNotLike),
    ("NumericEquals", Op::NumericEquals),
    ("NumericNotEquals", Op::NumericNotEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("DateEquals", Op::DateEquals),
    ("DateNotEquals", Op::DateNotEquals),
    ("DateLessThan", Op::DateLessThan),
    ("DateLessThanEquals", Op::DateLessThanEquals),
    ("DateGreaterThan", Op::DateGreaterThan),
    ("DateGreaterThanEquals", Op::DateGreaterThanEquals),
    ("Bool", Op::Bool),
    ("BinaryEquals", Op::BinaryEquals),
    ("IpAddress", Op::IpAddress),
    ("NotIpAddress", Op::NotIpAddress),
    ("ArnEquals", Op::ArnEquals),
    ("ArnLike", Op::ArnLike),
    ("ArnNotEquals", Op::ArnNotEquals),
    ("ArnNotLike", Op::ArnNotLike),
    ("Null", Op::Null),
];

impl Op {
    /// Whether the operator is the negation of a positive one.
    fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::NumericNotEquals
                | Op::DateNotEquals
                | Op::NotIpAddress
                | Op::ArnNotEquals
                | Op::ArnNotLike
        )
    }
}

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

/// A comparison of two ordered values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One policy value, compiled for its operator.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// String, ARN and Bool operators: text that may hold variables.
    Text(Template),
    Number(f64),
    /// Nanoseconds since 1970.
    Date(i128),
    Binary(Vec<u8>),
    Cidr(IpAddr, u8),
    /// `Null`: `true` means "the key must be absent".
    Null(bool),
}

/// One operator and key of a `Condition` block, with its values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    op: Op,
    qualifier: SetQualifier,
    if_exists: bool,
    /// The context key, lowercased.
    key: String,
    values: Vec<Value>,
}

/// Splits an operator name into qualifier, base operator and `IfExists`.
pub(crate) fn parse_operator(name: &str) -> Result<(SetQualifier, Op, bool), String> {
    let unknown = || format!("unknown condition operator \"{name}\"");
    let (qualifier, rest) = match name.split_once(':') {
        None => (SetQualifier::None, name),
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAnyValue") => {
            (SetQualifier::ForAnyValue, rest)
        }
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAllValues") => {
            (SetQualifier::ForAllValues, rest)
        }
        Some(_) => return Err(unknown()),
    };
    let lower = rest.to_ascii_lowercase();
    let (base, if_exists) = match lower.strip_suffix("ifexists") {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };
    let op = OPS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(base))
        .map(|(_, op)| *op)
        .ok_or_else(unknown)?;
    if op == Op::Null && (if_exists || qualifier != SetQualifier::None) {
        return Err(format!(
            "condition operator \"{name}\": Null takes neither IfExists nor a set qualifier"
        ));
    }
    Ok((qualifier, op, if_exists))
}

impl Condition {
    /// Compiles one operator/key entry; `raw` are the policy's values as text (JSON strings, numbers
    /// and booleans), `variables` whether the policy version has policy variables.
    pub(crate) fn compile(
        operator: &str,
        key: &str,
        raw: &[String],
        variables: bool,
    ) -> Result<Condition, String> {
        let (qualifier, op, if_exists) = parse_operator(operator)?;
        if key.is_empty() {
            return Err(format!("{operator}: empty condition key"));
        }
        if raw.is_empty() {
            return Err(format!("{operator}: condition key \"{key}\" has no values"));
        }
        let bad = |what: &str, v: &str| format!("{operator}: \"{v}\" for \"{key}\" is not {what}");
        let text = |v: &str, wildcards: bool, ignore_case: bool| {
            Template::parse(
                v,
                Syntax {
                    wildcards,
                    ignore_case,
                    variables,
                },
            )
            .map(Value::Text)
            .map_err(|e| format!("{operator}: {e}"))
        };
        let values = raw
            .iter()
            .map(|v| match op {
                Op::StringEquals | Op::StringNotEquals => text(v, false, false),
                Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => text(v, false, true),
                Op::StringLike | Op::StringNotLike => text(v, true, false),
                Op::ArnEquals | Op::ArnLike | Op::ArnNotEquals | Op::ArnNotLike => {
                    text(v, true, false)
                }
                Op::Bool => {
                    if variables && v.contains("${") {
                        text(v, false, true)
                    } else {
                        parse_bool(v)
                            .ok_or_else(|| bad("true or false", v))
                            .and_then(|_| text(v, false, true))
                    }
                }
                Op::NumericEquals
                | Op::NumericNotEquals
                | Op::NumericLessThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThan
                | Op::NumericGreaterThanEquals => parse_number(v)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a number", v)),
                Op::DateEquals
                | Op::DateNotEquals
                | Op::DateLessThan
                | Op::DateLessThanEquals
                | Op::DateGreaterThan
                | Op::DateGreaterThanEquals => parse_date(v)
                    .map(Value::Date)
                    .ok_or_else(|| bad("an ISO 8601 date or epoch seconds", v)),
                Op::BinaryEquals => base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(Value::Binary)
                    .map_err(|_| bad("base64", v)),
                Op::IpAddress | Op::NotIpAddress => parse_cidr(v)
                    .map(|(a, p)| Value::Cidr(a, p))
                    .ok_or_else(|| bad("an IP address or CIDR block", v)),
                Op::Null => parse_bool(v)
                    .map(Value::Null)
                    .ok_or_else(|| bad("true or false", v)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Condition {
            op,
            qualifier,
            if_exists,
            key: key.to_ascii_lowercase(),
            values,
        })
    }

    /// Whether the condition holds for the request.
    pub(crate) fn holds(&self, ctx: &RequestContext) -> bool {
        let request = ctx.get_lower(&self.key).unwrap_or(&[]);
        if self.op == Op::Null {
            let absent = request.is_empty();
            return self.values.contains(&Value::Null(absent));
        }
        let negated = self.op.negated();
        if request.is_empty() {
            if self.if_exists {
                return true;
            }
            return match self.qualifier {
                SetQualifier::None => negated,
                SetQualifier::ForAnyValue => false,
                SetQualifier::ForAllValues => true,
            };
        }
        // For one request value: does it match some policy value (positive operators), or none of
        // them (negated operators)?
        let per_value = |r: &String| self.values.iter().any(|v| self.matches(v, r, ctx)) != negated;
        match self.qualifier {
            SetQualifier::None if negated => request.iter().all(per_value),
            SetQualifier::None | SetQualifier::ForAnyValue => request.iter().any(per_value),
            SetQualifier::ForAllValues => request.iter().all(per_value),
        }
    }

    /// Whether the request value `r` matches the policy value `v` under the positive form of the
    /// operator.
    fn matches(&self, v: &Value, r: &str, ctx: &RequestContext) -> bool {
        let lookup = |k: &str| ctx.get_lower(k);
        match (self.op, v) {
            (
                Op::StringEquals | Op::StringNotEquals | Op::StringLike | Op::StringNotLike,
                Value::Text(t),
            ) => t.resolve(lookup).is_some_and(|p| glob_match(&p, r, false)),
            (Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase, Value::Text(t)) => {
                t.resolve(lookup).is_some_and(|p| glob_match(&p, r, true))
            }
            (Op::ArnEquals | Op::ArnLike | Op::ArnNotEquals | Op::ArnNotLike, Value::Text(t)) => {
                split_arn(r).is_some() && t.resolve(lookup).is_some_and(|p| arn_match(&p, r))
            }
            (Op::Bool, Value::Text(t)) => {
                let Some(toks) = t.resolve(lookup) else {
                    return false;
                };
                let text: String = toks
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Char(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                match (parse_bool(&text), parse_bool(r)) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            }
            (op, Value::Number(p)) => parse_number(r).is_some_and(|r| compare(op, r, *p)),
            (op, Value::Date(p)) => parse_date(r).is_some_and(|r| compare(op, r, *p)),
            (Op::BinaryEquals, Value::Binary(p)) => base64::engine::general_purpose::STANDARD
                .decode(r)
                .is_ok_and(|r| r == *p),
            (Op::IpAddress | Op::NotIpAddress, Value::Cidr(net, prefix)) => r
                .parse::<IpAddr>()
                .is_ok_and(|ip| cidr_contains(*net, *prefix, ip)),
            _ => false,
        }
    }
}

/// The comparison an ordered operator makes (`request <op> policy`).
fn cmp_of(op: Op) -> Cmp {
    match op {
        Op::NumericLessThan | Op::DateLessThan => Cmp::Lt,
        Op::NumericLessThanEquals | Op::DateLessThanEquals => Cmp::Le,
        Op::NumericGreaterThan | Op::DateGreaterThan => Cmp::Gt,
        Op::NumericGreaterThanEquals | Op::DateGreaterThanEquals => Cmp::Ge,
        _ => Cmp::Eq,
    }
}

fn compare<T: PartialOrd>(op: Op, request: T, policy: T) -> bool {
    match cmp_of(op) {
        Cmp::Eq => request == policy,
        Cmp::Lt => request < policy,
        Cmp::Le => request <= policy,
        Cmp::Gt => request > policy,
        Cmp::Ge => request >= policy,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// ISO 8601 (RFC 3339 date-time, or a bare `YYYY-MM-DD` as midnight UTC) or integer epoch seconds,
/// as nanoseconds since 1970.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(secs) = s.parse::<i64>() {
        return Some(i128::from(secs) * 1_000_000_000);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    let day =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(day.midnight().assume_utc().unix_timestamp_nanos())
}

/// An address with its prefix length; a bare address is a /32 or /128.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some((addr, prefix))
}

fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}
