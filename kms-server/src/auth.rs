//! Authentication: a request's SigV4 signature checked against the secret of its access key id, as
//! the key service knows it (an IAM user's access key, or a role session's behind its
//! `X-Amz-Security-Token`), with AWS's refusals (scope, date window, signed headers, unknown,
//! forged and expired session tokens). The algorithm itself is in [`crate::sigv4`].

use axum::http::header;
use kms_core::{Caller, KmsError};
use time::OffsetDateTime;

use crate::router::App;
use crate::sigv4::{self, SigV4Error};

/// The AWS service a request is for: its SigV4 credential scope must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// `kms`, scoped to the endpoint's region.
    Kms,
    /// `iam`, a global service scoped to `us-east-1` (the endpoint's region is accepted too).
    Iam,
    /// `sts`, scoped to `us-east-1` (its global endpoint) or the endpoint's region.
    Sts,
}

impl Service {
    /// The service's name in a credential scope.
    pub(crate) fn scope_name(self) -> &'static str {
        match self {
            Service::Kms => "kms",
            Service::Iam => "iam",
            Service::Sts => "sts",
        }
    }
}

/// The service a request's `Authorization` header scopes its credential to, if it has one.
pub(crate) fn scope_service(headers: &axum::http::HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    sigv4::parse_authorization(auth).ok().map(|a| a.service)
}

impl App {
    /// Verifies the request's SigV4 signature for `service` and returns who made it.
    pub(crate) async fn authenticate(
        &self,
        parts: &axum::http::request::Parts,
        body: &[u8],
        request_id: &str,
        service: Service,
    ) -> Result<Result<Caller, SigV4Error>, KmsError> {
        if let Some(name) = SINGLE_HEADERS
            .iter()
            .find(|n| parts.headers.get_all(**n).iter().nth(1).is_some())
        {
            return Ok(Err(SigV4Error::Incomplete(format!(
                "The request carries the header '{name}' more than once."
            ))));
        }
        let auth = parts.headers.get(header::AUTHORIZATION);
        let Some(auth) = auth.filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace)) else {
            return Ok(Err(SigV4Error::MissingToken));
        };
        if presigned(parts.uri.query().unwrap_or("")) {
            return Ok(Err(SigV4Error::Invalid(
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
                    .into(),
            )));
        }
        let Ok(auth) = auth.to_str() else {
            return Ok(Err(SigV4Error::Incomplete(
                "The Authorization header is not ASCII.".into(),
            )));
        };
        let a = match sigv4::parse_authorization(auth) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let Some(amz_date) = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Err(SigV4Error::Incomplete(
                "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
            )));
        };
        let Some(when) = sigv4::parse_amz_date(amz_date) else {
            return Ok(Err(SigV4Error::Incomplete(format!(
                "X-Amz-Date '{amz_date}' is not YYYYMMDD'T'HHMMSS'Z'."
            ))));
        };
        if let Err(e) = check_signed_headers(parts, a.signed_headers) {
            return Ok(Err(e));
        }
        if !amz_date.starts_with(a.date) || a.date.len() != 8 {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                a.date,
                &amz_date[..8.min(amz_date.len())]
            ))));
        }
        let region = &self.kms.partition().region;
        let global = service != Service::Kms && a.region == "us-east-1";
        if a.region != region && !global {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to a valid region, not '{}'; this endpoint is '{region}'.",
                a.region
            ))));
        }
        if a.service != service.scope_name() {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to correct service: '{}', not '{}'.",
                service.scope_name(),
                a.service
            ))));
        }
        let now = OffsetDateTime::now_utc();
        let skew = self.limits.clock_skew;
        let fmt = sigv4::format_amz_date;
        if when < now - skew {
            return Ok(Err(SigV4Error::Expired(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - {} min.)",
                fmt(now - skew),
                fmt(now),
                skew.as_secs() / 60
            ))));
        }
        if when > now + skew {
            return Ok(Err(SigV4Error::Expired(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + {} min.)",
                fmt(now + skew),
                fmt(now),
                skew.as_secs() / 60
            ))));
        }
        let (principal, secret, expired) = match parts.headers.get("x-amz-security-token") {
            Some(token) => {
                let Ok(token) = token.to_str() else {
                    return Ok(Err(SigV4Error::UnknownSessionToken));
                };
                match self.kms.session(a.access_key_id, token).await? {
                    Some(s) => (s.principal, s.secret, s.expired),
                    None => return Ok(Err(SigV4Error::UnknownSessionToken)),
                }
            }
            None => match self.kms.principal_secret(a.access_key_id).await? {
                Some((principal, secret)) => (principal, secret, false),
                None => return Ok(Err(SigV4Error::UnknownAccessKey)),
            },
        };
        let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
        let has_host = parts.headers.contains_key(header::HOST);
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .chain(authority.filter(|_| !has_host).map(|a| ("host", a)))
            .collect();
        let payload = sigv4::sha256_hex(body);
        if let Some(declared) = parts.headers.get("x-amz-content-sha256") {
            // Signed (every x-amz-* header must be), so whoever reads it would trust it: it must
            // be the body's hash. UNSIGNED-PAYLOAD and the streaming forms are S3's, not ours.
            if !declared.as_bytes().eq_ignore_ascii_case(payload.as_bytes()) {
                return Ok(Err(SigV4Error::Invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                )));
            }
        }
        let creq = sigv4::canonical_request(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            headers.iter().copied(),
            a.signed_headers,
            &payload,
        );
        let scope = format!("{}/{}/{}/aws4_request", a.date, a.region, a.service);
        let sts = sigv4::string_to_sign(amz_date, &scope, &creq);
        let key = self
            .signing_keys
            .get(a.access_key_id, &secret, a.date, a.region, a.service);
        if !sigv4::verify_signature(key.key(), &sts, a.signature) {
            return Ok(Err(SigV4Error::Invalid(
                "The request signature we calculated does not match the signature you provided. Check your AWS \
                 Secret Access Key and signing method. Consult the service documentation for details."
                    .into(),
            )));
        }
        if expired {
            return Ok(Err(SigV4Error::ExpiredToken));
        }
        Ok(Ok(Caller {
            principal,
            access_key_id: a.access_key_id.to_string(),
            request_id: request_id.to_string(),
            source_ip: None,
            secure_transport: false,
        }))
    }
}

/// Headers a request may carry once only: SigV4 joins repeated values with commas in the canonical
/// request, so a repeat could be signed, yet each reader here takes one value (the first), and what
/// was signed would not be what is acted on (the date checked, the operation run).
const SINGLE_HEADERS: [&str; 5] = [
    "authorization",
    "x-amz-date",
    "x-amz-target",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Whether the query string carries SigV4's query-parameter authentication (a presigned URL's
/// `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Signature`, `X-Amz-SignedHeaders`). AWS refuses a
/// request authenticated both ways rather than choose one.
fn presigned(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| {
        [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
        ]
        .iter()
        .any(|p| k.eq_ignore_ascii_case(p))
    })
}

/// The headers a request must sign: the endpoint always, and whichever of these it carries (the
/// body's type, and every `x-amz-*` header: the operation, the date, a session token), so that
/// nothing a signer set can be changed or added by whoever holds the request.
fn must_sign(name: &str) -> bool {
    name == "host" || name == "content-type" || name.starts_with("x-amz-")
}

/// Checks `SignedHeaders` against the request: it names `host` and every header present that
/// [`must_sign`] names, and only headers the request carries.
fn check_signed_headers(
    parts: &axum::http::request::Parts,
    signed_headers: &str,
) -> Result<(), SigV4Error> {
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let has_host = parts.headers.contains_key(header::HOST) || parts.uri.authority().is_some();
    for name in &signed {
        let present = parts.headers.contains_key(*name) || (*name == "host" && has_host);
        if !present {
            return Err(SigV4Error::Incomplete(format!(
                "SignedHeaders names the header '{name}', which the request does not carry."
            )));
        }
    }
    let unsigned = std::iter::once("host")
        .chain(parts.headers.keys().map(|n| n.as_str()))
        .filter(|n| must_sign(n))
        .find(|n| !signed.contains(n));
    if let Some(name) = unsigned {
        return Err(SigV4Error::Incomplete(format!(
            "The '{name}' header must be signed."
        )));
    }
    Ok(())
}
