//! What the chart gives a monitoring stack: the fairness alert (off unless enabled).

use super::{find, template};

#[test]
fn the_skew_alert_is_off_by_default_and_sustained_when_on() {
    let objects = template("fairway", "fairway", &[]);
    assert!(
        objects.iter().all(|o| o["kind"] != "PrometheusRule"),
        "no PrometheusRule unless prometheusRule.enabled: its CRD may not exist"
    );
    let objects = template(
        "fairway",
        "fairway",
        &[
            "--set",
            "prometheusRule.enabled=true,prometheusRule.labels.release=prom,prometheusRule.shareSkew.threshold=0.3",
        ],
    );
    let rule = find(&objects, "PrometheusRule", "fairway");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let alert = &rule["spec"]["groups"][0]["rules"][0];
    assert_eq!(alert["alert"], "FairwayShareSkew");
    assert_eq!(alert["for"], "10m", "sustained, not one bad window");
    let expr = alert["expr"].as_str().expect("an expression");
    assert!(
        expr.contains("max by (route) (fairway_controller_route_share_skew) > 0.3"),
        "judged on the controller's cluster-wide skew, at the set threshold: {expr}"
    );
    assert!(
        expr.contains("rate(fairway_proxy_requests_total[5m])) >= 1"),
        "quiet Routes are left out: {expr}"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("{{ $labels.route }}")),
        "Prometheus templating survives Helm's: {alert}"
    );
}

fn proxy_args(extra: &[&str]) -> Vec<String> {
    let objects = template("fairway", "fairway", extra);
    let ds = find(&objects, "DaemonSet", "fairway-proxy");
    super::strings(&ds["spec"]["template"]["spec"]["containers"][0]["args"])
}

#[test]
fn tracing_is_off_unless_a_collector_is_set() {
    assert!(
        proxy_args(&[])
            .iter()
            .all(|a| !a.starts_with("--otlp-endpoint")),
        "no traces by default"
    );
    let args = proxy_args(&[
        "--set",
        "proxy.tracing.otlpEndpoint=http://otel-collector.monitoring:4317",
        "--set-json",
        "proxy.tracing.sampleRatio=0.2",
    ]);
    assert!(
        args.contains(&"--otlp-endpoint=http://otel-collector.monitoring:4317".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--trace-sample-ratio=0.2".to_owned()),
        "{args:?}"
    );
}
