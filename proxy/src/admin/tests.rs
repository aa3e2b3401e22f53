use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::discovery::testing::{table, v};
use crate::pool::PoolStats;
use crate::table::Table;

fn state() -> AdminState {
    AdminState::new(
        Arc::new(TableHandle::default()),
        Arc::new(Metrics::new(true)),
        None,
    )
}

fn publish(state: &AdminState, endpoints: &[&str]) {
    let t = Table::build(
        Arc::new(table(endpoints)),
        v(3),
        &state.table.load(),
        (None, None),
        Instant::now(),
    );
    state.table.store(Arc::new(t));
}

async fn get(state: &AdminState, path: &str) -> (StatusCode, String, String) {
    let req = Request::get(path).body(()).expect("request");
    let response = respond(state, &req);
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn live_always_ready_only_with_a_table_and_not_while_draining() {
    let s = state();
    assert_eq!(get(&s, "/live").await.0, StatusCode::OK);
    let (status, _, body) = get(&s, "/ready").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before a table"
    );
    assert!(body.contains("no route table"), "{body}");
    publish(&s, &["10.0.0.1:80"]);
    assert_eq!(
        get(&s, "/ready").await.0,
        StatusCode::OK,
        "ready after the first table"
    );
    s.set_draining();
    assert_eq!(
        get(&s, "/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready once shutdown starts, so no new traffic is sent"
    );
    assert_eq!(
        get(&s, "/live").await.0,
        StatusCode::OK,
        "still live while draining"
    );
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let s = state();
    s.metrics.record_request(
        "shop/orders",
        Some("10.0.0.1:80"),
        200,
        Duration::from_millis(1),
    );
    let (status, content_type, body) = get(&s, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.contains("fairway_proxy_requests_total{"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn debug_routes_shows_routes_endpoints_and_pools() {
    let pools: PoolStatsFn = Arc::new(|| {
        let stats = PoolStats {
            idle: 2,
            busy: 1,
            draining: false,
        };
        [("10.0.0.1:80".to_owned(), stats)].into()
    });
    let s = AdminState::new(
        Arc::new(TableHandle::default()),
        Arc::new(Metrics::new(true)),
        Some(pools),
    );
    let (_, _, body) = get(&s, "/debug/routes").await;
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(doc["version"], json!(null), "no table yet: {doc}");

    publish(&s, &["10.0.0.1:80", "10.0.0.2:80"]);
    let (status, content_type, body) = get(&s, "/debug/routes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, JSON_CONTENT_TYPE);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(doc["version"], json!("7.3"));
    assert_eq!(doc["routes"][0]["route"], json!("shop/orders"));
    assert_eq!(doc["routes"][0]["hosts"], json!(["orders.shop"]));
    assert_eq!(
        doc["routes"][0]["rules"][0]["backends"][0]["endpoint_set"],
        json!("shop/orders:8080")
    );
    let backends = doc["backends"].as_object().expect("backends object");
    let endpoints = backends
        .values()
        .next()
        .and_then(|e| e.as_array())
        .expect("one backend with endpoints");
    assert_eq!(endpoints.len(), 2, "{doc}");
    let first = &endpoints[0];
    assert_eq!(first["addr"], json!("10.0.0.1:80"));
    for field in ["eligible", "in_flight", "requests", "ewma_ms", "weight"] {
        assert!(
            first.get(field).is_some(),
            "endpoint lacks {field}: {first}"
        );
    }
    assert_eq!(
        first["pool"],
        json!({"idle": 2, "busy": 1, "draining": false}),
        "pool stats merged"
    );
    assert_eq!(
        endpoints[1]["pool"],
        json!(null),
        "no pool yet for the second"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let s = state();
    assert_eq!(get(&s, "/nope").await.0, StatusCode::NOT_FOUND);
    let req = Request::post("/ready").body(()).expect("request");
    assert_eq!(respond(&s, &req).status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn serves_over_a_real_socket_until_shutdown() {
    let s = state();
    publish(&s, &["10.0.0.1:80"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, s, async {
        let _ = stopped.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ready\n"), "{response}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the admin server stops on shutdown")
        .expect("admin task");
}
