//! The pure half of the drain handshake: what a published table says about one pod's
//! endpoints, and, given what every proxy acked, whether the pod may stop. No clock
//! (time comes in as a `Duration`), no registry, no `.await`.

use std::num::NonZeroU16;
use std::time::Duration;

use fairway_proto::model::{EndpointSetKey, RouteTable, Version};

use crate::grpc::proxies::{ProxyAck, by_proxy};

/// The pod's endpoints in one published table, as proxies pick from it (KEP-1669: ready
/// endpoints; only when a set has none, its serving-and-terminating ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// No endpoint of any Route's endpoint set names the pod.
    Absent,
    /// An endpoint of the pod is ready in `set`: proxies still pick it (it is not marked
    /// terminating yet, or the change has not been published).
    Ready { set: EndpointSetKey },
    /// Not ready anywhere, but in `set` no endpoint is ready and the pod's is serving
    /// and terminating: proxies keep sending to it until another one is ready.
    LastServing { set: EndpointSetKey },
    /// Listed, but no proxy picks it for a new request.
    NoNewRequests,
}

/// The state of pod `name` in `namespace` in `table` (only that namespace's sets are
/// read: a pod's endpoints live in its own namespace).
pub fn pod_state(table: &RouteTable, namespace: &str, name: &str) -> PodState {
    let from = EndpointSetKey {
        namespace: namespace.to_owned(),
        service: String::new(),
        port: NonZeroU16::MIN,
    };
    let mut listed = false;
    let mut last_serving = None;
    let sets = (table.endpoint_sets.range(from..)).take_while(|(k, _)| k.namespace == namespace);
    for (key, set) in sets {
        let mut ours = set
            .endpoints
            .values()
            .filter(|e| e.pod.as_deref() == Some(name))
            .peekable();
        if ours.peek().is_none() {
            continue;
        }
        listed = true;
        let mut serving_last = false;
        for e in ours {
            if e.ready {
                return PodState::Ready { set: key.clone() };
            }
            serving_last |= e.serving && e.terminating;
        }
        if serving_last && !set.endpoints.values().any(|e| e.ready) {
            last_serving.get_or_insert_with(|| key.clone());
        }
    }
    match (listed, last_serving) {
        (false, _) => PodState::Absent,
        (true, Some(set)) => PodState::LastServing { set },
        (true, None) => PodState::NoNewRequests,
    }
}

/// What one waiter has seen so far, carried from one decision to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    /// The pod was listed in some version this waiter saw: its absence later means it
    /// was removed, not that it is unknown.
    seen: bool,
    /// The first version seen in which the pod takes no new requests: every proxy must
    /// have applied it (or a later one).
    target: Option<Version>,
}

/// A final answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Every proxy applied a version in which the pod takes no new requests.
    Drained { version: Version },
    /// The pod is no endpoint: nobody sends to it.
    Unknown,
    /// Proxies keep sending to it whatever we wait for (KEP-1669).
    LastServing { set: EndpointSetKey },
}

/// Why the waiter keeps waiting (and, on timeout, what it says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The published table still has the pod ready: its slice update is on its way.
    NotTerminating { set: EndpointSetKey },
    /// The controller started less than the reconnect grace ago: proxies that served
    /// another epoch may not have come back yet, so "every proxy" is not known.
    ControllerStarting { remaining: Duration },
    /// These proxies (by id) have not applied `target`.
    Lagging {
        target: Version,
        proxies: Vec<ProxyAck>,
    },
}

/// Either an answer or a reason to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Answer(Answer),
    Wait(Wait),
}

/// Decides on the latest published version: `state` is [`pod_state`] of its table,
/// `proxies` what every proxy (connected or recently gone) acked, `uptime` how long
/// this controller has served and `grace` how long its proxies may take to return.
pub fn decide(
    tracker: &mut Tracker,
    latest: Version,
    state: &PodState,
    proxies: &[ProxyAck],
    uptime: Duration,
    grace: Duration,
) -> Decision {
    match state {
        PodState::Absent if !tracker.seen => return Decision::Answer(Answer::Unknown),
        PodState::LastServing { set } => {
            return Decision::Answer(Answer::LastServing { set: set.clone() });
        }
        PodState::Ready { set } => {
            // Ready again (or still): whatever was awaited no longer holds.
            tracker.seen = true;
            tracker.target = None;
            return Decision::Wait(Wait::NotTerminating { set: set.clone() });
        }
        PodState::Absent | PodState::NoNewRequests => {
            tracker.seen = true;
        }
    }
    let target = *tracker.target.get_or_insert(latest);
    if uptime < grace {
        return Decision::Wait(Wait::ControllerStarting {
            remaining: grace - uptime,
        });
    }
    let applied = |acked: Option<Version>| {
        acked.is_some_and(|v| v.epoch == target.epoch && v.sequence >= target.sequence)
    };
    let lagging: Vec<ProxyAck> = by_proxy(proxies)
        .into_iter()
        .filter(|(_, (_, acked))| !applied(*acked))
        .map(|(id, (connected, acked))| ProxyAck {
            id: id.to_owned(),
            connected,
            acked,
        })
        .collect();
    if lagging.is_empty() {
        Decision::Answer(Answer::Drained { version: target })
    } else {
        Decision::Wait(Wait::Lagging {
            target,
            proxies: lagging,
        })
    }
}
