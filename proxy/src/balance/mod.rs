//! Balancing: which pod of an endpoint set takes the next request.
//!
//! Start at [`Balancer`]: `update` with each new endpoint set, `pick` per request,
//! `on_start` / `on_end` around it. It combines:
//! - eligibility (`eligible`): KEP-1669 ready/terminating tiers, zone hints, outlier
//!   ejection with a panic threshold;
//! - a policy from the Route's `loadBalancer`: smooth weighted round robin (`swrr`),
//!   least request or peak-EWMA, the latter two by power of two choices (`p2c`, `ewma`),
//!   or hot-cold lexicographic picks over a pool of recent answers (`prequal`);
//! - affinity (`affinity`): keyed requests by consistent hashing with bounded loads,
//!   the rest by the policy;
//! - spillover (`spill`): past the local endpoints when they are busy;
//! - server-reported load (`orca`): weights from pods' `endpoint-load-metrics`;
//! - slow start (`slow_start`) for endpoints that become ready after the first table;
//! - outlier ejection (`outlier`) from request outcomes;
//! - each endpoint's share of requests over a sliding window against its expected
//!   share (`share`): the fairness figures of `/metrics` and the load reports.
//!
//! Everything here is pure decision code: no I/O, time and randomness are parameters,
//! so it is tested as it is, without a stand-in.

mod affinity;
mod balancer;
mod config;
mod eligible;
mod endpoint;
mod ewma;
mod orca;
mod outlier;
mod p2c;
mod prequal;
mod share;
mod slow_start;
mod spill;
mod swrr;
#[cfg(test)]
mod tests;

pub use affinity::key_hash;
pub use balancer::{Balancer, Pick, REWEIGH};
pub use config::BalanceConfig;
pub use eligible::{MAX_EJECTED_PERCENT, eligible, without_ejected};
pub use endpoint::{EndpointState, EndpointStats};
pub use ewma::{DEFAULT_DECAY, DEFAULT_RTT, EwmaConfig, PeakEwma};
pub use orca::{HEADER as LOAD_REPORT_HEADER, Report as LoadReport, parse as parse_load_report};
pub use outlier::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION, Outcome, Outlier,
    OutlierConfig,
};
pub use p2c::choose_two;
pub use share::{SHARE_SLOT, SHARE_SLOTS};
pub use slow_start::{FULL_WEIGHT, MIN_WEIGHT, ramp_weight};
