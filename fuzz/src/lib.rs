//! Shared pieces of Fairway's fuzz targets (`fuzz_targets/`), and the seed corpus
//! generator (`seeds`, run by `fuzz/run.sh --seeds`).
//!
//! Every target drives the real code the proxy runs on untrusted input: the discovery
//! state machine ([`Applier`]) on decoded controller messages, the table diff and its
//! wire form, and the router plus balancers ([`Table::resolve`]) on request heads.
//! A target asserts properties (round trips, routing consistency) besides "no panic".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use fairway_proto::model::{
    Affinity, AffinityKey, Backend, Endpoint, EndpointAddr, EndpointSet, EndpointSetKey,
    LoadBalancer, Policy, Route, RouteKey, RouteTable, Rule, Upstream, UpstreamProtocol, Version,
};
use fairway_proto::pb;
use fairway_proxy::table::Table;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::SmallRng;

pub mod seeds;

/// Messages decoded from one input at most: a stream longer than this adds nothing a
/// shorter one cannot reach, and keeps each run fast.
pub const MAX_MESSAGES: usize = 64;
/// Requests resolved against each table built, to drive the balancers.
const RESOLVES: usize = 4;

/// Splits `data` into length-delimited controller messages (the framing gRPC uses, minus
/// its flag byte), stopping at the first that does not decode.
pub fn decode_messages(mut data: &[u8]) -> Vec<pb::ControllerMessage> {
    let mut messages = Vec::new();
    while !data.is_empty() && messages.len() < MAX_MESSAGES {
        match pb::ControllerMessage::decode_length_delimited(&mut data) {
            Ok(message) => messages.push(message),
            Err(_) => break,
        }
    }
    messages
}

/// The inverse of [`decode_messages`], for seeds.
pub fn encode_messages(messages: &[pb::ControllerMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode_length_delimited(&mut out)
            .unwrap_or_else(|e| panic!("encode into a Vec: {e}"));
    }
    out
}

/// Builds the proxy's request-path table for `source` on top of `previous` (so balancer
/// state carries over, as in production) and routes a few requests through it.
pub fn build_and_resolve(source: Arc<RouteTable>, version: Version, previous: &Table) -> Table {
    let now = Instant::now();
    let table = Table::build(
        Arc::clone(&source),
        version,
        previous,
        (Some("zone-a"), None),
        now,
    );
    let mut rng = SmallRng::seed_from_u64(version.sequence);
    let hosts: Vec<&str> = source
        .routes
        .values()
        .flat_map(|r| r.hosts.iter().map(String::as_str))
        .take(RESOLVES)
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        // Later than `now`, so slow-start ramps and ejection clocks move forward.
        let later = now + Duration::from_millis(250 * i as u64);
        if let Ok((target, addr)) = table.resolve(host, "/", later, &mut rng) {
            target
                .backend
                .on_end(addr, Duration::from_millis(3), outcome(i), later);
        }
    }
    let _ = table.endpoint_addrs();
    let _ = table.stats(now);
    table
}

fn outcome(i: usize) -> fairway_proxy::balance::Outcome {
    use fairway_proxy::balance::Outcome;
    [
        Outcome::Success,
        Outcome::Status5xx,
        Outcome::ConnectFailure,
        Outcome::Cancelled,
    ][i % 4]
}

// ---- small value spaces for structured targets ------------------------------------
//
// Keys and addresses come from tiny pools, so arbitrary sequences collide (update,
// remove, re-add the same endpoint) instead of always inventing new ones.

fn set_key(i: u8) -> EndpointSetKey {
    EndpointSetKey {
        namespace: ["shop", "pay"][usize::from(i % 2)].into(),
        service: format!("svc{}", i % 3),
        port: NonZeroU16::new(8080 + u16::from(i % 2)).unwrap_or(NonZeroU16::MIN),
    }
}

fn route_key(i: u8) -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: format!("route{}", i % 4),
    }
}

fn addr(i: u8) -> EndpointAddr {
    let ip = if i % 5 == 4 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 244, 0, i % 8))
    };
    EndpointAddr(SocketAddr::new(ip, 8080 + u16::from(i % 2)))
}

/// One endpoint, from a small space.
#[derive(Arbitrary, Debug, Clone)]
pub struct EndpointSpec {
    addr: u8,
    ready: bool,
    serving: bool,
    terminating: bool,
    zone: Option<u8>,
    hints: Vec<u8>,
}

impl EndpointSpec {
    pub fn build(&self) -> Endpoint {
        let zone = |z: u8| format!("zone-{}", (b'a' + z % 3) as char);
        Endpoint {
            addr: addr(self.addr),
            ready: self.ready,
            serving: self.serving,
            terminating: self.terminating,
            zone: self.zone.map(zone),
            node: None,
            pod: Some(format!("pod-{}", self.addr)),
            hints_for_zones: self.hints.iter().take(3).map(|&z| zone(z)).collect(),
            hints_for_nodes: Vec::new(),
        }
    }
}

/// One Route, from a small space (but with arbitrary durations and weights: those are
/// what the balancers compute with).
#[derive(Arbitrary, Debug, Clone)]
pub struct RouteSpec {
    key: u8,
    hosts: Vec<u8>,
    rules: Vec<(u8, Vec<(u8, u32)>)>,
    policy: u8,
    slow_start_ms: Option<u64>,
    protocol: u8,
    /// Affinity's key source (by header, cookie or address) and bound; `None`: none.
    affinity: Option<(u8, u32)>,
    spillover_in_flight: Option<u32>,
}

const HOSTS: &[&str] = &["orders.shop", "pay.shop", "[::1]", "a", "orders.shop.svc"];
const PREFIXES: &[&str] = &["/", "/api", "/api/", "/api/v1", ""];

impl RouteSpec {
    pub fn build(&self) -> Route {
        let policy = [
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::PeakEwma,
            Policy::Prequal,
        ];
        let protocol = [
            UpstreamProtocol::Auto,
            UpstreamProtocol::Http1,
            UpstreamProtocol::Http2,
        ];
        Route {
            key: route_key(self.key),
            hosts: (self.hosts.iter().take(4))
                .map(|&h| HOSTS[usize::from(h) % HOSTS.len()].to_owned())
                .collect(),
            rules: (self.rules.iter().take(4))
                .map(|(prefix, backends)| Rule {
                    path_prefix: PREFIXES[usize::from(*prefix) % PREFIXES.len()].to_owned(),
                    // Prefix rules only: route_request checks the longest-prefix rule.
                    matching: Default::default(),
                    timeouts: None,
                    retries: None,
                    filters: Default::default(),
                    backends: (backends.iter().take(4))
                        .map(|&(set, weight)| Backend {
                            endpoint_set: set_key(set),
                            weight,
                        })
                        .collect(),
                    unresolved: Vec::new(),
                })
                .collect(),
            load_balancer: LoadBalancer {
                policy: policy[usize::from(self.policy) % policy.len()],
                slow_start: self.slow_start_ms.map(Duration::from_millis),
                affinity: self.affinity.map(|(key, factor)| Affinity {
                    key: match key % 3 {
                        0 => AffinityKey::Header("x-user".to_owned()),
                        1 => AffinityKey::Cookie("session".to_owned()),
                        _ => AffinityKey::SourceIp,
                    },
                    balance_factor_percent: factor.max(100),
                }),
                spillover_in_flight: self.spillover_in_flight.filter(|&n| n > 0),
            },
            upstream: Upstream {
                protocol: protocol[usize::from(self.protocol) % protocol.len()],
                ..Upstream::default()
            },
            timeouts: Default::default(),
            retries: Default::default(),
            health_check: None,
        }
    }
}

/// A whole table, from small spaces.
#[derive(Arbitrary, Debug, Clone)]
pub struct TableSpec {
    routes: Vec<RouteSpec>,
    sets: Vec<(u8, Option<u8>, Vec<EndpointSpec>)>,
}

const APP_PROTOCOLS: &[&str] = &["kubernetes.io/h2c", "grpc", "http", ""];

impl TableSpec {
    pub fn build(&self) -> RouteTable {
        let mut table = RouteTable::default();
        for spec in self.routes.iter().take(6) {
            let route = spec.build();
            table.routes.insert(route.key.clone(), route.into());
        }
        for (key, protocol, endpoints) in self.sets.iter().take(6) {
            let mut set = EndpointSet::new(set_key(*key));
            set.app_protocol =
                protocol.map(|p| APP_PROTOCOLS[usize::from(p) % APP_PROTOCOLS.len()].into());
            for spec in endpoints.iter().take(16) {
                let ep = spec.build();
                set.endpoints.insert(ep.addr, ep);
            }
            table.endpoint_sets.insert(set.key.clone(), set.into());
        }
        table
    }
}

/// A raw change, possibly inconsistent with the table it meets (removing what is absent,
/// changing a set that does not exist): `apply` must take it without panicking.
#[derive(Arbitrary, Debug, Clone)]
pub struct RawDiffSpec {
    upsert_routes: Vec<RouteSpec>,
    remove_routes: Vec<u8>,
    sets: Vec<SetChangeSpec>,
    remove_sets: Vec<u8>,
}

/// A change to one endpoint set: key, `appProtocol` and ClusterIPs changes, upserts,
/// removed addresses.
#[derive(Arbitrary, Debug, Clone)]
pub struct SetChangeSpec {
    key: u8,
    app_protocol: Option<Option<u8>>,
    /// A ClusterIPs change: `Some(None)` to none, `Some(Some(i))` to `10.96.0.i`.
    cluster_ip: Option<Option<u8>>,
    upsert: Vec<EndpointSpec>,
    remove: Vec<u8>,
}

impl RawDiffSpec {
    pub fn build(&self) -> fairway_proto::diff::TableDiff {
        use fairway_proto::diff::{EndpointSetChange, TableDiff};
        TableDiff {
            routes_upserted: self
                .upsert_routes
                .iter()
                .take(4)
                .map(RouteSpec::build)
                .collect(),
            routes_removed: self
                .remove_routes
                .iter()
                .take(4)
                .map(|&k| route_key(k))
                .collect(),
            sets: (self.sets.iter().take(4))
                .map(|c| EndpointSetChange {
                    key: set_key(c.key),
                    app_protocol: c.app_protocol.map(|p| {
                        p.map(|p| APP_PROTOCOLS[usize::from(p) % APP_PROTOCOLS.len()].into())
                    }),
                    cluster_ips: c.cluster_ip.map(|ip| {
                        ip.map(|i| std::net::IpAddr::from([10, 96, 0, i]))
                            .into_iter()
                            .collect()
                    }),
                    upsert: c.upsert.iter().take(8).map(EndpointSpec::build).collect(),
                    remove: c.remove.iter().take(8).map(|&a| addr(a)).collect(),
                })
                .collect(),
            sets_removed: self
                .remove_sets
                .iter()
                .take(4)
                .map(|&k| set_key(k))
                .collect(),
        }
    }
}

/// The table the routing target routes over: overlapping hosts (ports, case, IPv6,
/// trailing dots), nested prefixes, a weight-0 backend, an empty set, a missing set,
/// every policy and a slow start. Built once.
pub fn routing_table() -> (Arc<RouteTable>, Version) {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Arc<RouteTable>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let spec = |key, hosts: &[u8], rules: Vec<(u8, Vec<(u8, u32)>)>, policy, slow| RouteSpec {
            key,
            hosts: hosts.to_vec(),
            rules,
            policy,
            slow_start_ms: slow,
            protocol: key,
            // Every other Route keys requests by a header, cookie or the address.
            affinity: (key % 2 == 1).then_some((key / 2, 125)),
            spillover_in_flight: None,
        };
        let routes = vec![
            spec(
                0,
                &[0, 4],
                vec![
                    (0, vec![(0, 1)]),
                    (3, vec![(1, 3), (2, 1)]),
                    (1, vec![(0, 0)]),
                ],
                0,
                None,
            ),
            spec(1, &[1], vec![(2, vec![(1, 1)])], 1, Some(30_000)),
            spec(
                2,
                &[2, 3],
                vec![(4, vec![(5, 1)]), (0, vec![(2, 1), (0, 0)])],
                2,
                Some(0),
            ),
            // Prequal, under a longer prefix of route 1's host.
            spec(3, &[1], vec![(3, vec![(1, 1)])], 3, None),
        ];
        let ep = |addr| EndpointSpec {
            addr,
            ready: addr % 3 != 0,
            serving: true,
            terminating: addr % 3 == 0,
            zone: Some(addr),
            hints: vec![addr],
        };
        let spec = TableSpec {
            routes,
            sets: vec![
                (0, None, vec![ep(1), ep(2), ep(3)]),
                (1, Some(0), vec![ep(4), ep(5)]),
                (2, Some(2), vec![]),
            ],
        };
        Arc::new(spec.build())
    });
    (
        Arc::clone(table),
        Version {
            epoch: 1,
            sequence: 1,
        },
    )
}
