//! Fairway as users run it, on a real single-node cluster (tests/node/node.sh: kubelet,
//! containerd, kube-proxy, CoreDNS, the control plane; fairway_tests::node): our images
//! in pods, the chart installed with `helm install --wait`, requests through the
//! node-local proxy.
//!
//! Run alone with `cargo test -p fairway-tests --test node` once ./tests/run.sh has
//! installed the tools; needs root (namespaces, mounts, cgroups).

mod chart;
mod diagnose;
mod drain;
mod gateway;
mod handover;
mod inject;
mod injected;
mod plugin;
mod pod_events;
mod rollouts;
mod sidecar;
mod support;

use std::time::Duration;

use support::{apply, backend, curl, kubectl, namespace, node, rollout, wait_for};

/// The node itself: the version stamped into the multi-call binary, a pod from an
/// image we built (no registry), a Service reached through the apiserver's proxy
/// (apiserver -> pod IP) and through kube-proxy, cluster DNS from inside a pod, and
/// `kubectl logs` (apiserver -> kubelet).
#[test]
fn node_runs_our_images_with_services_dns_and_logs() {
    let node = node();
    eprintln!("node bring-up: {:.1}s", node.bring_up.as_secs_f64());
    let kubelet = kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.nodeInfo.kubeletVersion}",
    ]);
    assert_eq!(
        kubelet, "v1.36.3",
        "the kubelet's version comes from -ldflags"
    );
    let server = kubectl(&["version", "-o", "json"]);
    assert!(
        server.contains(r#""gitVersion": "v1.36.3""#),
        "the apiserver's version comes from -ldflags: {server}"
    );

    let ns = namespace("basics");
    apply(&backend(&ns, 1));
    rollout(&ns, "deployment/backend");
    let pod = kubectl(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "app=backend",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);

    let proxied = format!("/api/v1/namespaces/{ns}/services/backend:8080/proxy");
    assert_eq!(
        kubectl(&["get", "--raw", &format!("{proxied}/")]),
        pod,
        "the apiserver's service proxy reaches the pod and the pod names itself"
    );

    let cluster_ip = kubectl(&[
        "-n",
        &ns,
        "get",
        "service",
        "backend",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    for name in [
        format!("backend.{ns}.svc.cluster.local"),
        "backend".to_string(),
    ] {
        let resolved = kubectl(&["get", "--raw", &format!("{proxied}/resolve?name={name}")]);
        assert_eq!(
            resolved, cluster_ip,
            "{name} resolves from inside the pod (cluster DNS through its ClusterIP, \
             the kubelet's search path)"
        );
    }

    // kube-proxy programs the Service on its own sync loop, after the pod is Ready: with
    // the other node tests running beside this one that can take seconds, and until then
    // the ClusterIP refuses. Wait for it, then the answer must name the pod.
    let url = format!("http://{cluster_ip}:8080/");
    let mut last = String::new();
    let direct = wait_for(
        "kube-proxy programs the ClusterIP",
        Duration::from_secs(60),
        || {
            let out = curl(&["-sS", "--max-time", "5", &url]);
            last = out.stderr;
            out.success.then_some(out.stdout)
        },
    );
    assert_eq!(
        direct.trim(),
        pod,
        "the ClusterIP answers through kube-proxy with the pod's name (last error: {last})"
    );

    let logs = kubectl(&["-n", &ns, "logs", &pod]);
    assert!(
        logs.contains("listening on :8080"),
        "kubectl logs (apiserver -> kubelet) shows the pod's log: {logs}"
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
