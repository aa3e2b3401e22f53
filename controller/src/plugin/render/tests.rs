use super::*;
use crate::plugin::view::Status;

/// A document as `/api/v1/status` serves it: one healthy Route at 25% each over four
/// pods, one whose Service is missing, one with no ready pod; two proxies, one behind.
const DOC: &str = r#"{
  "version": "77.12", "ready": true,
  "routes": [
    {"route": "shop/orders", "hosts": ["orders.shop"], "policy": "RoundRobin",
     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": ""}],
     "endpoints": {"ready": 2, "serving": 2, "total": 2}, "skew": 0.04, "requestsPerSecond": 40.0,
     "proxiesReporting": 2,
     "backends": [{"set": "shop/orders:8080", "skew": 0.04, "pods": [
       {"address": "10.0.0.1:80", "pod": "orders-a", "state": "ready", "requests": 104, "inFlight": 1, "share": 0.52, "expectedShare": 0.5},
       {"address": "10.0.0.2:80", "pod": "orders-b", "state": "ready", "requests": 96, "inFlight": 0, "share": 0.48, "expectedShare": 0.5}]}]},
    {"route": "shop/cart", "hosts": ["cart.shop"], "policy": "RoundRobin",
     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                    {"type": "ResolvedRefs", "status": "False", "reason": "ServiceNotFound", "message": "service shop/cart not found"}],
     "endpoints": {"ready": 0, "serving": 0, "total": 0}, "skew": null, "requestsPerSecond": 0.0,
     "proxiesReporting": 0, "backends": []},
    {"route": "shop/idle", "hosts": ["idle.shop"], "policy": "LeastRequest",
     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                    {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": ""}],
     "endpoints": {"ready": 0, "serving": 0, "total": 1}, "skew": 0.9, "requestsPerSecond": 3.0,
     "proxiesReporting": 1, "backends": []}
  ],
  "proxies": [
    {"id": "proxy-a", "node": "node-1", "zone": "z1", "connectedAtUnixMs": 1000, "applied": "77.12", "lagVersions": 0},
    {"id": "proxy-b", "node": "node-2", "zone": null, "connectedAtUnixMs": 61000, "applied": "77.9", "lagVersions": 3, "someFutureField": 1}
  ]
}"#;

fn doc() -> Status {
    serde_json::from_str(DOC).expect("the controller's document parses")
}

#[test]
fn status_lists_every_proxy_with_version_lag_and_age() {
    let out = status(&doc(), 121_000);
    assert!(
        out.starts_with("controller: table 77.12, 2 proxies connected"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PROXY", "NODE", "ZONE", "APPLIED", "LAG", "CONNECTED"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["proxy-a", "node-1", "z1", "77.12", "0", "2m"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["proxy-b", "node-2", "-", "77.9", "3", "60s"]
    );
}

#[test]
fn routes_show_hosts_conditions_and_endpoints() {
    let out = routes(&doc());
    let cart = out
        .lines()
        .find(|l| l.starts_with("shop/cart"))
        .expect("listed");
    assert!(cart.contains("False (ServiceNotFound)"), "{cart}");
    let orders = out
        .lines()
        .find(|l| l.starts_with("shop/orders"))
        .expect("listed");
    assert_eq!(
        orders.split_whitespace().collect::<Vec<_>>(),
        [
            "shop/orders",
            "orders.shop",
            "True",
            "(Accepted)",
            "True",
            "(ResolvedRefs)",
            "2/2",
            "40.0",
            "0.04"
        ]
    );
}

#[test]
fn top_draws_each_pods_share_against_its_fair_share() {
    let out = top(&doc(), "shop/orders").expect("a known route");
    let a = out
        .lines()
        .find(|l| l.starts_with("orders-a"))
        .expect("pod a");
    assert!(a.contains("52.0%") && a.contains("50.0%"), "{a}");
    assert!(
        a.contains("###############|"),
        "half the bar filled, the mark at 50%: {a}"
    );
    assert_eq!(top(&doc(), "shop/nope"), None);
}

#[test]
fn check_says_what_is_wrong_and_what_to_do() {
    let found = check(&doc());
    let subjects: Vec<(&str, &str)> = found
        .iter()
        .map(|f| {
            (
                f.subject.as_str(),
                f.problem.split(':').next().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        subjects,
        [
            ("proxy proxy-b", "3 versions behind (applied 77.9)"),
            ("route shop/cart", "backend not resolved"),
            ("route shop/idle", "no ready endpoint (1 listed)"),
            ("route shop/idle", "load is not shared fairly"),
        ]
    );
    assert!(
        found[1].fix.contains("create the Service"),
        "{:?}",
        found[1]
    );
    let healthy = Status {
        routes: doc().routes.into_iter().take(1).collect(),
        proxies: doc().proxies.into_iter().take(1).collect(),
        ..doc()
    };
    assert_eq!(
        check(&healthy),
        [],
        "nothing to say about a healthy cluster"
    );
    assert_eq!(findings(&[]), "no problems found\n");
    let empty = Status {
        proxies: vec![],
        routes: vec![],
        ..doc()
    };
    assert_eq!(check(&empty)[0].subject, "proxies");
}
