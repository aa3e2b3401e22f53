//! One waiter per asking pod: it follows the store's latest version and the registry's
//! ack watermark (both `watch`es), and asks [`decide`] again only when one of them
//! moves, a gone proxy is due to be forgotten, or the start-up grace ends. A rollout of
//! hundreds of pods is hundreds of such waiters, each woken a few times per version.

use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::Version;
// Tokio's clock, so paused-time tests drive the deadline and timers.
use tokio::time::{Instant, sleep_until};

use super::decide::{Answer, Decision, Tracker, Wait, decide, pod_state};
use crate::auth::Pod;
use crate::grpc::Proxies;
use crate::store::Store;

/// How long a controller that just published its first version waits before it trusts
/// that its registry lists every proxy: proxies of the previous epoch reconnect within
/// their backoff cap (10 s, full jitter) plus a connect and a rebase.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(15);

/// Why a wait ended without an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The controller has not published its first version.
    NotSynced,
    /// The decision's last reason to wait.
    Waiting(Wait),
}

/// The waiter's result: an answer, or what it still waited for when the time was up.
pub type Outcome = Result<Answer, Pending>;

/// What a waiter reads: the versions and the registry.
#[derive(Clone, Debug)]
pub struct Waiter {
    pub store: Arc<Store>,
    pub proxies: Arc<Proxies>,
    pub grace: Duration,
}

impl Waiter {
    /// Waits until `pod` is drained (or an answer needs no wait), or until `deadline`.
    pub async fn wait(&self, pod: &Pod, deadline: Instant) -> Outcome {
        let mut published = self.store.subscribe();
        let mut watermark = self.proxies.watermark();
        let mut tracker = Tracker::default();
        loop {
            let latest = published.borrow_and_update().clone();
            watermark.borrow_and_update();
            let now = Instant::now();
            let pending = if latest.is_initial() {
                Pending::NotSynced
            } else {
                let state = pod_state(&latest.table, &pod.namespace, &pod.name);
                let acks = self.proxies.acks(now.into_std());
                let uptime = self.uptime(latest.version, now);
                match decide(
                    &mut tracker,
                    latest.version,
                    &state,
                    &acks,
                    uptime,
                    self.grace,
                ) {
                    Decision::Answer(answer) => return Ok(answer),
                    Decision::Wait(wait) => Pending::Waiting(wait),
                }
            };
            // Wake-ups that may change the decision besides the two watches.
            let timer = match &pending {
                Pending::Waiting(Wait::ControllerStarting { remaining }) => Some(now + *remaining),
                Pending::Waiting(Wait::Lagging { proxies, .. })
                    if proxies.iter().any(|p| !p.connected) =>
                {
                    (self.proxies.next_forget()).map(Instant::from_std)
                }
                _ => None,
            };
            let timer = timer.map(|t| t.min(deadline)).unwrap_or(deadline);
            tokio::select! {
                biased;
                changed = published.changed() => {
                    if changed.is_err() {
                        return Err(pending);
                    }
                }
                changed = watermark.changed() => {
                    if changed.is_err() {
                        return Err(pending);
                    }
                }
                () = sleep_until(timer) => {
                    if Instant::now() >= deadline {
                        return Err(pending);
                    }
                    // A gone proxy may be forgotten now: the watermark follows.
                    self.proxies.refresh(Instant::now().into_std());
                }
            }
        }
    }

    /// How long this controller has been publishing: since its first version, or long
    /// enough when that has left the history.
    fn uptime(&self, latest: Version, now: Instant) -> Duration {
        let first = Version {
            epoch: latest.epoch,
            sequence: 1,
        };
        match self.store.published_at(first) {
            Some(at) => now.into_std().saturating_duration_since(at),
            None => Duration::MAX,
        }
    }
}
