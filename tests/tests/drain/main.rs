//! The drain handshake against the real kube-apiserver (issue 19, design.md section 10):
//! tokens bound to Pod objects by the TokenRequest API are reviewed with TokenReview;
//! the controller answers a pod about its own endpoints only, when every proxy acked a
//! version in which they take no new requests; the real `fairway wait-drained` binary
//! is the hook, run as a process. Test proxies ack when the test says, so a proxy that
//! is slow to ack is one that the test holds back.
//!
//! `cargo test -p fairway-tests --test drain` runs these alone (after `cargo build -p
//! fairway --bin fairway`; a missing binary fails with how to build it).

mod client_certs;
mod events;
mod streams;
mod support;

use std::time::Duration;

use fairway_proto::model::RouteTable;
use fairway_proto::pb::drain_client::DrainClient;
use fairway_proto::pb::{WaitDrainedRequest, WaitDrainedResponse};
use fairway_tests::objects::State;
use support::{AUDIENCE, Setup, WAIT, finished, proxy, wait_drained};
use tonic::Code;

/// Long enough that a hook still running after it is visibly waiting, not slow.
const SETTLE: Duration = Duration::from_secs(1);

/// Whether pod `pod` is listed and terminating in `table`.
fn terminating(table: &RouteTable, pod: &str) -> bool {
    (table
        .endpoint_sets
        .values()
        .flat_map(|s| s.endpoints.values()))
    .any(|e| e.pod.as_deref() == Some(pod) && e.terminating)
}

/// One `Drain.WaitDrained` call with `token` (none: no `authorization`).
async fn ask(
    endpoint: &str,
    token: Option<&str>,
    timeout_ms: u64,
) -> Result<WaitDrainedResponse, tonic::Status> {
    let mut client = DrainClient::connect(endpoint.to_owned())
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
    let mut request = tonic::Request::new(WaitDrainedRequest { timeout_ms });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("an ASCII token");
        request.metadata_mut().insert("authorization", value);
    }
    client
        .wait_drained(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_pods_own_token_of_our_audience_is_answered_and_only_about_that_pod() {
    let setup = Setup::new("drain-auth").await;
    setup
        .orders(&[
            ("web-1", State::Ready),
            ("web-2", State::Terminating),
            ("web-3", State::Ready),
        ])
        .await;
    let controller = setup.controller().await;
    let _a = proxy(&controller, "a", 3).await;

    let refused = [
        ("no token", None, Code::Unauthenticated),
        (
            "a pod's token for another audience",
            Some(setup.pod_token("web-1", "vault").await),
            Code::Unauthenticated,
        ),
        (
            "a ServiceAccount token bound to no pod",
            Some(setup.token(AUDIENCE, None).await),
            Code::PermissionDenied,
        ),
        (
            "garbage",
            Some("not-a-token".to_owned()),
            Code::Unauthenticated,
        ),
    ];
    for (what, token, code) in refused {
        let status = ask(&controller.endpoint, token.as_deref(), 1000)
            .await
            .expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }

    // web-2 is drained, but web-1's token can only ask about web-1, which is still
    // ready: no request names another pod, so none can learn about or wait on it.
    let web1 = setup.pod_token("web-1", AUDIENCE).await;
    let answer = ask(&controller.endpoint, Some(&web1), 1000)
        .await
        .unwrap_or_else(|s| panic!("web-1's own token must be answered: {s:?}"));
    assert_eq!(
        answer.outcome(),
        fairway_proto::pb::wait_drained_response::Outcome::TimedOut,
        "{answer:?}"
    );
    assert!(
        answer.reason.contains("web-1") && answer.reason.contains("still ready"),
        "the answer is about web-1 only: {}",
        answer.reason
    );
    let web2 = setup.pod_token("web-2", AUDIENCE).await;
    let answer = ask(&controller.endpoint, Some(&web2), 30_000)
        .await
        .unwrap_or_else(|s| panic!("web-2's own token must be answered: {s:?}"));
    assert_eq!(
        answer.outcome(),
        fairway_proto::pb::wait_drained_response::Outcome::Drained,
        "{answer:?}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_waits_until_every_proxy_acked_and_names_the_one_that_did_not() {
    let setup = Setup::new("drain-wait").await;
    let ready = [
        ("web-1", State::Ready),
        ("web-2", State::Ready),
        ("web-3", State::Ready),
    ];
    setup.orders(&ready).await;
    let controller = setup.controller().await;
    let mut a = proxy(&controller, "proxy-a", 3).await;
    let mut b = proxy(&controller, "proxy-b", 3).await;

    let token = setup.token_file("web-1", &setup.pod_token("web-1", AUDIENCE).await);
    let mut hook = wait_drained(&controller.endpoint, &token, "40s");
    tokio::time::sleep(SETTLE).await;
    assert!(
        hook.try_wait().expect("poll the hook").is_none(),
        "web-1 is not marked terminating yet: the hook waits (it is not unknown)"
    );

    setup
        .set_pods(&[
            ("web-1", State::Terminating),
            ("web-2", State::Ready),
            ("web-3", State::Ready),
        ])
        .await;
    (a.until(WAIT, "web-1 terminating", |t| terminating(t, "web-1"))
        .await)
        .unwrap_or_else(|e| panic!("proxy-a: {e}"));
    tokio::time::sleep(SETTLE).await;
    assert!(
        hook.try_wait().expect("poll the hook").is_none(),
        "proxy-b has not acked the version that drains web-1: the hook waits for it"
    );
    (b.until(WAIT, "web-1 terminating", |t| terminating(t, "web-1"))
        .await)
        .unwrap_or_else(|e| panic!("proxy-b: {e}"));
    let (ok, out, err) = finished(hook).await;
    assert!(
        ok,
        "drained once both acked; stdout {out:?}, stderr {err:?}"
    );
    assert!(out.contains("drained after"), "{out}");

    // proxy-b stops acking: web-2's hook gives up at its timeout and names it.
    setup
        .set_pods(&[
            ("web-1", State::Terminating),
            ("web-2", State::Terminating),
            ("web-3", State::Ready),
        ])
        .await;
    (a.until(WAIT, "web-2 terminating", |t| terminating(t, "web-2"))
        .await)
        .unwrap_or_else(|e| panic!("proxy-a: {e}"));
    let token = setup.token_file("web-2", &setup.pod_token("web-2", AUDIENCE).await);
    let (ok, out, err) = finished(wait_drained(&controller.endpoint, &token, "2s")).await;
    assert!(
        !ok,
        "a lagging proxy at the timeout is a failure; stdout {out:?}"
    );
    assert!(
        err.contains("proxy-b (acked")
            && !err.contains("proxy-a")
            && err.contains("had not applied"),
        "stderr names the lagging proxy and only it: {err}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pod_and_the_last_serving_endpoint_answer_at_once() {
    let setup = Setup::new("drain-once").await;
    setup.orders(&[("web-1", State::Terminating)]).await;
    let controller = setup.controller().await;
    // proxy-a never acks after its first table: nothing here may wait for it.
    let _a = proxy(&controller, "proxy-a", 1).await;

    let last = setup.token_file("web-1", &setup.pod_token("web-1", AUDIENCE).await);
    let (ok, out, err) = finished(wait_drained(&controller.endpoint, &last, "40s")).await;
    assert!(ok, "stdout {out:?}, stderr {err:?}");
    assert!(
        out.contains("not waiting") && out.contains("last serving endpoint"),
        "KEP-1669 keeps sending to the last serving endpoint: {out}"
    );

    let lonely = setup.token_file("lonely", &setup.pod_token("lonely", AUDIENCE).await);
    let (ok, out, err) = finished(wait_drained(&controller.endpoint, &lonely, "40s")).await;
    assert!(ok, "stdout {out:?}, stderr {err:?}");
    assert!(
        out.contains("not waiting") && out.contains("no endpoint"),
        "no proxy sends to a pod that is no endpoint: {out}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_controller_means_the_fallback_sleep_then_a_reason_and_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token").expect("write the token");
    let port = fairway_tests::bins::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (ok, out, err) = finished(wait_drained(&endpoint, &token, "20s")).await;
    assert!(!ok, "no answer is a failure, not a drain; stdout {out:?}");
    assert!(
        err.contains("slept the fallback 1s") && err.contains("connecting to the controller"),
        "stderr says what failed and that the old sleep ran: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asked_replica_answers_only_when_every_replica_can() {
    let setup = Setup::new("drain-peers").await;
    let ready = [("web-1", State::Ready), ("web-2", State::Ready)];
    setup.orders(&ready).await;
    let addrs = [0, 1].map(|_| fairway_tests::bins::loopback(fairway_tests::bins::free_port()));
    let peers: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let one = setup.replica("one", addrs[0], peers.clone()).await;
    let two = setup.replica("two", addrs[1], peers).await;
    // Each replica serves its own proxy, with its own epoch.
    let mut a = proxy(&one, "proxy-a", 2).await;
    let mut b = proxy(&two, "proxy-b", 2).await;

    setup
        .set_pods(&[("web-1", State::Terminating), ("web-2", State::Ready)])
        .await;
    (a.until(WAIT, "web-1 terminating", |t| terminating(t, "web-1"))
        .await)
        .unwrap_or_else(|e| panic!("proxy-a: {e}"));
    let token = setup.token_file("web-1", &setup.pod_token("web-1", AUDIENCE).await);
    let (ok, out, err) = finished(wait_drained(&one.endpoint, &token, "2s")).await;
    assert!(
        !ok && err.contains("proxy-b (acked"),
        "replica one's own proxy acked, but replica two's did not, and it is named; \
         stdout {out:?}, stderr {err:?}"
    );

    (b.until(WAIT, "web-1 terminating", |t| terminating(t, "web-1"))
        .await)
        .unwrap_or_else(|e| panic!("proxy-b: {e}"));
    let (ok, out, err) = finished(wait_drained(&one.endpoint, &token, "40s")).await;
    assert!(
        ok,
        "both replicas' proxies acked; stdout {out:?}, stderr {err:?}"
    );
    assert!(out.contains("drained after"), "{out}");

    two.stop().await;
    let (ok, _, err) = finished(wait_drained(&one.endpoint, &token, "2s")).await;
    assert!(
        !ok && err.contains("could not answer"),
        "a replica that cannot answer may have proxies still sending: {err}"
    );
    one.stop().await;
}
