//! Scenario 13: the experimental channel's HTTPRoute `retry` (its CRD installed from the
//! pinned release): a Service with one pod failing on purpose and one answering. A rule
//! whose `retry.codes` lists the failing pod's status hides every failure from the
//! client (each failed try is retried on the other pod); a rule that lists another
//! status hands each failure to the client. The rules go to two Services over the same
//! pods, so one rule's failures (which passive ejection counts per Service) cannot
//! change where the other's requests go.

use fairway_tests::objects::{State, endpoint};

use crate::echo::Echo;
use crate::gamma::{apply, condition_is, group_published, http_route};
use crate::world::{Conn, POD_PORT, World, pod_ip};

const PORT: i32 = POD_PORT as i32;
/// Requests per rule: round robin over two pods sends about half to the failing one.
const REQUESTS: usize = 12;

pub async fn http_route_retry_codes() {
    let mut w = World::new("e2e-retry").await;
    fairway_tests::gateway_api::install_experimental(w.cluster);
    let (bad_ip, good_ip) = (pod_ip(13, 11), pod_ip(13, 12));
    let at = |ip: &str| format!("{ip}:{POD_PORT}").parse().expect("address");
    let failing = Echo::start("failing", at(&bad_ip), true).await;
    let answering = Echo::start("answering", at(&good_ip), false).await;
    for service in ["flaky", "flaky-too"] {
        w.create_service(service, PORT).await;
        let endpoints = vec![
            endpoint(&bad_ip, State::Ready),
            endpoint(&good_ip, State::Ready),
        ];
        let slice = format!("{service}-a");
        w.create_slice(&slice, service, PORT, endpoints).await;
    }
    let rules = "  - matches: [{path: {type: PathPrefix, value: /listed}}]
    retry: {codes: [500], attempts: 2, backoff: 10ms}
    backendRefs: [{name: flaky, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /unlisted}}]
    retry: {codes: [502], attempts: 2}
    backendRefs: [{name: flaky-too, port: 8080}]
";
    apply(&w, &http_route("flaky", "flaky", rules));
    w.start().await;
    group_published(&mut w, "flaky").await;
    condition_is(&w, "flaky", "Accepted", "True", "Accepted").await;

    let host = format!("flaky.{}", w.ns);
    let mut conn = Conn::open(w.proxies[0].listen).await;
    let send = |path: &'static str| (path, failing.requests());
    // A listed status: every failure retried on the other pod.
    let (path, before) = send("/listed/status/500");
    for _ in 0..REQUESTS {
        let (status, pod, body) = conn.get(&host, path).await;
        assert_eq!(
            (status, pod.as_deref()),
            (200, Some("answering")),
            "{path}: a listed status is retried on the other pod: {body}"
        );
    }
    let failed = failing.requests() - before;
    assert!(
        failed > 0,
        "the failing pod was tried ({failed} times) and hidden"
    );
    // An unlisted status: each failure reaches the client, nothing retried.
    let (path, before) = send("/unlisted/status/500");
    let answered_before = answering.requests();
    let mut errors = 0;
    for _ in 0..REQUESTS {
        let (status, pod, body) = conn.get(&host, path).await;
        match pod.as_deref() {
            Some("failing") => {
                assert_eq!(status, 500, "{path}");
                errors += 1;
            }
            other => assert_eq!((status, other), (200, Some("answering")), "{path}: {body}"),
        }
    }
    let failed = failing.requests() - before;
    assert!(errors > 0, "some requests met the failing pod");
    assert_eq!(
        errors, failed,
        "every failure reached the client: none retried"
    );
    assert_eq!(
        answering.requests() - answered_before,
        (REQUESTS as u64) - failed,
        "the answering pod saw only first tries"
    );
    w.check_processes();
}
