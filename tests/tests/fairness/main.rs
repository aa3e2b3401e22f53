//! Fairness you can see, with real processes: `fairway_proxy_share_skew` on each
//! proxy from its first request, and the controller's cluster-wide
//! `fairway_controller_route_share_skew` from the proxies' load reports.

mod affinity;
mod browser;
mod coordination;
mod dashboard;
mod load_reports;
mod page;
mod prequal;
mod spillover;
mod traces;
mod world;

use std::time::{Duration, Instant};

use world::{WAIT, World, value};

const SKEW: &str = r#"fairway_proxy_share_skew{route="fair/orders",backend="fair/orders:8080"}"#;
const ROUTE_SKEW: &str = r#"fairway_controller_route_share_skew{route="fair/orders"}"#;

#[tokio::test]
async fn skew_is_on_every_proxy_and_summed_on_the_controller() {
    let mut world = World::start(160, 2, 1).await;
    let labelled = world.add_proxy("proxy-a", &[]).await;
    let folded = world
        .add_proxy("proxy-b", &["--endpoint-labels=false"])
        .await;

    // One endpoint, a request or a few: the figure is there, and fair.
    let metrics = world.proxy_metrics(labelled).await;
    assert_eq!(
        value(&metrics, SKEW),
        Some(0.0),
        "from the first request on:\n{metrics}"
    );

    world.list(2);
    // Wait until both proxies serve the second pod, then load them evenly.
    for proxy in &world.proxies {
        let deadline = Instant::now() + WAIT;
        while !world::admin_get(proxy.admin, "/debug/routes")
            .await
            .contains("127.0.0.162")
        {
            assert!(
                Instant::now() < deadline,
                "{} never listed the second pod",
                proxy.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for index in [labelled, folded] {
        world.requests(index, 40).await;
    }

    let metrics = world.proxy_metrics(labelled).await;
    let skew = value(&metrics, SKEW).expect("the skew series");
    assert!(
        skew < 0.2,
        "round robin over two pods is near even: {skew}\n{metrics}"
    );
    assert!(
        metrics.contains(r#"fairway_proxy_endpoint_share{route="fair/orders",backend="fair/orders:8080",endpoint="127.0.0.162:"#),
        "per-pod shares with endpoint labels on:\n{metrics}"
    );
    let metrics = world.proxy_metrics(folded).await;
    assert!(
        value(&metrics, SKEW).is_some(),
        "skew without endpoint labels too"
    );
    assert!(
        !metrics.contains("fairway_proxy_endpoint_share{"),
        "no per-pod series with --endpoint-labels=false:\n{metrics}"
    );

    // Both proxies report; the controller sums them. Versions and lag stay as acked.
    let deadline = Instant::now() + WAIT;
    let controller = loop {
        let text = world.controller("/metrics").await;
        let accepted = value(
            &text,
            r#"fairway_controller_load_reports_total{result="accepted"}"#,
        );
        if value(&text, ROUTE_SKEW).is_some() && accepted.is_some_and(|n| n >= 2.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no cluster skew from the reports:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let skew = value(&controller, ROUTE_SKEW).expect("listed");
    assert!(
        skew < 0.2,
        "two round-robin proxies, near even together: {skew}"
    );
    for id in ["proxy-a", "proxy-b"] {
        let lag = format!(r#"fairway_controller_proxy_lag_versions{{proxy="{id}"}}"#);
        assert_eq!(value(&controller, &lag), Some(0.0), "{id}:\n{controller}");
    }
    let dropped = r#"fairway_controller_load_reports_total{result="dropped"}"#;
    assert_eq!(
        value(&controller, dropped).unwrap_or(0.0),
        0.0,
        "proxies keep to the interval asked:\n{controller}"
    );
}
