//! [`EndpointPool`]: the connections to one pod `ip:port`.
//!
//! HTTP/1.1: a LIFO stack of idle connections (the most recently used one is the warmest:
//! its TCP window is open and the pod's caches are hot; the bottom of the stack ages out
//! first), a cap on connections open or opening, and a wait for a free one at the cap.
//! HTTP/2: one multiplexed connection, opened once however many requests arrive at once.
//! Over TLS with both offered, the first connection's ALPN decides which of the two the
//! pool keeps from then on.
//!
//! The state is a plain `Mutex` held for a push or a pop, never across an `.await`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fairway_proto::model::{AppProtocol, EndpointAddr};
use hyper::client::conn::http2;
use tokio::sync::{Notify, watch};

use super::connect::{self, ConnectError, Negotiated};
use super::lease::{Lease, LeaseKind};
use super::settings::{ConnLimits, ConnSettings};
use crate::h1;
use crate::request::UpstreamBody;

/// One pooled HTTP/1.1 connection.
#[derive(Debug)]
pub(super) struct Http1Conn {
    pub(super) conn: h1::Conn,
    pub(super) limits: ConnLimits,
    /// When it last went idle (for the idle timeout).
    pub(super) idle_since: Instant,
}

#[derive(Debug)]
struct H2Conn {
    sender: http2::SendRequest<UpstreamBody>,
    limits: ConnLimits,
    last_used: Instant,
}

#[derive(Debug)]
struct State {
    /// Idle HTTP/1.1 connections, most recently used last. Boxed: a connection moves
    /// (pool, lease, response body, back) on every request, and a pointer is cheap to move.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Http1Conn>>,
    /// HTTP/1.1 connections open or opening (idle + busy + connecting), against the cap.
    open: u32,
    h2: Option<H2Conn>,
    /// The idle timeout of the last request's Route (for the reaper).
    idle_timeout: Duration,
}

/// Connection counts of one endpoint, for metrics and `/debug/routes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub idle: u32,
    pub busy: u32,
    /// Left the table: no new connections are kept.
    pub draining: bool,
}

/// The connections to one endpoint. Shared as `Arc<EndpointPool>` by the pool map and
/// every request that holds one of its connections.
#[derive(Debug)]
pub struct EndpointPool {
    addr: EndpointAddr,
    state: Mutex<State>,
    /// Signalled when an idle connection comes back or a connection slot frees up.
    available: Notify,
    /// Serialises HTTP/2 connects, so a cold burst opens one connection, not hundreds.
    h2_connect: tokio::sync::Mutex<()>,
    /// Requests in flight on the HTTP/2 connection(s).
    h2_streams: AtomicU32,
    draining: AtomicBool,
    /// True while the pod is terminating or gone from the table: its idle connections
    /// close, and streamed responses from it follow this to end after the Route's
    /// `drainTimeout` (`response::Draining`).
    leaving: watch::Sender<bool>,
    /// A TLS pod that chose `h2` when offered both: its requests take the HTTP/2 path.
    alpn_h2: AtomicBool,
}

/// What checkout found under the lock.
enum Found {
    Idle(Box<Http1Conn>),
    /// A slot was reserved: open a new connection.
    Connect,
    /// At the cap with nothing idle: wait for a connection to come back.
    Wait,
}

impl EndpointPool {
    pub(super) fn new(addr: EndpointAddr) -> Self {
        EndpointPool {
            addr,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                h2: None,
                idle_timeout: Duration::MAX,
            }),
            available: Notify::new(),
            h2_connect: tokio::sync::Mutex::new(()),
            h2_streams: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            leaving: watch::Sender::new(false),
            alpn_h2: AtomicBool::new(false),
        }
    }

    pub fn addr(&self) -> EndpointAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section is a push, a pop or a counter update: a panic cannot
        // leave the state half-changed, so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for one request, opened if needed. Waits (for as long as the
    /// caller's deadline allows) when the endpoint is at its connection cap.
    pub async fn checkout(
        self: &Arc<Self>,
        settings: &ConnSettings,
    ) -> Result<Lease, ConnectError> {
        let h2 = match settings.protocol {
            AppProtocol::H2c => true,
            AppProtocol::Http1 => settings.tls.is_some() && self.alpn_h2.load(Ordering::Relaxed),
        };
        if h2 {
            self.checkout_http2(settings).await
        } else {
            self.checkout_http1(settings).await
        }
    }

    async fn checkout_http1(
        self: &Arc<Self>,
        settings: &ConnSettings,
    ) -> Result<Lease, ConnectError> {
        loop {
            // Registered before looking, so a connection returned in between still wakes us.
            let notified = self.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let found = self.find_http1(settings, Instant::now());
            match found {
                Found::Idle(conn) => {
                    // From here on, dropping the lease (a cancelled request) frees the slot.
                    return Ok(Lease::new(Arc::clone(self), LeaseKind::Http1(conn)));
                }
                Found::Connect => {
                    let slot = SlotGuard { pool: self };
                    // Boxed, as below: connecting is rare, and inline its future would
                    // grow every request's future (copied per HTTP/2 stream).
                    let opened = Box::pin(connect::open(self.addr, settings, false)).await?;
                    let conn = match opened {
                        Negotiated::Http1(conn) => conn,
                        Negotiated::Http2(sender) => {
                            // The pod chose h2 by ALPN: no HTTP/1.1 slot is used after all.
                            drop(slot);
                            self.alpn_h2.store(true, Ordering::Relaxed);
                            return Ok(self.adopt_http2(sender, settings));
                        }
                    };
                    std::mem::forget(slot);
                    let conn = http1_conn(conn, settings);
                    return Ok(Lease::new(Arc::clone(self), LeaseKind::Http1(conn)));
                }
                Found::Wait => notified.await,
            }
        }
    }

    fn find_http1(&self, settings: &ConnSettings, now: Instant) -> Found {
        let mut state = self.state();
        state.idle_timeout = settings.idle_timeout;
        while let Some(mut conn) = state.idle.pop() {
            if now.saturating_duration_since(conn.idle_since) >= settings.idle_timeout {
                // The top is the most recently used: everything below is older still.
                let stale = state.idle.len() + 1;
                state.idle.clear();
                state.open -= u32::try_from(stale).unwrap_or(u32::MAX).min(state.open);
                drop(state);
                self.available.notify_one();
                return self.find_http1(settings, now);
            }
            if conn.limits.usable(now) && !conn.conn.is_closed() {
                conn.limits.count_request();
                return Found::Idle(conn);
            }
            state.open = state.open.saturating_sub(1);
        }
        if state.open < settings.max_connections {
            state.open += 1;
            Found::Connect
        } else {
            Found::Wait
        }
    }

    async fn checkout_http2(
        self: &Arc<Self>,
        settings: &ConnSettings,
    ) -> Result<Lease, ConnectError> {
        if let Some(sender) = self.http2_sender(settings, Instant::now()) {
            return Ok(Lease::new(Arc::clone(self), LeaseKind::Http2(sender)));
        }
        let _gate = self.h2_connect.lock().await;
        // Someone else may have connected while we waited at the gate.
        if let Some(sender) = self.http2_sender(settings, Instant::now()) {
            return Ok(Lease::new(Arc::clone(self), LeaseKind::Http2(sender)));
        }
        // Boxed: a TCP connect and an h2 handshake are kilobytes of future, needed once
        // per connection, and inline they would grow every request's future (moved,
        // so copied, per HTTP/2 stream).
        let sender = match Box::pin(connect::open(self.addr, settings, true)).await? {
            Negotiated::Http2(sender) => sender,
            Negotiated::Http1(conn) => {
                // The pod no longer chooses h2 (a new version at the same address).
                self.alpn_h2.store(false, Ordering::Relaxed);
                self.state().open += 1;
                let conn = http1_conn(conn, settings);
                return Ok(Lease::new(Arc::clone(self), LeaseKind::Http1(conn)));
            }
        };
        Ok(self.adopt_http2(sender, settings))
    }

    /// Keeps a new HTTP/2 connection as the endpoint's and leases it for one request.
    fn adopt_http2(
        self: &Arc<Self>,
        sender: http2::SendRequest<UpstreamBody>,
        settings: &ConnSettings,
    ) -> Lease {
        let now = Instant::now();
        let conn = H2Conn {
            sender: sender.clone(),
            limits: ConnLimits::new(settings, now, rand::random()),
            last_used: now,
        };
        if !self.draining.load(Ordering::Acquire) {
            // The old connection, if any, finishes its streams and closes once its last
            // sender (held by those requests) is dropped.
            self.state().h2 = Some(conn);
        }
        Lease::new(Arc::clone(self), LeaseKind::Http2(sender))
    }

    fn http2_sender(
        &self,
        settings: &ConnSettings,
        now: Instant,
    ) -> Option<http2::SendRequest<UpstreamBody>> {
        let mut state = self.state();
        state.idle_timeout = settings.idle_timeout;
        let conn = state.h2.as_mut()?;
        if conn.sender.is_closed() || !conn.limits.usable(now) {
            state.h2 = None;
            return None;
        }
        conn.limits.count_request();
        conn.last_used = now;
        Some(conn.sender.clone())
    }

    /// Takes back an HTTP/1.1 connection whose response was read to the end.
    pub(super) fn put_back(&self, mut conn: Box<Http1Conn>) {
        let now = Instant::now();
        let keep = !self.draining.load(Ordering::Acquire)
            && conn.limits.usable(now)
            && !conn.conn.is_closed();
        {
            let mut state = self.state();
            if keep {
                conn.idle_since = now;
                state.idle.push(conn);
            } else {
                state.open = state.open.saturating_sub(1);
            }
        }
        self.available.notify_one();
    }

    /// Forgets an HTTP/1.1 connection that cannot be reused (closing it).
    pub(super) fn discard(&self) {
        {
            let mut state = self.state();
            state.open = state.open.saturating_sub(1);
        }
        self.available.notify_one();
    }

    pub(super) fn h2_stream_started(&self) {
        self.h2_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn h2_stream_ended(&self) {
        self.h2_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// Opens one connection ahead of the first request (a pod that just scaled up), if
    /// the endpoint has none yet.
    pub async fn prewarm(self: &Arc<Self>, settings: &ConnSettings) -> Result<(), ConnectError> {
        let cold = {
            let state = self.state();
            state.open == 0 && state.h2.is_none()
        };
        if cold {
            // Checking out and releasing at once leaves the connection idle in the pool.
            let lease = self.checkout(settings).await?;
            lease.release();
        }
        Ok(())
    }

    /// Closes idle connections past their idle timeout or lifetime; returns whether the
    /// pool is now empty (no connection at all, none in use).
    pub(super) fn reap(&self, now: Instant) -> bool {
        // A terminating pod's connections are idle for no reason: requests in flight
        // end on theirs, and a pod that is still picked (the last serving one) gets a
        // fresh connection when it needs one.
        let leaving = *self.leaving.borrow();
        let mut state = self.state();
        let timeout = if leaving {
            Duration::ZERO
        } else {
            state.idle_timeout
        };
        let before = state.idle.len();
        state.idle.retain_mut(|c| {
            now.saturating_duration_since(c.idle_since) < timeout
                && c.limits.usable(now)
                && !c.conn.is_closed()
        });
        let closed = u32::try_from(before - state.idle.len()).unwrap_or(u32::MAX);
        state.open = state.open.saturating_sub(closed);
        let streams = self.h2_streams.load(Ordering::Relaxed);
        if let Some(h2) = &state.h2
            && (h2.sender.is_closed()
                || (streams == 0 && now.saturating_duration_since(h2.last_used) >= timeout))
        {
            state.h2 = None;
        }
        let empty = state.open == 0 && state.h2.is_none() && streams == 0;
        drop(state);
        if closed > 0 {
            self.available.notify_one();
        }
        empty
    }

    /// The endpoint left the table: no new requests come (the balancer no longer picks
    /// it), requests in flight finish on their connections, which then close; idle
    /// connections close now.
    pub(super) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.leaving.send_replace(true);
        self.close_idle();
    }

    /// Whether the pod is terminating (or gone), as a `watch` a streamed response
    /// follows to end in time.
    pub fn leaving(&self) -> watch::Receiver<bool> {
        self.leaving.subscribe()
    }

    /// The pod turned terminating (`true`) or ready again: on the turn, its idle
    /// connections close now (HTTP/2: once the streams in flight on it end, with a
    /// `GOAWAY`), not at their idle timeout; those in use close at the first reap after
    /// their response ends (see [`EndpointPool::reap`]).
    pub(super) fn set_leaving(&self, leaving: bool) {
        let turned = self.leaving.send_if_modified(|now| {
            let changed = *now != leaving;
            *now = leaving;
            changed
        });
        if turned && leaving {
            self.close_idle();
        }
    }

    fn close_idle(&self) {
        let mut state = self.state();
        let idle = std::mem::take(&mut state.idle);
        state.open = state
            .open
            .saturating_sub(u32::try_from(idle.len()).unwrap_or(u32::MAX));
        state.h2 = None;
        drop(state);
        drop(idle);
        self.available.notify_waiters();
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.state();
        let idle = u32::try_from(state.idle.len()).unwrap_or(u32::MAX);
        let mut stats = PoolStats {
            idle,
            busy: state.open.saturating_sub(idle),
            draining: self.draining.load(Ordering::Relaxed),
        };
        if state.h2.is_some() {
            if self.h2_streams.load(Ordering::Relaxed) > 0 {
                stats.busy += 1;
            } else {
                stats.idle += 1;
            }
        }
        stats
    }
}

/// A new HTTP/1.1 connection as the pool keeps it, its limits fixed now.
fn http1_conn(conn: h1::Conn, settings: &ConnSettings) -> Box<Http1Conn> {
    Box::new(Http1Conn {
        conn,
        limits: ConnLimits::new(settings, Instant::now(), rand::random()),
        idle_since: Instant::now(),
    })
}

/// Frees a reserved HTTP/1.1 slot if the connect fails or is cancelled.
struct SlotGuard<'a> {
    pool: &'a EndpointPool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.pool.discard();
    }
}
