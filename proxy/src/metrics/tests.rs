use super::*;

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn names_follow_the_design_contract() {
    let m = Metrics::new(true);
    m.record_request(
        "shop/orders",
        Some("127.0.0.11:8080"),
        200,
        Duration::from_millis(3),
    );
    m.set_in_flight("shop/orders", "127.0.0.11:8080", 2);
    m.set_pool_connections("127.0.0.11:8080", 3, 1);
    m.set_table_version(Version {
        epoch: 9,
        sequence: 4,
    });
    m.discovery_update(UpdateResult::nacked);
    m.record_retry("shop/orders", RetryReason::reset);
    let text = m.encode();
    for expected in [
        r#"fairway_proxy_requests_total{route="shop/orders",endpoint="127.0.0.11:8080",code="200"} 1"#,
        r#"fairway_proxy_request_duration_seconds_count{route="shop/orders"} 1"#,
        r#"fairway_proxy_endpoint_in_flight{route="shop/orders",endpoint="127.0.0.11:8080"} 2"#,
        r#"fairway_proxy_pool_connections{endpoint="127.0.0.11:8080",state="idle"} 3"#,
        r#"fairway_proxy_pool_connections{endpoint="127.0.0.11:8080",state="busy"} 1"#,
        "fairway_proxy_table_version 4",
        r#"fairway_proxy_discovery_updates_total{result="nacked"} 1"#,
        r#"fairway_proxy_retries_total{route="shop/orders",reason="reset"} 1"#,
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn endpoint_labels_off_folds_endpoints_into_one_summed_series() {
    let m = Metrics::new(false);
    m.record_request("r", Some("10.0.0.1:80"), 200, Duration::ZERO);
    m.record_request("r", Some("10.0.0.2:80"), 200, Duration::ZERO);
    m.set_in_flight("r", "10.0.0.1:80", 3);
    m.set_in_flight("r", "10.0.0.2:80", 4);
    m.set_in_flight("r", "10.0.0.1:80", 1);
    m.set_pool_connections("10.0.0.1:80", 2, 1);
    m.set_pool_connections("10.0.0.2:80", 5, 0);
    let text = m.encode();
    assert!(
        !text.contains("10.0.0."),
        "no pod address may leak:\n{text}"
    );
    assert_eq!(
        line(
            &text,
            r#"fairway_proxy_requests_total{route="r",endpoint="",code="200"}"#
        ),
        Some(r#"fairway_proxy_requests_total{route="r",endpoint="",code="200"} 2"#)
    );
    assert_eq!(
        line(
            &text,
            r#"fairway_proxy_endpoint_in_flight{route="r",endpoint=""}"#
        ),
        Some(r#"fairway_proxy_endpoint_in_flight{route="r",endpoint=""} 5"#),
        "in-flight is the sum over endpoints (1 + 4)"
    );
    assert_eq!(
        line(
            &text,
            r#"fairway_proxy_pool_connections{endpoint="",state="idle"}"#
        ),
        Some(r#"fairway_proxy_pool_connections{endpoint="",state="idle"} 7"#)
    );

    m.remove_endpoint("10.0.0.2:80");
    let text = m.encode();
    assert_eq!(
        line(
            &text,
            r#"fairway_proxy_endpoint_in_flight{route="r",endpoint=""}"#
        ),
        Some(r#"fairway_proxy_endpoint_in_flight{route="r",endpoint=""} 1"#),
        "a removed endpoint's share leaves the folded sum"
    );
    assert_eq!(
        line(
            &text,
            r#"fairway_proxy_pool_connections{endpoint="",state="idle"}"#
        ),
        Some(r#"fairway_proxy_pool_connections{endpoint="",state="idle"} 2"#)
    );
}

#[test]
fn removing_an_endpoint_drops_its_gauge_series() {
    let m = Metrics::new(true);
    m.set_in_flight("r", "10.0.0.1:80", 0);
    m.set_pool_connections("10.0.0.1:80", 1, 0);
    m.set_pool_connections("10.0.0.2:80", 1, 0);
    m.remove_endpoint("10.0.0.1:80");
    let text = m.encode();
    assert!(
        !text.contains("10.0.0.1:80"),
        "departed endpoint still listed:\n{text}"
    );
    assert!(text.contains("10.0.0.2:80"), "others stay:\n{text}");
}

fn orders_load(requests: [u64; 2]) -> Vec<BackendLoad> {
    use fairway_proto::load::EndpointLoad;
    let endpoint = |i: u8, requests: u64| EndpointLoad {
        addr: EndpointAddr(std::net::SocketAddr::from(([127, 0, 0, 10 + i], 8080))),
        requests,
        in_flight: 0,
        expected: 5.0,
    };
    vec![BackendLoad {
        route: fairway_proto::testing::route("orders").key,
        set: fairway_proto::testing::set_key("orders", 8080),
        endpoints: vec![endpoint(1, requests[0]), endpoint(2, requests[1])],
    }]
}

#[test]
fn shares_and_skew_are_refreshed_at_scrape_time() {
    let m = Metrics::new(true);
    let text = m.encode_with_shares(&orders_load([3, 1]));
    for expected in [
        r#"fairway_proxy_share_skew{route="shop/orders",backend="shop/orders:8080"} 0.5"#,
        r#"fairway_proxy_endpoint_share{route="shop/orders",backend="shop/orders:8080",endpoint="127.0.0.11:8080"} 0.75"#,
        r#"fairway_proxy_endpoint_expected_share{route="shop/orders",backend="shop/orders:8080",endpoint="127.0.0.12:8080"} 0.5"#,
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    let text = m.encode_with_shares(&orders_load([0, 0]));
    assert!(
        text.contains(
            r#"fairway_proxy_share_skew{route="shop/orders",backend="shop/orders:8080"} 0.0"#
        ),
        "an empty window reads fair, and the series stays:\n{text}"
    );
    assert!(
        !text.contains("fairway_proxy_endpoint_share{"),
        "no share of nothing"
    );
    let text = m.encode_with_shares(&[]);
    assert!(
        !text.contains("fairway_proxy_share_skew{"),
        "a backend gone is unlisted"
    );
}

#[test]
fn without_endpoint_labels_only_the_skew_is_listed() {
    let m = Metrics::new(false);
    let text = m.encode_with_shares(&orders_load([3, 1]));
    assert!(
        text.contains(
            r#"fairway_proxy_share_skew{route="shop/orders",backend="shop/orders:8080"} 0.5"#
        ),
        "{text}"
    );
    assert!(!text.contains("fairway_proxy_endpoint_share{"), "{text}");
    assert!(
        !text.contains("fairway_proxy_endpoint_expected_share{"),
        "{text}"
    );
}
