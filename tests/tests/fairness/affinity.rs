//! Affinity with real processes: two proxies send each key (a header, a cookie, the
//! client's address) to the same pod, over HTTP/1.1 (the fast loop, raw header fields)
//! and HTTP/1.0 (hyper's path, a header map) alike; a scale-up from 4 to 5 pods moves
//! about a fifth of the keys, every one of them to the new pod.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::world::{WAIT, World, admin_get, pod_of};

const ROUTES: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: by-user, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [user.fair]
  loadBalancer: {policy: LeastRequest, affinity: {header: X-User}}
  rules:
  - backends: [{service: orders, port: 8080}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: by-session, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [session.fair]
  loadBalancer: {affinity: {cookie: session, balanceFactor: 150}}
  rules:
  - backends: [{service: orders, port: 8080}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: by-client, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [client.fair]
  loadBalancer: {affinity: {sourceIP: true}}
  rules:
  - backends: [{service: orders, port: 8080}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: fair, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec:
  hosts: [orders.fair]
  rules:
  - backends: [{service: orders, port: 8080}]
";

const KEYS: usize = 200;

/// The pod that answered one request, sent as `version` (`1.1` or `1.0`) on a fresh
/// connection with `header`.
async fn pod(proxy: SocketAddr, version: &str, host: &str, header: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(proxy).await?;
        let request = format!(
            "GET / HTTP/{version}\r\nHost: {host}\r\n{header}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer within 10 s"))
        .unwrap_or_else(|e| panic!("request through {proxy}: {e}"));
    pod_of(&answer)
}

/// Which pod each of `KEYS` keys reached through `proxy`.
async fn placement(proxy: SocketAddr, version: &str, host: &str, header: &str) -> Vec<String> {
    let mut pods = Vec::with_capacity(KEYS);
    for key in 0..KEYS {
        pods.push(
            pod(
                proxy,
                version,
                host,
                &header.replace("{key}", &key.to_string()),
            )
            .await,
        );
    }
    pods
}

fn counts(pods: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for pod in pods {
        *counts.entry(pod.as_str()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn keys_stick_to_pods_on_every_proxy_and_a_scale_up_moves_a_fifth() {
    let mut world = World::start_with(170, 5, 4, ROUTES).await;
    let a = world.add_proxy("proxy-a", &[]).await;
    let b = world.add_proxy("proxy-b", &[]).await;
    let (a, b) = (world.proxies[a].listen, world.proxies[b].listen);

    let by_user = placement(a, "1.1", "user.fair", "X-User: user-{key}").await;
    let spread = counts(&by_user);
    eprintln!("{KEYS} users over 4 pods: {spread:?}");
    assert_eq!(spread.len(), 4, "every pod holds keys: {spread:?}");
    assert!(
        spread.values().all(|&n| (20..=80).contains(&n)),
        "near a quarter each: {spread:?}"
    );
    assert_eq!(
        by_user,
        placement(b, "1.1", "user.fair", "X-User: user-{key}").await,
        "the other proxy agrees"
    );
    assert_eq!(
        by_user,
        placement(a, "1.0", "user.fair", "x-user: user-{key}").await,
        "hyper's path (HTTP/1.0) reads the same key"
    );

    let session = "Cookie: theme=dark; session=s-{key}";
    let by_session = placement(a, "1.1", "session.fair", session).await;
    assert_eq!(counts(&by_session).len(), 4, "{:?}", counts(&by_session));
    assert_eq!(
        by_session,
        placement(b, "1.1", "session.fair", session).await
    );

    // Every request comes from 127.0.0.1: one key, one pod, while nothing is in flight.
    let by_client = placement(a, "1.1", "client.fair", "X-Unused: {key}").await;
    assert_eq!(counts(&by_client).len(), 1, "{:?}", counts(&by_client));

    // Without affinity the same Service is balanced by the policy (round robin).
    let plain = placement(a, "1.1", "orders.fair", "X-User: user-{key}").await;
    assert!(
        counts(&plain).values().all(|&n| n == KEYS / 4),
        "{:?}",
        counts(&plain)
    );

    world.list(5);
    let new_pod = world.ip(5);
    for proxy in &world.proxies {
        let deadline = Instant::now() + WAIT;
        while !admin_get(proxy.admin, "/debug/routes")
            .await
            .contains(&new_pod)
        {
            assert!(Instant::now() < deadline, "{} never listed pod-5", proxy.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = placement(a, "1.1", "user.fair", "X-User: user-{key}").await;
    let moved: Vec<(&String, &String)> = by_user
        .iter()
        .zip(&after)
        .filter(|(was, is)| was != is)
        .collect();
    eprintln!("after 4 -> 5 pods, {} of {KEYS} users moved", moved.len());
    assert!(
        moved.iter().all(|(_, to)| to.as_str() == "pod-5"),
        "keys move only to the new pod: {moved:?}"
    );
    assert!(
        (20..=70).contains(&moved.len()),
        "about a fifth of {KEYS} keys moved, not all: {}",
        moved.len()
    );
    assert_eq!(
        after,
        placement(b, "1.1", "user.fair", "X-User: user-{key}").await,
        "both proxies agree after the scale-up too"
    );
}
