//! AWS Signature Version 4: verifying requests (server) and, with the `test-util` feature, signing
//! them (`sign.rs`: tests, load driver).
//!
//! Implemented here on `aws-lc-rs` HMAC/SHA-256 rather than through a SigV4 crate: a KMS endpoint
//! only ever sees header-signed requests, the canonicalization is short, and the final comparison
//! is `hmac::verify` (constant time). Tested against AWS's published example and against botocore.

use aws_lc_rs::{digest, hmac};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The date format of `X-Amz-Date`, for formatting.
const AMZ_DATE: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

#[cfg(any(test, feature = "test-util"))]
mod sign;
#[cfg(any(test, feature = "test-util"))]
pub use sign::{sign_kms_request, KmsSigner};

/// Why a request's signature was refused; each maps to AWS's error name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// The Authorization header is missing or malformed (`IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The signature does not match, or the scope is wrong (`InvalidSignatureException`).
    #[error("{0}")]
    Invalid(String),
    /// The request date is outside the allowed window (`InvalidSignatureException`, "Signature expired").
    #[error("{0}")]
    Expired(String),
    /// The access key id is not known (`UnrecognizedClientException`).
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// The request carries no Authorization header, or an empty one
    /// (`MissingAuthenticationTokenException`).
    #[error("Missing Authentication Token")]
    MissingToken,
    /// The request carries an `X-Amz-Security-Token` this endpoint did not issue, or one issued for
    /// another access key (`UnrecognizedClientException`; IAM and STS: `InvalidClientTokenId`).
    #[error("The security token included in the request is invalid.")]
    UnknownSessionToken,
    /// The session token has expired (`ExpiredTokenException`; IAM and STS: `ExpiredToken`).
    #[error("The security token included in the request is expired")]
    ExpiredToken,
}

impl SigV4Error {
    /// AWS's error name.
    pub fn aws_name(&self) -> &'static str {
        match self {
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::Invalid(_) | SigV4Error::Expired(_) => "InvalidSignatureException",
            SigV4Error::UnknownAccessKey | SigV4Error::UnknownSessionToken => {
                "UnrecognizedClientException"
            }
            SigV4Error::MissingToken => "MissingAuthenticationTokenException",
            SigV4Error::ExpiredToken => "ExpiredTokenException",
        }
    }

    /// The error code IAM and STS (the Query protocol) use for it.
    pub fn query_code(&self) -> &'static str {
        match self {
            SigV4Error::Incomplete(_) => "IncompleteSignature",
            SigV4Error::Invalid(_) | SigV4Error::Expired(_) => "SignatureDoesNotMatch",
            SigV4Error::UnknownAccessKey | SigV4Error::UnknownSessionToken => {
                "InvalidClientTokenId"
            }
            SigV4Error::MissingToken => "MissingAuthenticationToken",
            SigV4Error::ExpiredToken => "ExpiredToken",
        }
    }

    /// The HTTP status IAM and STS answer it with (IAM API Reference, "Common Errors"): a malformed
    /// signature is the request's fault (400); a missing, unknown, expired or wrong credential is a
    /// refusal (403). KMS answers every one of them 400.
    pub fn query_status(&self) -> u16 {
        match self {
            SigV4Error::Incomplete(_) => 400,
            _ => 403,
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// Access key id.
    pub access_key_id: &'a str,
    /// `YYYYMMDD` of the scope.
    pub date: &'a str,
    /// Region of the scope.
    pub region: &'a str,
    /// Service of the scope.
    pub service: &'a str,
    /// Lower-case header names, `;`-separated, sorted.
    pub signed_headers: &'a str,
    /// Hex signature.
    pub signature: &'a str,
}

/// Parses the Authorization header.
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigV4Error> {
    let incomplete = |what: &str| {
        SigV4Error::Incomplete(format!(
            "Authorization header requires '{what}' parameter. Authorization={}",
            value.split("Signature=").next().unwrap_or_default()
        ))
    };
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            SigV4Error::Incomplete(format!(
                "Unsupported authorization type; expected {ALGORITHM}."
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope[0].is_empty() {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid region and service: '{credential}'."
        )));
    }
    Ok(Authorization {
        access_key_id: scope[0],
        date: scope[1],
        region: scope[2],
        service: scope[3],
        signed_headers,
        signature,
    })
}

/// Parses an `X-Amz-Date` value.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let small = |r: std::ops::Range<usize>| num(r).and_then(|n| u8::try_from(n).ok());
    let month = time::Month::try_from(small(4..6)?).ok()?;
    let year = i32::try_from(num(0..4)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, small(6..8)?).ok()?;
    let t = time::Time::from_hms(small(9..11)?, small(11..13)?, small(13..15)?).ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

/// Formats an `X-Amz-Date` value.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    t.format(AMZ_DATE).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends lower-case hex of `bytes`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

fn uri_encode(s: &str, encode_slash: bool, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            const UPPER: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(UPPER[(b >> 4) as usize] as char);
            out.push(UPPER[(b & 15) as usize] as char);
        }
    }
}

fn percent_decode(s: &str) -> String {
    fn hex_val(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical query string: pairs decoded, re-encoded, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), true, &mut ek);
            uri_encode(&percent_decode(v), true, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Appends a header value trimmed, with runs of whitespace collapsed to one space.
fn push_canonical_header_value(out: &mut String, v: &[u8]) {
    let v = String::from_utf8_lossy(v);
    let mut first = true;
    for word in v.split_whitespace() {
        if !first {
            out.push(' ');
        }
        out.push_str(word);
        first = false;
    }
}

/// The canonical request of SigV4 for a header-signed request. `headers` yields every (lower-case
/// name, value) pair of the request; only those named in `signed_headers` are used.
pub fn canonical_request<'h>(
    method: &str,
    path: &str,
    query: &str,
    headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
    signed_headers: &str,
    payload_sha256_hex: &str,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    if path.is_empty() {
        out.push('/');
    } else {
        // Non-S3 services encode the (already encoded) path once more.
        uri_encode(path, false, &mut out);
    }
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in signed_headers.split(';') {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for (_, v) in headers
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if !first {
                out.push(',');
            }
            push_canonical_header_value(&mut out, v);
            first = false;
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_sha256_hex);
    out
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// The signing key for a scope.
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = b"AWS4".to_vec();
    k.extend_from_slice(secret);
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k);
    zeroize::Zeroize::zeroize(&mut k);
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Checks `signature_hex` in constant time.
pub fn verify_signature(key: &hmac::Key, string_to_sign: &str, signature_hex: &str) -> bool {
    // Lower-case hex only, as AWS sends and requires: the decoded bytes alone would accept a
    // second spelling of the same signature.
    if !signature_hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    match hex::decode(signature_hex) {
        Ok(sig) if sig.len() == 32 => hmac::verify(key, string_to_sign.as_bytes(), &sig).is_ok(),
        _ => false,
    }
}

/// The server's cache of derived signing keys, one per access key: valid while the secret and the
/// scope (date, region, service) are the same.
#[derive(Default)]
pub struct SigningKeyCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<CachedSigningKey>>>,
}

/// A derived signing key and what it was derived from.
pub struct CachedSigningKey {
    secret: zeroize::Zeroizing<Vec<u8>>,
    scope: String,
    key: hmac::Key,
}

impl CachedSigningKey {
    /// The HMAC key.
    pub fn key(&self) -> &hmac::Key {
        &self.key
    }
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyCache")
    }
}

impl SigningKeyCache {
    /// The signing key for `secret` in `date/region/service`, derived at most once a day per key.
    pub fn get(
        &self,
        access_key_id: &str,
        secret: &[u8],
        date: &str,
        region: &str,
        service: &str,
    ) -> std::sync::Arc<CachedSigningKey> {
        let scope_matches = |c: &CachedSigningKey| {
            let mut parts = c.scope.split('/');
            parts.next() == Some(date)
                && parts.next() == Some(region)
                && parts.next() == Some(service)
        };
        if let Ok(map) = self.entries.read() {
            if let Some(c) = map.get(access_key_id) {
                if scope_matches(c)
                    && aws_lc_rs::constant_time::verify_slices_are_equal(&c.secret, secret).is_ok()
                {
                    return c.clone();
                }
            }
        }
        let entry = std::sync::Arc::new(CachedSigningKey {
            secret: zeroize::Zeroizing::new(secret.to_vec()),
            scope: format!("{date}/{region}/{service}"),
            key: signing_key(secret, date, region, service),
        });
        if let Ok(mut map) = self.entries.write() {
            // A signing key is good for its day only: entries of other days are dropped (and
            // their secrets zeroized) as soon as another day's key is made, so no secret (a deleted
            // access key's, an expired session's) stays cached much past its last use.
            map.retain(|_, c| c.scope.split('/').next() == Some(date));
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(access_key_id.to_string(), entry.clone());
        }
        entry
    }

    /// How many signing keys are cached.
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |m| m.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's published SigV4 example (General Reference, "Signature Version 4 signing process"):
    // GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08 at 20150830T123600Z.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn aws_published_example() {
        let headers: [(&str, &[u8]); 3] = [
            (
                "content-type",
                b"application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", b"iam.amazonaws.com"),
            ("x-amz-date", b"20150830T123600Z"),
        ];
        let creq = canonical_request(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            headers.iter().copied(),
            "content-type;host;x-amz-date",
            &sha256_hex(b""),
        );
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &creq,
        );
        let key = signing_key(SECRET.as_bytes(), "20150830", "us-east-1", "iam");
        let sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        assert_eq!(hex::encode(hmac::sign(&key, sts.as_bytes())), sig);
        assert!(verify_signature(&key, &sts, sig));
        let mut bad = sig.to_string();
        bad.replace_range(0..1, "6");
        assert!(!verify_signature(&key, &sts, &bad));
        assert!(!verify_signature(&key, &sts, "zz"));
    }

    #[test]
    fn parses_authorization_and_reports_missing_parts() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.service, "kms");
        assert_eq!(a.signed_headers, "host;x-amz-date");
        for bad in [
            "",
            "AWS4-HMAC-SHA256",
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=AKID/x, SignedHeaders=host, Signature=ab",
        ] {
            assert!(
                matches!(parse_authorization(bad), Err(SigV4Error::Incomplete(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn signer_output_verifies() {
        let now = parse_amz_date("20240102T030405Z").unwrap();
        let [(_, date), (_, auth)] =
            sign_kms_request("h:1", "TrentService.ListKeys", b"{}", "AK", "s", "r", now);
        assert_eq!(date, "20240102T030405Z");
        let a = parse_authorization(&auth).unwrap();
        let headers: [(&str, &[u8]); 4] = [
            ("content-type", b"application/x-amz-json-1.1"),
            ("host", b"h:1"),
            ("x-amz-date", date.as_bytes()),
            ("x-amz-target", b"TrentService.ListKeys"),
        ];
        let creq = canonical_request(
            "POST",
            "/",
            "",
            headers.iter().copied(),
            a.signed_headers,
            &sha256_hex(b"{}"),
        );
        let sts = string_to_sign(&date, "20240102/r/kms/aws4_request", &creq);
        assert!(verify_signature(
            &signing_key(b"s", "20240102", "r", "kms"),
            &sts,
            a.signature
        ));
    }

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20240229T235959Z").unwrap();
        assert_eq!(format_amz_date(t), "20240229T235959Z");
        for bad in [
            "20230229T000000Z",
            "20240101T240000Z",
            "2024010T000000Z",
            "20240101T000000",
            "2024-101T000000Z",
            "20240101X000000Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn query_and_header_canonicalization() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b+c"), "k=a%20b%20c");
        let mut v = String::new();
        push_canonical_header_value(&mut v, b"  a   b  ");
        assert_eq!(v, "a b");
    }

    #[test]
    fn signing_keys_of_other_days_are_dropped_when_a_new_days_key_is_made() {
        let cache = SigningKeyCache::default();
        cache.get("AKIA1", b"s1", "20261204", "us-east-1", "kms");
        cache.get("AKIA2", b"s2", "20261204", "us-east-1", "kms");
        assert_eq!(cache.len(), 2);
        cache.get("AKIA3", b"s3", "20261205", "us-east-1", "kms");
        assert_eq!(cache.len(), 1);
        // The same day keeps what it has; a changed secret replaces its entry.
        cache.get("AKIA3", b"s3b", "20261205", "us-east-1", "kms");
        cache.get("AKIA4", b"s4", "20261205", "us-east-1", "kms");
        assert_eq!(cache.len(), 2);
    }
}
