//! The Route CRD against a real kube-apiserver: it installs and becomes Established, a
//! valid Route round-trips, the schema rejects what it claims to, the printer columns
//! show, and status is a separate subresource.

use std::sync::OnceLock;

use fairway_tests::TestCluster;
use fairway_tests::kubectl::{Output, kubectl};

const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crds/fairway.dev_routes.yaml"
);

/// The cluster with the committed CRD applied and Established (once per test binary).
fn cluster() -> &'static TestCluster {
    static CRD: OnceLock<Result<(), String>> = OnceLock::new();
    let cluster = TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"));
    let installed = CRD.get_or_init(|| {
        let apply = kubectl(cluster, &["apply", "--server-side", "-f", CRD_FILE], None)
            .map_err(|e| e.to_string())?;
        check(&apply, "kubectl apply the CRD")?;
        let wait = kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Established",
                "crd/routes.fairway.dev",
                "--timeout=60s",
            ],
            None,
        )
        .map_err(|e| e.to_string())?;
        check(&wait, "wait for the CRD to be Established")
    });
    if let Err(e) = installed {
        panic!("{e}");
    }
    cluster
}

fn check(out: &Output, what: &str) -> Result<(), String> {
    if out.success {
        Ok(())
    } else {
        Err(format!("{what} failed:\n{}{}", out.stdout, out.stderr))
    }
}

fn run(cluster: &TestCluster, args: &[&str], stdin: Option<&str>) -> Output {
    kubectl(cluster, args, stdin).unwrap_or_else(|e| panic!("{e}"))
}

fn namespace(cluster: &TestCluster, prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let out = run(cluster, &["create", "namespace", &name], None);
    assert!(out.success, "create namespace {name}: {}", out.stderr);
    name
}

fn route_yaml(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: fairway.dev/v1alpha1\nkind: Route\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

const VALID_SPEC: &str = "  hosts: [orders.shop.svc.cluster.local, orders.shop, orders]
  rules:
  - pathPrefix: /
    backends:
    - service: orders
      port: 8080
      weight: 1
  - pathPrefix: /admin
    backends:
    - {service: orders-admin, port: http, weight: 0}
  loadBalancer: {policy: PeakEwma, slowStart: 30s}
  upstream: {protocol: Auto, maxConnectionsPerEndpoint: 64, idleTimeout: 90s, maxConnectionAge: 0s, maxRequestsPerConnection: 0, upgrades: [websocket], upgradeIdleTimeout: 10m, maxUpgradeLifetime: 0s, drainTimeout: 20s}
  timeouts: {request: 15s, connect: 250ms, grpcMaximum: 30s}
  retries: {attempts: 2, budgetPercent: 20, grpcStatuses: [UNAVAILABLE, RESOURCE_EXHAUSTED],
            httpStatuses: [500, 503], backoff: 50ms}
";

#[test]
fn crd_is_established_and_valid_route_round_trips() {
    let cluster = cluster();
    let ns = namespace(cluster, "crd-valid");
    let yaml = route_yaml(&ns, "orders", VALID_SPEC);
    let out = run(cluster, &["apply", "-f", "-"], Some(&yaml));
    assert!(
        out.success,
        "a valid Route must be accepted: {}",
        out.stderr
    );

    let got = run(
        cluster,
        &["get", "route", "orders", "-n", &ns, "-o", "json"],
        None,
    );
    assert!(got.success, "{}", got.stderr);
    let got: serde_json::Value = serde_json::from_str(&got.stdout).expect("kubectl json");
    let sent: serde_json::Value = serde_saphyr::from_str(&yaml).expect("test yaml");
    assert_eq!(
        got["spec"], sent["spec"],
        "the spec read back must equal the spec written (no field dropped or defaulted away)"
    );

    // The short name works too.
    let short = run(cluster, &["get", "fwr", "-n", &ns, "-o", "name"], None);
    assert_eq!(
        short.stdout.trim(),
        "route.fairway.dev/orders",
        "{}",
        short.stderr
    );
}

#[test]
fn schema_rejects_invalid_routes_naming_the_field() {
    let cluster = cluster();
    let ns = namespace(cluster, "crd-invalid");
    let backend = "  rules: [{backends: [{service: orders, port: 8080}]}]\n";
    let cases: &[(&str, String, &str)] = &[
        ("empty hosts", format!("  hosts: []\n{backend}"), "spec.hosts"),
        (
            "empty rules",
            "  hosts: [orders]\n  rules: []\n".into(),
            "spec.rules",
        ),
        (
            "empty backends",
            "  hosts: [orders]\n  rules: [{backends: []}]\n".into(),
            "spec.rules[0].backends",
        ),
        (
            "host with a port",
            format!("  hosts: [\"orders:8080\"]\n{backend}"),
            "spec.hosts[0]",
        ),
        (
            "host with a scheme",
            format!("  hosts: [\"http://orders\"]\n{backend}"),
            "spec.hosts[0]",
        ),
        (
            "host with a space",
            format!("  hosts: [\"orders shop\"]\n{backend}"),
            "spec.hosts[0]",
        ),
        (
            "uppercase host",
            format!("  hosts: [Orders.Shop]\n{backend}"),
            "spec.hosts[0]",
        ),
        (
            "malformed duration",
            format!("  hosts: [orders]\n{backend}  timeouts: {{request: 15 seconds}}\n"),
            "spec.timeouts.request",
        ),
        (
            "weight above the maximum",
            "  hosts: [orders]\n  rules: [{backends: [{service: orders, port: 8080, weight: 1000001}]}]\n"
                .into(),
            "spec.rules[0].backends[0].weight",
        ),
        (
            "negative weight",
            "  hosts: [orders]\n  rules: [{backends: [{service: orders, port: 8080, weight: -1}]}]\n"
                .into(),
            "spec.rules[0].backends[0].weight",
        ),
        (
            "unknown policy",
            format!("  hosts: [orders]\n{backend}  loadBalancer: {{policy: Random}}\n"),
            "spec.loadBalancer.policy",
        ),
        (
            "unknown gRPC status",
            format!("  hosts: [orders]\n{backend}  retries: {{grpcStatuses: [UNAVAILABEL]}}\n"),
            "spec.retries.grpcStatuses[0]",
        ),
        (
            "malformed gRPC maximum",
            format!("  hosts: [orders]\n{backend}  timeouts: {{grpcMaximum: soon}}\n"),
            "spec.timeouts.grpcMaximum",
        ),
    ];
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        let yaml = route_yaml(&ns, &format!("bad-{i}"), spec);
        let out = run(cluster, &["apply", "-f", "-"], Some(&yaml));
        assert!(
            !out.success,
            "{what}: the apiserver must reject it, but it was accepted"
        );
        assert!(
            out.stderr.contains(field),
            "{what}: the error must name {field}, got: {}",
            out.stderr
        );
    }
}

#[test]
fn printer_columns_show_hosts_ready_accepted_age() {
    let cluster = cluster();
    let ns = namespace(cluster, "crd-columns");
    let yaml = route_yaml(&ns, "shown", VALID_SPEC);
    assert!(run(cluster, &["apply", "-f", "-"], Some(&yaml)).success);
    let status = r#"{"status":{"observedGeneration":1,"endpoints":{"ready":4,"serving":5,"total":5},"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"route accepted","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    let patched = run(
        cluster,
        &[
            "patch",
            "route",
            "shown",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        None,
    );
    assert!(patched.success, "{}", patched.stderr);

    let out = run(cluster, &["get", "routes", "-A"], None);
    assert!(out.success, "{}", out.stderr);
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "HOSTS", "READY", "ACCEPTED", "AGE"],
        "printer columns"
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&ns))
        .unwrap_or_else(|| panic!("no row for {ns} in:\n{}", out.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "shown");
    assert!(cells[2].contains("orders.shop"), "hosts column: {row}");
    assert_eq!(cells[3], "4", "ready column: {row}");
    assert_eq!(cells[4], "True", "accepted column: {row}");
}

#[test]
fn status_is_a_subresource_separate_from_spec() {
    let cluster = cluster();
    let ns = namespace(cluster, "crd-status");
    let yaml = route_yaml(&ns, "split", VALID_SPEC);
    assert!(run(cluster, &["apply", "-f", "-"], Some(&yaml)).success);

    // A status write through the main resource is ignored...
    let via_main = run(
        cluster,
        &[
            "patch",
            "route",
            "split",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":7}}"#,
        ],
        None,
    );
    assert!(via_main.success, "{}", via_main.stderr);
    let get = |path: &str| {
        let out = run(
            cluster,
            &[
                "get",
                "route",
                "split",
                "-n",
                &ns,
                "-o",
                &format!("jsonpath={path}"),
            ],
            None,
        );
        assert!(out.success, "{}", out.stderr);
        out.stdout
    };
    assert_eq!(
        get("{.status.observedGeneration}"),
        "",
        "status must not change via the main resource"
    );

    // ...and a spec write through the status subresource is ignored.
    let via_status = run(
        cluster,
        &[
            "patch",
            "route",
            "split",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"spec":{"hosts":["changed"]},"status":{"observedGeneration":1}}"#,
        ],
        None,
    );
    assert!(via_status.success, "{}", via_status.stderr);
    assert_eq!(
        get("{.status.observedGeneration}"),
        "1",
        "status subresource writes status"
    );
    assert_eq!(
        get("{.spec.hosts[0]}"),
        "orders.shop.svc.cluster.local",
        "the status subresource must not change spec"
    );
    assert_eq!(
        get("{.metadata.generation}"),
        "1",
        "status writes must not bump generation"
    );
}
