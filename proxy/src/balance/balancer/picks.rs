//! The policies' picks over the eligible endpoints: round robin (SWRR while weights
//! differ), power of two choices, and affinity's keyed picks.

use std::time::Instant;

use fairway_proto::model::EndpointAddr;
use rand::RngCore;

use super::super::{affinity, p2c, swrr};
use super::{Balancer, Pick};

impl Balancer {
    /// [`pick_for`](Self::pick_for), but a request with a `key` (see `affinity`) goes
    /// to the best-ranked eligible endpoint for it whose load stays within the Route's
    /// bound, when the Route has affinity. Slow-start weights do not apply to keyed
    /// requests: a key belongs to its endpoint from the moment it is eligible.
    pub fn pick_keyed(
        &mut self,
        kind: Pick,
        key: Option<u64>,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Option<EndpointAddr> {
        let (Some(key), Some(factor)) = (key, self.config.affinity) else {
            return self.pick_for(kind, now, rng);
        };
        self.tick(now);
        let endpoints = &self.endpoints;
        let candidates = self.eligible.iter().map(|&position| {
            let state = &endpoints[position];
            let load = match kind {
                Pick::Request => state.in_flight,
                Pick::Upgrade => state.open_upgrades,
            };
            affinity::Candidate {
                position,
                hash: state.hash,
                load: u64::from(load),
            }
        });
        let position = affinity::choose(key, candidates, factor)?;
        if kind == Pick::Request {
            self.count_share(position, now);
        }
        Some(self.endpoints[position].addr())
    }

    /// Smooth weighted round robin while a ramp runs; a plain rotation otherwise (SWRR
    /// with equal weights is exactly a rotation, at O(1)).
    pub(super) fn pick_round_robin(&mut self, now: Instant) -> Option<usize> {
        if self.eligible.is_empty() {
            return None;
        }
        if self.weighted(now) {
            let config = &self.config;
            let entries = self
                .endpoints
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.eligible)
                .map(|(i, s)| {
                    let weight = s.weight(now, config);
                    (i, weight, &mut s.current)
                });
            return swrr::step(entries);
        }
        let at = self.cursor % self.eligible.len();
        self.cursor = at + 1;
        Some(self.eligible[at])
    }

    /// Power of two choices ([`p2c`]): candidates drawn in proportion to their weight
    /// while a ramp runs (uniformly otherwise, at O(1)), compared by in flight per
    /// weight, and by latency too for `PeakEwma`.
    pub(super) fn pick_p2c(
        &self,
        kind: Pick,
        by_latency: bool,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Option<usize> {
        let eligible = &self.eligible;
        let weight = |i: usize| self.endpoints[eligible[i]].weight(now, &self.config);
        let (a, b) = if self.weighted(now) {
            p2c::choose_two_weighted(eligible.len(), |i| u64::from(weight(i)), rng)?
        } else {
            p2c::choose_two(eligible.len(), rng)?
        };
        let decay = self.config.ewma.decay;
        let candidate = |i: usize| {
            let state = &self.endpoints[eligible[i]];
            p2c::Candidate {
                // Requests: this proxy's and, from the controller, the others'.
                in_flight: match kind {
                    Pick::Request => state.in_flight.saturating_add(state.others_in_flight(now)),
                    Pick::Upgrade => state.open_upgrades,
                },
                weight: weight(i).max(1),
                latency_ns: by_latency
                    .then(|| state.ewma.measured_ns(now, decay))
                    .flatten(),
            }
        };
        let winner = if p2c::prefers_second(&candidate(a), &candidate(b)) {
            b
        } else {
            a
        };
        Some(eligible[winner])
    }
}
