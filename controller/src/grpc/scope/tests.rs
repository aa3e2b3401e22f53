use std::sync::Arc;

use fairway_proto::diff::diff;
use fairway_proto::testing::{route, set, set_key};

use super::*;

fn v(sequence: u64) -> Version {
    Version { epoch: 2, sequence }
}

fn table(declared: bool, ips: &[[u8; 4]]) -> RouteTable {
    let mut s = set("orders", 1);
    s.cluster_ips = ips.iter().map(|&ip| IpAddr::from(ip)).collect();
    let mut t = RouteTable::default();
    t.endpoint_sets.insert(s.key.clone(), s.into());
    let mut implicit = route("orders");
    implicit.key.name = "orders:8080".into();
    t.routes.insert(implicit.key.clone(), implicit.into());
    if declared {
        let r = route("orders");
        t.routes.insert(r.key.clone(), r.into());
    }
    t
}

fn dest(ip: [u8; 4]) -> ServiceDestination {
    ServiceDestination::new((IpAddr::from(ip), 8080).into())
}

#[test]
fn implicit_keys_name_their_set() {
    let key = set_key("orders", 8080);
    let route = implicit_route(&key);
    assert!(is_implicit(&route));
    assert_eq!(implicit_set(&route), Some(key.clone()));
    assert_eq!(
        route.name, "orders:8080",
        "as `index::implicit::route_key` names it"
    );
    for declared in ["orders", "service:orders", "service:a8080"] {
        let key = RouteKey {
            namespace: "shop".into(),
            name: declared.into(),
        };
        assert!(
            !is_implicit(&key),
            "{declared}: a Route, or a Service's GAMMA HTTPRoutes (index::gamma)"
        );
    }
}

#[test]
fn the_scope_follows_declared_routes_and_cluster_ips_by_version() {
    let t1 = table(false, &[[10, 96, 0, 1]]);
    let mut scope = Scope::of(&t1, v(1));
    let orders = set_key("orders", 8080);
    assert!(
        !scope.is_explicit(&orders),
        "only an implicit Route uses it"
    );
    assert_eq!(scope.resolve(&dest([10, 96, 0, 1])), Some(&orders));

    let t2 = table(true, &[[10, 96, 0, 2]]);
    scope.advance(v(2), &Arc::new(diff(&t1, &t2)));
    assert!(scope.is_explicit(&orders));
    assert_eq!(scope.was_explicit(&orders, v(1)), Some(false));
    assert_eq!(scope.was_explicit(&orders, v(2)), Some(true));
    assert_eq!(scope.flipped_after(v(1)).map(|f| f.count()), Some(1));
    assert_eq!(
        scope.resolve(&dest([10, 96, 0, 1])),
        None,
        "the old ClusterIP"
    );
    assert_eq!(scope.resolve(&dest([10, 96, 0, 2])), Some(&orders));
    assert_eq!(scope.destinations_changed(), v(2));

    let t3 = RouteTable::default();
    scope.advance(v(3), &Arc::new(diff(&t2, &t3)));
    assert!(!scope.is_explicit(&orders));
    assert_eq!(scope.was_explicit(&orders, v(1)), Some(false));
    assert_eq!(scope.was_explicit(&orders, v(2)), Some(true));
    assert_eq!(
        scope.resolve(&dest([10, 96, 0, 2])),
        None,
        "the Service is gone"
    );

    let rebuilt = Scope::of(&t3, v(3));
    assert_eq!(
        rebuilt.was_explicit(&orders, v(2)),
        None,
        "too far back to tell"
    );
    assert!(rebuilt.flipped_after(v(2)).is_none());
}

#[test]
fn old_changes_are_forgotten_past_the_history() {
    let t1 = table(false, &[[10, 96, 0, 1]]);
    let t2 = table(true, &[[10, 96, 0, 1]]);
    let mut scope = Scope::of(&t1, v(1));
    scope.advance(v(2), &Arc::new(diff(&t1, &t2)));
    let last = 3 + SCOPE_HISTORY_VERSIONS;
    for sequence in 3..=last {
        scope.advance(v(sequence), &Arc::new(TableDiff::default()));
    }
    assert_eq!(scope.was_explicit(&set_key("orders", 8080), v(1)), None);
    assert_eq!(
        scope.was_explicit(&set_key("orders", 8080), v(last - 1)),
        Some(true)
    );
}
