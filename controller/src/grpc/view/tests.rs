use std::net::{IpAddr, Ipv4Addr};

use fairway_proto::diff::{apply, diff};
use fairway_proto::testing::{endpoint, route, set_key};
use proptest::prelude::*;

use super::*;

fn v(sequence: u64) -> Version {
    Version { epoch: 4, sequence }
}

/// One Service `s{i}` (port 8080, ClusterIP `10.96.0.{i}` or, moved, `10.96.1.{i}`):
/// served implicitly, by a declared Route, both, or not at all.
#[derive(Clone, Copy, Debug)]
struct Svc {
    implicit: bool,
    declared: bool,
    endpoints: u32,
    moved: bool,
}

fn ip(i: usize, moved: bool) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 96, u8::from(moved), i as u8))
}

fn dest(i: usize, moved: bool) -> ServiceDestination {
    ServiceDestination::new((ip(i, moved), 8080).into())
}

fn implicit(name: &str) -> model::Route {
    let mut r = route(name);
    r.key.name = format!("{name}:8080");
    r.hosts = vec![format!("{name}.shop:8080")];
    r
}

fn world(services: &[Svc]) -> RouteTable {
    let mut t = RouteTable::default();
    for (i, s) in services.iter().enumerate() {
        let name = format!("s{i}");
        if s.implicit {
            let r = implicit(&name);
            t.routes.insert(r.key.clone(), r.into());
        }
        if s.declared {
            let r = route(&name);
            t.routes.insert(r.key.clone(), r.into());
        }
        if s.implicit || s.declared {
            let mut set = EndpointSet::new(set_key(&name, 8080));
            set.cluster_ips = vec![ip(i, s.moved)];
            set.endpoints = (0..s.endpoints)
                .map(|e| (endpoint(e).addr, endpoint(e)))
                .collect();
            t.endpoint_sets.insert(set.key.clone(), set.into());
        }
    }
    t
}

/// The scoped table computed from scratch.
fn fresh(table: &RouteTable, version: Version, wanted: &[ServiceDestination]) -> RouteTable {
    Subscriptions::new(wanted.iter().copied()).view(&Scope::of(table, version), table)
}

fn svc(implicit: bool, declared: bool, endpoints: u32) -> Svc {
    Svc {
        implicit,
        declared,
        endpoints,
        moved: false,
    }
}

#[test]
fn an_unsubscribed_implicit_service_stays_out_and_declared_routes_go_in() {
    let t = world(&[svc(true, false, 3), svc(false, true, 2), svc(true, true, 1)]);
    let view = fresh(&t, v(1), &[]);
    let routes: Vec<&str> = view.routes.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(routes, ["s1", "s2"], "declared Routes only");
    let sets: Vec<&str> = view
        .endpoint_sets
        .keys()
        .map(|k| k.service.as_str())
        .collect();
    assert_eq!(
        sets,
        ["s1", "s2"],
        "the sets declared Routes use, even an implicit Service's"
    );
    let view = fresh(&t, v(1), &[dest(0, false), dest(2, false)]);
    let routes: Vec<&str> = view.routes.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(routes, ["s0:8080", "s1", "s2", "s2:8080"]);
    assert_eq!(view.endpoint_sets.len(), 3);

    // A Service's GAMMA HTTPRoutes (`service:NAME`, index::gamma) are declared too.
    let mut t = world(&[svc(true, false, 3)]);
    let mut gamma = route("s0");
    gamma.key.name = "service:s0".into();
    t.routes.insert(gamma.key.clone(), gamma.into());
    let view = fresh(&t, v(1), &[]);
    let routes: Vec<&str> = view.routes.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(routes, ["service:s0"]);
    assert_eq!(view.endpoint_sets.len(), 1, "and the set it sends to");
}

#[test]
fn a_subscription_brings_its_service_at_the_same_version_and_its_changes_after() {
    let t1 = world(&[svc(true, false, 3), svc(true, false, 2)]);
    let mut scope = Scope::of(&t1, v(1));
    let mut subs = Subscriptions::default();
    let mut held = subs.view(&scope, &t1);
    assert!(held.routes.is_empty() && held.endpoint_sets.is_empty());

    assert_eq!(subs.subscribe(dest(0, false)), Subscribed::Added);
    assert_eq!(subs.subscribe(dest(0, false)), Subscribed::Known);
    assert!(subs.added());
    let d = subs.delta(&scope, v(1), &[], &t1).expect("a delta");
    assert_eq!(d.routes_upserted.len(), 1, "the implicit Route: {d:?}");
    assert_eq!(d.sets.len(), 1);
    assert_eq!(d.sets[0].upsert.len(), 3, "the set in full");
    apply(&mut held, &d);
    assert_eq!(held, fresh(&t1, v(1), &[dest(0, false)]));
    assert!(!subs.added());

    // One endpoint more in each Service: one endpoint to the sidecar, nothing of s1.
    let t2 = world(&[svc(true, false, 4), svc(true, false, 3)]);
    let d12 = Arc::new(diff(&t1, &t2));
    scope.advance(v(2), &d12);
    let d = subs.delta(&scope, v(1), &[d12], &t2).expect("a delta");
    assert!(d.routes_upserted.is_empty() && d.sets_removed.is_empty());
    assert_eq!(d.sets.len(), 1);
    assert_eq!(d.sets[0].upsert, vec![endpoint(3)], "O(1 endpoint)");
    apply(&mut held, &d);
    assert_eq!(held, fresh(&t2, v(2), &[dest(0, false)]));

    // A change only to what the sidecar does not hold: an empty delta, still sent.
    let t3 = world(&[svc(true, false, 4), svc(true, false, 9)]);
    let d23 = Arc::new(diff(&t2, &t3));
    scope.advance(v(3), &d23);
    let d = subs.delta(&scope, v(2), &[d23], &t3).expect("a delta");
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_subscribed_service_that_gets_a_route_loses_its_opt_in_or_goes() {
    let wanted = [dest(0, false)];
    let steps = [
        world(&[svc(true, false, 2)]),
        // Gets a Route: both Routes now (the declared one wins by name in the proxy).
        world(&[svc(true, true, 2)]),
        // Loses its opt-in: the declared Route and its set stay.
        world(&[svc(false, true, 2)]),
        // The Route goes too: nothing left.
        world(&[svc(false, false, 2)]),
        // Comes back opted in with its ClusterIP: the remembered subscription serves it.
        world(&[svc(true, false, 5)]),
    ];
    let mut scope = Scope::of(&steps[0], v(1));
    let mut subs = Subscriptions::new(wanted);
    let mut held = subs.view(&scope, &steps[0]);
    assert_eq!(held.routes.len(), 1);
    for (i, pair) in steps.windows(2).enumerate() {
        let version = v(i as u64 + 2);
        let d = Arc::new(diff(&pair[0], &pair[1]));
        scope.advance(version, &d);
        let delta = subs
            .delta(&scope, v(i as u64 + 1), &[d], &pair[1])
            .expect("a delta");
        apply(&mut held, &delta);
        assert_eq!(held, fresh(&pair[1], version, &wanted), "step {}", i + 1);
    }
    assert_eq!(
        held.endpoint_sets
            .values()
            .next()
            .map(|s| s.endpoints.len()),
        Some(5)
    );
}

#[test]
fn a_version_too_far_back_for_the_scope_asks_for_a_snapshot() {
    let t1 = world(&[svc(true, false, 1)]);
    let t2 = world(&[svc(true, true, 1)]);
    let scope = Scope::of(&t2, v(2));
    let mut subs = Subscriptions::default();
    assert_eq!(
        subs.delta(&scope, v(1), &[Arc::new(diff(&t1, &t2))], &t2),
        None,
        "a scope rebuilt at v2 cannot tell which sets declared Routes used at v1"
    );
}

#[test]
fn subscriptions_are_bounded() {
    let mut subs = Subscriptions::default();
    for i in 0..MAX_SUBSCRIPTIONS as u32 {
        let d = ServiceDestination::new((Ipv4Addr::from(i), 80).into());
        assert_eq!(subs.subscribe(d), Subscribed::Added);
    }
    let past = ServiceDestination::new((Ipv4Addr::BROADCAST, 80).into());
    assert_eq!(subs.subscribe(past), Subscribed::Full);
    assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
}

fn service() -> impl Strategy<Value = Svc> {
    (any::<bool>(), any::<bool>(), 0u32..4, any::<bool>()).prop_map(
        |(implicit, declared, endpoints, moved)| Svc {
            implicit,
            declared,
            endpoints,
            moved,
        },
    )
}

/// One step: the Services' new state, a destination subscribed (service, moved), and
/// whether the sidecar is planned for at this version.
fn step() -> impl Strategy<Value = (Vec<Svc>, Option<(usize, bool)>, bool)> {
    (
        proptest::collection::vec(service(), 4),
        proptest::option::of((0usize..5, any::<bool>())),
        any::<bool>(),
    )
}

proptest! {
    /// Whatever the Services do, whichever destinations the sidecar subscribes to and
    /// however many versions it skips (or whether this stream knows what it held, after
    /// a resume), the deltas take the scoped table it holds to the scoped table of the
    /// latest version, exactly (so its digest matches a fresh view's).
    #[test]
    fn deltas_keep_the_scoped_table_exact(
        first in proptest::collection::vec(service(), 4),
        steps in proptest::collection::vec(step(), 1..8),
        initial in proptest::collection::vec((0usize..5, any::<bool>()), 0..3),
        resumed in any::<bool>(),
    ) {
        let mut wanted: Vec<ServiceDestination> = initial.iter().map(|&(i, m)| dest(i, m)).collect();
        let mut table = world(&first);
        let mut scope = Scope::of(&table, v(1));
        let mut subs = Subscriptions::new(wanted.iter().copied());
        let mut held = subs.view(&scope, &table);
        if resumed {
            // Another stream planned it: this one does not know what it resolved to.
            subs = Subscriptions::new(wanted.iter().copied());
        }
        let (mut from, mut pending) = (v(1), Vec::new());
        for (k, (services, subscribe, planned)) in steps.into_iter().enumerate() {
            let version = v(k as u64 + 2);
            let next = world(&services);
            let d = Arc::new(diff(&table, &next));
            scope.advance(version, &d);
            pending.push(d);
            table = next;
            if let Some((i, m)) = subscribe
                && subs.subscribe(dest(i, m)) == Subscribed::Added
            {
                wanted.push(dest(i, m));
            }
            if planned {
                let delta = subs.delta(&scope, from, &pending, &table).expect("within history");
                apply(&mut held, &delta);
                prop_assert_eq!(&held, &fresh(&table, version, &wanted), "at {}", version);
                from = version;
                pending.clear();
            }
        }
    }
}
