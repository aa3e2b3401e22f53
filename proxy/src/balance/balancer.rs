//! [`Balancer`]: one endpoint set's per-endpoint state and the policy that picks from it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fairway_proto::load::EndpointLoad;
use fairway_proto::model::{EndpointAddr, EndpointSet, Policy};
use rand::RngCore;

use super::config::BalanceConfig;
use super::endpoint::{EndpointState, EndpointStats, LOAD_FACTOR_ONE};
use super::outlier::Outcome;
use super::share::{self, Totals};
use super::slow_start;
use super::spill::Locality;

mod picks;
mod probing;
use super::{eligible, orca, prequal};

/// How often load factors are recomputed from load reports (and expired ones dropped):
/// a report arrives with every response, and weights need not follow each one.
pub const REWEIGH: Duration = Duration::from_secs(1);

/// Picks an endpoint per request for one endpoint set, under one [`BalanceConfig`].
///
/// Plain data (`Send + Sync`): keep it behind a `Mutex` and hold the lock only for a
/// call, never across an `.await`. Every method takes `now`, so tests drive time.
///
/// Costs: `pick` is O(1) for the P2C policies and for round robin when no endpoint is
/// ramping (a rotating cursor); O(eligible) for round robin during a slow-start ramp
/// (SWRR) and whenever eligibility changes (update, ejection, end of an ejection).
#[derive(Clone, Debug)]
pub struct Balancer {
    config: BalanceConfig,
    /// In address order (the set's order), so behaviour is deterministic.
    endpoints: Vec<EndpointState>,
    /// Looked up on every request's end (foldhash: SipHash was a visible cost there).
    index: foldhash::HashMap<EndpointAddr, usize>,
    /// Positions in `endpoints` that take new requests, as of the last refresh.
    eligible: Vec<usize>,
    /// Whether the first table was seen (its endpoints are not ramped).
    seen_table: bool,
    /// Round robin's position in `eligible` when no endpoint is ramping.
    cursor: usize,
    /// When the last running slow-start ramp ends.
    ramp_ends: Option<Instant>,
    /// When the next ejection ends (eligibility must be refreshed then).
    next_unejection: Option<Instant>,
    /// Requests per slot of the share window (each endpoint keeps its own part).
    totals: Totals,
    /// The local endpoints, the tier to spill over, and whether it spills now.
    locality: Locality,
    /// When load factors were last computed from the endpoints' load reports, and
    /// whether any report was fresh then (picks are weighted while one is).
    reweighed: Option<(Instant, bool)>,
    /// The `Prequal` policy's recent answers (empty under the other policies).
    pool: prequal::Pool,
}

impl Balancer {
    /// An empty balancer: picks nothing until the first [`update`](Self::update).
    pub fn new(config: BalanceConfig) -> Self {
        Balancer {
            config,
            endpoints: Vec::new(),
            index: foldhash::HashMap::default(),
            eligible: Vec::new(),
            seen_table: false,
            cursor: 0,
            ramp_ends: None,
            next_unejection: None,
            totals: Totals::default(),
            locality: Locality::default(),
            reweighed: None,
            pool: prequal::Pool::default(),
        }
    }

    pub fn config(&self) -> &BalanceConfig {
        &self.config
    }

    /// Applies a changed Route configuration, keeping every endpoint's state.
    pub fn set_config(&mut self, config: BalanceConfig, now: Instant) {
        self.config = config;
        self.recompute_ramp_end();
        self.refresh(now);
    }

    /// Replaces the endpoint set. Surviving endpoints keep their state (in-flight
    /// counts, latency, failures); removed ones are forgotten (draining their
    /// connections is the pool's job); new ones start now.
    ///
    /// Slow start: endpoints ready in the first set this balancer sees are not new and
    /// are not ramped. After that, an endpoint's ramp starts when it is seen *becoming
    /// ready* (added ready, or turning ready): a pod appears in its EndpointSlice
    /// not-ready long before it can serve, and ramping from then would waste the ramp.
    pub fn update(&mut self, set: &EndpointSet, now: Instant) {
        let first = !self.seen_table;
        self.seen_table = true;
        let mut old: HashMap<EndpointAddr, EndpointState> =
            self.endpoints.drain(..).map(|s| (s.addr(), s)).collect();
        for endpoint in set.endpoints.values() {
            let becomes_ready = !first && endpoint.ready;
            let state = match old.remove(&endpoint.addr) {
                Some(mut state) => {
                    if becomes_ready && !state.endpoint.ready {
                        state.ramp_from = Some(now);
                    }
                    state.endpoint = endpoint.clone();
                    state
                }
                None => EndpointState::new(
                    endpoint.clone(),
                    becomes_ready.then_some(now),
                    now,
                    &self.config,
                ),
            };
            self.endpoints.push(state);
        }
        // Answers name positions, which the new set reorders.
        self.pool.clear();
        self.index = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, s)| (s.addr(), i))
            .collect();
        self.recompute_ramp_end();
        self.refresh(now);
    }

    /// Chooses the endpoint for the next request; `None` when no endpoint can take one
    /// (answer `503`). Does not count the request: call [`on_start`](Self::on_start)
    /// when it is sent.
    pub fn pick(&mut self, now: Instant, rng: &mut dyn RngCore) -> Option<EndpointAddr> {
        self.pick_for(Pick::Request, now, rng)
    }

    /// [`pick`](Self::pick) for a request or for an upgrade. An upgrade's load is its
    /// open upgraded connections, not requests in flight: a WebSocket lasts for hours,
    /// a request for milliseconds, and neither should hide the other.
    pub fn pick_for(
        &mut self,
        kind: Pick,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Option<EndpointAddr> {
        self.tick(now);
        let position = match self.config.policy {
            Policy::RoundRobin => self.pick_round_robin(now)?,
            Policy::LeastRequest => self.pick_p2c(kind, false, now, rng)?,
            Policy::PeakEwma => self.pick_p2c(kind, true, now, rng)?,
            Policy::Prequal => self.pick_prequal(kind, now, rng)?,
        };
        if kind == Pick::Request {
            self.count_share(position, now);
        }
        Some(self.endpoints[position].addr())
    }

    /// A load report in `addr`'s response (`orca`). Weights are recomputed from the
    /// fresh reports at most once per [`REWEIGH`]. Unknown addresses are ignored.
    pub fn on_report(&mut self, addr: EndpointAddr, report: &orca::Report, now: Instant) {
        let Some(weight) = orca::weight(report) else {
            return;
        };
        if let Some(state) = self.state_mut(addr) {
            state.reported = Some((weight, now));
        }
        if self
            .reweighed
            .is_none_or(|(at, _)| now.duration_since(at) >= REWEIGH)
        {
            self.reweigh(now);
        }
    }

    /// Each endpoint's load factor: its fresh reported weight over the fresh ones' mean.
    fn reweigh(&mut self, now: Instant) {
        let fresh: Vec<f64> = self
            .endpoints
            .iter()
            .filter_map(|s| s.fresh_report(now))
            .collect();
        let mean = fresh.iter().sum::<f64>() / fresh.len().max(1) as f64;
        for state in &mut self.endpoints {
            state.load_factor = match state.fresh_report(now) {
                // Bounded by MAX_FACTOR, so the cast is exact enough and cannot overflow.
                Some(w) => (orca::factor(w, mean) * f64::from(LOAD_FACTOR_ONE)).round() as u32,
                None => LOAD_FACTOR_ONE,
            };
        }
        self.reweighed = Some((now, !fresh.is_empty()));
        if self.totals.seen() {
            self.write_shares(self.totals.slot(now), now);
        }
    }

    /// Whether picks weigh endpoints (a slow-start ramp runs, or load reports are in
    /// use), rather than treating them alike at O(1).
    fn weighted(&self, now: Instant) -> bool {
        self.ramp_ends.is_some_and(|end| now < end)
            || self.reweighed.is_some_and(|(_, in_use)| in_use)
    }

    /// What a pick does first: ends ejections due, lets expired reports go, starts or
    /// ends a spill.
    fn tick(&mut self, now: Instant) {
        if self.next_unejection.is_some_and(|at| now >= at) {
            self.refresh(now);
        }
        if let Some((at, true)) = self.reweighed
            && now.duration_since(at) >= REWEIGH
        {
            self.reweigh(now);
        }
        self.check_spill(now);
    }

    /// The other proxies' requests in flight per endpoint (the controller's figures);
    /// endpoints not listed have none. The P2C policies add them to their own counts.
    pub fn set_others(&mut self, figures: &[(EndpointAddr, u32)], now: Instant) {
        for state in &mut self.endpoints {
            state.others = Some((0, now));
        }
        for &(addr, n) in figures {
            if let Some(state) = self.state_mut(addr) {
                state.others = Some((n, now));
            }
        }
    }

    /// An upgraded connection to `addr` opened (the pod answered `101`).
    pub fn upgrade_opened(&mut self, addr: EndpointAddr) {
        if let Some(state) = self.state_mut(addr) {
            state.open_upgrades = state.open_upgrades.saturating_add(1);
        }
    }

    /// An upgraded connection to `addr` closed. Unknown addresses are ignored.
    pub fn upgrade_closed(&mut self, addr: EndpointAddr) {
        if let Some(state) = self.state_mut(addr) {
            state.open_upgrades = state.open_upgrades.saturating_sub(1);
        }
    }

    /// A request to `addr` was sent. Unknown addresses are ignored.
    pub fn on_start(&mut self, addr: EndpointAddr) {
        if let Some(state) = self.state_mut(addr) {
            state.in_flight = state.in_flight.saturating_add(1);
            state.requests += 1;
        }
    }

    /// A request started with [`on_start`](Self::on_start) ended after `latency` (time
    /// to response headers, or to the failure). Feeds the latency estimate and outlier
    /// ejection. Unknown addresses (removed meanwhile) are ignored.
    pub fn on_end(
        &mut self,
        addr: EndpointAddr,
        latency: Duration,
        outcome: Outcome,
        now: Instant,
    ) {
        let decay = self.config.ewma.decay;
        let typical = self.typical_latency_ns(addr, now);
        if let Some(state) = self.state_mut(addr) {
            state.in_flight = state.in_flight.saturating_sub(1);
            if outcome.measures_latency() {
                if let Some(typical) = typical {
                    state.ewma.seed(typical, now);
                }
                state.ewma.observe(latency, now, decay);
            }
        }
        if outcome.measures_latency() {
            self.piggyback(addr, now);
        }
        self.record(addr, outcome, now);
    }

    /// Records an outcome for outlier ejection alone (for failures outside a started
    /// request). Ejecting an endpoint refreshes eligibility at once.
    pub fn record(&mut self, addr: EndpointAddr, outcome: Outcome, now: Instant) {
        let config = self.config.outlier;
        let ejected = self
            .state_mut(addr)
            .is_some_and(|state| state.outlier.record(outcome, now, &config));
        if ejected {
            self.refresh(now);
        }
    }

    /// The verdict of an active health check (`crate::health`) on `addr`: a failed
    /// endpoint leaves rotation as an ejected one does (under the same panic
    /// threshold), until a check passes. Returns whether anything changed; unknown
    /// addresses are ignored.
    pub fn set_health(&mut self, addr: EndpointAddr, healthy: bool, now: Instant) -> bool {
        let changed = self.state_mut(addr).is_some_and(|state| {
            let changed = state.health_failed == healthy;
            state.health_failed = !healthy;
            changed
        });
        if changed {
            self.refresh(now);
        }
        changed
    }

    /// Every endpoint's state, in address order.
    pub fn endpoints(&self) -> &[EndpointState] {
        &self.endpoints
    }

    pub fn endpoint(&self, addr: EndpointAddr) -> Option<&EndpointState> {
        self.index.get(&addr).map(|&i| &self.endpoints[i])
    }

    /// How many endpoints take new requests (as of the last refresh).
    pub fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    /// Snapshots for `/debug/routes`, in address order.
    pub fn stats(&self, now: Instant) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|s| s.stats(now, &self.config))
            .collect()
    }

    /// Every endpoint's requests over the share window, in flight now, and the requests
    /// a fair split would have given it (see `share`). `None` until a first request
    /// was picked: from then on the figures exist, even when the window is empty.
    pub fn load(&self, now: Instant) -> Option<Vec<EndpointLoad>> {
        if !self.totals.seen() {
            return None;
        }
        let current = self.totals.slot(now);
        let loads = self
            .endpoints
            .iter()
            .map(|s| {
                let (requests, expected) = s.window.figures(&self.totals, current);
                EndpointLoad {
                    addr: s.addr(),
                    requests,
                    in_flight: s.in_flight,
                    expected,
                }
            })
            .collect();
        Some(loads)
    }

    /// Counts a picked request in the share window; a new slot first gets every
    /// endpoint's expected share.
    fn count_share(&mut self, position: usize, now: Instant) {
        let opened = self.totals.count(now);
        let slot = self.totals.slot(now);
        if opened {
            self.write_shares(slot, now);
        }
        self.endpoints[position].window.count(slot);
    }

    /// Writes each endpoint's expected share for `slot`: its slow-start weight over
    /// the eligible endpoints' weights, 0 when not eligible. O(endpoints), once per slot
    /// and per eligibility change.
    fn write_shares(&mut self, slot: u64, now: Instant) {
        let weights: Vec<u32> = self
            .endpoints
            .iter()
            .map(|s| {
                if s.eligible {
                    s.weight(now, &self.config)
                } else {
                    0
                }
            })
            .collect();
        for (state, share) in self.endpoints.iter_mut().zip(share::shares(&weights)) {
            state.window.expect(slot, share);
        }
    }

    /// For an endpoint's first answer only (O(endpoints), once per endpoint): the mean
    /// estimate of the measured others, which its own estimate starts from.
    fn typical_latency_ns(&self, addr: EndpointAddr, now: Instant) -> Option<f64> {
        if self.endpoint(addr)?.ewma.is_measured() {
            return None;
        }
        let decay = self.config.ewma.decay;
        let (sum, n) = self
            .endpoints
            .iter()
            .filter_map(|s| s.ewma.measured_ns(now, decay))
            .fold((0.0, 0u32), |(sum, n), e| (sum + e, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    fn state_mut(&mut self, addr: EndpointAddr) -> Option<&mut EndpointState> {
        self.index.get(&addr).map(|&i| &mut self.endpoints[i])
    }

    fn recompute_ramp_end(&mut self) {
        let slow_start = self.config.slow_start;
        self.ramp_ends = self
            .endpoints
            .iter()
            .filter_map(|s| slow_start::ramp_end(s.ramp_from, slow_start))
            .max();
    }

    /// Recomputes the eligible list: conditions, topology hints (or, while spilling,
    /// the whole tier), then ejection.
    fn refresh(&mut self, now: Instant) {
        let conditions = self.endpoints.iter().map(|s| &s.endpoint);
        let (zone, node) = (self.config.zone.as_deref(), self.config.node.as_deref());
        let local = eligible::eligible(conditions.clone(), zone, node);
        let wide = match self.config.spillover {
            Some(_) => eligible::eligible(conditions, None, None),
            None => Vec::new(),
        };
        let endpoints = &self.endpoints;
        let ejected = |i: usize| endpoints[i].is_ejected(now);
        self.locality.local = eligible::without_ejected(local, ejected);
        self.locality.wide = eligible::without_ejected(wide, ejected);
        self.eligible = self.locality.current().to_vec();
        for state in &mut self.endpoints {
            state.eligible = false;
        }
        for &i in &self.eligible {
            self.endpoints[i].eligible = true;
        }
        for state in &mut self.endpoints {
            if !state.eligible {
                // Rejoining SWRR later starts from neutral, not from a stale credit.
                state.current = 0;
            }
        }
        self.next_unejection = self
            .endpoints
            .iter()
            .filter_map(|s| s.outlier.ejected_until())
            .filter(|&until| until > now)
            .min();
        if self.totals.seen() {
            // From now on this slot's requests are expected to follow the new set.
            self.write_shares(self.totals.slot(now), now);
        }
    }

    /// Starts or ends a spill over the whole tier (see `spill`), on this proxy's
    /// requests in flight to the local endpoints.
    fn check_spill(&mut self, now: Instant) {
        let Some(limit) = self.config.spillover else {
            return;
        };
        let endpoints = &self.endpoints;
        let spill = self
            .locality
            .should_spill(limit, |i| endpoints[i].in_flight);
        if spill != self.locality.spilling {
            self.locality.spilling = spill;
            self.refresh(now);
        }
    }
}

/// What a pick is for: the two kinds of load are counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// An HTTP request: balanced by requests in flight.
    Request,
    /// An HTTP upgrade (WebSocket): balanced by open upgraded connections.
    Upgrade,
}
