//! Per-endpoint balancer state, and the read-only view of it that `/debug/routes` shows.

use std::time::{Duration, Instant};

use fairway_proto::model::{Endpoint, EndpointAddr};
use serde::Serialize;

use super::config::BalanceConfig;
use super::ewma::PeakEwma;
use super::outlier::Outlier;
use super::share::Window;
use super::slow_start;

/// What the balancer knows about one endpoint. Lives as long as the endpoint stays in
/// the set; a removed endpoint's state is dropped (its connections drain in the pool).
#[derive(Clone, Debug)]
pub struct EndpointState {
    pub(super) endpoint: Endpoint,
    /// Its address's hash, which affinity ranks it by (`affinity::endpoint_hash`).
    pub(super) hash: u64,
    pub(super) first_seen: Instant,
    /// When its slow-start ramp began: `None` for endpoints that were ready in the
    /// first table (not new), else when it was last seen becoming ready.
    pub(super) ramp_from: Option<Instant>,
    pub(super) in_flight: u32,
    /// Upgraded connections (WebSockets) open to it: long-lived, so counted apart from
    /// requests, and what new upgrades are balanced by.
    pub(super) open_upgrades: u32,
    pub(super) requests: u64,
    pub(super) ewma: PeakEwma,
    pub(super) outlier: Outlier,
    /// The Route's active health check failed it (`crate::health`): out of rotation,
    /// as an ejection is, until a check passes again.
    pub(super) health_failed: bool,
    /// In the eligible list as of the last refresh.
    pub(super) eligible: bool,
    /// SWRR running weight.
    pub(super) current: i64,
    /// The other proxies' requests in flight to it, from the controller's figures, and
    /// when they came (coordinated balancing).
    pub(super) others: Option<(u32, Instant)>,
    /// The weight of its last load report (`orca`), and when it came.
    pub(super) reported: Option<(f64, Instant)>,
    /// Its reported weight over the mean of the fresh ones, in thousandths (1000: as
    /// the mean, and for endpoints without a fresh report).
    pub(super) load_factor: u32,
    /// Requests and expected share per slot of the share window.
    pub(super) window: Window,
}

/// Figures older than this describe load that may be gone: three of the controller's
/// default report intervals.
pub const OTHERS_EXPIRY: Duration = Duration::from_secs(6);

/// A load factor of one: [`EndpointState::load_factor`] is in thousandths.
pub(super) const LOAD_FACTOR_ONE: u32 = 1000;

impl EndpointState {
    pub(super) fn new(
        endpoint: Endpoint,
        ramp_from: Option<Instant>,
        now: Instant,
        config: &BalanceConfig,
    ) -> Self {
        EndpointState {
            hash: super::affinity::endpoint_hash(endpoint.addr),
            endpoint,
            first_seen: now,
            ramp_from,
            in_flight: 0,
            open_upgrades: 0,
            requests: 0,
            ewma: PeakEwma::new(config.ewma.default_rtt, now),
            outlier: Outlier::default(),
            health_failed: false,
            eligible: false,
            current: 0,
            others: None,
            reported: None,
            load_factor: LOAD_FACTOR_ONE,
            window: Window::default(),
        }
    }

    pub fn addr(&self) -> EndpointAddr {
        self.endpoint.addr
    }

    /// The endpoint's conditions as of the last update.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn first_seen(&self) -> Instant {
        self.first_seen
    }

    /// Requests started and not yet ended.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Upgraded connections open to it.
    pub fn open_upgrades(&self) -> u32 {
        self.open_upgrades
    }

    /// Requests started since the endpoint was first seen.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn ewma(&self) -> &PeakEwma {
        &self.ewma
    }

    pub fn outlier(&self) -> &Outlier {
        &self.outlier
    }

    /// Whether an active health check took it out of rotation.
    pub fn is_health_failed(&self) -> bool {
        self.health_failed
    }

    /// Ejected by request outcomes or by a failed health check at `now`.
    pub(super) fn is_ejected(&self, now: Instant) -> bool {
        self.health_failed || self.outlier.is_ejected(now)
    }

    /// Whether the last refresh let it take new requests.
    pub fn is_eligible(&self) -> bool {
        self.eligible
    }

    /// Its weight at `now`: the slow-start weight (out of [`slow_start::FULL_WEIGHT`])
    /// times its reported load factor (`orca`), at least 1.
    pub fn weight(&self, now: Instant, config: &BalanceConfig) -> u32 {
        let ramp = slow_start::ramp_weight(self.ramp_from, config.slow_start, now);
        let weighted = u64::from(ramp) * u64::from(self.load_factor) / u64::from(LOAD_FACTOR_ONE);
        u32::try_from(weighted).unwrap_or(u32::MAX).max(1)
    }

    /// The other proxies' requests in flight to it, if the figure is fresh at `now`.
    pub(super) fn others_in_flight(&self, now: Instant) -> u32 {
        match self.others {
            Some((n, at)) if now.saturating_duration_since(at) < OTHERS_EXPIRY => n,
            _ => 0,
        }
    }

    /// Its reported weight, if the report is fresh at `now`.
    pub(super) fn fresh_report(&self, now: Instant) -> Option<f64> {
        let (weight, at) = self.reported?;
        (now.saturating_duration_since(at) < super::orca::EXPIRY).then_some(weight)
    }

    /// A serialisable snapshot for `/debug/routes`.
    pub fn stats(&self, now: Instant, config: &BalanceConfig) -> EndpointStats {
        EndpointStats {
            addr: self.endpoint.addr.to_string(),
            pod: self.endpoint.pod.clone(),
            ready: self.endpoint.ready,
            serving: self.endpoint.serving,
            terminating: self.endpoint.terminating,
            eligible: self.eligible,
            ejected_for_ms: self
                .outlier
                .ejected_until()
                .map(|until| millis(until.saturating_duration_since(now)))
                .filter(|ms| *ms > 0),
            health_failed: self.health_failed,
            consecutive_failures: self.outlier.consecutive_failures(),
            ejections: self.outlier.ejections(),
            in_flight: self.in_flight,
            open_upgrades: self.open_upgrades,
            requests: self.requests,
            ewma_ms: self.ewma.estimate_ns(now, config.ewma.decay) / 1e6,
            ewma_measured: self.ewma.is_measured(),
            weight: self.weight(now, config),
            load_factor: f64::from(self.load_factor) / f64::from(LOAD_FACTOR_ONE),
            reported_weight: self.fresh_report(now),
            age_ms: millis(now.saturating_duration_since(self.first_seen)),
        }
    }
}

/// One endpoint as `/debug/routes` shows it. Times are relative to the snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointStats {
    pub addr: String,
    pub pod: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// Takes new requests now.
    pub eligible: bool,
    /// Time left in the current ejection, if ejected.
    pub ejected_for_ms: Option<u64>,
    /// Out of rotation after failing its Route's active health check.
    pub health_failed: bool,
    pub consecutive_failures: u32,
    pub ejections: u32,
    pub in_flight: u32,
    /// Upgraded connections (WebSockets) open to it.
    pub open_upgrades: u32,
    pub requests: u64,
    /// The latency estimate (the decaying default when not measured yet).
    pub ewma_ms: f64,
    pub ewma_measured: bool,
    /// Weight out of 1000: the slow-start weight times `load_factor`.
    pub weight: u32,
    /// Its reported load weight over the mean of the fresh ones (1 without reports).
    pub load_factor: f64,
    /// The weight of its last fresh load report (`endpoint-load-metrics`), if any.
    pub reported_weight: Option<f64>,
    /// Time since first seen.
    pub age_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
