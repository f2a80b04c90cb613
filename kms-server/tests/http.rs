//! The endpoint over real HTTP on loopback: authentication refusals, wire errors, limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kms_server::{sigv4, Limits};
use time::OffsetDateTime;

struct Server {
    addr: std::net::SocketAddr,
    akid: String,
    secret: String,
    local: Option<kms_server::LocalEndpoint>,
}

async fn start() -> Server {
    let local = kms_server::LocalEndpoint::start().await.unwrap();
    Server {
        addr: local.addr(),
        akid: local.access_key_id().to_string(),
        secret: local.secret_access_key().to_string(),
        local: Some(local),
    }
}

struct Reply {
    status: u16,
    json: serde_json::Value,
}

impl Server {
    async fn raw(&self, headers: Vec<(String, String)>, body: Vec<u8>) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::post("/");
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = send
            .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    /// A correctly signed request, with a chosen secret, access key and clock.
    async fn call_as(
        &self,
        target: &str,
        body: &str,
        akid: &str,
        secret: &str,
        now: OffsetDateTime,
    ) -> Reply {
        let headers = self.signed_headers(target, body, akid, secret, now);
        self.raw(headers, body.as_bytes().to_vec()).await
    }

    /// The headers of a request signed with a chosen secret, access key and clock.
    fn signed_headers(
        &self,
        target: &str,
        body: &str,
        akid: &str,
        secret: &str,
        now: OffsetDateTime,
    ) -> Vec<(String, String)> {
        let host = self.addr.to_string();
        let target = format!("TrentService.{target}");
        let signed = sigv4::sign_kms_request(
            &host,
            &target,
            body.as_bytes(),
            akid,
            secret,
            "us-east-1",
            now,
        );
        let mut headers = vec![
            ("host".to_string(), host),
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("x-amz-target".to_string(), target),
        ];
        headers.extend(signed.into_iter().map(|(k, v)| (k.to_string(), v)));
        headers
    }

    async fn call(&self, target: &str, body: &str) -> Reply {
        self.call_as(
            target,
            body,
            &self.akid,
            &self.secret,
            OffsetDateTime::now_utc(),
        )
        .await
    }
}

fn assert_error(r: &Reply, status: u16, name: &str) {
    assert_eq!(
        (r.status, r.json["__type"].as_str().unwrap_or("")),
        (status, name),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn signed_requests_work_and_bad_signatures_are_refused() {
    let mut s = start().await;
    let ok = s.call("CreateKey", "{}").await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let now = OffsetDateTime::now_utc();
    let (akid, secret) = (s.akid.clone(), s.secret.clone());
    assert_error(
        &s.call_as("ListKeys", "{}", &akid, "wrong-secret", now)
            .await,
        400,
        "InvalidSignatureException",
    );
    assert_error(
        &s.call_as("ListKeys", "{}", "AKIANOBODY0000000000", &secret, now)
            .await,
        400,
        "UnrecognizedClientException",
    );
    let stale = s
        .call_as(
            "ListKeys",
            "{}",
            &akid,
            &secret,
            now - Duration::from_secs(16 * 60),
        )
        .await;
    assert_error(&stale, 400, "InvalidSignatureException");
    assert!(stale.json["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired"));
    let future = s
        .call_as(
            "ListKeys",
            "{}",
            &akid,
            &secret,
            now + Duration::from_secs(16 * 60),
        )
        .await;
    assert_error(&future, 400, "InvalidSignatureException");
    assert_eq!(
        s.call_as(
            "ListKeys",
            "{}",
            &akid,
            &secret,
            now - Duration::from_secs(14 * 60)
        )
        .await
        .status,
        200
    );
    // No Authorization header at all (AWS: MissingAuthenticationTokenException), and a malformed one.
    let unsigned = vec![
        (
            "x-amz-target".to_string(),
            "TrentService.ListKeys".to_string(),
        ),
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
    ];
    assert_error(
        &s.raw(unsigned.clone(), b"{}".to_vec()).await,
        400,
        "MissingAuthenticationTokenException",
    );
    let mut garbled = unsigned;
    garbled.push((
        "authorization".into(),
        "AWS4-HMAC-SHA256 Credential=x".into(),
    ));
    assert_error(
        &s.raw(garbled, b"{}".to_vec()).await,
        400,
        "IncompleteSignatureException",
    );
    // A body changed after signing.
    let headers = s.signed_headers("ListKeys", "{}", &akid, &secret, now);
    assert_error(
        &s.raw(headers, br#"{"Limit":1}"#.to_vec()).await,
        400,
        "InvalidSignatureException",
    );
    // What a signer set cannot be changed or added by whoever holds the request: the target is
    // signed (swapping it breaks the signature), SignedHeaders must name the target, the date, the
    // content type and every x-amz-* header present, and the signature is lower-case hex.
    type Headers = Vec<(String, String)>;
    let edit = |f: &dyn Fn(&mut Headers)| {
        let mut h = s.signed_headers("ListKeys", "{}", &akid, &secret, now);
        f(&mut h);
        h
    };
    let set = |h: &mut Headers, name: &str, value: String| {
        h.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        h.push((name.to_string(), value));
    };
    let auth = |h: &Headers| {
        h.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    for (headers, want) in [
        (
            edit(&|h| set(h, "x-amz-target", "TrentService.CreateKey".into())),
            "InvalidSignatureException",
        ),
        (
            edit(&|h| set(h, "content-type", "application/x-amz-json-1.0".into())),
            "InvalidSignatureException",
        ),
        (
            edit(&|h| {
                let a = auth(h).replace("content-type;host;x-amz-date;x-amz-target", "host");
                set(h, "authorization", a)
            }),
            "IncompleteSignatureException",
        ),
        (
            edit(&|h| h.push(("x-amz-security-token".into(), "forged".into()))),
            "IncompleteSignatureException",
        ),
        (
            edit(&|h| {
                let a = auth(h);
                let (head, sig) = a.split_once("Signature=").unwrap();
                set(
                    h,
                    "authorization",
                    format!("{head}Signature={}", sig.to_uppercase()),
                )
            }),
            "InvalidSignatureException",
        ),
    ] {
        assert_error(&s.raw(headers, b"{}".to_vec()).await, 400, want);
    }
    drop(s.local.take());
}

#[tokio::test]
async fn malformed_requests_get_aws_errors_never_500() {
    let s = start().await;
    assert_error(
        &s.call("ListKeys", "{nope").await,
        400,
        "SerializationException",
    );
    assert_error(
        &s.call("GenerateRandom", r#"{"NumberOfBytes":"abc"}"#).await,
        400,
        "SerializationException",
    );
    assert_error(
        &s.call("GenerateRandom", r#"{"NumberOfBytes":5000}"#).await,
        400,
        "ValidationException",
    );
    assert_error(
        &s.call("Frobnicate", "{}").await,
        400,
        "UnknownOperationException",
    );
    assert_error(
        &s.call("Encrypt", r#"{"KeyId":"alias/none","Plaintext":"AA=="}"#)
            .await,
        400,
        "NotFoundException",
    );
    let big = format!(r#"{{"Description":"{}"}}"#, "x".repeat(100 * 1024));
    let r = s.call("CreateKey", &big).await;
    assert_eq!(r.status, 413, "{}", r.json);
    let random = s.call("GenerateRandom", r#"{"NumberOfBytes":16}"#).await;
    assert_eq!(random.status, 200);
    assert_eq!(random.json["Plaintext"].as_str().unwrap().len(), 24);
}

#[tokio::test]
async fn a_request_whose_body_stalls_is_answered_408_within_the_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let local = kms_server::LocalEndpoint::start_with(limits).await.unwrap();
    let mut sock = tokio::net::TcpStream::connect(local.addr()).await.unwrap();
    let head = "POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: TrentService.ListKeys\r\ncontent-length: 10\r\n\r\n{}";
    sock.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed without an answer");
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Every type of this crate that holds a secret access key or a key derived from one prints none of
/// it in `Debug`: the local endpoint, the client's signer, the server's signing-key cache, the app.
#[tokio::test]
async fn debug_shows_no_secret_access_key() {
    let s = start().await;
    let local = s.local.as_ref().unwrap();
    let secret = local.secret_access_key().to_string();
    let signer = sigv4::KmsSigner::new(&s.akid, &secret, "us-east-1");
    let cache = sigv4::SigningKeyCache::default();
    let _ = cache.get(&s.akid, secret.as_bytes(), "20260101", "us-east-1", "kms");
    let app = kms_server::App::new(local.kms().clone(), Limits::default());
    for (what, shown) in [
        ("LocalEndpoint", format!("{local:?}")),
        ("KmsSigner", format!("{signer:?}")),
        ("SigningKeyCache", format!("{cache:?}")),
        ("App", format!("{app:?}")),
    ] {
        assert!(!shown.contains(&secret), "{what} shows the secret: {shown}");
        let list = format!("{:?}", secret.as_bytes());
        assert!(
            !shown.contains(list.trim_matches(|c| c == '[' || c == ']')),
            "{what} shows the secret's bytes: {shown}"
        );
    }
}
