//! The accept loop. `axum::serve` closes no connection on its own: idle clients pile up until
//! the process's open-file limit, after which /healthz stops answering and reconciles cannot
//! open compose files. Here every connection has a header-read timeout (which also bounds the
//! idle time between kept-alive requests) and a request timeout, and at most
//! [`Limits::max_connections`] are open at once. When all are taken, the connection idle the
//! longest is closed to admit the new one, so /healthz answers even under a flood of idle
//! clients; only when every connection is busy does a new one wait, briefly, then get a 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// How long a new connection waits for a slot when every open connection is busy.
const ADMIT_WAIT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. the open-file limit): the pending connection stays
/// queued and the listener stays readable, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for open connections to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(3);

/// Connection limits of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Header-read (and so idle) timeout, and the time a request has to be handled.
    pub idle_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Slots::new(limits.max_connections));
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    loop {
        let stream = tokio::select! {
            () = &mut stopping => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        match slots.admit().await {
            Some(slot) => {
                tokio::spawn(connection(stream, app.clone(), slot, limits, stop.clone()));
            }
            None => refuse_busy(stream),
        }
    }
    drop(listener);
    let all = u32::try_from(slots.max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, slots.permits.acquire_many(all)).await;
}

/// Serves one connection until the client closes it, a timeout closes it, it is evicted to
/// make room, or the agent stops (then the request in flight is finished first).
async fn connection(
    stream: TcpStream,
    app: Router,
    slot: Slot,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let svc = {
        let app = TowerToHyperService::new(app);
        let conn = slot.conn.clone();
        let timeout = limits.idle_timeout;
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::enter(conn.clone());
            let fut = hyper::service::Service::call(&app, req);
            async move {
                let _busy = busy;
                match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Ok((
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request not received and handled within {timeout:?}\n"),
                    )
                        .into_response()),
                }
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection closed");
            }
        }
        _ = slot.conn.evict.notified() => {
            tracing::debug!("closed the longest-idle HTTP connection to admit a new one");
        }
        () = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.idle_timeout, conn).await;
        }
    }
    drop(slot);
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Answers 503 without reading the request, then closes (best effort: a full socket buffer
/// just means a plain close).
fn refuse_busy(stream: TcpStream) {
    tracing::warn!("every HTTP connection is busy: refused a new one with 503");
    let body = "every connection is busy; try again\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// The open connections: one semaphore permit each, and what eviction needs to know.
struct Slots {
    max: usize,
    permits: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// One open connection as eviction sees it.
struct Conn {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    evicted: AtomicBool,
    evict: Notify,
}

/// A connection's place; dropping it frees the place (map entry first, then the permit).
struct Slot {
    id: u64,
    conn: Arc<Conn>,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.conns.lock().unwrap().remove(&self.id);
    }
}

impl Slots {
    fn new(max: usize) -> Slots {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Slots {
            max,
            permits: Arc::new(Semaphore::new(max)),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// A place for a new connection: a free one, else the one of the connection idle the
    /// longest, else whichever frees up within [`ADMIT_WAIT`]; `None` when all stay busy.
    async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.evict_longest_idle();
                let wait = self.permits.clone().acquire_owned();
                tokio::time::timeout(ADMIT_WAIT, wait).await.ok()?.ok()?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.conns.lock().unwrap().insert(id, conn.clone());
        Some(Slot {
            id,
            conn,
            slots: self.clone(),
            _permit: permit,
        })
    }

    /// Asks the connection without a request in flight that has been idle the longest to
    /// close. Returns whether there was one.
    fn evict_longest_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap();
        let victim = conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .filter(|c| !c.evicted.load(Ordering::Acquire))
            .min_by_key(|c| *c.idle_since.lock().unwrap());
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Release);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy while one of its requests is handled.
struct Busy(Arc<Conn>);

impl Busy {
    fn enter(conn: Arc<Conn>) -> Busy {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap() = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection cap actually used: the configured one, but never more than a quarter of the
/// soft open-file limit (`None`: unknown), so the agent keeps descriptors for git, Docker and
/// compose files whatever the clients do.
pub fn effective_max_connections(configured: usize, nofile: Option<u64>) -> usize {
    let share = nofile.map_or(usize::MAX, |n| {
        usize::try_from(n / 4).unwrap_or(usize::MAX).max(1)
    });
    configured.clamp(1, share.max(1))
}

/// The process's soft open-file limit (RLIMIT_NOFILE), if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_at_most_a_quarter_of_the_open_file_limit() {
        assert_eq!(effective_max_connections(64, Some(1024)), 64);
        assert_eq!(effective_max_connections(64, Some(64)), 16);
        assert_eq!(effective_max_connections(64, None), 64);
        assert_eq!(effective_max_connections(0, None), 1);
        assert_eq!(effective_max_connections(64, Some(2)), 1);
    }

    #[test]
    fn open_file_limit_is_read() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }

    #[tokio::test]
    async fn a_full_house_evicts_the_longest_idle_but_never_a_busy_one() {
        let slots = Arc::new(Slots::new(2));
        let a = slots.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = slots.admit().await.unwrap();
        // b has a request in flight; a is idle: a third connection evicts a.
        let busy = Busy::enter(b.conn.clone());
        let a_conn = a.conn.clone();
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(1), a_conn.evict.notified())
            .await
            .expect("the idle connection was asked to close");
        assert!(!b.conn.evicted.load(Ordering::Acquire));
        drop(a);
        let c = waiter
            .await
            .unwrap()
            .expect("admitted once the idle one closed");
        assert_eq!(c.id, 2);
        // Both open connections busy: nothing to evict, the wait ends after ADMIT_WAIT.
        let _c_busy = Busy::enter(c.conn.clone());
        let start = Instant::now();
        assert!(slots.admit().await.is_none());
        assert!(start.elapsed() >= ADMIT_WAIT);
        drop(busy);
    }
}
