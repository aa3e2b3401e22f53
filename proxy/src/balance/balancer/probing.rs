//! The `Prequal` policy's side of the balancer: answers from responses and from probes
//! of the proxy's own view, and the hot-cold pick over the pool (see `prequal`).

use std::time::Instant;

use fairway_proto::model::{EndpointAddr, Policy};
use rand::{Rng, RngCore};

use super::super::{p2c, prequal};
use super::{Balancer, Pick};

impl Balancer {
    /// Hot-cold lexicographic selection over the pool, after probing a few random
    /// eligible endpoints; reported load (`orca`) weighs the ties. Upgrades go by open upgraded connections (least request), and
    /// while a slow-start ramp runs picks are `PeakEwma`'s, whose weighted draws make a
    /// ramp's shares its curve.
    pub(super) fn pick_prequal(
        &mut self,
        kind: Pick,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Option<usize> {
        if kind == Pick::Upgrade {
            return self.pick_p2c(kind, false, now, rng);
        }
        if self.ramp_ends.is_some_and(|end| now < end) {
            return self.pick_p2c(kind, true, now, rng);
        }
        let endpoints = &self.endpoints;
        self.pool.retain(now, |p| endpoints[p].eligible);
        let (a, b) = p2c::choose_two(self.eligible.len(), rng)?;
        for drawn in [a, b].into_iter().take(prequal::PROBES_PER_PICK) {
            let position = self.eligible[drawn];
            if self.pool.wants(position, now) {
                let answer = self.answer_of(position, now);
                self.pool.answer(answer);
            }
        }
        let answers = self.pool.answers();
        // On the stack: the pool is small and this runs per request.
        let mut seen = [prequal::Seen::default(); prequal::POOL_SIZE];
        for (slot, a) in seen.iter_mut().zip(answers) {
            *slot = prequal::Seen {
                rif: self.rif(a.position, now),
                latency_ns: a.latency_ns,
            };
        }
        let seen = &seen[..answers.len()];
        // Ties go to the first from `start`: drawn by weight while pods report load, so
        // a pod reporting a quarter of the cost wins four times the ties.
        let start = if self.weighted(now) {
            let weight =
                |i: usize| u64::from(self.endpoints[answers[i].position].weight(now, &self.config));
            p2c::choose_two_weighted(answers.len(), weight, rng).map_or(0, |(first, _)| first)
        } else {
            rng.random_range(0..seen.len().max(1))
        };
        let chosen = prequal::choose(seen, self.pool.hot_threshold(), start)?;
        Some(answers[chosen].position)
    }

    /// A response from `addr` is an answer of its endpoint (within the per-endpoint
    /// bound), under `Prequal` only.
    pub(super) fn piggyback(&mut self, addr: EndpointAddr, now: Instant) {
        if self.config.policy != Policy::Prequal {
            return;
        }
        if let Some(&position) = self.index.get(&addr) {
            let answer = self.answer_of(position, now);
            self.pool.answer(answer);
        }
    }

    /// What the proxy knows of `position` at `now`, as an answer.
    fn answer_of(&self, position: usize, now: Instant) -> prequal::Answer {
        let state = &self.endpoints[position];
        prequal::Answer {
            position,
            rif: self.rif(position, now),
            latency_ns: state.ewma.measured_ns(now, self.config.ewma.decay),
            at: now,
        }
    }

    /// Requests in flight to `position`: this proxy's and, from the controller, the
    /// other proxies'.
    fn rif(&self, position: usize, now: Instant) -> u32 {
        let state = &self.endpoints[position];
        state.in_flight.saturating_add(state.others_in_flight(now))
    }
}
