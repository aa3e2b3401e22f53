//! The sidecar as docs/install.md tells users to add it: the chart in sidecar mode, the
//! ConfigMap's container beside a gateway, the documented `HTTP_PROXY`/`http_proxy` and
//! `NO_PROXY`/`no_proxy`, and the loopback-only traffic port seen from another pod.

use serde_json::{Value, json};

use crate::chart::install_with;
use crate::support::{
    apply, backend, curl_image, exit_code, helm_lock, jsonpath, kubectl, namespace, rollout,
};

/// A host only the Route knows: no DNS name, so only the proxy can answer for it.
const ROUTED_HOST: &str = "orders.example";

/// The gateway pod: the chart's sidecar container (a native sidecar, so it starts first),
/// an app container that keeps the pod up and answers on :8080, and a curl "client" with
/// the documented environment that exits once it has its answers.
fn gateway_pod(ns: &str, sidecar: Value, volumes: Value, env: &[(&str, String)]) -> String {
    let mut sidecar = sidecar;
    sidecar["restartPolicy"] = json!("Always");
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let routed = format!("http://{ROUTED_HOST}/");
    let direct = format!("http://direct.{ns}.svc.cluster.local:8080/");
    // Retries until the sidecar has its table (404 UnknownHost until then; -f fails on
    // it). The NO_PROXY host has no Route, so through the proxy it would be 404 as well:
    // only the direct path makes it pass. Then once more over IPv6 loopback.
    let retry = [
        "-sSf",
        "--retry",
        "60",
        "--retry-all-errors",
        "--retry-delay",
        "1",
    ];
    let mut args: Vec<String> = retry.iter().map(|s| s.to_string()).collect();
    args.extend(["-w".into(), "\\n".into(), routed.clone(), direct]);
    args.extend([
        "--next".into(),
        "--proxy".into(),
        "http://[::1]:4140".into(),
    ]);
    args.extend(retry.iter().map(|s| s.to_string()));
    args.extend(["-w".into(), "\\n".into(), routed]);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gateway", "namespace": ns, "labels": {"app": "gateway"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [sidecar],
            "containers": [
                {
                    "name": "app",
                    "image": crate::support::backend_image(),
                    "imagePullPolicy": "Never",
                    "env": [{"name": "POD_NAME", "value": "gateway"}],
                },
                {
                    "name": "client",
                    "image": curl_image(),
                    "imagePullPolicy": "Never",
                    "args": args,
                    "env": env,
                },
            ],
            "volumes": volumes,
        },
    });
    pod.to_string()
}

/// A one-shot curl pod elsewhere in the namespace.
fn neighbour(ns: &str, name: &str, args: &[&str]) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "curl",
                "image": curl_image(),
                "imagePullPolicy": "Never",
                "args": args,
            }],
        },
    })
    .to_string()
}

#[test]
fn the_sidecar_serves_its_own_pod_only_and_curl_follows_the_documented_environment() {
    let _one_release = helm_lock();
    let ns = namespace("gw");
    let (release, _) = install_with(&[
        "--set=proxy.mode=sidecar".into(),
        format!("--set=discovery.auth.extraAllowedServiceAccounts={{{ns}/default}}"),
    ]);
    let fairway_ns = release.0.clone();

    // The backends: a Route for a host only it knows, and a second Service with no Route
    // (a "cluster Service that has no Route", which NO_PROXY must list).
    apply(&backend(&ns, 2));
    apply(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: direct, namespace: {ns}}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
---
apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: orders, namespace: {ns}}}
spec:
  hosts: [{ROUTED_HOST}]
  rules:
  - backends: [{{service: backend, port: 8080}}]
"
    ));
    rollout(&ns, "deployment/backend");

    // What docs/install.md says to copy: the CA (ca.crt only), the container, volumes.
    let ca = jsonpath(
        &fairway_ns,
        "secret/fairway-controller-tls",
        "{.data.ca\\.crt}",
    );
    apply(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: fairway-controller-tls, namespace: {ns}}}
data: {{ca.crt: {ca}}}
"
    ));
    let data = |key: &str| -> Value {
        let path = format!("{{.data.{}}}", key.replace('.', "\\."));
        let text = jsonpath(&fairway_ns, "configmap/fairway-proxy-sidecar", &path);
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{key}: {e}\n{text}"))
    };
    let (sidecar, volumes) = (data("container.yaml"), data("volumes.yaml"));

    let proxy = "http://127.0.0.1:4140".to_string();
    let no_proxy =
        format!("kubernetes.default.svc,.{fairway_ns}.svc,direct.{ns}.svc.cluster.local");
    apply(&gateway_pod(
        &ns,
        sidecar,
        volumes,
        &[
            ("HTTP_PROXY", proxy.clone()),
            ("http_proxy", proxy),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
        ],
    ));

    // The gateway's own calls: the Route's host through the sidecar (IPv4 and IPv6
    // loopback), the NO_PROXY Service directly.
    let code = exit_code(&ns, "gateway", "client");
    let answers = kubectl(&["-n", &ns, "logs", "gateway", "-c", "client"]);
    let sidecar_log = kubectl(&["-n", &ns, "logs", "gateway", "-c", "fairway-proxy"]);
    assert_eq!(
        code, 0,
        "curl with the documented environment: {answers}\nsidecar:\n{sidecar_log}"
    );
    let lines: Vec<&str> = answers.lines().collect();
    assert_eq!(lines.len(), 3, "three answers: {answers}");
    for line in &lines {
        assert!(
            line.starts_with("backend-"),
            "a backend pod answered: {answers}"
        );
    }

    // Another pod reaches the gateway pod (its app port answers) but not its sidecar.
    let gateway_ip = jsonpath(&ns, "pod/gateway", "{.status.podIP}");
    let app = format!("http://{gateway_ip}:8080/");
    let through = format!("http://{gateway_ip}:4140/");
    let host = format!("Host: {ROUTED_HOST}");
    apply(&neighbour(
        &ns,
        "reach-app",
        &["-sS", "--max-time", "10", &app],
    ));
    apply(&neighbour(
        &ns,
        "reach-sidecar",
        &["-sS", "--max-time", "10", "-H", &host, &through],
    ));
    let app_code = exit_code(&ns, "reach-app", "curl");
    let app_log = kubectl(&["-n", &ns, "logs", "reach-app"]);
    assert_eq!(
        (app_code, app_log.trim()),
        (0, "gateway"),
        "another pod reaches the gateway pod's own port"
    );
    let sidecar_code = exit_code(&ns, "reach-sidecar", "curl");
    let sidecar_answer = kubectl(&["-n", &ns, "logs", "reach-sidecar"]);
    assert_eq!(
        sidecar_code, 7,
        "another pod's connection to the sidecar's :4140 is refused (curl exit 7): {sidecar_answer}"
    );
    let phase = jsonpath(&ns, "pod/gateway", "{.status.phase}");
    assert_eq!(phase, "Running", "the sidecar was up all along");
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    drop(release);
}
