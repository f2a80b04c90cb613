//! Policy variables (`${aws:username}`, `${aws:PrincipalTag/team, 'default'}`) and their escapes
//! (`${*}`, `${?}`, `${$}`) in Resource and condition values, from the IAM User Guide page "IAM policy
//! elements: Variables and tags" (reference_policies_variables). Only `"Version": "2012-10-17"`
//! documents have variables; in 2008-10-17 documents `${…}` is literal text.
//!
//! A value is compiled once into a [`Template`]. One without variables is already a token list; one
//! with variables is resolved per request: the variable's single value (or its default) is inserted as
//! literal characters, so a `*` in a user name never acts as a wildcard. A variable with no value and no
//! default makes the template resolve to nothing: that policy value matches no request.

use std::borrow::Cow;

use super::matcher::{compile_glob, compile_literal, lower, Tok};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Tok(Tok),
    /// A variable: the context key (lowercased) and the default value, if any.
    Var {
        key: String,
        default: Option<String>,
    },
}

/// A compiled policy value that may hold variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    kind: Kind,
    ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fixed(Vec<Tok>),
    Vars(Vec<Piece>),
}

/// How to read a value's text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (StringLike, ArnLike, Resource) rather than characters.
    pub wildcards: bool,
    /// Compare ignoring case (the template is lowercased).
    pub ignore_case: bool,
    /// `${…}` is a variable (policy version 2012-10-17).
    pub variables: bool,
}

impl Template {
    /// Compiles `text`; the error names what is wrong with a `${…}`.
    pub(crate) fn parse(text: &str, syntax: Syntax) -> Result<Template, String> {
        let literal = |s: &str| {
            if syntax.wildcards {
                compile_glob(s, syntax.ignore_case)
            } else {
                compile_literal(s, syntax.ignore_case)
            }
        };
        let fixed = |toks| Template {
            kind: Kind::Fixed(toks),
            ignore_case: syntax.ignore_case,
        };
        if !syntax.variables || !text.contains("${") {
            return Ok(fixed(literal(text)));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            pieces.extend(literal(&rest[..start]).into_iter().map(Piece::Tok));
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unterminated policy variable in \"{text}\""));
            };
            let inner = &after[..end];
            match inner {
                "*" | "?" | "$" => {
                    pieces.extend(inner.chars().map(|c| Piece::Tok(Tok::Char(c))));
                }
                _ => pieces.push(parse_variable(inner, text)?),
            }
            rest = &after[end + 1..];
        }
        pieces.extend(literal(rest).into_iter().map(Piece::Tok));
        if pieces.iter().all(|p| matches!(p, Piece::Tok(_))) {
            let toks = pieces
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Tok(t) => Some(t),
                    Piece::Var { .. } => None,
                })
                .collect();
            return Ok(fixed(toks));
        }
        Ok(Template {
            kind: Kind::Vars(pieces),
            ignore_case: syntax.ignore_case,
        })
    }

    /// The tokens for one request, or `None` when a variable has no value there and no default.
    /// `lookup` returns a context key's values (key lowercased).
    pub(crate) fn resolve<'c>(
        &self,
        lookup: impl Fn(&str) -> Option<&'c [String]>,
    ) -> Option<Cow<'_, [Tok]>> {
        let pieces = match &self.kind {
            Kind::Fixed(toks) => return Some(Cow::Borrowed(toks.as_slice())),
            Kind::Vars(pieces) => pieces,
        };
        let mut out = Vec::with_capacity(pieces.len() + 16);
        for piece in pieces {
            match piece {
                Piece::Tok(t) => out.push(*t),
                Piece::Var { key, default } => {
                    // Only a single-valued key can stand in for a variable.
                    let value = match lookup(key.as_str()) {
                        Some([one]) => one.as_str(),
                        _ => default.as_deref()?,
                    };
                    out.extend(
                        value
                            .chars()
                            .map(|c| Tok::Char(if self.ignore_case { lower(c) } else { c })),
                    );
                }
            }
        }
        Some(Cow::Owned(out))
    }
}

/// `name` or `name, 'default'` inside `${…}`.
fn parse_variable(inner: &str, text: &str) -> Result<Piece, String> {
    let (name, default) = match inner.split_once(',') {
        None => (inner.trim(), None),
        Some((name, default)) => {
            let d = default.trim();
            let quoted = d.len() >= 2 && d.starts_with('\'') && d.ends_with('\'');
            if !quoted {
                return Err(format!(
                    "the default value of policy variable \"${{{inner}}}\" in \"{text}\" must be in single quotes"
                ));
            }
            (name.trim(), Some(d[1..d.len() - 1].to_owned()))
        }
    };
    let valid = !name.is_empty()
        && name.contains(':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=@,".contains(c));
    if !valid {
        return Err(format!(
            "\"${{{inner}}}\" in \"{text}\" is not a policy variable"
        ));
    }
    Ok(Piece::Var {
        key: name.to_ascii_lowercase(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::glob_match;

    const LIKE: Syntax = Syntax {
        wildcards: true,
        ignore_case: false,
        variables: true,
    };

    fn ctx(key: &str) -> Option<&'static [String]> {
        use std::sync::OnceLock;
        static ALICE: OnceLock<Vec<String>> = OnceLock::new();
        static STAR: OnceLock<Vec<String>> = OnceLock::new();
        static TWO: OnceLock<Vec<String>> = OnceLock::new();
        match key {
            "aws:username" => Some(ALICE.get_or_init(|| vec!["alice".into()]).as_slice()),
            "aws:principaltag/team" => Some(STAR.get_or_init(|| vec!["a*b".into()]).as_slice()),
            "aws:tagkeys" => Some(TWO.get_or_init(|| vec!["x".into(), "y".into()]).as_slice()),
            _ => None,
        }
    }

    fn matches(pattern: &str, syntax: Syntax, s: &str) -> Option<bool> {
        let t = Template::parse(pattern, syntax).unwrap();
        let toks = t.resolve(ctx)?;
        Some(glob_match(&toks, s, syntax.ignore_case))
    }

    // Cases from "IAM policy elements: Variables and tags" (reference_policies_variables.html):
    // `home/${aws:username}/*`, the `${*}`/`${?}`/`${$}` escapes and `${aws:PrincipalTag/team, 'company-wide'}`.
    #[test]
    fn resolves_variables_and_escapes() {
        assert_eq!(
            matches("home/${aws:username}/*", LIKE, "home/alice/x"),
            Some(true)
        );
        assert_eq!(
            matches("home/${aws:username}/*", LIKE, "home/bob/x"),
            Some(false)
        );
        assert_eq!(
            matches("home/${aws:UserName}/*", LIKE, "home/alice/x"),
            Some(true)
        );
        assert_eq!(matches("a${*}b", LIKE, "a*b"), Some(true));
        assert_eq!(matches("a${*}b", LIKE, "axb"), Some(false));
        assert_eq!(matches("a${?}", LIKE, "a?"), Some(true));
        assert_eq!(matches("a${?}", LIKE, "ax"), Some(false));
        assert_eq!(matches("cost${$}", LIKE, "cost$"), Some(true));
        assert_eq!(matches("a$b", LIKE, "a$b"), Some(true));
        // A substituted value is literal: the tag value `a*b` does not act as a wildcard.
        assert_eq!(matches("${aws:PrincipalTag/team}", LIKE, "a*b"), Some(true));
        assert_eq!(
            matches("${aws:PrincipalTag/team}", LIKE, "axxb"),
            Some(false)
        );
        // No value, no default: the value matches nothing.
        assert_eq!(matches("home/${aws:userid}/*", LIKE, "home//x"), None);
        // A multivalued key cannot be a variable.
        assert_eq!(matches("${aws:TagKeys}", LIKE, "x"), None);
        // Default values.
        assert_eq!(
            matches(
                "${aws:PrincipalTag/dept, 'company-wide'}",
                LIKE,
                "company-wide"
            ),
            Some(true)
        );
        assert_eq!(
            matches("${aws:username, 'nobody'}", LIKE, "alice"),
            Some(true)
        );
    }

    #[test]
    fn version_2008_and_literal_syntax() {
        let old = Syntax {
            variables: false,
            ..LIKE
        };
        assert_eq!(
            matches("home/${aws:username}", old, "home/${aws:username}"),
            Some(true)
        );
        let equals = Syntax {
            wildcards: false,
            ..LIKE
        };
        assert_eq!(matches("a*${aws:username}", equals, "a*alice"), Some(true));
        assert_eq!(matches("a*${aws:username}", equals, "abalice"), Some(false));
        let ci = Syntax {
            ignore_case: true,
            ..LIKE
        };
        assert_eq!(
            matches("HOME/${aws:username}", ci, "home/ALICE"),
            Some(true)
        );
    }

    #[test]
    fn refuses_malformed_variables() {
        let e = |s: &str| Template::parse(s, LIKE).unwrap_err();
        assert_eq!(
            e("home/${aws:username"),
            "unterminated policy variable in \"home/${aws:username\""
        );
        assert_eq!(e("${}"), "\"${}\" in \"${}\" is not a policy variable");
        assert_eq!(
            e("${nocolon}"),
            "\"${nocolon}\" in \"${nocolon}\" is not a policy variable"
        );
        assert_eq!(
            e("${aws:username, nobody}"),
            "the default value of policy variable \"${aws:username, nobody}\" in \"${aws:username, nobody}\" must be in single quotes"
        );
    }
}
