//! Load reports on the stream: sent only to a controller that asks, never in place of
//! an answer, never touching versions.

use std::time::{Duration, Instant};

use fairway_proto::pb::proxy_message::Kind;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::super::client::MIN_REPORT_INTERVAL;
use super::*;

/// `n` requests through the proxy's table to `orders.shop`, as the request path picks.
fn traffic(proxy: &Proxy, n: usize) {
    let table = proxy.table.load();
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..n {
        let (target, addr) = table
            .resolve("orders.shop", "/", Instant::now(), &mut rng)
            .expect("routable");
        target.backend.on_end(
            addr,
            Duration::from_millis(1),
            crate::balance::Outcome::Success,
            Instant::now(),
        );
    }
}

#[tokio::test]
async fn a_controller_that_asks_gets_reports_beside_its_acks() {
    let mut controller = Controller::start_with(loopback(), Some(MIN_REPORT_INTERVAL)).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    traffic(&proxy, 10);

    let report = stream.report().await;
    assert_eq!(report.window, Duration::from_secs(5));
    assert!(!report.truncated);
    let [backend] = report.backends.as_slice() else {
        panic!("one route over one set: {report:?}");
    };
    assert_eq!(backend.route.to_string(), "shop/orders");
    let requests: Vec<u64> = backend.endpoints.iter().map(|e| e.requests).collect();
    assert_eq!(requests, vec![5, 5], "round robin over two pods");
    assert_eq!(backend.skew(), Some(0.0));

    // A version sent meanwhile is still answered exactly once, and reports did not
    // move what the proxy serves.
    let t2 = table(&["10.0.0.1:80"]);
    stream.send(vec![delta(&t1, &t2, v(1), v(2))]).await;
    let answer = loop {
        match stream.next_kind().await {
            Kind::Report(_) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(&answer, Kind::Ack(ack) if ack.version.map(Version::from) == Some(v(2))),
        "the delta is acked: {answer:?}"
    );
    assert_eq!(proxy.served().0, Some(v(2)));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_controller_that_does_not_ask_never_gets_one() {
    // Controllers before load reports end a stream on an unknown message kind.
    let mut controller = Controller::start(loopback()).await;
    let proxy = Proxy::start(controller.addr);
    let mut stream = controller.accept().await;
    let t1 = table(&["10.0.0.1:80"]);
    stream.send(snapshot(&t1, v(1))).await;
    assert_eq!(stream.answer().await, Ok(v(1)));
    traffic(&proxy, 10);
    // Three times the shortest interval a report could come at.
    tokio::time::sleep(MIN_REPORT_INTERVAL * 3).await;
    let t2 = table(&["10.0.0.1:80", "10.0.0.2:80"]);
    stream.send(vec![delta(&t1, &t2, v(1), v(2))]).await;
    assert_eq!(
        stream.answer().await,
        Ok(v(2)),
        "the next message is the ack: no report was queued before it"
    );
    proxy.shutdown().await;
}
