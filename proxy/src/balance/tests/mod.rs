//! Balancer behaviour, end to end over its public API, with a seeded RNG and scripted
//! time. Each policy test fails if the policy is swapped for round robin.

mod affinity;
mod coordination;
mod eligibility;
mod fairness;
mod policy;
mod prequal;
mod props;
mod reports;
mod share;
mod slow_start;
mod spillover;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use fairway_proto::model::{Endpoint, EndpointAddr, EndpointSet, EndpointSetKey, Policy};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{BalanceConfig, Balancer, Outcome};

/// `127.0.0.1{n}:8080`, a pod address.
fn addr(n: u8) -> EndpointAddr {
    EndpointAddr(SocketAddr::from(([127, 0, 0, 10 + n], 8080)))
}

fn ready(n: u8) -> Endpoint {
    Endpoint::ready(addr(n).0)
}

fn set(endpoints: impl IntoIterator<Item = Endpoint>) -> EndpointSet {
    let mut set = EndpointSet::new(EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    });
    set.endpoints = endpoints.into_iter().map(|e| (e.addr, e)).collect();
    set
}

fn ready_set(ns: impl IntoIterator<Item = u8>) -> EndpointSet {
    set(ns.into_iter().map(ready))
}

fn config(policy: Policy) -> BalanceConfig {
    BalanceConfig {
        policy,
        ..BalanceConfig::default()
    }
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(0x5eed)
}

/// `n` picks at `now`, each started and ended at once (no concurrency), counted per address.
fn shares(
    b: &mut Balancer,
    rng: &mut SmallRng,
    now: Instant,
    n: usize,
) -> BTreeMap<EndpointAddr, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let picked = b.pick(now, rng).expect("an endpoint is eligible");
        b.on_start(picked);
        b.on_end(picked, Duration::from_millis(1), Outcome::Success, now);
        *counts.entry(picked).or_default() += 1;
    }
    counts
}

fn count(counts: &BTreeMap<EndpointAddr, usize>, n: u8) -> usize {
    counts.get(&addr(n)).copied().unwrap_or(0)
}
