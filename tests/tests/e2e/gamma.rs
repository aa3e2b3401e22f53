//! Scenario 11: Gateway API's HTTPRoute attached to a Service (GAMMA), with the real
//! HTTPRoute CRD of the pinned release installed: the proxies serve the Service's DNS
//! names with the route's rules and no Fairway Route; an HTTPRoute with a field Fairway
//! does not serve, and one with a missing backend, get Gateway API conditions while the
//! first keeps serving.

use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};

use crate::world::{CONVERGE, Conn, POD_PORT, World, pod, pod_ip};

const PORT: i32 = POD_PORT as i32;

/// `kubectl apply -f -` of `yaml` in the scenario's namespace.
pub fn apply(w: &World, yaml: &str) {
    let args = ["-n", w.ns.as_str(), "apply", "-f", "-"];
    let out = fairway_tests::kubectl::kubectl(w.cluster, &args, Some(yaml))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success, "kubectl apply:\n{yaml}\n{}", out.stderr);
}

/// Our `status.parents[]` entry's condition `type_`: `(status, reason, message)`.
fn parent_condition(w: &World, route: &str, type_: &str) -> Option<(String, String, String)> {
    let out = w.kubectl(&["get", "httproute", route, "-o", "json"]);
    assert!(out.success, "kubectl get httproute {route}: {}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let parents = doc["status"]["parents"].as_array()?;
    let ours = parents
        .iter()
        .find(|p| p["controllerName"] == "fairway.dev/controller")?;
    let generation = &doc["metadata"]["generation"];
    let conditions = ours["conditions"].as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    assert_eq!(&c["observedGeneration"], generation, "{c}");
    let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
    Some((field("status"), field("reason"), field("message")))
}

pub async fn condition_is(
    w: &World,
    route: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let what = format!("httproute {route}: {type_}={status} ({reason})");
    eventually(CONVERGE, &what, || async {
        let (s, r, message) = parent_condition(w, route, type_)?;
        (s == status && r == reason).then_some(message)
    })
    .await
}

/// A request (method, path, headers) and the pod that must answer it.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

/// Waits until the controller publishes the HTTPRoute group of Service `service`.
pub async fn group_published(w: &mut World, service: &str) {
    let group = format!("{}/service:{service}", w.ns);
    w.converged(&format!("the group {group}"), |doc| {
        let routes = doc["routes"].as_array();
        routes.is_some_and(|r| r.iter().any(|r| r["key"] == group.as_str()))
    })
    .await;
}

pub fn http_route(name: &str, parent: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: {parent}}}]
  rules:
{rules}"
    )
}

pub async fn http_route_on_a_service() {
    let mut w = World::new("e2e-gamma").await;
    fairway_tests::gateway_api::install(w.cluster);
    let mut pods = Vec::new();
    for (i, name) in ["orders", "orders-v2", "other"].iter().enumerate() {
        let ip = pod_ip(11, 11 + i as u8);
        pods.push(pod(name, &ip).await);
        w.create_service(name, PORT).await;
        let slice = format!("{name}-a");
        w.create_slice(&slice, name, PORT, vec![endpoint(&ip, State::Ready)])
            .await;
    }
    // Leaning on the CRD's defaults: the second rule has no match (PathPrefix /).
    let rules = "  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: orders-v2, port: 8080}]
  - backendRefs: [{name: orders, port: 8080}]
  - matches:
    - headers: [{name: X-Canary, value: \"on\"}]
    - path: {type: Exact, value: /exact}
      method: POST
    - path: {type: RegularExpression, value: \"/items/[0-9]+\"}
      queryParams: [{name: v, value: \"2\"}]
    backendRefs: [{name: orders-v2, port: 8080}]
";
    apply(&w, &http_route("orders", "orders", rules));
    // Started after the CRD is installed: HTTPRoute input is on.
    w.start().await;
    group_published(&mut w, "orders").await;

    let ns = w.ns.clone();
    let names = [
        "orders".to_owned(),
        format!("orders.{ns}"),
        format!("orders.{ns}.svc"),
        format!("orders.{ns}.svc.cluster.local:8080"),
    ];
    for p in &w.proxies {
        let mut conn = Conn::open(p.listen).await;
        for host in &names {
            for (path, want) in [
                ("/", "orders"),
                ("/v2/x", "orders-v2"),
                ("/v2", "orders-v2"),
            ] {
                let (status, pod, body) = conn.get(host, path).await;
                assert_eq!(status, 200, "{} {host}{path}: {body}", p.id);
                assert_eq!(pod.as_deref(), Some(want), "{} {host}{path}", p.id);
            }
        }
    }
    // Matches beyond a prefix, in Gateway API's precedence, through real proxies.
    let host = format!("orders.{ns}");
    let canary = [("x-canary", "on")];
    let cases: [Case<'_>; 7] = [
        ("GET", "/", &canary, "orders-v2"),
        ("GET", "/", &[("x-canary", "off")], "orders"),
        ("POST", "/exact", &[], "orders-v2"),
        ("GET", "/exact", &[], "orders"),
        ("POST", "/exact/more", &[], "orders"),
        ("GET", "/items/42?v=2", &[], "orders-v2"),
        ("GET", "/items/42?v=1", &[], "orders"),
    ];
    for p in &w.proxies {
        let mut conn = Conn::open(p.listen).await;
        for (method, path, headers, want) in cases {
            let (status, pod, body) = conn.request(method, &host, path, headers).await;
            let what = format!("{} {method} {host}{path} {headers:?}", p.id);
            assert_eq!(
                (status, pod.as_deref()),
                (200, Some(want)),
                "{what}: {body}"
            );
        }
    }
    condition_is(&w, "orders", "Accepted", "True", "Accepted").await;
    condition_is(&w, "orders", "ResolvedRefs", "True", "ResolvedRefs").await;

    // A filter Fairway does not serve: named in the status, the route not served.
    let filtered = "  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: other, port: 8080}}}
    backendRefs: [{name: other, port: 8080}]
";
    apply(&w, &http_route("filtered", "other", filtered));
    let message = condition_is(&w, "filtered", "Accepted", "False", "UnsupportedValue").await;
    assert!(message.starts_with("spec.rules[0].filters"), "{message}");
    // A backend that does not exist: served, its share answered 500, and said so.
    let missing = "  - backendRefs: [{name: nowhere, port: 8080}]\n";
    apply(&w, &http_route("missing", "orders-v2", missing));
    let message = condition_is(&w, "missing", "ResolvedRefs", "False", "BackendNotFound").await;
    assert!(message.contains("nowhere"), "{message}");
    group_published(&mut w, "orders-v2").await;

    let mut conn = Conn::open(w.proxies[0].listen).await;
    let (status, pod, body) = conn.get(&format!("orders-v2.{ns}"), "/").await;
    assert_eq!(
        (status, pod),
        (500, None),
        "a missing backend's share: {body}"
    );
    let (status, pod, _) = conn.get(&format!("other.{ns}"), "/").await;
    assert!(
        pod.is_none() && status == 404,
        "the filtered route serves nothing: {status}"
    );
    let (status, pod, body) = conn.get(&format!("orders.{ns}"), "/v2/still").await;
    assert_eq!((status, pod.as_deref()), (200, Some("orders-v2")), "{body}");
    let served: Vec<u64> = pods.iter().map(|p| p.requests()).collect();
    eprintln!("s11: pods orders, orders-v2, other answered {served:?}");
    assert_eq!(served[2], 0, "nothing reached the filtered route's backend");
    w.check_processes();
}
