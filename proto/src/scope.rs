//! A proxy's scope (discovery.proto, "Scope"): whether it takes the whole table
//! ([`ProxyMode::Explicit`]) or is a sidecar that gets implicit Services only once it
//! subscribed to them by a captured connection's destination ([`ServiceDestination`]).
//! Wire conversions are in `convert/scope.rs`.

use std::fmt;
use std::net::SocketAddr;

/// At most this many destinations per stream, on both sides. One pod's app calling
/// more than a thousand distinct Service ports is far outside what a sidecar serves,
/// and the bound keeps a hello (with the largest table digest) under the 64 KiB a
/// controller accepts from a proxy. Past it, a destination is not subscribed: its
/// connections pass through to where they were going, as without Fairway.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// What a proxy serves, as its hello says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProxyMode {
    /// The whole table (a DaemonSet; also a proxy that says nothing).
    #[default]
    Explicit,
    /// A sidecar: implicit Services by subscription.
    Sidecar,
}

/// Where a captured connection was going: a ClusterIP and a Service port (IPv6 flow
/// info and scope ids are not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceDestination(pub SocketAddr);

impl ServiceDestination {
    /// `addr` without what the wire does not carry (flow info, scope id), and with an
    /// IPv4-mapped IPv6 address as the IPv4 one, so a destination has one form.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_canonical();
        ServiceDestination(SocketAddr::new(ip, addr.port()))
    }
}

impl fmt::Display for ServiceDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a hello says about scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloScope {
    pub mode: ProxyMode,
    /// Sidecar only: the destinations subscribed so far, at most [`MAX_SUBSCRIPTIONS`].
    pub subscriptions: Vec<ServiceDestination>,
}
