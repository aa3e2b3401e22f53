//! WebSockets and other HTTP upgrades through a real proxy, with peers no one on the
//! project wrote: Python `websockets` servers as pods and `websockets` (and `h2`, for RFC
//! 8441) as clients, all in `tests/upgrade/ws.py`. Each test starts its own controller
//! (`--static-dir`), proxy and pods on loopback ([`world::World`]) and changes the
//! EndpointSlice by renaming a file into the static directory, as a user would.
//!
//! Needs the `fairway-controller` and `fairway-proxy` binaries of this build and the test
//! venv with `websockets` and `h2` (tests/run.sh builds and installs them).

mod world;

use world::{Slice, World};

/// Every test here runs several processes on 2 shared cores: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_ping_idle_close_and_half_close() {
    let _serial = SERIAL.lock().await;
    let world = World::start(50, 1).await;
    let out = world.client(&["echo", &world.proxy(), "chat.test"]).await;
    assert_eq!(out["pod"], "pod-1", "{out}");
    assert_eq!(
        out["close_code"], 1000,
        "the pod's close reaches the client: {out}"
    );
    assert_eq!(
        out["half_close"],
        serde_json::json!(["half"]),
        "after the client's TCP half-close the echo still arrives, then the end: {out}"
    );
    let metrics = world.proxy_metrics().await;
    assert!(
        metrics.contains("fairway_proxy_requests_total{route=\"up/chat\"")
            && metrics.contains("code=\"101\""),
        "the upgrade request is counted with its 101:\n{metrics}"
    );
    assert!(
        metrics.contains("fairway_proxy_upgrade_bytes_total{"),
        "bytes through upgraded connections are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_websockets_evenly() {
    let _serial = SERIAL.lock().await;
    let world = World::start(60, 4).await;
    let out = world
        .client(&["spread", &world.proxy(), "chat.test", "100"])
        .await;
    for pod in 1..=4 {
        assert_eq!(
            out["pods"][format!("pod-{pod}")],
            25,
            "100 WebSockets under RoundRobin: 25 per pod: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_new_websockets_to_the_least_loaded_pods() {
    let _serial = SERIAL.lock().await;
    let world = World::start_with(70, 4, Slice::all(1)).await;
    let (src, dst) = world.stage(Slice::all(4));
    let out = world
        .client(&[
            "least",
            &world.proxy(),
            "least.test",
            "50",
            &src,
            &dst,
            "30",
        ])
        .await;
    assert_eq!(
        out["first"]["pod-1"], 50,
        "one pod took the first 50: {out}"
    );
    assert!(
        out["then"].get("pod-1").is_none(),
        "with 50 open on pod-1, new WebSockets go to the other pods: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_pods_websockets_close_after_the_drain_timeout() {
    let _serial = SERIAL.lock().await;
    let world = World::start(80, 4).await;
    let (src, dst) = world.stage(Slice::all(4).terminating(4));
    let out = world
        .client(&["drain", &world.proxy(), "chat.test", "8", &src, &dst])
        .await;
    assert_eq!(
        out["closed_pods"],
        serde_json::json!(["pod-4"]),
        "only the terminating pod's WebSockets close: {out}"
    );
    assert_eq!(
        out["open_pods"],
        serde_json::json!(["pod-1", "pod-2", "pod-3"]),
        "{out}"
    );
    assert_eq!(out["alive"], 6, "the others still echo: {out}");
    eprintln!(
        "upgrade: a terminating pod's WebSockets closed {} s after the slice changed \
         (drainTimeout 2s)",
        out["seconds_to_close"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pods_clients_see_the_close_and_reconnect_elsewhere() {
    let _serial = SERIAL.lock().await;
    let world = World::start(90, 4).await;
    let victim = world.pod_pid(2);
    let out = world
        .client(&[
            "kill",
            &world.proxy(),
            "chat.test",
            "8",
            &victim.to_string(),
        ])
        .await;
    assert_eq!(out["victim_pods"], serde_json::json!(["pod-2"]), "{out}");
    let landed = out["reconnected_to"].as_array().expect("a list");
    assert_eq!(
        landed.len(),
        2,
        "both of pod-2's clients reconnected: {out}"
    );
    assert!(
        landed.iter().all(|pod| pod != "pod-2"),
        "a killed pod takes no new WebSocket (its connect fails and is tried elsewhere): {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_extended_connect_reach_an_http1_pod() {
    let _serial = SERIAL.lock().await;
    let world = World::start(100, 1).await;
    let out = world.client(&["h2", &world.proxy(), "chat.test"]).await;
    assert_eq!(out["status"], "200", "RFC 8441: 200 to the CONNECT: {out}");
    assert_eq!(
        out["messages"],
        serde_json::json!(["hello over h2", "pod-1"]),
        "frames travel both ways over the HTTP/2 stream: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_reach_an_http2_only_pod_by_extended_connect() {
    let _serial = SERIAL.lock().await;
    let world = World::start(130, 1).await;
    // An HTTP/1.1 client: the proxy answers 101 with the accept key the pod, speaking
    // HTTP/2, never sends (websockets checks it).
    let out = world
        .client(&["spread", &world.proxy(), "h2chat.test", "2"])
        .await;
    assert_eq!(out["pods"]["h2pod-1"], 2, "{out}");
    // An HTTP/2 client: extended CONNECT on both legs.
    let out = world.client(&["h2", &world.proxy(), "h2chat.test"]).await;
    assert_eq!(
        out["messages"],
        serde_json::json!(["hello over h2", "h2pod-1"]),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_flow_unbuffered_past_the_request_timeout() {
    let _serial = SERIAL.lock().await;
    let world = World::start(110, 1).await;
    let out = world
        .client(&["sse-client", &world.proxy(), "sse.test"])
        .await;
    assert_eq!(out["status"], 200, "{out}");
    let seconds = out["seconds"].as_f64().expect("seconds");
    let events = out["events"].as_u64().expect("events");
    // The pod writes each event only after the client acknowledged the previous one,
    // so every event counted here passed the proxy before the next was written.
    assert!(
        seconds > 2.5 && events >= 10,
        "the stream ran past the Route's 2 s request timeout, event by event: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_are_refused_or_forwarded_without_the_upgrade() {
    let _serial = SERIAL.lock().await;
    let world = World::start(120, 1).await;
    let handshake = "GET /chat HTTP/1.1\r\nHost: chat.test\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let with_body = format!("{handshake}Upgrade: websocket\r\nContent-Length: 5\r\n\r\nhello");
    let head = world.raw(&with_body).await;
    assert!(
        head.starts_with("HTTP/1.1 400") && head.contains("UpgradeWithBody"),
        "an upgrade with a body is refused: {head}"
    );
    let h2c = format!("{handshake}Upgrade: h2c\r\n\r\n");
    let head = world.raw(&h2c).await;
    assert!(
        !head.starts_with("HTTP/1.1 101") && !head.contains("fairway-error"),
        "an h2c upgrade goes to the pod without its upgrade, which answers it: {head}"
    );
    let old = "GET /chat HTTP/1.0\r\nHost: chat.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let head = world.raw(old).await;
    assert!(
        !head.contains(" 101 "),
        "HTTP/1.0 never upgrades (RFC 9110 7.8): {head}"
    );
    // The proxy still serves a real WebSocket afterwards.
    let out = world
        .client(&["spread", &world.proxy(), "chat.test", "2"])
        .await;
    assert_eq!(out["pods"]["pod-1"], 2, "{out}");
}
