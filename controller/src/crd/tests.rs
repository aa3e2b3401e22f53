use super::*;

#[test]
fn spec_defaults_match_design() {
    let spec: RouteSpec = serde_json::from_value(serde_json::json!({
        "hosts": ["orders"],
        "rules": [{"backends": [{"service": "orders", "port": 8080}]}],
    }))
    .expect("minimal spec parses");
    assert_eq!(spec.rules[0].path_prefix, "/");
    assert_eq!(spec.rules[0].backends[0].weight, 1);
    assert_eq!(spec.load_balancer.policy, Policy::RoundRobin);
    assert_eq!(spec.load_balancer.slow_start, None);
    assert_eq!(spec.upstream, UpstreamSpec::default());
    assert_eq!(spec.upstream.max_connections_per_endpoint, 256);
    assert_eq!(spec.upstream.idle_timeout, "90s");
    assert_eq!(spec.upstream.max_connection_age, "0s");
    assert_eq!(spec.timeouts.request, "15s");
    assert_eq!(spec.timeouts.connect, "2s");
    assert_eq!(spec.retries.attempts, 2);
    assert_eq!(spec.retries.budget_percent, 20);
}

#[test]
fn ports_and_protocols_read_as_in_the_design() {
    let backend: RouteBackend =
        serde_json::from_value(serde_json::json!({"service": "orders", "port": "http"}))
            .expect("named port parses");
    assert_eq!(backend.port, IntOrString::String("http".into()));
    let upstream: UpstreamSpec =
        serde_json::from_value(serde_json::json!({"protocol": "HTTP2"})).expect("parses");
    assert_eq!(upstream.protocol, UpstreamProtocol::Http2);
    assert!(
        serde_json::from_value::<LoadBalancerSpec>(serde_json::json!({"policy": "Random"}))
            .is_err(),
        "unknown policies are rejected"
    );
}
