//! The open connections, for the limits that span requests: how many may be open at once
//! ([`Limits::max_connections`](crate::Limits)), which one to close when that many are, and when a
//! connection has been idle too long. A connection is idle while it has no request in flight,
//! whatever it is doing on the wire: trickling a request head, holding an HTTP/2 connection
//! open with pings, or sending nothing at all.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Every open connection, and a wake-up whenever one ends.
#[derive(Debug)]
pub(crate) struct Connections {
    max: usize,
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    ended: Notify,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            epoch: Instant::now(),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until one more connection may be opened. At the limit, asks the connection idle the
    /// longest to close (one at a time) and waits for a connection to end.
    pub(crate) async fn room(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            {
                let open = self.lock();
                if open.len() < self.max {
                    return;
                }
                let closing = open.values().any(|a| a.closing.load(Ordering::Relaxed));
                if !closing {
                    let idlest = open
                        .values()
                        .filter(|a| a.in_flight.load(Ordering::Relaxed) == 0)
                        .min_by_key(|a| a.last_active.load(Ordering::Relaxed));
                    if let Some(a) = idlest {
                        tracing::debug!("connection limit reached; closing the idlest connection");
                        a.close();
                    }
                }
            }
            // A busy connection may turn idle without ending: look again now and then.
            tokio::select! {
                () = ended => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Registers a new connection; it is counted until the returned [`Registration`] drops.
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        activity.touch();
        self.lock().insert(id, activity.clone());
        Registration {
            connections: self.clone(),
            id,
            activity,
        }
    }

    /// Asks every connection to close once its requests are answered (server shutdown).
    pub(crate) fn close_all(&self) {
        for a in self.lock().values() {
            a.close();
        }
    }

    /// Waits until no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// A connection's entry in [`Connections`]; removes it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    connections: Arc<Connections>,
    id: u64,
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
        self.connections.ended.notify_waiters();
    }
}

/// What a connection is doing: requests in flight, when it was last active, and whether it has
/// been asked to close.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch`.
    last_active: AtomicU64,
    closing: AtomicBool,
    close: Notify,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_active.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Whether a request is in flight (its response not yet fully written).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Asks the connection to close once its requests are answered.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    /// Completes when [`Activity::close`] has been called.
    pub(crate) async fn close_requested(&self) {
        self.close.notified().await;
    }

    /// Counts a request in flight until the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted in flight until it has been written out.
pub(crate) struct Tracked<B> {
    pub(crate) body: B,
    pub(crate) _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
