//! SigV4 as the endpoint reads it (`kms_server::sigv4`): the `Authorization` header, `X-Amz-Date`
//! and the canonical request of any method, path, query, headers and body must never panic, and:
//!
//! - a parsed header's parts come from the credential scope as written (five `/`-separated parts,
//!   the last `aws4_request`);
//! - a parsed date prints back to the same text;
//! - the canonical request has one line per signed header name;
//! - differential: what the client's signer (`KmsSigner`) writes for a fuzzed access key, region,
//!   host, operation, body and time parses back to those values, and the server's computation
//!   (canonical request, string to sign, constant-time check) accepts its signature, and refuses it
//!   for a body one byte longer.
//!
//! Input: fields split at 0xff (`envelope_fuzz::fields`): authorization, x-amz-date, method, path,
//! query, body, then headers as `name:value`. Seed corpus: `fuzz/corpus/sigv4` (`fuzz/seeds.py`).
#![no_main]

use envelope_fuzz::{fields, text};
use kms_server::sigv4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = fields(data);
    let auth = text(&f, 0);
    let amz_date = text(&f, 1);
    let method = text(&f, 2);
    let path = text(&f, 3);
    let query = text(&f, 4);
    let body = f.get(5).copied().unwrap_or_default();
    let headers: Vec<(String, Vec<u8>)> = f
        .iter()
        .skip(6)
        .map(|h| match h.iter().position(|b| *b == b':') {
            Some(i) => (
                String::from_utf8_lossy(&h[..i]).to_ascii_lowercase(),
                h[i + 1..].to_vec(),
            ),
            None => (String::from_utf8_lossy(h).to_ascii_lowercase(), Vec::new()),
        })
        .collect();

    let parsed = sigv4::parse_authorization(&auth);
    if let Ok(a) = &parsed {
        let scope = format!(
            "{}/{}/{}/{}/aws4_request",
            a.access_key_id, a.date, a.region, a.service
        );
        assert!(auth.contains(&scope));
        assert!(!a.access_key_id.is_empty());
        for part in [a.date, a.region, a.service] {
            assert!(!part.contains('/'));
        }
        assert!(!a.signed_headers.contains(',') && !a.signature.contains(','));
    }
    if let Some(t) = sigv4::parse_amz_date(&amz_date) {
        assert_eq!(sigv4::format_amz_date(t), amz_date);
    }
    let signed = parsed
        .as_ref()
        .map_or("host;x-amz-date", |a| a.signed_headers);
    let creq = sigv4::canonical_request(
        &method,
        &path,
        &query,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        signed,
        &sigv4::sha256_hex(body),
    );
    if !method.contains('\n') && !signed.contains('\n') {
        // method, path, query, one line per name, a blank line, the names, the payload hash
        assert_eq!(creq.split('\n').count(), 3 + signed.split(';').count() + 3);
    }
    if let Ok(a) = &parsed {
        let key = sigv4::signing_key(b"secret", a.date, a.region, a.service);
        let sts = sigv4::string_to_sign(&amz_date, "scope", &creq);
        // A signature from the input never verifies by chance (the secret is not in it).
        assert!(!sigv4::verify_signature(&key, &sts, a.signature));
    }

    // The client's signature, checked as the server checks it.
    let access_key = text(&f, 0);
    let region = text(&f, 4);
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !(token(&access_key) && token(&region)) {
        return;
    }
    let host = text(&f, 3);
    let target = text(&f, 2);
    let secs = body
        .iter()
        .take(5)
        .fold(0i64, |acc, b| acc * 256 + i64::from(*b));
    let now = time::OffsetDateTime::from_unix_timestamp(secs % 253_402_300_799).unwrap();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let [(_, amz_date), (_, auth)] =
        sigv4::KmsSigner::new(&access_key, secret, &region).sign(&host, &target, body, now);
    let a = sigv4::parse_authorization(&auth).unwrap();
    assert_eq!(a.access_key_id, access_key);
    assert_eq!(a.region, region);
    assert_eq!(a.service, "kms");
    assert_eq!(sigv4::parse_amz_date(&amz_date), Some(now));
    let headers: [(&str, &[u8]); 4] = [
        ("content-type", b"application/x-amz-json-1.1"),
        ("host", host.as_bytes()),
        ("x-amz-date", amz_date.as_bytes()),
        ("x-amz-target", target.as_bytes()),
    ];
    let key = sigv4::signing_key(secret.as_bytes(), a.date, a.region, a.service);
    let scope = format!("{}/{}/{}/aws4_request", a.date, a.region, a.service);
    let check = |body: &[u8]| {
        let creq = sigv4::canonical_request(
            "POST",
            "/",
            "",
            headers.iter().copied(),
            a.signed_headers,
            &sigv4::sha256_hex(body),
        );
        sigv4::verify_signature(
            &key,
            &sigv4::string_to_sign(&amz_date, &scope, &creq),
            a.signature,
        )
    };
    assert!(check(body));
    let mut longer = body.to_vec();
    longer.push(0);
    assert!(!check(&longer));
});
