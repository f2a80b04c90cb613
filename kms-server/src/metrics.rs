//! The endpoint's counters (requests, client and server errors, authentication failures, requests
//! throttled by the request quotas), served
//! at `GET /metrics` in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::router::App;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) requests: AtomicU64,
    pub(crate) client_errors: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) throttled: AtomicU64,
}

pub(crate) async fn metrics(State(app): State<App>) -> Response {
    let m = &app.metrics;
    let body = format!(
        "# TYPE envelope_requests_total counter\nenvelope_requests_total {}\n\
         # TYPE envelope_client_errors_total counter\nenvelope_client_errors_total {}\n\
         # TYPE envelope_server_errors_total counter\nenvelope_server_errors_total {}\n\
         # TYPE envelope_auth_failures_total counter\nenvelope_auth_failures_total {}\n\
         # TYPE envelope_throttled_total counter\nenvelope_throttled_total {}\n",
        m.requests.load(Ordering::Relaxed),
        m.client_errors.load(Ordering::Relaxed),
        m.server_errors.load(Ordering::Relaxed),
        m.auth_failures.load(Ordering::Relaxed),
        m.throttled.load(Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
