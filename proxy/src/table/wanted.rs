//! What a sidecar asks the controller to add to its table: the destinations of
//! captured connections that mapped to no Service it knew (discovery.proto, "Scope").
//! The captured path adds one per destination, once ([`Wanted::want`]); the discovery
//! client lists them all in every hello and sends each new one on its stream.
//! Bounded by [`MAX_SUBSCRIPTIONS`]: past it, those connections keep passing through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fairway_proto::scope::{MAX_SUBSCRIPTIONS, ServiceDestination};
use tokio::sync::Notify;

/// What [`Wanted::want`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// New: the discovery client sends it.
    New,
    /// Already asked for: nothing to send.
    Known,
    /// [`MAX_SUBSCRIPTIONS`] reached: not asked for.
    Full,
}

/// How long connections to a destination just subscribed to wait for its set before
/// they are passed through. The controller answers a subscription at once (no new
/// version, no coalescing): milliseconds. Without the wait, an app that opens its
/// keep-alive pool at start (the seed's gateway: a burst of connections) would have
/// them all passed through and pinned to one pod for their life, the very problem
/// Fairway fixes. The price: a destination that is no Service (or a controller that
/// does not answer) holds its first connections this long, once per destination.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Inner {
    /// In the order first wanted (the hello's order).
    order: Vec<ServiceDestination>,
    /// When each was first wanted.
    known: HashMap<ServiceDestination, Instant>,
}

/// The destinations wanted so far, deduplicated and bounded.
#[derive(Debug, Default)]
pub struct Wanted {
    inner: Mutex<Inner>,
    added: Notify,
    /// The discovery stream sends subscriptions (the controller takes them).
    accepting: AtomicBool,
}

impl Wanted {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A list only ever appended to: still valid after a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for `destination` (once: later calls for it change nothing), at `now`.
    pub fn want(&self, destination: ServiceDestination, now: Instant) -> Want {
        let mut inner = self.inner();
        if inner.known.contains_key(&destination) {
            return Want::Known;
        }
        if inner.order.len() >= MAX_SUBSCRIPTIONS {
            return Want::Full;
        }
        inner.known.insert(destination, now);
        inner.order.push(destination);
        drop(inner);
        self.added.notify_one();
        Want::New
    }

    /// Until when a connection to `destination` (not in the table) should wait for its
    /// set: [`SUBSCRIBE_WAIT`] after it was first wanted, while the stream takes
    /// subscriptions; `None`: pass it through now.
    pub fn wait_until(&self, destination: &ServiceDestination, now: Instant) -> Option<Instant> {
        if !self.accepting.load(Ordering::Relaxed) {
            return None;
        }
        let deadline = *self.inner().known.get(destination)? + SUBSCRIBE_WAIT;
        (deadline > now).then_some(deadline)
    }

    /// Whether the discovery stream now sends subscriptions (set by the client for
    /// each stream).
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Relaxed);
    }

    /// Every destination wanted, in order.
    pub fn all(&self) -> Vec<ServiceDestination> {
        self.inner().order.clone()
    }

    /// The destinations wanted after the first `sent`.
    pub fn after(&self, sent: usize) -> Vec<ServiceDestination> {
        self.inner().order.get(sent..).unwrap_or_default().to_vec()
    }

    /// Resolves once something was wanted since the last time it resolved (or ever,
    /// the first time): the discovery client then sends [`Wanted::after`] what it sent.
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use futures::FutureExt;

    use super::*;

    fn dest(i: u32) -> ServiceDestination {
        ServiceDestination::new((Ipv4Addr::from(0x0a60_0000 + i), 8080).into())
    }

    #[test]
    fn each_destination_is_wanted_once_in_order_and_the_list_is_bounded() {
        let wanted = Wanted::default();
        let now = Instant::now();
        assert_eq!(wanted.want(dest(1), now), Want::New);
        assert_eq!(wanted.want(dest(2), now), Want::New);
        assert_eq!(wanted.want(dest(1), now), Want::Known, "deduplicated");
        assert_eq!(wanted.all(), vec![dest(1), dest(2)]);
        assert_eq!(wanted.after(1), vec![dest(2)]);
        assert_eq!(wanted.after(5), vec![], "past the end: nothing");
        for i in 3..=MAX_SUBSCRIPTIONS as u32 {
            assert_eq!(wanted.want(dest(i), now), Want::New);
        }
        assert_eq!(wanted.want(dest(0), now), Want::Full);
        assert_eq!(wanted.all().len(), MAX_SUBSCRIPTIONS);
    }

    #[test]
    fn a_new_destination_wakes_the_client_even_if_it_was_not_waiting_yet() {
        let wanted = Wanted::default();
        assert!(
            wanted.added().now_or_never().is_none(),
            "nothing wanted yet"
        );
        wanted.want(dest(1), Instant::now());
        assert!(
            wanted.added().now_or_never().is_some(),
            "the wake-up was kept"
        );
        wanted.want(dest(1), Instant::now());
        assert!(
            wanted.added().now_or_never().is_none(),
            "a known one wakes nobody"
        );
    }

    #[test]
    fn connections_wait_for_a_fresh_subscription_only_while_the_controller_takes_them() {
        let wanted = Wanted::default();
        let t0 = Instant::now();
        wanted.want(dest(1), t0);
        assert_eq!(
            wanted.wait_until(&dest(1), t0),
            None,
            "no subscribing stream: no wait"
        );
        wanted.set_accepting(true);
        assert_eq!(wanted.wait_until(&dest(1), t0), Some(t0 + SUBSCRIBE_WAIT));
        let later = t0 + SUBSCRIBE_WAIT / 2;
        assert_eq!(
            wanted.wait_until(&dest(1), later),
            Some(t0 + SUBSCRIBE_WAIT),
            "a connection during the first one's wait waits with it, not longer"
        );
        assert_eq!(
            wanted.wait_until(&dest(1), t0 + SUBSCRIBE_WAIT),
            None,
            "past it (no Service there, or no answer): passed through at once"
        );
        assert_eq!(wanted.wait_until(&dest(2), t0), None, "not wanted: no wait");
    }
}
