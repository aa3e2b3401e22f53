//! A scripted [`Balance`] for tests of the request path: picks come from a list, calls
//! are recorded.

use std::time::{Duration, Instant};

use fairway_proto::model::{EndpointAddr, EndpointSet};
use rand::RngCore;

use super::{Balance, Outcome};

/// Returns `picks` in order, cycling; an empty list picks nothing. Records every call.
#[derive(Clone, Debug, Default)]
pub struct Scripted {
    pub picks: Vec<EndpointAddr>,
    next: usize,
    pub updates: Vec<EndpointSet>,
    pub started: Vec<EndpointAddr>,
    pub ended: Vec<(EndpointAddr, Duration, Outcome)>,
}

impl Scripted {
    pub fn new(picks: Vec<EndpointAddr>) -> Self {
        Scripted {
            picks,
            ..Scripted::default()
        }
    }
}

impl Balance for Scripted {
    fn update(&mut self, set: &EndpointSet, _now: Instant) {
        self.updates.push(set.clone());
    }

    fn pick(&mut self, _now: Instant, _rng: &mut dyn RngCore) -> Option<EndpointAddr> {
        let addr = *self.picks.get(self.next % self.picks.len().max(1))?;
        self.next += 1;
        Some(addr)
    }

    fn on_start(&mut self, addr: EndpointAddr) {
        self.started.push(addr);
    }

    fn on_end(&mut self, addr: EndpointAddr, latency: Duration, outcome: Outcome, _now: Instant) {
        self.ended.push((addr, latency, outcome));
    }
}
