//! The request service through the pool seam: scripted pods ([`FakePods`]) instead of
//! sockets, so where tries go, when they are retried and what the client gets are
//! tested as plain functions of the pods' answers.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fairway_proto::model::{EndpointAddr, Route, RouteTable, Version};
use fairway_proto::testing;
use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};

use super::{RequestBody, Shared, handle};
use crate::forward::fake::{FakePods, Reply};
use crate::forward::retry::SharedBudget;
use crate::metrics::Metrics;
use crate::request::Replayable;
use crate::response::ProxyBody;
use crate::table::{Table, TableHandle};

const CLIENT: &str = "192.0.2.7";

/// A proxy serving `orders.shop` over `pods` endpoints, its Route edited by `edit`.
fn proxy(pods: u32, edit: impl FnOnce(&mut Route)) -> (Arc<Shared<FakePods>>, Arc<FakePods>) {
    let mut route = testing::route("orders");
    edit(&mut route);
    let set = testing::set("orders", pods);
    let source = RouteTable {
        routes: [(route.key.clone(), Arc::new(route))].into(),
        endpoint_sets: [(set.key.clone(), Arc::new(set))].into(),
    };
    let version = Version {
        epoch: 1,
        sequence: 1,
    };
    let built = Table::build(
        Arc::new(source),
        version,
        &Table::default(),
        (None, None),
        Instant::now(),
    );
    let table = Arc::new(TableHandle::default());
    table.store(Arc::new(built));
    let pods_fake = Arc::new(FakePods::default());
    let shared = Arc::new(Shared {
        table,
        pools: Arc::clone(&pods_fake),
        metrics: Arc::new(Metrics::new(false)),
        budget: SharedBudget::new(Instant::now()),
        max_headers: 100,
        tracer: None,
    });
    (shared, pods_fake)
}

fn request(method: Method, host: &str, body: &'static [u8]) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::Buffered(Replayable::new(
        Bytes::from_static(body),
        None,
    )));
    *request.method_mut() = method;
    *request.uri_mut() = "/orders/7".parse().unwrap();
    request
        .headers_mut()
        .insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
    request
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("x-hop"));
    request
        .headers_mut()
        .insert("x-hop", HeaderValue::from_static("dropped at the hop"));
    request
}

async fn call(
    shared: &Arc<Shared<FakePods>>,
    request: Request<RequestBody>,
) -> Response<ProxyBody> {
    let client = HeaderValue::from_static(CLIENT);
    handle(Arc::clone(shared), client, false, request)
        .await
        .expect("handle never fails")
}

fn reason(response: &Response<ProxyBody>) -> &str {
    response
        .headers()
        .get("fairway-error")
        .map_or("", |v| v.to_str().unwrap())
}

fn addr(i: u32) -> EndpointAddr {
    EndpointAddr(testing::addr(i))
}

#[tokio::test]
async fn a_pod_gets_the_request_edited_for_the_hop() {
    let (shared, pods) = proxy(1, |_| {});
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent = pods.sent();
    assert_eq!(sent.len(), 1, "one try: {sent:?}");
    assert_eq!(
        (sent[0].addr, sent[0].method.clone()),
        (addr(0), Method::GET)
    );
    assert_eq!(sent[0].path, "/orders/7");
    let headers = &sent[0].headers;
    assert_eq!(headers.get("x-forwarded-for").unwrap(), CLIENT);
    assert!(
        headers.get("x-hop").is_none() && headers.get("connection").is_none(),
        "hop-by-hop fields and those `Connection` names stop at the proxy: {headers:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_pod_whatever_the_method() {
    for method in [Method::GET, Method::POST] {
        let (shared, pods) = proxy(2, |_| {});
        pods.script(addr(0), Reply::Refuse);
        pods.script(addr(1), Reply::Refuse);
        // Both refuse: every attempt is spent, each on a pod, and the error says why.
        let response = call(&shared, request(method.clone(), "orders.shop", b"{}")).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{method}");
        assert_eq!(reason(&response), "ConnectFailed", "{method}");
        assert!(pods.sent().is_empty(), "a refused connection sends nothing");

        pods.script(addr(1), Reply::Status(StatusCode::OK));
        for _ in 0..4 {
            let response = call(&shared, request(method.clone(), "orders.shop", b"{}")).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{method}: a refusal at pod 0 goes on to pod 1"
            );
        }
        assert!(pods.sent().iter().all(|s| s.addr == addr(1)), "{method}");
    }
}

#[tokio::test]
async fn a_request_that_reached_a_pod_is_retried_only_when_idempotent() {
    let (shared, pods) = proxy(2, |_| {});
    pods.script(addr(0), Reply::Reset);
    pods.script(addr(1), Reply::Reset);
    let response = call(&shared, request(Method::POST, "orders.shop", b"{}")).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(reason(&response), "UpstreamReset");
    assert_eq!(
        pods.sent().len(),
        1,
        "a POST that was sent is never sent twice"
    );

    let (shared, pods) = proxy(2, |_| {});
    pods.script(addr(0), Reply::Reset);
    pods.script(addr(1), Reply::Reset);
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(reason(&response), "UpstreamReset");
    let sent = pods.sent();
    assert_eq!(
        sent.len(),
        3,
        "a GET goes once and twice again (attempts: 2): {sent:?}"
    );
    assert_ne!(
        sent[0].addr, sent[1].addr,
        "a retry goes to a pod not yet tried"
    );
}

#[tokio::test]
async fn a_retryable_status_is_retried_elsewhere_and_the_last_answer_is_delivered() {
    let (shared, pods) = proxy(2, |route| route.retries.attempts = 1);
    pods.script(addr(0), Reply::Status(StatusCode::SERVICE_UNAVAILABLE));
    pods.script(addr(1), Reply::Status(StatusCode::SERVICE_UNAVAILABLE));
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the pod's own answer, not one the proxy made"
    );
    assert_eq!(reason(&response), "", "no fairway-error on a pod's answer");
    let sent = pods.sent();
    assert_eq!(sent.len(), 2, "one retry: {sent:?}");
    assert_ne!(sent[0].addr, sent[1].addr);

    // A 500 is the application's answer: never retried.
    let (shared, pods) = proxy(2, |_| {});
    pods.script(addr(0), Reply::Status(StatusCode::INTERNAL_SERVER_ERROR));
    pods.script(addr(1), Reply::Status(StatusCode::INTERNAL_SERVER_ERROR));
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(pods.sent().len(), 1);
}

#[tokio::test]
async fn without_retries_the_first_failure_is_the_answer() {
    let (shared, pods) = proxy(3, |route| route.retries.attempts = 0);
    for i in 0..3 {
        pods.script(addr(i), Reply::Refuse);
    }
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(reason(&response), "ConnectFailed");
    assert!(pods.sent().is_empty());
}

#[tokio::test]
async fn requests_the_proxy_cannot_route_reach_no_pod() {
    let (shared, pods) = proxy(1, |_| {});
    let unknown = call(&shared, request(Method::GET, "billing.shop", b"")).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(reason(&unknown), "UnknownHost");
    let mut no_host = request(Method::GET, "orders.shop", b"");
    no_host.headers_mut().remove(http::header::HOST);
    let no_host = call(&shared, no_host).await;
    assert_eq!(no_host.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reason(&no_host), "MissingHost");
    let mut connect = request(Method::CONNECT, "orders.shop", b"");
    *connect.uri_mut() = "orders.shop:443".parse().unwrap();
    let connect = call(&shared, connect).await;
    assert_eq!(connect.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(pods.sent().is_empty(), "{:?}", pods.sent());
}

#[tokio::test]
async fn a_request_with_conflicting_framing_is_refused_unforwarded() {
    let (shared, pods) = proxy(1, |_| {});
    let client = HeaderValue::from_static(CLIENT);
    let response = handle(
        Arc::clone(&shared),
        client,
        true,
        request(Method::POST, "orders.shop", b""),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reason(&response), "ConflictingFraming");
    assert!(pods.sent().is_empty());
}

/// The request service gives the router the request's method, headers and query: a
/// rule with conditions on them serves only the requests that meet every one.
#[tokio::test]
async fn rules_match_on_method_headers_and_query() {
    use fairway_proto::model::{HeaderMatch, Matching, QueryParamMatch, StringMatch};
    let (shared, pods) = proxy(1, |route| {
        route.rules[0].matching = Matching {
            method: Some("GET".into()),
            headers: vec![HeaderMatch {
                name: "x-canary".into(),
                value: StringMatch::RegularExpression("on|yes".into()),
            }],
            query_params: vec![QueryParamMatch {
                name: "v".into(),
                value: StringMatch::Exact("2".into()),
            }],
            ..Matching::default()
        };
    });
    let ask = |method: Method, target: &'static str, canary: Option<&'static str>| {
        let mut request = request(method, "orders.shop", b"");
        *request.uri_mut() = target.parse().unwrap();
        if let Some(value) = canary {
            let value = HeaderValue::from_static(value);
            request.headers_mut().insert("x-canary", value);
        }
        request
    };
    let cases = [
        (Method::GET, "/orders/7?v=2", Some("yes"), StatusCode::OK),
        (Method::GET, "/orders/7?a=1&v=2", Some("on"), StatusCode::OK),
        (Method::GET, "/orders/7?v=2", None, StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/orders/7?v=2",
            Some("nope"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/orders/7?v=3",
            Some("yes"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/orders/7?v=2",
            Some("yes"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, target, canary, want) in cases {
        let what = format!("{method} {target} x-canary {canary:?}");
        let response = call(&shared, ask(method, target, canary)).await;
        assert_eq!(response.status(), want, "{what}: {}", reason(&response));
        if want == StatusCode::NOT_FOUND {
            assert_eq!(reason(&response), "NoRule", "{what}");
        }
    }
    assert_eq!(
        pods.sent().len(),
        2,
        "only the two matching requests reach a pod"
    );
}

/// A rule's own timeouts (an HTTPRoute rule's `timeouts`) are what its requests get;
/// a rule without them gets the Route's.
#[test]
fn a_rules_timeouts_replace_the_routes() {
    use fairway_proto::model::Timeouts;
    use rand::SeedableRng;
    use std::time::Duration;
    let own = Timeouts {
        request: Duration::from_secs(3),
        per_try: Some(Duration::from_millis(500)),
        ..Timeouts::default()
    };
    let (shared, _) = proxy(1, |route| route.rules[0].timeouts = Some(own.clone()));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let table = shared.table.load();
    let (target, _) =
        (table.resolve("orders.shop", "/", Instant::now(), &mut rng)).expect("routed");
    assert_eq!(target.timeouts(), &own, "the rule's timeouts");
    let (shared, _) = proxy(1, |_| {});
    let table = shared.table.load();
    let (target, _) =
        (table.resolve("orders.shop", "/", Instant::now(), &mut rng)).expect("routed");
    assert_eq!(target.timeouts(), &target.route.timeouts, "the Route's");
}

/// A rule's RequestHeaderModifier edits what the pod gets: set replaces, add appends,
/// remove drops.
#[tokio::test]
async fn a_rules_header_edits_reach_the_pod() {
    use fairway_proto::model::HeaderEdits;
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let (shared, pods) = proxy(1, |route| {
        route.rules[0].filters.request_headers = Some(HeaderEdits {
            set: vec![pair("x-env", "canary")],
            add: vec![pair("x-tag", "b")],
            remove: vec!["x-debug".to_owned()],
        });
    });
    let mut asked = request(Method::GET, "orders.shop", b"");
    for (name, value) in [("x-env", "prod"), ("x-tag", "a"), ("x-debug", "1")] {
        let value = HeaderValue::from_static(value);
        asked.headers_mut().append(name, value);
    }
    let response = call(&shared, asked).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", reason(&response));
    let sent = pods.sent();
    let headers = &sent[0].headers;
    let all = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-env"), ["canary"], "set replaces");
    assert_eq!(all("x-tag"), ["a", "b"], "add appends");
    assert!(all("x-debug").is_empty(), "remove drops");
}

/// A rule's URLRewrite: the pod gets the new host and the matched prefix replaced, and
/// a retry is routed as the first try was (by the client's host and path), sending the
/// same rewritten request again, not a rewrite of the rewrite.
#[tokio::test]
async fn a_rewrite_reaches_the_pod_and_its_retries() {
    use fairway_proto::model::{PathRewrite, UrlRewrite};
    let (shared, pods) = proxy(2, |route| {
        route.rules[0].path_prefix = "/orders".to_owned();
        route.rules[0].filters.rewrite = Some(UrlRewrite {
            hostname: Some("backend.internal".to_owned()),
            path: Some(PathRewrite::ReplacePrefixMatch("/v2/orders".to_owned())),
        });
    });
    pods.script(addr(0), Reply::Status(StatusCode::SERVICE_UNAVAILABLE));
    pods.script(addr(1), Reply::Status(StatusCode::SERVICE_UNAVAILABLE));
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let sent = pods.sent();
    assert_eq!(sent.len(), 3, "the first try and two retries: {sent:?}");
    for try_ in &sent {
        assert_eq!(try_.path, "/v2/orders/7", "{sent:?}");
        assert_eq!(try_.headers[http::header::HOST], "backend.internal");
    }
}

/// A redirect rule answers itself: the status and Location it says, no pod asked.
#[tokio::test]
async fn a_redirect_rule_answers_without_a_pod() {
    use fairway_proto::model::{PathRewrite, Redirect};
    let (shared, pods) = proxy(1, |route| {
        route.rules[0].path_prefix = "/orders".to_owned();
        route.rules[0].backends.clear();
        route.rules[0].filters.redirect = Some(Redirect {
            scheme: Some("https".to_owned()),
            hostname: None,
            path: Some(PathRewrite::ReplacePrefixMatch("/shop".to_owned())),
            port: None,
            status: 301,
        });
    });
    let mut asked = request(Method::GET, "orders.shop:8080", b"");
    *asked.uri_mut() = "/orders/7?x=1".parse().unwrap();
    let response = call(&shared, asked).await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        response.headers()[http::header::LOCATION],
        "https://orders.shop/shop/7?x=1"
    );
    assert!(pods.sent().is_empty(), "no pod is contacted");
}

/// A rule's ResponseHeaderModifier edits what the client gets from the pod.
#[tokio::test]
async fn response_header_edits_reach_the_client() {
    use fairway_proto::model::HeaderEdits;
    let (shared, _pods) = proxy(1, |route| {
        route.rules[0].filters.response_headers = Some(HeaderEdits {
            set: vec![("x-served-by".to_owned(), "fairway".to_owned())],
            add: vec![("x-tag".to_owned(), "b".to_owned())],
            remove: Vec::new(),
        });
    });
    let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", reason(&response));
    assert_eq!(response.headers()["x-served-by"], "fairway");
    assert_eq!(response.headers()["x-tag"], "b");
}

/// A rule's own retries (an HTTPRoute's `retry`): a listed status is retried on
/// another pod after the backoff; a status it does not list (503, which a Route
/// retries by default) is not.
#[tokio::test(start_paused = true)]
async fn a_rules_retry_statuses_and_backoff_decide() {
    use fairway_proto::model::Retries;
    use std::time::Duration;
    let backoff = Duration::from_millis(100);
    for (status, tries) in [(500, 2), (503, 1)] {
        let (shared, pods) = proxy(2, |route| {
            route.rules[0].retries = Some(Retries {
                attempts: 1,
                http_statuses: vec![500],
                backoff,
                ..Retries::default()
            });
        });
        let status = StatusCode::from_u16(status).unwrap();
        pods.script(addr(0), Reply::Status(status));
        pods.script(addr(1), Reply::Status(status));
        let start = tokio::time::Instant::now();
        let response = call(&shared, request(Method::GET, "orders.shop", b"")).await;
        assert_eq!(response.status(), status);
        let sent = pods.sent();
        assert_eq!(sent.len(), tries, "{status}: {sent:?}");
        if tries == 2 {
            assert_ne!(sent[0].addr, sent[1].addr, "the retry goes to another pod");
            assert!(start.elapsed() >= backoff, "after the backoff");
        }
    }
}
