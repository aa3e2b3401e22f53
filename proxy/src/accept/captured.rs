//! The sidecar's outbound side: connections the pod's capture rules redirected to the
//! proxy (`--outbound-listen`), each still meant for the address its client dialled.
//!
//! Data flows: [`serve`] accepts; `orig_dst` recovers where the connection was going
//! (`SO_ORIGINAL_DST`); the table says whether that is a Service's ClusterIP and port
//! ([`Table::service_at`](crate::table::Table::service_at)). If not, the connection is
//! passed through to its destination at once by `opaque`, untouched: nothing is gained
//! by detecting it, a server-speaks-first protocol would pay the deadline, and a Service
//! the controller does not know yet must work as it would without Fairway. If so,
//! `detect` reads its first bytes under a short deadline (an HTTP/2 connection's
//! first header block through `h2_first`), and [`decide`] hands an HTTP/1 or HTTP/2
//! connection whose first request's Route sends to that Service port to the HTTP server
//! ([`crate::accept::Captured`]), where each request is balanced over per-pod pools;
//! everything else (other protocols, a Host no Route of that Service claims) is passed
//! through with the bytes read.
//!
//! A sidecar's table holds an implicit Service (one served without a Route) only once
//! it subscribed to it: a connection whose destination maps to no set, or HTTP that no
//! Route of its set claims, asks the controller for that destination's Service once
//! ([`crate::table::Wanted`]). Connections to a destination just subscribed to wait up
//! to [`crate::table::SUBSCRIBE_WAIT`] for its set (so an app's burst of keep-alive
//! connections at start is balanced, not pinned), then are passed through; later
//! connections are balanced once the set has arrived.

pub mod detect;
pub mod h2_first;
pub mod opaque;
pub mod orig_dst;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::EndpointSetKey;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::accept::Captured;
use crate::metrics::Metrics;
use crate::metrics::outbound::Outcome;
use crate::table::{TableHandle, Want};
use detect::{FirstRequest, Protocol};
use fairway_proto::scope::ServiceDestination;

/// How long detection waits for a client's first bytes before passing its connection
/// through: a server-speaks-first protocol's client sends nothing until the greeting,
/// and HTTP clients write their request at once after connecting.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Connecting to an original destination: the client's own connect would have had the
/// kernel's (minutes); a ClusterIP that takes longer than this is not answering.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error such as EMFILE, so an out-of-descriptors process does not
/// spin a core.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The outbound listener's settings, typed. Built from the command line's `Config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Where the capture rules redirect to (one address per family, at least one).
    pub listen: Vec<SocketAddr>,
    /// Detection's deadline for a client's first bytes.
    pub detect_timeout: Duration,
    /// Connecting to a connection's original destination.
    pub connect_timeout: Duration,
    /// Captured connections held at once; past it, accepting pauses.
    pub max_connections: usize,
}

/// What a captured connection to a known Service port becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Balanced per request by the HTTP server.
    Balance,
    /// Joined to its original destination, untouched.
    PassThrough,
}

/// Balance only an HTTP/1 or HTTP/2 (prior knowledge) connection whose first request
/// matches a Route that sends it to the destination's Service port
/// (`routes_to(authority, path)`): then Fairway does what kube-proxy would have done,
/// per request. Anything else goes where it was going.
pub fn decide(
    protocol: Protocol,
    first: &FirstRequest,
    routes_to: impl FnOnce(&str, &str) -> bool,
) -> Decision {
    let http = matches!(protocol, Protocol::Http1 | Protocol::Http2);
    match first {
        FirstRequest::Routable { authority, path } if http && routes_to(authority, path) => {
            Decision::Balance
        }
        _ => Decision::PassThrough,
    }
}

/// Whether an HTTP connection to a known set, passed through because no Route claims
/// its first request, should subscribe to its Service: a sidecar holds only the
/// implicit Routes it subscribed to, and the Service's may claim that Host.
pub fn wants_implicit_route(protocol: Protocol, first: &FirstRequest) -> bool {
    matches!(protocol, Protocol::Http1 | Protocol::Http2)
        && matches!(first, FirstRequest::Routable { .. })
}

/// The set at `dest` once the table has it, waiting while a fresh subscription to it
/// may bring it ([`crate::table::SUBSCRIBE_WAIT`]); `None`: pass the connection through.
async fn wait_for_set(parts: &Parts, dest: SocketAddr) -> Option<EndpointSetKey> {
    let destination = ServiceDestination::new(dest);
    let deadline = parts
        .table
        .wanted()
        .wait_until(&destination, Instant::now())?;
    // Watch before looking: a table published in between is not missed.
    let mut tables = parts.table.subscribe();
    loop {
        if let Some(set) = parts.table.load().service_at(dest) {
            return Some(set.clone());
        }
        tokio::select! {
            changed = tables.changed() => if changed.is_err() { return None },
            () = tokio::time::sleep_until(deadline.into()) => return None,
        }
    }
}

/// Asks the controller, once per destination, for the Service at `dest`.
fn subscribe(parts: &Parts, dest: SocketAddr) {
    let destination = ServiceDestination::new(dest);
    match parts.table.wanted().want(destination, Instant::now()) {
        Want::New => {
            tracing::debug!(%destination, "subscribing to the Service at a captured destination")
        }
        Want::Known => {}
        Want::Full => {
            tracing::debug!(%destination, "subscriptions full; passing this destination through")
        }
    }
}

/// The parts one captured connection needs.
struct Parts {
    config: OutboundConfig,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    /// To the HTTP server, for balanced connections.
    captured: mpsc::Sender<Captured>,
}

/// Accepts captured connections on `listeners` until `stop` completes, one task each,
/// at most `config.max_connections` at once over all listeners. Connections already
/// passed through keep running until either side ends them (they are the app's own
/// connections: the process's exit ends them).
pub async fn serve(
    config: OutboundConfig,
    listeners: Vec<TcpListener>,
    (table, metrics): (Arc<TableHandle>, Arc<Metrics>),
    captured: mpsc::Sender<Captured>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let parts = Arc::new(Parts {
        config,
        table,
        metrics,
        captured,
    });
    let stop = stop.boxed().shared();
    let loops = listeners.into_iter().map(|listener| {
        accept_loop(
            listener,
            Arc::clone(&parts),
            Arc::clone(&slots),
            stop.clone(),
        )
    });
    futures::future::join_all(loops).await;
}

async fn accept_loop(
    listener: TcpListener,
    parts: Arc<Parts>,
    slots: Arc<Semaphore>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut stop => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let parts = Arc::clone(&parts);
                tokio::spawn(async move {
                    handle(&parts, stream, peer).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "outbound accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// One captured connection, from its original destination to its end.
async fn handle(parts: &Parts, mut client: TcpStream, peer: SocketAddr) {
    let config = &parts.config;
    let dest = match orig_dst::original_dst(&client) {
        Ok(dest) => dest,
        Err(error) => {
            // Not a redirected connection: there is nowhere to pass it on to.
            tracing::debug!(%peer, %error, "outbound connection refused");
            parts.metrics.outbound.connection(Outcome::refused);
            opaque::reset(&client);
            return;
        }
    };
    let mut read = bytes::BytesMut::new();
    let mut set = parts.table.load().service_at(dest).cloned();
    if set.is_none() {
        // Maybe an implicit Service this sidecar has not subscribed to yet: ask once,
        // and wait a moment for it; past that, pass through (never a 503 for it).
        subscribe(parts, dest);
        set = wait_for_set(parts, dest).await;
    }
    if let Some(set) = set {
        let sniffed = match detect::sniff(&mut client, config.detect_timeout).await {
            Ok(sniffed) => sniffed,
            Err(error) => {
                tracing::debug!(%peer, %dest, %error, "captured connection failed during detection");
                parts.metrics.outbound.connection(Outcome::refused);
                return;
            }
        };
        let table = parts.table.load();
        let decision = decide(sniffed.protocol, &sniffed.first, |authority, path| {
            table.routes_to(authority, path, &set)
        });
        tracing::debug!(%peer, %dest, %set, protocol = ?sniffed.protocol, ?decision, "captured connection");
        if decision == Decision::Balance {
            parts.metrics.outbound.connection(Outcome::balanced);
            let captured = Captured {
                stream: client,
                peer,
                read: sniffed.read,
            };
            if parts.captured.send(captured).await.is_err() {
                // The server has stopped; the connection is dropped with the process.
                tracing::debug!(%peer, %dest, "HTTP server stopped; captured connection closed");
            }
            return;
        }
        if wants_implicit_route(sniffed.protocol, &sniffed.first) {
            // HTTP to a set this sidecar holds (a declared Route uses it) with a Host
            // no Route claims: the Service's implicit Route, if any, claims it.
            subscribe(parts, dest);
        }
        read = sniffed.read;
        parts
            .metrics
            .outbound
            .connection(Outcome::detected_pass_through);
    } else {
        parts
            .metrics
            .outbound
            .connection(Outcome::unknown_pass_through);
    }
    match opaque::pass_through(client, &read, dest, config.connect_timeout).await {
        Ok(copied) => {
            tracing::trace!(%peer, %dest, up = copied.up, down = copied.down, "passed through");
        }
        Err(error) => {
            tracing::debug!(%peer, %dest, reason = error.reason(), %error, "pass-through ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routable(authority: &str) -> FirstRequest {
        FirstRequest::Routable {
            authority: authority.into(),
            path: "/".into(),
        }
    }

    #[test]
    fn http_passed_through_at_a_known_set_subscribes_and_nothing_else_does() {
        assert!(wants_implicit_route(
            Protocol::Http1,
            &routable("10.96.0.10:8080")
        ));
        assert!(wants_implicit_route(Protocol::Http2, &routable("orders")));
        assert!(!wants_implicit_route(Protocol::Opaque, &routable("orders")));
        for first in [FirstRequest::Partial, FirstRequest::Unroutable] {
            assert!(!wants_implicit_route(Protocol::Http1, &first));
        }
    }

    #[test]
    fn only_http_whose_route_sends_to_the_destination_is_balanced() {
        let orders = |authority: &str, _: &str| authority.starts_with("orders");
        assert_eq!(
            decide(Protocol::Http1, &routable("orders.shop:8080"), orders),
            Decision::Balance
        );
        assert_eq!(
            decide(Protocol::Http1, &routable("10.96.0.10:8080"), orders),
            Decision::PassThrough,
            "a Host no Route of the Service claims goes where it was going, never a 404"
        );
        for first in [FirstRequest::Partial, FirstRequest::Unroutable] {
            assert_eq!(
                decide(Protocol::Http1, &first, orders),
                Decision::PassThrough
            );
        }
        assert_eq!(
            decide(Protocol::Http2, &routable("orders.shop:8080"), orders),
            Decision::Balance,
            "HTTP/2 with prior knowledge under the same rule"
        );
        assert_eq!(
            decide(Protocol::Http2, &routable("10.96.0.10:8080"), orders),
            Decision::PassThrough
        );
        assert_eq!(
            decide(Protocol::Opaque, &routable("orders"), orders),
            Decision::PassThrough
        );
    }
}
