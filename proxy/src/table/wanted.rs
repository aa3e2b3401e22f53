//! What a sidecar asks the controller to add to its table: the destinations of
//! captured connections that mapped to no Service it knew (discovery.proto, "Scope").
//! The captured path adds one per destination, once ([`Wanted::want`]); the discovery
//! client lists them all in every hello and sends each new one on its stream.
//! Bounded by [`MAX_SUBSCRIPTIONS`]: past it, those connections keep passing through.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

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

#[derive(Debug, Default)]
struct Inner {
    /// In the order first wanted (the hello's order).
    order: Vec<ServiceDestination>,
    known: HashSet<ServiceDestination>,
}

/// The destinations wanted so far, deduplicated and bounded.
#[derive(Debug, Default)]
pub struct Wanted {
    inner: Mutex<Inner>,
    added: Notify,
}

impl Wanted {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A list only ever appended to: still valid after a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for `destination` (once: later calls for it change nothing).
    pub fn want(&self, destination: ServiceDestination) -> Want {
        let mut inner = self.inner();
        if inner.known.contains(&destination) {
            return Want::Known;
        }
        if inner.order.len() >= MAX_SUBSCRIPTIONS {
            return Want::Full;
        }
        inner.known.insert(destination);
        inner.order.push(destination);
        drop(inner);
        self.added.notify_one();
        Want::New
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
        assert_eq!(wanted.want(dest(1)), Want::New);
        assert_eq!(wanted.want(dest(2)), Want::New);
        assert_eq!(wanted.want(dest(1)), Want::Known, "deduplicated");
        assert_eq!(wanted.all(), vec![dest(1), dest(2)]);
        assert_eq!(wanted.after(1), vec![dest(2)]);
        assert_eq!(wanted.after(5), vec![], "past the end: nothing");
        for i in 3..=MAX_SUBSCRIPTIONS as u32 {
            assert_eq!(wanted.want(dest(i)), Want::New);
        }
        assert_eq!(wanted.want(dest(0)), Want::Full);
        assert_eq!(wanted.all().len(), MAX_SUBSCRIPTIONS);
    }

    #[test]
    fn a_new_destination_wakes_the_client_even_if_it_was_not_waiting_yet() {
        let wanted = Wanted::default();
        assert!(
            wanted.added().now_or_never().is_none(),
            "nothing wanted yet"
        );
        wanted.want(dest(1));
        assert!(
            wanted.added().now_or_never().is_some(),
            "the wake-up was kept"
        );
        wanted.want(dest(1));
        assert!(
            wanted.added().now_or_never().is_none(),
            "a known one wakes nobody"
        );
    }
}
