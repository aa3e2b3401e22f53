//! Property tests of the contract's invariants, through the public API only:
//! `apply(old, diff(old, new)) == new`, a rebase between two tables' digests gives the
//! newer table, diffs and snapshots survive the wire, proto
//! round-trips are lossless, and random add/remove sequences never duplicate an
//! endpoint.
//!
//! Strategies draw from small pools (a few names, addresses and ports) so that random
//! tables overlap and collide, which is where diff bugs live.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::time::Duration;

use fairway_proto::diff::{EndpointSetChange, TableDiff, apply, diff};
use fairway_proto::digest::{TableDigest, apply_rebase, rebase};
use fairway_proto::pb::{self, controller_message::Kind};
use fairway_proto::snapshot::{SnapshotAssembler, snapshot_messages};
use fairway_proto::{
    Affinity, AffinityKey, Backend, Endpoint, EndpointAddr, EndpointSet, EndpointSetKey,
    GrpcHealthCheck, LoadBalancer, Policy, Retries, Route, RouteKey, RouteTable, Rule, Timeouts,
    Upgrades, Upstream, UpstreamProtocol, UpstreamTls, Version,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message;

// === Strategies ===

fn name() -> impl Strategy<Value = String> {
    select(&["a", "b", "orders"][..]).prop_map(String::from)
}

fn addr() -> impl Strategy<Value = EndpointAddr> {
    (0u8..6, 1u16..3).prop_map(|(i, port)| {
        let ip = if i < 4 {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
        } else {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)))
        };
        EndpointAddr(SocketAddr::new(ip, port))
    })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let names = (option::of(name()), option::of(name()), option::of(name()));
    let hints = (vec(name(), 0..3), vec(name(), 0..3));
    (addr(), any::<[bool; 3]>(), names, hints).prop_map(
        |(
            addr,
            [ready, serving, terminating],
            (zone, node, pod),
            (hints_for_zones, hints_for_nodes),
        )| Endpoint {
            addr,
            ready,
            serving,
            terminating,
            zone,
            node,
            pod,
            hints_for_zones,
            hints_for_nodes,
        },
    )
}

fn set_key() -> impl Strategy<Value = EndpointSetKey> {
    (name(), name(), 1u16..3).prop_map(|(namespace, service, port)| EndpointSetKey {
        namespace,
        service,
        port: NonZeroU16::new(port).expect("strategy ports start at 1"),
    })
}

fn app_protocol() -> impl Strategy<Value = Option<String>> {
    option::of(select(&["kubernetes.io/h2c", "grpc", "http"][..]).prop_map(String::from))
}

/// A Service's ClusterIPs in the model's form: sorted, no duplicates, either family.
fn cluster_ips() -> impl Strategy<Value = Vec<std::net::IpAddr>> {
    let ip = prop_oneof![
        (0u8..4).prop_map(|i| std::net::IpAddr::from([10, 96, 0, i])),
        (0u16..4).prop_map(|i| std::net::IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i])),
    ];
    vec(ip, 0..3).prop_map(|mut ips| {
        ips.sort_unstable();
        ips.dedup();
        ips
    })
}

fn endpoint_set() -> impl Strategy<Value = EndpointSet> {
    (
        set_key(),
        app_protocol(),
        cluster_ips(),
        vec(endpoint(), 0..8),
    )
        .prop_map(|(key, app, ips, eps)| {
            let mut set = EndpointSet::new(key);
            set.app_protocol = app;
            set.cluster_ips = ips;
            set.endpoints = eps.into_iter().map(|e| (e.addr, e)).collect();
            set
        })
}

/// Whole milliseconds: the wire's resolution (see `convert`).
fn millis() -> impl Strategy<Value = Duration> {
    (0u64..1_000_000).prop_map(Duration::from_millis)
}

fn route_key() -> impl Strategy<Value = RouteKey> {
    (name(), name()).prop_map(|(namespace, name)| RouteKey { namespace, name })
}

fn route() -> impl Strategy<Value = Route> {
    let backend = (set_key(), 0u32..3).prop_map(|(endpoint_set, weight)| Backend {
        endpoint_set,
        weight,
    });
    let rule = (select(&["/", "/api", "/api/v2"][..]), vec(backend, 0..3)).prop_map(
        |(prefix, backends)| Rule {
            path_prefix: prefix.into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends,
            unresolved: Vec::new(),
        },
    );
    let policy = select(
        &[
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::PeakEwma,
            Policy::Prequal,
        ][..],
    );
    let affinity_key = prop_oneof![
        "[a-z-]{1,12}".prop_map(AffinityKey::Header),
        "[A-Za-z_]{1,12}".prop_map(AffinityKey::Cookie),
        Just(AffinityKey::SourceIp),
    ];
    let affinity =
        (affinity_key, 100u32..=1000).prop_map(|(key, balance_factor_percent)| Affinity {
            key,
            balance_factor_percent,
        });
    let load_balancer = (
        policy,
        option::of(millis()),
        option::of(affinity),
        option::of(1u32..1000),
    )
        .prop_map(
            |(policy, slow_start, affinity, spillover_in_flight)| LoadBalancer {
                policy,
                slow_start,
                affinity,
                spillover_in_flight,
            },
        );
    let protocol = select(
        &[
            UpstreamProtocol::Auto,
            UpstreamProtocol::Http1,
            UpstreamProtocol::Http2,
        ][..],
    );
    let upstream = (
        protocol,
        any::<u32>(),
        millis(),
        option::of(millis()),
        any::<u32>(),
        proptest::collection::vec("[a-z]{1,8}", 0..3),
        (millis(), option::of(millis()), millis()),
        proptest::collection::btree_map(
            set_key(),
            (
                "[a-zA-Z0-9+/=\n-]{0,40}",
                option::of("[a-z.]{1,12}"),
                "[a-z.]{1,12}",
                proptest::collection::vec("[a-z.]{1,12}", 0..3),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(
                protocol,
                max_conns,
                idle,
                age,
                max_reqs,
                protocols,
                (upgrade_idle, lifetime, drain),
                tls,
            )| {
                Upstream {
                    protocol,
                    max_connections_per_endpoint: max_conns,
                    idle_timeout: idle,
                    max_connection_age: age,
                    max_requests_per_connection: max_reqs,
                    upgrades: Upgrades {
                        protocols,
                        idle_timeout: upgrade_idle,
                        max_lifetime: lifetime,
                    },
                    drain_timeout: drain,
                    tls: (tls.into_iter())
                        .map(|(set, (ca_pem, hostname, cluster_domain, sans))| {
                            let tls = UpstreamTls {
                                ca_pem,
                                hostname,
                                cluster_domain,
                                subject_alt_names: sans,
                            };
                            (set, tls)
                        })
                        .collect(),
                }
            },
        );
    let timeouts = (
        millis(),
        millis(),
        proptest::option::of(millis()),
        proptest::option::of(millis()),
    )
        .prop_map(|(request, connect, per_try, grpc_maximum)| Timeouts {
            request,
            connect,
            per_try,
            grpc_maximum,
        });
    let retries = (
        any::<u32>(),
        0u32..=100,
        proptest::collection::btree_set(1u32..=16, 0..4),
        proptest::collection::btree_set(400u16..=599, 0..4),
        millis(),
    )
        .prop_map(|(attempts, budget_percent, codes, http, backoff)| Retries {
            attempts,
            budget_percent,
            grpc_statuses: codes.into_iter().collect(),
            http_statuses: http.into_iter().collect(),
            backoff,
        });
    let health_check = option::of((name(), millis(), millis(), 1u32..=10, 1u32..=10).prop_map(
        |(service, interval, timeout, unhealthy_threshold, healthy_threshold)| GrpcHealthCheck {
            service,
            interval,
            timeout,
            unhealthy_threshold,
            healthy_threshold,
        },
    ));
    let hosts = vec(name().prop_map(|n| format!("{n}.shop")), 0..3);
    (
        route_key(),
        hosts,
        vec(rule, 0..3),
        load_balancer,
        upstream,
        timeouts,
        retries,
        health_check,
    )
        .prop_map(
            |(key, hosts, rules, load_balancer, upstream, timeouts, retries, health_check)| Route {
                key,
                hosts,
                rules,
                load_balancer,
                upstream,
                timeouts,
                retries,
                health_check,
            },
        )
}

fn table() -> impl Strategy<Value = RouteTable> {
    (vec(route(), 0..4), vec(endpoint_set(), 0..4)).prop_map(|(routes, sets)| RouteTable {
        routes: routes
            .into_iter()
            .map(|r| (r.key.clone(), r.into()))
            .collect(),
        endpoint_sets: sets
            .into_iter()
            .map(|s| (s.key.clone(), s.into()))
            .collect(),
    })
}

fn version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, sequence)| Version { epoch, sequence })
}

fn set_change() -> impl Strategy<Value = EndpointSetChange> {
    let app = option::of(app_protocol());
    let ips = option::of(cluster_ips());
    (
        set_key(),
        app,
        ips,
        vec(endpoint(), 0..4),
        vec(addr(), 0..4),
    )
        .prop_map(
            |(key, app_protocol, cluster_ips, upsert, remove)| EndpointSetChange {
                key,
                app_protocol,
                cluster_ips,
                upsert,
                remove,
            },
        )
}

fn table_diff() -> impl Strategy<Value = TableDiff> {
    let parts = (
        vec(route(), 0..3),
        vec(route_key(), 0..3),
        vec(set_change(), 0..3),
        vec(set_key(), 0..3),
    );
    parts.prop_map(
        |(routes_upserted, routes_removed, sets, sets_removed)| TableDiff {
            routes_upserted,
            routes_removed,
            sets,
            sets_removed,
        },
    )
}

// === Helpers ===

/// Encodes and decodes, as the stream would.
fn over_the_wire<M: Message + Default>(msg: &M) -> M {
    M::decode(msg.encode_to_vec().as_slice()).expect("a message we encoded decodes")
}

/// A diff sent as a controller message and decoded on the other side.
fn delta_over_the_wire(d: &TableDiff, base: Version) -> (Version, TableDiff) {
    let msg = over_the_wire(&d.to_message(base, base));
    let Some(Kind::Delta(delta)) = msg.kind else {
        panic!("to_message must build a Delta, got {msg:?}");
    };
    TableDiff::from_proto(delta).expect("a delta we built converts back")
}

// === Properties ===

proptest! {
    #[test]
    fn apply_of_diff_gives_new(old in table(), new in table()) {
        let d = diff(&old, &new);
        prop_assert_eq!(d.is_empty(), old == new, "empty diff iff equal tables");
        let mut applied = old.clone();
        apply(&mut applied, &d);
        prop_assert_eq!(applied, new);
    }

    #[test]
    fn a_diff_survives_the_wire(old in table(), new in table(), base in version()) {
        let d = diff(&old, &new);
        let (got_base, got) = delta_over_the_wire(&d, base);
        prop_assert_eq!(got_base, base);
        prop_assert_eq!(&got, &d);
        let mut applied = old;
        apply(&mut applied, &got);
        prop_assert_eq!(applied, new);
    }

    #[test]
    fn a_rebase_over_the_wire_gives_the_controllers_table(
        old in table(),
        new in table(),
        bits in 0u32..5,
    ) {
        let theirs = TableDigest::with_bits(&old, bits);
        let ours = TableDigest::with_bits(&new, bits);
        let differing = ours.differing(&theirs).expect("same bucket count");
        if old == new {
            prop_assert!(differing.is_empty(), "equal tables, equal digests");
        }
        let message = over_the_wire(&rebase(&new, bits, &differing));
        prop_assert_eq!(apply_rebase(&old, message), Ok(new));
    }

    #[test]
    fn route_round_trips(route in route()) {
        let wire = over_the_wire(&pb::Route::from(&route));
        prop_assert_eq!(Route::try_from(wire), Ok(route));
    }

    #[test]
    fn endpoint_set_round_trips(set in endpoint_set()) {
        let wire = over_the_wire(&pb::EndpointSetPart::from(&set));
        prop_assert_eq!(EndpointSet::try_from(wire), Ok(set));
    }

    #[test]
    fn delta_round_trips(d in table_diff(), base in version()) {
        prop_assert_eq!(delta_over_the_wire(&d, base), (base, d));
    }

    #[test]
    fn snapshots_reassemble_under_the_limit(
        table in table(),
        v in version(),
        max in 1024usize..4096,
    ) {
        let messages = snapshot_messages(&table, v, max);
        let mut assembler = SnapshotAssembler::new();
        let mut out = None;
        for msg in &messages {
            prop_assert!(msg.encoded_len() <= max, "{} > {max}", msg.encoded_len());
            prop_assert!(out.is_none(), "a table escaped before end");
            out = assembler.feed(over_the_wire(msg)).expect("a valid snapshot");
        }
        prop_assert_eq!(out, Some(table));
    }

    /// Random adds (including re-adds of a present address) and removes, applied as
    /// wire deltas, match a reference list, and no address is ever held twice: not in
    /// a set's map, and not in the snapshot sent from it.
    #[test]
    fn no_duplicate_endpoints_after_random_adds_and_removes(
        ops in vec((any::<bool>(), 0usize..2, endpoint()), 0..40),
    ) {
        let keys = [key("a"), key("b")];
        let mut table = RouteTable::default();
        let mut reference: Vec<(EndpointSetKey, Endpoint)> = Vec::new();
        for (add, which, ep) in ops {
            let key = &keys[which];
            let mut change = EndpointSetChange::new(key.clone());
            reference.retain(|(k, e)| !(k == key && e.addr == ep.addr));
            if add {
                reference.push((key.clone(), ep.clone()));
                change.upsert.push(ep);
            } else {
                change.remove.push(ep.addr);
            }
            let d = TableDiff { sets: vec![change], ..TableDiff::default() };
            let (_, d) = delta_over_the_wire(&d, Version::default());
            apply(&mut table, &d);
        }

        for (addr, ep) in table.endpoint_sets.values().flat_map(|s| &s.endpoints) {
            prop_assert_eq!(*addr, ep.addr, "map key and endpoint address agree");
        }
        let held: BTreeMap<_, _> = table
            .endpoint_sets
            .values()
            .flat_map(|s| s.endpoints.values().map(|e| ((s.key.clone(), e.addr), e.clone())))
            .collect();
        let expected: BTreeMap<_, _> =
            reference.into_iter().map(|(k, e)| ((k, e.addr), e)).collect();
        prop_assert_eq!(&held, &expected);

        // On the wire, too: every (set, address) is sent exactly once.
        let mut seen = BTreeSet::new();
        for msg in snapshot_messages(&table, Version::default(), 1024) {
            if let Some(Kind::Chunk(chunk)) = msg.kind {
                for part in chunk.sets {
                    let k = EndpointSetKey::try_from(part.key.expect("parts carry a key"))
                        .expect("a valid key");
                    for e in part.endpoints {
                        let e = Endpoint::try_from(e).expect("a valid endpoint");
                        prop_assert!(seen.insert((k.clone(), e.addr)), "{} sent twice", e.addr);
                    }
                }
            }
        }
        prop_assert_eq!(seen.len(), table.endpoint_count());
    }
}

fn key(service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    }
}
