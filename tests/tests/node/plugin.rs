//! `kubectl fairway` as users run it: the `kubectl-fairway` binary copied out of the
//! controller image (as docker/controller.Dockerfile ships it) onto PATH, the real
//! kubectl finding it, talking to the controller of a chart installed on the real node
//! through the apiserver's service proxy (which refuses loopback addresses, so this
//! cannot run against the loopback test apiserver).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use fairway_tests::kubectl::Output;
use fairway_tests::node::{self, kubectl_path, node_out};

use crate::chart::{install_with, route, spread};
use crate::support::{
    POD_READY, apply, backend, helm_lock, kubectl, namespace, node, rollout, wait_for,
};

/// The directory holding the plugin as a user gets it: unpacked from the controller
/// image's OCI archive (the one the node imported), layer by layer until one has it.
fn plugin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (controller, _) = node::fairway_images().unwrap_or_else(|e| panic!("{e}"));
        let dir = node_out().join("plugin-from-image");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the unpacked image");
        let status = Command::new("sh")
            .args([
                "-c",
                r#"set -e; cd "$1"; tar -xf "$2"
                   for layer in blobs/sha256/*; do
                     tar -xf "$layer" ./usr/local/bin/kubectl-fairway 2>/dev/null && exit 0
                   done
                   echo "no layer of $2 holds /usr/local/bin/kubectl-fairway" >&2; exit 1"#,
                "sh",
            ])
            .arg(&dir)
            .arg(&controller)
            .status()
            .expect("run sh and tar");
        assert!(status.success(), "the controller image ships the plugin");
        dir.join("usr/local/bin")
    })
}

/// `kubectl fairway ARGS` with the plugin on PATH, against the node.
fn fairway(args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![plugin_dir().clone()];
    paths.extend(std::env::split_paths(&path));
    let kubectl = kubectl_path().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(kubectl)
        .env("KUBECONFIG", &node().kubeconfig)
        .env("PATH", std::env::join_paths(paths).expect("a PATH"))
        .arg("fairway")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run kubectl fairway: {e}"));
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> String {
    let out = fairway(args);
    assert!(
        out.success,
        "kubectl fairway {}: {}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

#[test]
fn kubectl_fairway_reads_the_controller_through_the_apiservers_service_proxy() {
    let _one_release = helm_lock();
    // One replica: each replica knows the proxies connected to it (docs/operations.md).
    let (release, _) = install_with(&["--set=controller.replicas=1".to_owned()]);
    let fairway_ns = release.0.clone();
    let ns = namespace("plugin");
    apply(&backend(&ns, 4));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");
    let proxy_ip = kubectl(&[
        "-n",
        &fairway_ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=proxy",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let url = format!("http://{proxy_ip}:4140/");
    let host = format!("backend.{ns}.svc.cluster.local");
    wait_for("all four pods through the proxy", POD_READY, || {
        (spread(&url, &host, 8).len() == 4).then_some(())
    });
    spread(&url, &host, 200);

    let status = ok(&["-n", &fairway_ns, "status"]);
    eprintln!("kubectl fairway status:\n{status}");
    let proxy_pod = kubectl(&[
        "-n",
        &fairway_ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=proxy",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let row = status
        .lines()
        .find(|l| l.starts_with(&proxy_pod))
        .unwrap_or_else(|| panic!("the proxy {proxy_pod} is listed:\n{status}"));
    assert_eq!(
        row.split_whitespace().nth(4),
        Some("0"),
        "converged, lag 0: {row}"
    );

    let route_key = format!("{ns}/backend");
    let routes = ok(&["-n", &fairway_ns, "routes"]);
    eprintln!("kubectl fairway routes:\n{routes}");
    let row = routes
        .lines()
        .find(|l| l.starts_with(&route_key))
        .unwrap_or_else(|| panic!("{route_key} listed:\n{routes}"));
    assert!(
        row.contains("True (Accepted)") && row.contains("4/4"),
        "{row}"
    );

    // The proxy reports every 2 s: the shares show once its report is in.
    let top = wait_for("per-pod shares in kubectl fairway top", POD_READY, || {
        spread(&url, &host, 40);
        let top = ok(&["-n", &fairway_ns, "top", &route_key, "--count", "1"]);
        let pods = top
            .lines()
            .filter(|l| l.starts_with("backend-") && l.contains('%'))
            .count();
        (pods == 4).then_some(top)
    });
    eprintln!("kubectl fairway top:\n{top}");

    let healthy = fairway(&["-n", &fairway_ns, "check"]);
    eprintln!(
        "kubectl fairway check:\n{}{}",
        healthy.stdout, healthy.stderr
    );
    assert!(
        !healthy.stdout.contains(&route_key),
        "nothing wrong with the working Route: {}",
        healthy.stdout
    );
    // A Route to a Service that does not exist: check names it and says what to do.
    apply(&format!(
        "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: ghost, namespace: {ns}}}
spec:
  hosts: [ghost.{ns}]
  rules:
  - backends: [{{service: ghost, port: 8080}}]
"
    ));
    let broken = wait_for("check finds the missing Service", POD_READY, || {
        let out = fairway(&["-n", &fairway_ns, "check"]);
        out.stdout
            .contains(&format!("route {ns}/ghost"))
            .then_some(out)
    });
    eprintln!("kubectl fairway check (broken):\n{}", broken.stdout);
    assert!(
        !broken.success,
        "check exits non-zero when it finds a problem"
    );
    assert!(
        broken.stdout.contains("ServiceNotFound"),
        "{}",
        broken.stdout
    );
    assert!(
        broken.stdout.contains("create the Service"),
        "{}",
        broken.stdout
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    drop(release);
}
