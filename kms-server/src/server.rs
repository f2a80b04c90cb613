//! Accepting connections: HTTP/1 and HTTP/2 on one listener, TLS when configured, the limits that
//! span a connection (how many, how long idle, how long a head or a handshake may take, how many
//! HTTP/2 streams), and a graceful shutdown that drains in-flight requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::connections::{Activity, Connections, Tracked};
use crate::router::{App, Limits};

/// How long a connection asked to close may take to finish once it has no request in flight
/// (to flush a GOAWAY or the last response); then it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Serves `app` on `listener` (TLS when `tls` is given) until `shutdown` completes, then stops
/// accepting and drains in-flight requests (up to 30 s).
pub async fn serve(
    listener: TcpListener,
    app: App,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Arc::new(app.limits.clone());
    let router = app.router();
    let builder = http_builder(&limits);
    let connections = Arc::new(Connections::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = accept(&listener, &connections) => match r {
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
        let registration = connections.register();
        let activity = registration.activity.clone();
        let svc = ConnService {
            router: router.clone(),
            peer,
            activity: activity.clone(),
        };
        let (builder, tls, limits) = (builder.clone(), tls.clone(), limits.clone());
        tokio::spawn(async move {
            let result = match tls {
                None => drive(&builder, stream, svc, &activity, &limits).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let stream = match tokio::time::timeout(limits.header_timeout, handshake).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    drive(&builder, stream, svc, &activity, &limits).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(registration);
        });
    }
    drop(listener);
    connections.close_all();
    tokio::select! {
        () = connections.drained() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("in-flight requests did not finish within 30 s; exiting anyway");
        }
    }
    Ok(())
}

/// Accepts the next connection once there is room for it.
async fn accept(
    listener: &TcpListener,
    connections: &Connections,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    connections.room().await;
    listener.accept().await
}

/// HTTP/1.1 and HTTP/2 with the limits that hyper enforces itself.
fn http_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // h2 keeps its own defaults against resets (at most 20 streams reset by the client before
    // they are accepted, 1024 reset by the server for errors, per connection): the
    // "rapid reset" floods.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams);
    builder
}

/// Serves one connection until it ends, is idle for `idle_timeout`, or is asked to close (the
/// connection limit, server shutdown). A connection asked to close finishes the requests in
/// flight (up to `request_timeout`) and is then dropped, whatever its client is still sending.
async fn drive<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    svc: ConnService,
    activity: &Activity,
    limits: &Limits,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    loop {
        let idle_left = limits.idle_timeout.saturating_sub(activity.idle_for());
        tokio::select! {
            r = conn.as_mut() => return r,
            () = tokio::time::sleep(idle_left), if !idle_left.is_zero() => continue,
            () = activity.close_requested() => {}
            () = std::future::ready(()), if idle_left.is_zero() => {
                tracing::debug!("closing an idle connection");
            }
        }
        break;
    }
    conn.as_mut().graceful_shutdown();
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            () = tokio::time::sleep(CLOSE_GRACE) => {
                if !activity.busy() || tokio::time::Instant::now() >= deadline {
                    return Ok(());
                }
            }
        }
    }
}

/// The router as one connection's service: each request carries the peer's address and counts
/// as in flight on the connection until its response has been written.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await?;
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}
