//! Scenario 12: filters through real proxies to real pods. An HTTPRoute on a Service
//! (the pinned release's CRD) and a Fairway Route each rewrite what their pod sees
//! (host and path, the matched prefix replaced), edit what the client gets back, and
//! answer a redirect themselves, no pod contacted; a Route with a combination Gateway
//! API forbids is reported on that Route alone while the others keep serving.

use fairway_tests::eventually;
use fairway_tests::objects::{State, endpoint};

use crate::echo::{Echo, POD_ONLY};
use crate::gamma::{apply, condition_is, http_route};
use crate::scenarios::condition;
use crate::world::{CONVERGE, Conn, POD_PORT, World, pod_ip};

const PORT: i32 = POD_PORT as i32;

/// Each pod's host:port, started and made a Service's only endpoint.
async fn echo_service(w: &World, name: &str, host: u8) -> Echo {
    let ip = pod_ip(12, host);
    let addr = format!("{ip}:{POD_PORT}").parse().expect("address");
    let echo = Echo::start(name, addr, false).await;
    w.create_service(name, PORT).await;
    let slice = format!("{name}-a");
    w.create_slice(&slice, name, PORT, vec![endpoint(&ip, State::Ready)])
        .await;
    echo
}

pub async fn filters_rewrite_redirect_and_edit() {
    let mut w = World::new("e2e-filters").await;
    fairway_tests::gateway_api::install(w.cluster);
    let shop = echo_service(&w, "shop", 11).await;
    let legacy = echo_service(&w, "legacy", 12).await;
    let rules = "  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Served-By, value: fairway}]
        remove: [X-Pod-Only]
    backendRefs: [{name: shop, port: 8080}]
  - matches: [{path: {type: Exact, value: /full}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}
    backendRefs: [{name: shop, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: elsewhere.example, statusCode: 301}
  - backendRefs: [{name: shop, port: 8080}]
";
    apply(&w, &http_route("shop", "shop", rules));
    let route = |name: &str, spec: &str| {
        format!(
            "apiVersion: fairway.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        )
    };
    // Our Route, with the same filters: a redirect rule with no backends, a rewrite
    // and a response edit on the other.
    let legacy_spec = "  hosts: [legacy.example]
  rules:
  - pathPrefix: /go
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /went}}
  - pathPrefix: /
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: legacy.internal}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: X-Route, value: legacy}]}
    backends: [{service: legacy, port: 8080}]
";
    apply(&w, &route("legacy", legacy_spec));
    // A rewrite of the matched prefix on an exact match: Gateway API forbids it.
    let bad_spec = "  hosts: [bad.example]
  rules:
  - match: {path: {type: Exact, value: /a}}
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}
    backends: [{service: legacy, port: 8080}]
";
    apply(&w, &route("bad", bad_spec));
    w.start().await;
    let group = format!("{}/service:shop", w.ns);
    let legacy_key = format!("{}/legacy", w.ns);
    w.converged("the HTTPRoute's group and the Route", |doc| {
        let routes = doc["routes"].as_array();
        let has = |key: &str| routes.is_some_and(|r| r.iter().any(|r| r["key"] == key));
        has(&group) && has(&legacy_key)
    })
    .await;
    condition_is(&w, "shop", "Accepted", "True", "Accepted").await;

    let host = format!("shop.{}", w.ns);
    for p in &w.proxies {
        let mut conn = Conn::open(p.listen).await;
        let (status, head, body) = conn.exchange("GET", &host, "/old/x?q=1", &[]).await;
        assert_eq!(status, 200, "{}: {body}", p.id);
        assert_eq!(
            body, "rewritten.example /new/x?q=1",
            "{}: the pod saw",
            p.id
        );
        assert_eq!(head["x-served-by"], "fairway", "{}", p.id);
        assert!(
            !head.contains_key(POD_ONLY),
            "{}: removed for the client",
            p.id
        );

        let (_, head, body) = conn.exchange("GET", &host, "/full?k=v", &[]).await;
        assert_eq!(body, format!("{host} /replaced?k=v"), "{}", p.id);
        assert!(
            head.contains_key(POD_ONLY),
            "{}: no edit on this rule",
            p.id
        );
        let (_, _, body) = conn.exchange("GET", &host, "/other", &[]).await;
        assert_eq!(body, format!("{host} /other"), "{}: as sent", p.id);

        let before = shop.requests();
        let (status, head, _) = conn.exchange("GET", &host, "/moved/a?b=1", &[]).await;
        assert_eq!(status, 301, "{}", p.id);
        assert_eq!(head["location"], "https://elsewhere.example/moved/a?b=1");
        assert_eq!(shop.requests(), before, "{}: no pod is contacted", p.id);

        let (status, head, _) = conn
            .exchange("GET", "legacy.example:4140", "/go/deep", &[])
            .await;
        assert_eq!(status, 302, "{}: Gateway API's default status", p.id);
        assert_eq!(
            head["location"], "http://legacy.example:4140/went/deep",
            "{}",
            p.id
        );
        let (status, head, body) = conn.exchange("GET", "legacy.example", "/x", &[]).await;
        assert_eq!(status, 200, "{}: {body}", p.id);
        assert_eq!(body, "legacy.internal /x", "{}", p.id);
        assert_eq!(head["x-route"], "legacy", "{}", p.id);
    }
    let (accepted, message) = eventually(CONVERGE, "route bad: Accepted=False", || async {
        let (status, message) = condition(&w, "bad", "Accepted");
        (status == "False").then_some((status, message))
    })
    .await;
    assert!(
        message.contains("ReplacePrefixMatch needs"),
        "{accepted}: {message}"
    );
    let (status, _) = condition(&w, "legacy", "Accepted");
    assert_eq!(status, "True", "the Route with filters is accepted");
    let mut conn = Conn::open(w.proxies[0].listen).await;
    let (status, _, _) = conn.exchange("GET", "bad.example", "/a", &[]).await;
    assert_eq!(status, 404, "the forbidden combination is not served");
    eprintln!(
        "s12: pods shop, legacy answered {} and {}",
        shop.requests(),
        legacy.requests()
    );
    w.check_processes();
}
