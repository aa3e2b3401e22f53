//! The demo's `--static-dir` content: one Route, its Service and one EndpointSlice,
//! written the way `kubectl get -o yaml` would show them.

use std::fmt::Write as _;
use std::path::Path;

use super::pods::Pod;

/// Writes `route.yaml` and `orders.yaml` (Service + EndpointSlice with `pods` ready).
/// Each file is written aside and renamed, so the controller never reads half of it.
pub fn write(dir: &Path, host: &str, pods: &[Pod]) -> std::io::Result<()> {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let route = format!(
        "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: orders, namespace: shop, creationTimestamp: \"2026-01-01T00:00:00Z\"}}
spec:
  hosts: [{host}]
  rules:
  - pathPrefix: /
    backends:
    - {{service: orders, port: 8080}}
"
    );
    let mut endpoints = String::new();
    for pod in pods {
        let _ = write!(
            endpoints,
            "- addresses: [\"{}\"]\n  conditions: {{ready: true, serving: true, terminating: false}}\n  targetRef: {{kind: Pod, name: {}, namespace: shop}}\n",
            pod.addr.ip(),
            pod.name
        );
    }
    let orders = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: shop}}
spec:
  ports:
  - {{name: http, port: 8080, targetPort: {port}, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: orders-abc12
  namespace: shop
  labels: {{kubernetes.io/service-name: orders}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP}}
endpoints:
{endpoints}"
    );
    replace(dir, "route.yaml", &route)?;
    replace(dir, "orders.yaml", &orders)
}

fn replace(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, text)?;
    std::fs::rename(aside, dir.join(name))
}
