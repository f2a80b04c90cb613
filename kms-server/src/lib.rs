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
//!
//! The modules: `router` (the axum app: the one `POST /` handler, AWS's error shapes, limits,
//! health), `query` and `xml` (IAM and STS on the same `POST /`: form bodies in, XML out), `auth`
//! (SigV4 verification of a request against the principals and sessions the key service knows),
//! `quota` (AWS's request quotas, off unless configured), `metrics` (request counters at
//! `GET /metrics`), `server` (accepting connections: HTTP/1 and 2, TLS, graceful shutdown) with
//! `connections` (the connection limit and idle timeout), [`sigv4`] (the signature algorithm) and
//! `tls`. With the `test-util`
//! feature: `LocalEndpoint` (an endpoint in this process, for tests) and the client-side signer
//! `sigv4::KmsSigner`; a build of the binary alone (`-p envelope`) carries neither (a whole-workspace build
//! enables the feature for every crate, as `benches` needs it).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod buffers;
mod connections;
#[cfg(feature = "test-util")]
mod local;
mod metrics;
mod query;
mod quota;
mod router;
mod server;
pub mod sigv4;
mod tarpit;
mod tls;
mod xml;

#[cfg(feature = "test-util")]
pub use local::LocalEndpoint;
/// The Query protocol's body reader and response writer, for the `iam_query` fuzz target.
#[cfg(feature = "test-util")]
pub use query::{read_form, render};
pub use quota::QuotaConfig;
pub use router::{App, Limits};
pub use server::serve;
pub use tls::load_tls_config;
