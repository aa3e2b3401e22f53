use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::discovery::testing;

/// One route `shop/orders` (host `orders.shop`) over one set with `endpoints`.
fn table(endpoints: &[&str]) -> Arc<RouteTable> {
    Arc::new(testing::table(endpoints))
}

const V1: Version = Version {
    epoch: 1,
    sequence: 1,
};

#[test]
fn resolve_routes_and_picks_and_errors_name_the_reason() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(7);
    let t = Table::build(
        table(&["127.0.0.11:8080"]),
        V1,
        &Table::default(),
        (None, None),
        now,
    );
    let (target, addr) = t
        .resolve("Orders.Shop:4140", "/x", now, &mut rng)
        .expect("routed");
    assert_eq!(addr.to_string(), "127.0.0.11:8080");
    assert_eq!(target.protocol, AppProtocol::Http1);

    let err = t
        .resolve("nope", "/", now, &mut rng)
        .expect_err("unknown host");
    assert_eq!(err.reason(), "UnknownHost");

    let empty = Table::build(table(&[]), V1, &t, (None, None), now);
    let err = empty
        .resolve("orders.shop", "/", now, &mut rng)
        .expect_err("no endpoints");
    assert_eq!(err.reason(), "NoEndpoint");
}

#[test]
fn balancer_state_survives_a_new_version() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(7);
    let first = Table::build(
        table(&["127.0.0.11:8080"]),
        V1,
        &Table::default(),
        (None, None),
        now,
    );
    let (target, _) = first
        .resolve("orders.shop", "/", now, &mut rng)
        .expect("routed");
    let second = Table::build(
        table(&["127.0.0.11:8080", "127.0.0.12:8080"]),
        V1,
        &first,
        (None, None),
        now,
    );
    let (again, _) = second
        .resolve("orders.shop", "/", now, &mut rng)
        .expect("routed");
    assert!(
        Arc::ptr_eq(&target.backend, &again.backend),
        "the balancer of a surviving (route, set) must be reused, not rebuilt"
    );
    let in_flight: u32 = again.backend.stats(now).iter().map(|s| s.in_flight).sum();
    assert_eq!(in_flight, 2, "in-flight counts carry over across versions");
}

#[test]
fn an_endpoint_change_keeps_the_shape_and_feeds_only_its_balancer() {
    let now = Instant::now();
    let mut rng = SmallRng::seed_from_u64(7);
    let first = table(&["127.0.0.11:8080"]);
    let t1 = Table::build(Arc::clone(&first), V1, &Table::default(), (None, None), now);

    // The same Routes (shared), one more endpoint: the shape is the previous one.
    let mut next = RouteTable::clone(&first);
    let grown = table(&["127.0.0.11:8080", "127.0.0.12:8080"]);
    next.endpoint_sets = grown.endpoint_sets.clone();
    let t2 = Table::build(Arc::new(next), V1, &t1, (None, None), now);
    assert!(
        Arc::ptr_eq(&t1.shape, &t2.shape),
        "router and targets are shared"
    );
    let picked: BTreeSet<String> = (0..4)
        .map(|_| {
            t2.resolve("orders.shop", "/", now, &mut rng)
                .expect("routed")
                .1
        })
        .map(|addr| addr.to_string())
        .collect();
    assert_eq!(
        picked.len(),
        2,
        "the new endpoint takes requests: {picked:?}"
    );

    // A changed Route builds the shape anew, keeping the balancer.
    let mut edited = RouteTable::clone(&t2.source);
    for route in edited.routes.values_mut() {
        Arc::make_mut(route).hosts.push("orders.example".into());
    }
    let t3 = Table::build(Arc::new(edited), V1, &t2, (None, None), now);
    assert!(
        !Arc::ptr_eq(&t2.shape, &t3.shape),
        "a Route change rebuilds"
    );
    assert!(t3.resolve("orders.example", "/", now, &mut rng).is_ok());
    let (a, _) = t2
        .resolve("orders.shop", "/", now, &mut rng)
        .expect("routed");
    let (b, _) = t3
        .resolve("orders.shop", "/", now, &mut rng)
        .expect("routed");
    assert!(
        Arc::ptr_eq(&a.backend, &b.backend),
        "balancer state survives"
    );

    // A locality change rebuilds too (hints depend on it).
    let t4 = Table::build(Arc::clone(&t3.source), V1, &t3, (Some("zone-a"), None), now);
    assert!(!Arc::ptr_eq(&t3.shape, &t4.shape));
}
