//! Wildcard and ARN matching as IAM does it: `*` matches any run of characters (also none), `?`
//! exactly one, and an ARN is compared segment by segment (`arn:partition:service:region:account:
//! resource`), so a wildcard never spans a colon of the first five. No regex: a pattern is a token list
//! built once, and matching is a two-pointer walk that allocates nothing.

/// One token of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character (lowercased when the pattern ignores case).
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters.
    Many,
}

/// Lowercases one character; characters whose lowercase is several characters stay as they are.
pub(crate) fn lower(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(one), None) => one,
        _ => c,
    }
}

/// Compares two strings ignoring case (ASCII fast path, Unicode simple lowercase otherwise).
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(lower).eq(b.chars().map(lower))
}

/// Tokens of `pattern` where `*` and `?` are wildcards; lowercased when `ignore_case`.
pub(crate) fn compile_glob(pattern: &str, ignore_case: bool) -> Vec<Tok> {
    pattern
        .chars()
        .map(|c| match c {
            '*' => Tok::Many,
            '?' => Tok::One,
            c if ignore_case => Tok::Char(lower(c)),
            c => Tok::Char(c),
        })
        .collect()
}

/// Tokens of `literal` with no wildcards (`*` and `?` are plain characters).
pub(crate) fn compile_literal(literal: &str, ignore_case: bool) -> Vec<Tok> {
    literal
        .chars()
        .map(|c| Tok::Char(if ignore_case { lower(c) } else { c }))
        .collect()
}

/// Whether `s` matches the whole pattern. With `ignore_case`, the pattern must have been compiled
/// lowercased; `s` is lowered character by character here.
pub(crate) fn glob_match(pattern: &[Tok], s: &str, ignore_case: bool) -> bool {
    let mut p = 0;
    let mut i = 0;
    // The last `*` seen and where in `s` it is currently assumed to end.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let Some(c) = s[i..].chars().next() else {
            return false;
        };
        let c_len = c.len_utf8();
        if let Some(tok) = pattern.get(p) {
            match *tok {
                Tok::Many => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                Tok::One => {
                    p += 1;
                    i += c_len;
                    continue;
                }
                Tok::Char(pc) => {
                    let c = if ignore_case { lower(c) } else { c };
                    if pc == c {
                        p += 1;
                        i += c_len;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        let Some((sp, si)) = star else {
            return false;
        };
        let Some(skipped) = s[si..].chars().next() else {
            return false;
        };
        let next = si + skipped.len_utf8();
        star = Some((sp, next));
        p = sp + 1;
        i = next;
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|t| *t == Tok::Many)
}

/// Whether the pattern is the single token `*`.
pub(crate) fn is_star(pattern: &[Tok]) -> bool {
    matches!(pattern, [Tok::Many])
}

/// Whether `pattern` (tokens of an ARN, possibly with wildcards) matches the ARN `arn`. Each of the
/// first five colon-separated segments is matched on its own; the last pattern segment takes the rest
/// of the ARN (resource ids may contain colons). The pattern `*` matches anything, even a non-ARN.
pub(crate) fn arn_match(pattern: &[Tok], arn: &str) -> bool {
    if is_star(pattern) {
        return true;
    }
    let mut segments_left = pattern
        .iter()
        .filter(|t| **t == Tok::Char(':'))
        .count()
        .min(5)
        + 1;
    let mut rest = pattern;
    let mut parts = arn.splitn(segments_left, ':');
    while segments_left > 0 {
        segments_left -= 1;
        let seg_end = if segments_left == 0 {
            rest.len()
        } else {
            rest.iter()
                .position(|t| *t == Tok::Char(':'))
                .unwrap_or(rest.len())
        };
        let Some(part) = parts.next() else {
            return false;
        };
        if !glob_match(&rest[..seg_end], part, false) {
            return false;
        }
        rest = rest.get(seg_end + 1..).unwrap_or(&[]);
    }
    true
}

/// The six segments of an ARN (`arn:partition:service:region:account:resource`), or `None` when
/// `s` is not one.
pub fn split_arn(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    (parts[0] == "arn" && !parts[1].is_empty() && !parts[2].is_empty()).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, s: &str) -> bool {
        glob_match(&compile_glob(p, false), s, false)
    }

    fn gi(p: &str, s: &str) -> bool {
        glob_match(&compile_glob(p, true), s, true)
    }

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abbbc", true),
            ("a*c", "abcd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("??", "é!", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("a**b", "ab", true),
            ("a*b*c", "abxbxc", true),
            ("key/*", "key/1234abcd", true),
            ("key/*", "alias/x", false),
            ("Key", "key", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(g(p, s), want, "{p:?} vs {s:?}");
        }
    }

    #[test]
    fn case_insensitive_actions() {
        assert!(gi("kms:Encrypt*", "kms:encrypt"));
        assert!(gi("kms:Encrypt*", "KMS:ENCRYPTCONTEXT"));
        assert!(gi("KMS:REENCRYPT*", "kms:ReEncryptFrom"));
        assert!(!gi("kms:Encrypt*", "kms:Decrypt"));
        assert!(eq_ignore_case("ÄBC", "äbc"));
        assert!(!eq_ignore_case("abc", "abd"));
    }

    #[test]
    fn arns_by_segment() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let t = |p: &str| compile_glob(p, false);
        assert!(arn_match(&t("*"), key));
        assert!(arn_match(&t("*"), "not-an-arn"));
        assert!(arn_match(&t(key), key));
        assert!(arn_match(&t("arn:aws:kms:*:111122223333:key/*"), key));
        assert!(arn_match(&t("arn:aws:kms:*:*:*"), key));
        assert!(arn_match(&t("arn:*:kms:us-east-?:111122223333:key/*"), key));
        assert!(!arn_match(&t("arn:aws:kms:*:444455556666:key/*"), key));
        // A wildcard does not span the colon between region and account.
        assert!(!arn_match(&t("arn:aws:kms:*:key/*"), key));
        assert!(!arn_match(
            &t("arn:aws:kms:us-east-1:111122223333:alias/*"),
            key
        ));
        // Fewer segments: the last one takes the rest of the ARN.
        assert!(arn_match(&t("arn:aws:kms:*"), key));
        // Resource ids with colons.
        let lg = "arn:aws:logs:us-east-1:111122223333:log-group:g:*";
        assert!(arn_match(&t("arn:aws:logs:*:111122223333:log-group:*"), lg));
        assert!(!arn_match(&t(key), "not-an-arn"));
        assert!(!arn_match(
            &t("arn:aws:kms:us-east-1:111122223333:key/*"),
            "*"
        ));
    }

    #[test]
    fn splits_arns() {
        assert_eq!(
            split_arn("arn:aws:iam::111122223333:user/a:b"),
            Some(["arn", "aws", "iam", "", "111122223333", "user/a:b"])
        );
        assert_eq!(split_arn("arn:aws:iam::111122223333"), None);
        assert_eq!(split_arn("111122223333"), None);
        assert_eq!(split_arn("ARN:aws:iam::1:root"), None);
    }
}
