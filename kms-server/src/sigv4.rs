//! AWS Signature Version 4: verifying requests (server) and signing them (tests, load driver).
//!
//! Implemented here on `aws-lc-rs` HMAC/SHA-256 rather than through a SigV4 crate: a KMS endpoint
//! only ever sees header-signed requests, the canonicalization is short, and the final comparison
//! is `hmac::verify` (constant time). Tested against AWS's published example and against botocore.

use aws_lc_rs::{digest, hmac};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The date format of `X-Amz-Date`.
const AMZ_DATE: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

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
}

impl SigV4Error {
    /// AWS's error name.
    pub fn aws_name(&self) -> &'static str {
        match self {
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::Invalid(_) | SigV4Error::Expired(_) => "InvalidSignatureException",
            SigV4Error::UnknownAccessKey => "UnrecognizedClientException",
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
    PrimitiveDateTime::parse(s, AMZ_DATE)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// Formats an `X-Amz-Date` value.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    t.format(AMZ_DATE).unwrap_or_default()
}

fn uri_encode(s: &str, encode_slash: bool, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
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

fn canonical_header_value(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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
        let values: Vec<String> = headers
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| canonical_header_value(v))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
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
    hex::encode(digest::digest(&digest::SHA256, data))
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
    match hex::decode(signature_hex) {
        Ok(sig) if sig.len() == 32 => hmac::verify(key, string_to_sign.as_bytes(), &sig).is_ok(),
        _ => false,
    }
}

/// Signs a KMS JSON 1.1 request (`POST /`, headers content-type, host, x-amz-date, x-amz-target).
/// Returns the `x-amz-date` and `authorization` header values to send.
pub fn sign_kms_request(
    host: &str,
    target: &str,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    now: OffsetDateTime,
) -> [(&'static str, String); 2] {
    let amz_date = format_amz_date(now);
    let date = &amz_date[..8];
    let signed = "content-type;host;x-amz-date;x-amz-target";
    let headers: [(&str, &[u8]); 4] = [
        ("content-type", b"application/x-amz-json-1.1"),
        ("host", host.as_bytes()),
        ("x-amz-date", amz_date.as_bytes()),
        ("x-amz-target", target.as_bytes()),
    ];
    let creq = canonical_request(
        "POST",
        "/",
        "",
        headers.iter().copied(),
        signed,
        &sha256_hex(body),
    );
    let scope = format!("{date}/{region}/kms/aws4_request");
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(secret.as_bytes(), date, region, "kms");
    let sig = hex::encode(hmac::sign(&key, sts.as_bytes()));
    [
        ("x-amz-date", amz_date),
        (
            "authorization",
            format!("{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"),
        ),
    ]
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
    fn query_and_header_canonicalization() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b+c"), "k=a%20b%20c");
        assert_eq!(canonical_header_value(b"  a   b  "), "a b");
    }
}
