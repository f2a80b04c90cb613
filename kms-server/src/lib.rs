//! The AWS KMS-compatible HTTP endpoint: JSON 1.1 over `POST /` with `X-Amz-Target:
//! TrentService.<Operation>`, SigV4 on every request, AWS's error shapes, TLS through rustls.
//! Every operation is one call into [`kms_core::Kms::execute`].
//!
//! ```no_run
//! # async fn run(kms: kms_core::Kms) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let app = kms_server::App::new(Arc::new(kms), kms_server::Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4599").await?;
//! kms_server::serve(listener, app, None, std::future::pending()).await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod local;
pub mod sigv4;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kms_core::{Caller, Kms, KmsError};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use local::LocalEndpoint;
pub use tls::load_tls_config;

use sigv4::SigV4Error;

/// Bounds on what one request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Time to read the request head.
    pub header_timeout: Duration,
    /// Time for the whole request, body included.
    pub request_timeout: Duration,
    /// Allowed clock difference between a request's date and ours.
    pub clock_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            clock_skew: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Default)]
struct Metrics {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    auth_failures: AtomicU64,
}

/// The endpoint's shared state.
#[derive(Debug, Clone)]
pub struct App {
    kms: Arc<Kms>,
    signing_keys: Arc<sigv4::SigningKeyCache>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

const JSON_11: &str = "application/x-amz-json-1.1";
const TARGET_PREFIX: &str = "TrentService.";

fn error_response(status: StatusCode, name: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "__type": name, "message": message }).to_string();
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_11));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

impl App {
    /// An endpoint over `kms`.
    pub fn new(kms: Arc<Kms>, limits: Limits) -> Self {
        Self {
            kms,
            limits,
            metrics: Arc::default(),
            signing_keys: Arc::default(),
        }
    }

    /// The axum router: `POST /` for the KMS API, `GET /health`, `GET /metrics`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", post(kms_handler).fallback(not_found))
            .route("/health", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(self)
    }

    fn fail(&self, status: StatusCode, name: &str, message: &str, request_id: &str) -> Response {
        let counter = if status.is_server_error() {
            &self.metrics.server_errors
        } else {
            &self.metrics.client_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        error_response(status, name, message, request_id)
    }

    fn kms_error(&self, e: &KmsError, request_id: &str) -> Response {
        let status = if e.is_internal() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        self.fail(status, e.aws_name(), &e.to_string(), request_id)
    }

    /// Verifies the request's SigV4 signature and returns who made it.
    async fn authenticate(
        &self,
        parts: &axum::http::request::Parts,
        body: &[u8],
        request_id: &str,
    ) -> Result<Result<Caller, SigV4Error>, KmsError> {
        let Some(auth) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Err(SigV4Error::Incomplete(
                "Request is missing Authentication Token: no Authorization header.".into(),
            )));
        };
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
        if !a.signed_headers.split(';').any(|h| h == "host") {
            return Ok(Err(SigV4Error::Incomplete(
                "The 'host' header must be signed.".into(),
            )));
        }
        if !amz_date.starts_with(a.date) || a.date.len() != 8 {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                a.date,
                &amz_date[..8.min(amz_date.len())]
            ))));
        }
        let region = &self.kms.partition().region;
        if a.region != region {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to a valid region, not '{}'; this endpoint is '{region}'.",
                a.region
            ))));
        }
        if a.service != "kms" {
            return Ok(Err(SigV4Error::Invalid(format!(
                "Credential should be scoped to correct service: 'kms', not '{}'.",
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
        let Some((arn, secret)) = self.kms.principal_secret(a.access_key_id).await? else {
            return Ok(Err(SigV4Error::UnknownAccessKey));
        };
        let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
        let has_host = parts.headers.contains_key(header::HOST);
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .chain(authority.filter(|_| !has_host).map(|a| ("host", a)))
            .collect();
        let creq = sigv4::canonical_request(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            headers.iter().copied(),
            a.signed_headers,
            &sigv4::sha256_hex(body),
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
        Ok(Ok(Caller {
            principal_arn: arn,
            access_key_id: a.access_key_id.to_string(),
            request_id: request_id.to_string(),
            source_ip: None,
        }))
    }

    async fn handle(&self, peer: Option<SocketAddr>, req: Request, request_id: &str) -> Response {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.limits.max_body_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return self.fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "ValidationException",
                    &format!(
                        "The request body is larger than {} bytes.",
                        self.limits.max_body_bytes
                    ),
                    request_id,
                )
            }
            Err(_) => {
                return self.fail(
                    StatusCode::BAD_REQUEST,
                    "SerializationException",
                    "The request body could not be read.",
                    request_id,
                )
            }
        };
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
            return self.fail(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                "X-Amz-Target must name an operation of TrentService.",
                request_id,
            );
        };
        let mut caller = match self.authenticate(&parts, &body, request_id).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(request_id, error = e.aws_name(), "request refused");
                return self.fail(
                    StatusCode::BAD_REQUEST,
                    e.aws_name(),
                    &e.to_string(),
                    request_id,
                );
            }
            Err(e) => return self.kms_error(&e, request_id),
        };
        caller.source_ip = peer.map(|p| p.ip().to_string());
        // The operation runs as a task of its own: a client that hangs up mid-call drops this
        // future, not the operation, so a started call always completes and is recorded in the
        // audit log (a ConnectCustomKeyStore is never left half done in CONNECTING).
        let (kms, op) = (self.kms.clone(), operation.to_string());
        let outcome = tokio::spawn(async move { kms.execute(&caller, &op, &body).await })
            .await
            .unwrap_or_else(|_| Err(KmsError::Internal("The operation failed.".into())));
        match outcome {
            Ok(json) => {
                let mut r = (StatusCode::OK, json).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_11));
                if let Ok(v) = HeaderValue::from_str(request_id) {
                    r.headers_mut().insert("x-amzn-requestid", v);
                }
                r
            }
            Err(e) => self.kms_error(&e, request_id),
        }
    }
}

async fn kms_handler(State(app): State<App>, req: Request) -> Response {
    let request_id = new_request_id();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match tokio::time::timeout(
        app.limits.request_timeout,
        app.handle(peer, req, &request_id),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => app.fail(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            "The request was not completed in time.",
            &request_id,
        ),
    }
}

/// A UUID-shaped, unique `x-amzn-RequestId`: a random per-process prefix and a counter. Request ids
/// need to be unique, not secret, so no random draw per request.
fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = kms_core::material::random_bytes(&mut b);
        u64::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = prefix;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        (n >> 48) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "This endpoint serves the AWS KMS API at POST /.",
        "",
    )
}

async fn metrics(State(app): State<App>) -> Response {
    let m = &app.metrics;
    let body = format!(
        "# TYPE envelope_requests_total counter\nenvelope_requests_total {}\n\
         # TYPE envelope_client_errors_total counter\nenvelope_client_errors_total {}\n\
         # TYPE envelope_server_errors_total counter\nenvelope_server_errors_total {}\n\
         # TYPE envelope_auth_failures_total counter\nenvelope_auth_failures_total {}\n",
        m.requests.load(Ordering::Relaxed),
        m.client_errors.load(Ordering::Relaxed),
        m.server_errors.load(Ordering::Relaxed),
        m.auth_failures.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown` completes, then stops
/// accepting and drains in-flight requests (up to 30 s).
pub async fn serve(
    listener: TcpListener,
    app: App,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.limits.clone();
    let router = app.router();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .max_header_list_size(limits.max_header_bytes as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(Body::new)
            });
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("in-flight requests did not finish within 30 s; exiting anyway");
        }
    }
    Ok(())
}
