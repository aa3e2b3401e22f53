//! The chart's Grafana dashboard (and its alert) ask only for metrics that exist: the
//! chart rendered with real helm and its default values, every `fairway_*` name in the
//! queries looked up in what a real controller and a real proxy serve on `/metrics`
//! after real traffic.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fairway_tests::helm::{CHART_DIR, helm};
use serde_json::Value;

use super::world::{WAIT, World, value};

/// `helm template` of the chart with `extra` values, every document parsed.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "fairway", CHART_DIR, "--namespace", "fairway"];
    args.extend_from_slice(extra);
    let out = helm(&args, None).unwrap_or_else(|e| panic!("helm template: {e}"));
    assert!(out.success, "helm template failed:\n{}", out.stderr);
    out.stdout
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(Value::is_object)
        .collect()
}

/// Every string under a key `expr` or `definition`, anywhere in `value`.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `fairway_*` identifiers of PromQL `query`.
fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("fairway_"))
        .map(str::to_owned)
        .collect()
}

/// The sample names of a Prometheus text scrape (`name{...} value` or `name value`).
fn exposed(scrape: &str, names: &mut BTreeSet<String>) {
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some(name) = line.split(['{', ' ']).next() {
            names.insert(name.to_owned());
        }
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alert_query_is_really_exposed() {
    let objects = render(&[]);
    let dashboard = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap" && !o["metadata"]["labels"]["grafana_dashboard"].is_null()
        })
        .expect("a ConfigMap labelled grafana_dashboard with the default values");
    let json = dashboard["data"]["fairway.json"]
        .as_str()
        .expect("the dashboard JSON");
    let json: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("dashboard JSON: {e}"));
    let mut all = Vec::new();
    queries(&json, &mut all);
    let titles: Vec<&str> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "Request rate",
        "Errors",
        "Latency",
        "Per-pod share",
        "Skew",
        "Proxy lag",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(wanted)),
            "a {wanted} panel: {titles:?}"
        );
    }
    let alert = render(&["--set", "prometheusRule.enabled=true"]);
    let rule = alert
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the PrometheusRule");
    queries(rule, &mut all);
    let wanted: BTreeSet<String> = all.iter().flat_map(|q| metric_names(q)).collect();
    assert!(
        wanted.len() >= 10,
        "the queries name the metrics: {wanted:?}"
    );

    // Real processes, real traffic: counters with labels exist only once used.
    let mut world = World::start(170, 2, 2).await;
    let proxy = world.add_proxy("dashboard", &[]).await;
    world.requests(proxy, 20).await;
    let deadline = Instant::now() + WAIT;
    let controller = loop {
        let text = world.controller("/metrics").await;
        if value(
            &text,
            r#"fairway_controller_route_share_skew{route="fair/orders"}"#,
        )
        .is_some()
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no load report reached the controller:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut names = BTreeSet::new();
    exposed(&controller, &mut names);
    exposed(&world.proxy_metrics(proxy).await, &mut names);
    let missing: Vec<&String> = wanted.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "queried but exposed by neither the controller nor the proxy: {missing:?}\nexposed: {names:?}"
    );
}
