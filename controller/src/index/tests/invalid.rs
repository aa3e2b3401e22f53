//! Invalid Route specs: out of the table, reported as `InvalidSpec`, others unaffected.

use super::routes::reasons;
use super::*;
use crate::index::{ConditionStatus, Reason};

#[test]
fn invalid_specs_are_excluded_and_reported_without_affecting_others() {
    let mut index = orders_index();
    /// A Route name, how to break it, and what the message must mention.
    type Case = (&'static str, fn(&mut crd::Route), &'static str);
    let cases: [Case; 12] = [
        (
            "bad-duration",
            |r| r.spec.timeouts.request = "15 seconds".to_owned(),
            "spec.timeouts.request",
        ),
        (
            "bad-prefix",
            |r| r.spec.rules[0].path_prefix = "api".to_owned(),
            "does not start with \"/\"",
        ),
        (
            "bad-host",
            |r| r.spec.hosts = vec!["x.shop:8080".to_owned()],
            "x.shop:8080",
        ),
        (
            "bad-port",
            |r| r.spec.rules[0].backends[0].port = num(0),
            "port 0",
        ),
        (
            "bad-weight",
            |r| r.spec.rules[0].backends[0].weight = 1_000_001,
            "weight",
        ),
        ("no-hosts", |r| r.spec.hosts.clear(), "spec.hosts is empty"),
        (
            "bad-health",
            |r| r.spec.health_check = Some(crd::HealthCheckSpec { grpc: None }),
            "spec.healthCheck names no check",
        ),
        (
            "affinity-two-keys",
            |r| {
                r.spec.load_balancer.affinity = Some(crd::AffinitySpec {
                    header: Some("x-user".to_owned()),
                    cookie: None,
                    source_ip: true,
                    balance_factor: 125,
                })
            },
            "sets 2 key sources",
        ),
        (
            "affinity-no-key",
            |r| {
                r.spec.load_balancer.affinity = Some(crd::AffinitySpec {
                    header: Some(String::new()),
                    cookie: None,
                    source_ip: false,
                    balance_factor: 125,
                })
            },
            "sets 0 key sources",
        ),
        (
            "affinity-factor",
            |r| {
                r.spec.load_balancer.affinity = Some(crd::AffinitySpec {
                    header: None,
                    cookie: Some("session".to_owned()),
                    source_ip: false,
                    balance_factor: 90,
                })
            },
            "balanceFactor 90",
        ),
        (
            "retry-200",
            |r| r.spec.retries.http_statuses = vec![503, 200],
            "httpStatuses lists 200",
        ),
        (
            "spillover-zero",
            |r| r.spec.load_balancer.spillover = Some(crd::SpilloverSpec { max_in_flight: 0 }),
            "spillover.maxInFlight 0",
        ),
    ];
    for (name, break_it, says) in cases {
        let mut bad = route(name, &[&format!("{name}.shop")], "orders", num(8080), 0);
        break_it(&mut bad);
        let changes = index.apply_route(&bad);
        assert_eq!(
            changes.routes,
            [route_key(name)].into(),
            "{name} touches itself only"
        );
        assert!(
            !index.table().routes.contains_key(&route_key(name)),
            "{name} excluded"
        );
        let status = index.status(&route_key(name)).expect("status");
        assert_eq!(status.accepted.status, ConditionStatus::False, "{name}");
        assert_eq!(status.accepted.reason, Reason::InvalidSpec, "{name}");
        assert!(status.accepted.message.contains(says), "{name}: {status:?}");
        assert_eq!(
            status.resolved_refs.status,
            ConditionStatus::Unknown,
            "{name}"
        );
    }
    assert_eq!(index.table().routes.len(), 1, "orders still served");
    assert_eq!(
        reasons(&index, "orders"),
        (Reason::Accepted, Reason::ResolvedRefs)
    );
}

#[test]
fn duplicate_path_prefixes_are_invalid() {
    let mut index = orders_index();
    let mut twice = route("twice", &["twice.shop"], "orders", num(8080), 2);
    twice.spec.rules.push(twice.spec.rules[0].clone());
    index.apply_route(&twice);
    assert_eq!(reasons(&index, "twice").0, Reason::InvalidSpec);
}
