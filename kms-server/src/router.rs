//! The axum app: `POST /` takes every KMS operation (`X-Amz-Target: TrentService.<Operation>`),
//! authenticates it, runs it as one call into [`kms_core::Kms::execute`] and answers with the JSON
//! or AWS's error shape; IAM and STS requests (SigV4 scoped to `iam`/`sts`, form bodies) go to
//! `query.rs`; `GET /health` and `GET /metrics` beside it. The limits on a request's size
//! and time are here too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kms_core::identity::QueryService;
use kms_core::{Kms, KmsError};

use crate::buffers::{read_body, zeroizing_body, BodyError};
use crate::metrics::{metrics, Metrics};
use crate::quota::{caller_account, QuotaConfig, RequestQuotas, THROTTLED};
use crate::sigv4;
use crate::tarpit::AuthFailures;

/// Bounds on what one request and one connection may cost. Every field has a default fit for a
/// public listener; `envelope serve` exposes the ones an operator tunes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes (64 KiB).
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers; on HTTP/2 the decoded header list), bytes
    /// (64 KiB).
    pub max_header_bytes: usize,
    /// Time to read an HTTP/1.1 request head, and to complete a TLS handshake (10 s). Against
    /// slowloris: a head trickled in byte by byte is cut off here. hyper starts this clock when it
    /// waits for a head, so it also closes an HTTP/1.1 keep-alive connection idle this long.
    pub header_timeout: Duration,
    /// Time to read a request body once the head is in (10 s). A trickled body is answered with
    /// `RequestTimeoutException` (HTTP 408).
    pub body_timeout: Duration,
    /// Time for the whole request, body and operation included (30 s).
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed (60 s): an HTTP/2
    /// connection (with a GOAWAY), pings or not, and a connection that never sends a byte or never
    /// finishes its HTTP/2 preface or a header block. (HTTP/1.1 keep-alive: `header_timeout`.)
    pub idle_timeout: Duration,
    /// Most connections open at once (4096). At the limit the connection idle the longest is
    /// closed to make room; when none is idle, accepting waits for one to end. Each connection
    /// holds a file descriptor: keep `ulimit -n` above this.
    pub max_connections: usize,
    /// Most concurrent streams (requests) a client may open on one HTTP/2 connection (100); more
    /// are refused with `REFUSED_STREAM`, which clients retry.
    pub h2_max_concurrent_streams: u32,
    /// Allowed clock difference between a request's date and ours (15 min).
    pub clock_skew: Duration,
    /// The longest a request that fails authentication waits for its answer (1 s; zero: never).
    /// The first failures from one client address are answered at once, then each waits twice
    /// as long as the one before, up to this (`tarpit.rs`).
    pub auth_failure_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            h2_max_concurrent_streams: 100,
            clock_skew: Duration::from_secs(15 * 60),
            auth_failure_delay: Duration::from_secs(1),
        }
    }
}

/// The endpoint's shared state.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) kms: Arc<Kms>,
    pub(crate) signing_keys: Arc<sigv4::SigningKeyCache>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) quotas: Option<Arc<RequestQuotas>>,
    pub(crate) auth_failures: Arc<AuthFailures>,
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
            auth_failures: Arc::new(AuthFailures::new(limits.auth_failure_delay)),
            limits,
            metrics: Arc::default(),
            signing_keys: Arc::default(),
            quotas: None,
        }
    }

    /// Throttles callers beyond `quotas` with `ThrottlingException`, as AWS does. Without this
    /// call no request is throttled.
    pub fn with_request_quotas(mut self, quotas: QuotaConfig) -> Self {
        self.quotas = Some(Arc::new(RequestQuotas::new(quotas)));
        self
    }

    /// The axum router: `POST /` for the KMS API and the IAM and STS Query APIs, `GET /` for
    /// Query requests only (as IAM serves them; a GET that is not one is answered 404),
    /// `GET /health`, `GET /metrics`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", post(kms_handler).get(kms_handler).fallback(not_found))
            .route("/health", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .with_state(self)
    }

    pub(crate) fn fail(
        &self,
        status: StatusCode,
        name: &str,
        message: &str,
        request_id: &str,
    ) -> Response {
        let counter = if status.is_server_error() {
            &self.metrics.server_errors
        } else {
            &self.metrics.client_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        error_response(status, name, message, request_id)
    }

    /// A failure before the operation is known, in the shape of the protocol the request speaks:
    /// KMS's JSON (`json_name`), or IAM's and STS's XML (`query_code`).
    fn fail_as(
        &self,
        query: Option<QueryService>,
        status: StatusCode,
        (json_name, query_code): (&str, &str),
        message: &str,
        request_id: &str,
    ) -> Response {
        match query {
            Some(service) => self.query_fail(service, status, query_code, message, request_id),
            None => self.fail(status, json_name, message, request_id),
        }
    }

    fn request_timeout(&self, query: Option<QueryService>, request_id: &str) -> Response {
        self.fail_as(
            query,
            StatusCode::REQUEST_TIMEOUT,
            ("RequestTimeoutException", "RequestTimeout"),
            "The request was not completed in time.",
            request_id,
        )
    }

    pub(crate) fn kms_error(&self, e: &KmsError, request_id: &str) -> Response {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        self.fail(status, e.aws_name(), &e.to_string(), request_id)
    }

    /// A request failed authentication: counted, and answered once its client has waited what
    /// its recent failures earned (`tarpit.rs`).
    pub(crate) async fn auth_failed(&self, peer: Option<SocketAddr>) {
        self.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        let wait = self.auth_failures.failed(peer.map(|p| p.ip()));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn handle(
        &self,
        peer: Option<SocketAddr>,
        req: Request,
        request_id: &str,
        query: Option<QueryService>,
    ) -> Response {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET && query.is_none() {
            return not_found().await;
        }
        // Zeroized on drop: an Encrypt body carries a plaintext.
        let body = read_body(body, self.limits.max_body_bytes);
        let body = match tokio::time::timeout(self.limits.body_timeout, body).await {
            Err(_) => return self.request_timeout(query, request_id),
            Ok(Ok(b)) => b,
            Ok(Err(BodyError::TooLarge)) => {
                return self.fail_as(
                    query,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ("ValidationException", "ValidationError"),
                    &format!(
                        "The request body is larger than {} bytes.",
                        self.limits.max_body_bytes
                    ),
                    request_id,
                )
            }
            Ok(Err(BodyError::Unreadable)) => {
                return self.fail_as(
                    query,
                    StatusCode::BAD_REQUEST,
                    ("SerializationException", "InvalidQueryParameter"),
                    "The request body could not be read.",
                    request_id,
                )
            }
        };
        if let Some(service) = query {
            return self
                .handle_query(peer, &parts, body, request_id, service)
                .await;
        }
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
        let mut caller = match self
            .authenticate(&parts, &body, request_id, crate::auth::Service::Kms)
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.auth_failed(peer).await;
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
        if !is_json_11(&parts.headers) {
            // AWS routes an authenticated request by its content type: a body that is not AWS JSON 1.1
            // reaches no JSON operation.
            return self.fail(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                "The Content-Type of a KMS request must be application/x-amz-json-1.1.",
                request_id,
            );
        }
        if let Some(quotas) = &self.quotas {
            if !quotas.admit(caller_account(&caller), operation, &body) {
                self.metrics.throttled.fetch_add(1, Ordering::Relaxed);
                return self.fail(
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    THROTTLED,
                    request_id,
                );
            }
        }
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
                let mut r = (StatusCode::OK, zeroizing_body(json)).into_response();
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

/// Whether the request's `Content-Type` is AWS JSON 1.1 (parameters such as a charset allowed).
fn is_json_11(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(JSON_11))
}

async fn kms_handler(State(app): State<App>, req: Request) -> Response {
    let request_id = new_request_id();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let query = crate::query::query_service(req.uri(), req.headers());
    match tokio::time::timeout(
        app.limits.request_timeout,
        app.handle(peer, req, &request_id, query),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => app.request_timeout(query, &request_id),
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
