//! The balancer's configuration: a Route's `loadBalancer` plus what the proxy knows.

use std::time::Duration;

use fairway_proto::model::{LoadBalancer, Policy};

use super::ewma::EwmaConfig;
use super::outlier::OutlierConfig;

/// Everything a [`Balancer`](super::Balancer) is tuned by. `Default` is round robin,
/// no slow start, no zone, default ejection and EWMA tuning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalanceConfig {
    pub policy: Policy,
    /// Ramp for endpoints that become ready after the first table; `None` or zero = off.
    pub slow_start: Option<Duration>,
    /// Affinity's bound in percent of the average load, when the Route has affinity:
    /// keyed requests go by [`Balancer::pick_keyed`](super::Balancer::pick_keyed).
    pub affinity: Option<u32>,
    /// Requests in flight per local endpoint that start a spill over the whole tier
    /// (`spill`); `None`: never.
    pub spillover: Option<u32>,
    /// The proxy's zone (`--zone` or the Node's label); `None` ignores zone hints.
    pub zone: Option<String>,
    /// The proxy's node (`--node`); `None` ignores node hints.
    pub node: Option<String>,
    pub outlier: OutlierConfig,
    pub ewma: EwmaConfig,
}

impl BalanceConfig {
    /// The configuration for a Route's `loadBalancer`, for a proxy in `zone` on `node`.
    pub fn new(load_balancer: &LoadBalancer, zone: Option<String>, node: Option<String>) -> Self {
        BalanceConfig {
            policy: load_balancer.policy,
            slow_start: load_balancer.slow_start,
            affinity: (load_balancer.affinity.as_ref()).map(|a| a.balance_factor_percent),
            spillover: load_balancer.spillover_in_flight,
            zone,
            node,
            ..BalanceConfig::default()
        }
    }
}
