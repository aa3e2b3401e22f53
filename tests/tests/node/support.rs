//! Shared steps of the node tests: the node, kubectl, images, the backend workload.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fairway_tests::kubectl::Output;
use fairway_tests::node::{self, BACKEND_IMAGE, TEST_TAG, TestNode};

/// A pod from a local image is Ready in ~1.4 s on a quiet node; 2 cores shared with
/// builds can make it many times that.
pub const POD_READY: Duration = Duration::from_secs(180);

/// The node of this test binary (panics with the reason: every caller is a test).
pub fn node() -> &'static TestNode {
    TestNode::shared().unwrap_or_else(|e| panic!("test node: {e}"))
}

/// `kubectl ARGS` on the node.
pub fn kubectl_out(args: &[&str]) -> Output {
    node()
        .kubectl(args, None)
        .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
}

/// `kubectl ARGS`, which must succeed; its stdout.
pub fn kubectl(args: &[&str]) -> String {
    let out = kubectl_out(args);
    assert!(
        out.success,
        "kubectl {} failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// `kubectl -n NAMESPACE get OBJECT -o jsonpath=PATH` (OBJECT as `pod/NAME`).
pub fn jsonpath(namespace: &str, object: &str, path: &str) -> String {
    kubectl(&[
        "-n",
        namespace,
        "get",
        object,
        "-o",
        &format!("jsonpath={path}"),
    ])
}

/// `kubectl apply -f -` of `yaml`.
pub fn apply(yaml: &str) {
    let out = node()
        .kubectl(&["apply", "-f", "-"], Some(yaml))
        .unwrap_or_else(|e| panic!("kubectl apply: {e}"));
    assert!(
        out.success,
        "kubectl apply failed:\n{}{}\n{yaml}",
        out.stdout, out.stderr
    );
}

/// A fresh namespace `PREFIX-xxxxxx`.
pub fn namespace(prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    kubectl(&["create", "namespace", &name]);
    name
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The backend image imported into the node (once per test binary).
pub fn backend_image() -> String {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let archive = node::node_out().join("images/backend.tar");
        node().import(&archive).unwrap_or_else(|e| panic!("{e}"));
    });
    format!("{BACKEND_IMAGE}:{TEST_TAG}")
}

/// The fasthttp gateway image imported into the node (once per test binary).
pub fn gateway_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let archive = node::node_out().join("images/gateway.tar");
        node().import(&archive).unwrap_or_else(|e| panic!("{e}"));
    });
}

/// The curl image (the host's curl and its libraries) imported into the node (once per
/// test binary): a client that reads `http_proxy`/`no_proxy` as users set them.
pub fn curl_image() -> String {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let archive = node::node_out().join("images/curl.tar");
        node().import(&archive).unwrap_or_else(|e| panic!("{e}"));
    });
    format!("fairway.local/curl:{TEST_TAG}")
}

/// The injector's capture image (fairway-capture and nft) imported into the node
/// (once per test binary; built with the Fairway images).
pub fn capture_image() -> String {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        fairway_images();
        let archive = node::node_out().join("images/fairway-capture.tar");
        node().import(&archive).unwrap_or_else(|e| panic!("{e}"));
    });
    format!("fairway.local/fairway-capture:{TEST_TAG}")
}

/// The drain hook's image (`fairway copy-hook`) imported into the node (once per test
/// binary; built with the Fairway images).
pub fn hook_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        fairway_images();
        let archive = node::node_out().join("images/fairway.tar");
        node().import(&archive).unwrap_or_else(|e| panic!("{e}"));
    });
}

/// The controller's CA (PEM) of the release in `fairway_ns`, from the Secret the chart
/// generates.
pub fn controller_ca(fairway_ns: &str) -> String {
    let ca = kubectl(&[
        "-n",
        fairway_ns,
        "get",
        "secret",
        "fairway-controller-tls",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    let ca = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ca.trim())
        .unwrap_or_else(|e| panic!("the CA is base64: {e}"));
    String::from_utf8(ca).expect("a PEM CA")
}

/// The exit code of container `container` of pod `pod`, once it has terminated.
pub fn exit_code(ns: &str, pod: &str, container: &str) -> i64 {
    let path = format!(
        "jsonpath={{.status.containerStatuses[?(@.name==\"{container}\")].state.terminated.exitCode}}"
    );
    wait_for(&format!("{pod}/{container} terminates"), POD_READY, || {
        kubectl(&["-n", ns, "get", "pod", pod, "-o", &path])
            .parse()
            .ok()
    })
}

/// The two Fairway images built and imported (once per test binary).
pub fn fairway_images() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        let (controller, proxy): (PathBuf, PathBuf) =
            node::fairway_images().map_err(|e| e.to_string())?;
        for archive in [&controller, &proxy] {
            node().import(archive).map_err(|e| e.to_string())?;
            let size = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
            eprintln!("image {}: {:.1} MB", archive.display(), size as f64 / 1e6);
        }
        Ok(())
    });
    if let Err(e) = done {
        panic!("fairway images: {e}");
    }
}

/// One helm release at a time: the chart's CRDs and ClusterRoles are cluster-wide.
pub fn helm_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Deployment of the backend image (answers with its pod name) and its Service on
/// port 8080.
pub fn backend(namespace: &str, replicas: u32) -> String {
    let image = backend_image();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata: {{labels: {{app: backend}}}}
    spec:
      terminationGracePeriodSeconds: 5
      securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
      containers:
      - name: backend
        image: {image}
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{containerPort: 8080, name: http}}]
        # The conventional drain: stay serving while endpoints catch up with the delete.
        lifecycle: {{preStop: {{sleep: {{seconds: 3}}}}}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {namespace}}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
"#
    )
}

/// Waits until deployment `name` has all its replicas updated and available.
pub fn rollout(namespace: &str, what: &str) {
    let timeout = format!("--timeout={}s", POD_READY.as_secs());
    kubectl(&["-n", namespace, "rollout", "status", what, &timeout]);
}

/// `curl ARGS` from the node's network namespace (pod and ClusterIP addresses).
pub fn curl(args: &[&str]) -> Output {
    node()
        .in_netns("curl", args)
        .unwrap_or_else(|e| panic!("curl in the node: {e}"))
}
