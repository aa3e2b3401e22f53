//! The drain handshake against `preStop: sleep`, as users would set it up by hand (no
//! injector yet): a 20-replica backend rolled under the fasthttp gateway's steady
//! keep-alive load through two proxies (the node's DaemonSet proxy, and the sidecar the
//! webhook injects into a second gateway), once with `sleep 5` and once with
//! `fairway wait-drained` (copied by an init container into an emptyDir with its own
//! loader, a projected token for audience `fairway`, the controller's CA copied into a
//! ConfigMap). Reports each rollout's failed requests and, for the handshake, how long
//! the pods waited in preStop (the controller's log of each answer). Asserts that both
//! rollouts complete under load, that every hook was answered drained, that no hook
//! failed (a failed hook is a `FailedPreStopHook` event) and that the handshake rollout
//! lost no request; the counts go to docs/benchmarks.md.

use std::time::Duration;

use serde_json::Value;

use crate::chart::{install_injecting, route};
use crate::gateway::{gateway_pod, injected, now_ms, seconds};
use crate::support::{
    POD_READY, apply, backend_image, controller_ca, gateway_image, helm_lock, hook_image, kubectl,
    kubectl_out, namespace, wait_for,
};
use fairway_tests::node::TEST_TAG;

const REPLICAS: u32 = 20;
/// The gateway through the node's proxy, and the one with its own injected sidecar.
const GATEWAYS: [&str; 2] = ["gateway", "sidecar"];
/// Long enough for three rollouts of 20 pods on a busy 2-core node; the test reads the
/// gateway's log while it still runs and deletes it at the end.
const DURATION: &str = "600s";
/// Quiet time around each measured rollout, so its failures are its own.
const SETTLE: Duration = Duration::from_secs(3);
/// A rollout of 20 pods whose init containers copy a 47 MB binary, on 2 cores shared
/// with other builds, can take minutes.
const ROLLOUT: &str = "--timeout=600s";

/// Waits until the backend's rollout is complete.
fn rollout(ns: &str) {
    kubectl(&["-n", ns, "rollout", "status", "deployment/backend", ROLLOUT]);
}

/// Where the init container puts the hook.
const HOOK_DIR: &str = "/fairway-drain";

/// The backend with `pre_stop` (YAML flow) and, for the handshake, what it needs.
fn backend(ns: &str, pre_stop: &str, handshake: bool) -> String {
    let image = backend_image();
    let (init, volumes, mounts) = if handshake {
        (
            format!(
                "initContainers:
      - name: fairway-drain
        image: fairway.local/fairway:{TEST_TAG}
        imagePullPolicy: Never
        args: [copy-hook, {HOOK_DIR}]
        volumeMounts: [{{name: fairway-drain, mountPath: {HOOK_DIR}}}]"
            ),
            "volumes:
      # In memory: twenty pods writing the binary at once to a busy disk stalled the
      # node (the gateway's own log writes with it).
      - {name: fairway-drain, emptyDir: {medium: Memory}}
      - {name: fairway-ca, configMap: {name: fairway-ca}}
      - name: fairway-token
        projected:
          sources: [{serviceAccountToken: {audience: fairway, expirationSeconds: 600, path: token}}]"
                .to_owned(),
            format!(
                "volumeMounts:
        - {{name: fairway-drain, mountPath: {HOOK_DIR}}}
        - {{name: fairway-ca, mountPath: /var/run/fairway/ca}}
        - {{name: fairway-token, mountPath: /var/run/secrets/fairway}}"
            ),
        )
    } else {
        (
            "initContainers: []".to_owned(),
            "volumes: []".to_owned(),
            "volumeMounts: []".to_owned(),
        )
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {ns}}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata: {{labels: {{app: backend}}}}
    spec:
      terminationGracePeriodSeconds: 30
      securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
      {init}
      {volumes}
      containers:
      - name: backend
        image: {image}
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{containerPort: 8080, name: http}}]
        lifecycle: {{preStop: {pre_stop}}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
        {mounts}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {ns}}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 8080, targetPort: 8080}}]
"#
    )
}

/// The handshake's preStop: the copied binary through its copied loader.
fn handshake(fairway_ns: &str) -> String {
    let command = [
        format!("{HOOK_DIR}/ld-linux-x86-64.so.2"),
        "--library-path".to_owned(),
        HOOK_DIR.to_owned(),
        format!("{HOOK_DIR}/fairway"),
        "wait-drained".to_owned(),
        format!("--controller=https://fairway-controller.{fairway_ns}.svc:18000"),
        "--controller-ca-file=/var/run/fairway/ca/ca.crt".to_owned(),
        "--controller-token-file=/var/run/secrets/fairway/token".to_owned(),
        "--timeout=20s".to_owned(),
        "--fallback-sleep=5s".to_owned(),
    ];
    let command = serde_json::to_string(&command).unwrap_or_default();
    format!("{{exec: {{command: {command}}}}}")
}

/// Failed requests and answers in the seconds stamped within `[from, to]` (ms).
fn window(lines: &[Value], from: i64, to: i64) -> (u64, u64) {
    let mut failed = 0;
    let mut ok = 0;
    for line in lines {
        let end = line["unix"].as_i64().unwrap_or(0) * 1000;
        if end < from || end - 1000 > to {
            continue;
        }
        failed += line["failed"].as_u64().unwrap_or(0);
        ok += line["counts"]
            .as_object()
            .map_or(0, |c| c.values().filter_map(Value::as_u64).sum());
    }
    (failed, ok)
}

/// The controllers' answers to hooks of namespace `ns`: (outcome, waited ms), and the
/// reasons of those that were not drained.
pub fn answers(fairway_ns: &str, ns: &str) -> (Vec<(String, u64)>, Vec<String>) {
    let logs = kubectl(&[
        "-n",
        fairway_ns,
        "logs",
        "-l",
        "app.kubernetes.io/component=controller",
        "--tail=-1",
        "--prefix=false",
    ]);
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        // One JSON object per line, the event's fields flattened into it.
        .filter(|l| l["message"] == "drain request answered with every replica")
        .filter(|l| {
            l["pod"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{ns}/")))
        })
        .collect();
    let answers = (lines.iter())
        .map(|l| {
            let outcome = l["outcome"].as_str().unwrap_or("?").to_owned();
            (outcome, l["waited_ms"].as_u64().unwrap_or(0))
        })
        .collect();
    let reasons = (lines.iter())
        .filter(|l| l["outcome"] != "Drained")
        .map(|l| format!("{}: {}", l["pod"], l["reason"]))
        .collect();
    (answers, reasons)
}

#[test]
fn a_rollout_with_the_drain_handshake_against_one_with_sleep_under_load() {
    let _one_release = helm_lock();
    gateway_image();
    let (release, _) = install_injecting();
    hook_image();
    let fairway_ns = release.0.clone();
    let ns = namespace("drain");

    // Manual setup (docs/operations.md): the controller's CA where the hook can read it.
    let ca = controller_ca(&fairway_ns);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).expect("write the CA");
    kubectl(&[
        "-n",
        &ns,
        "create",
        "configmap",
        "fairway-ca",
        &format!("--from-file=ca.crt={}", ca_file.display()),
    ]);

    apply(&backend(&ns, "{sleep: {seconds: 5}}", false));
    apply(&route(&ns));
    rollout(&ns);
    apply(&gateway_pod(
        &ns,
        "gateway",
        DURATION,
        &[format!("-via=fairway-proxy.{fairway_ns}.svc:4140")],
    ));
    // The second proxy: another gateway's injected sidecar, which the hooks wait for too.
    apply(&injected(&gateway_pod(&ns, "sidecar", DURATION, &[])));
    for gateway in GATEWAYS {
        wait_for(&format!("{gateway} answered for 3 s"), POD_READY, || {
            let out = kubectl_out(&["-n", &ns, "logs", gateway, "-c", "gateway"]);
            (out.success
                && out
                    .stdout
                    .lines()
                    .filter(|l| l.contains("backend-"))
                    .count()
                    >= 3)
                .then_some(())
        });
    }

    let measure = |name: &str| -> (i64, i64) {
        std::thread::sleep(SETTLE);
        let start = now_ms();
        kubectl(&["-n", &ns, "rollout", "restart", "deployment/backend"]);
        rollout(&ns);
        std::thread::sleep(SETTLE);
        eprintln!(
            "{name}: rolled in {:.1} s",
            (now_ms() - start) as f64 / 1000.0
        );
        (start, now_ms())
    };
    // What each replica's and proxy's table did, every 2 s (docs/benchmarks.md: the
    // tables stopped following the slices in earlier runs).
    let sampler = crate::diagnose::Sampler::start(&fairway_ns, &ns);
    let sleep = measure("preStop sleep 5");
    // Pods with the handshake; this transition's old pods still sleep.
    apply(&backend(&ns, &handshake(&fairway_ns), true));
    rollout(&ns);
    let hooked = measure("preStop fairway wait-drained");

    // The last old pods may still be in their hooks: their answers count too.
    wait_for("the old pods are gone", POD_READY, || {
        let pods = kubectl(&["-n", &ns, "get", "pods", "-l", "app=backend", "-o", "name"]);
        (pods.lines().count() == REPLICAS as usize).then_some(())
    });
    drop(sampler);
    let dumped = crate::diagnose::dump(&fairway_ns, &ns);
    eprintln!("logs, samples and tables: {}", dumped.display());
    let mut results = Vec::new();
    for gateway in GATEWAYS {
        let lines = seconds(&ns, gateway);
        for (name, (from, to)) in [("sleep 5", sleep), ("handshake", hooked)] {
            let (failed, ok) = window(&lines, from, to);
            eprintln!(
                "{gateway}, {name}: {failed} failed of {} requests",
                failed + ok
            );
            // The shape of the window, second by second: a stall shows as a gap.
            let shape: Vec<String> = (lines.iter())
                .filter(|l| {
                    let end = l["unix"].as_i64().unwrap_or(0) * 1000;
                    end >= from && end - 1000 <= to
                })
                .map(|l| {
                    let ok: u64 = (l["counts"].as_object())
                        .map_or(0, |c| c.values().filter_map(Value::as_u64).sum());
                    format!("{}/{}", l["failed"].as_u64().unwrap_or(0), ok)
                })
                .collect();
            eprintln!("{name}: failed/ok per second: {}", shape.join(" "));
            if ok == 0 {
                // A stalled gateway: what the proxy and the gateway said.
                for (what, args) in [
                    (
                        "proxy",
                        vec![
                            "-n",
                            &fairway_ns,
                            "logs",
                            "daemonset/fairway-proxy",
                            "--tail=40",
                        ],
                    ),
                    (
                        "endpoints",
                        vec!["-n", &ns, "get", "endpointslices", "-o", "wide"],
                    ),
                    ("pods", vec!["-n", &ns, "get", "pods", "-o", "wide"]),
                ] {
                    let out = kubectl_out(&args);
                    eprintln!("--- {what}:\n{}{}", out.stdout, out.stderr);
                }
            }
            results.push((gateway, name, failed, ok));
        }
    }
    // The controllers' warnings, if any.
    let logs = kubectl(&[
        "-n",
        &fairway_ns,
        "logs",
        "-l",
        "app.kubernetes.io/component=controller",
        "--tail=-1",
    ]);
    for line in logs
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
    {
        eprintln!("controller: {line}");
    }
    let (answered, reasons) = answers(&fairway_ns, &ns);
    for reason in &reasons {
        eprintln!("not drained: {reason}");
    }
    let mut waits: Vec<u64> = answered.iter().map(|(_, ms)| *ms).collect();
    waits.sort_unstable();
    eprintln!(
        "handshake: {} hooks answered; waited (ms) min {:?} median {:?} max {:?}; outcomes {:?}",
        waits.len(),
        waits.first(),
        waits.get(waits.len() / 2),
        waits.last(),
        answered
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    );
    let failed_hooks = kubectl(&[
        "-n",
        &ns,
        "get",
        "events",
        "--field-selector=reason=FailedPreStopHook",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    eprintln!("FailedPreStopHook events: {failed_hooks:?}");
    assert!(
        answered.len() >= REPLICAS as usize,
        "every old pod's hook reached the controller: {answered:?}"
    );
    assert!(
        answered.iter().all(|(o, _)| o == "Drained"),
        "every hook was answered drained: {answered:?}"
    );
    assert!(
        failed_hooks.trim().is_empty(),
        "no hook failed: {failed_hooks}"
    );
    for (gateway, name, failed, ok) in &results {
        assert!(
            *ok > 0,
            "{gateway}, {name}: the gateway's traffic went on through the rollout"
        );
        if *name == "handshake" {
            assert_eq!(
                *failed, 0,
                "{gateway}: the handshake rollout lost no request (of {ok}): each pod stopped \
                 only after every proxy, both of them, stopped sending to it"
            );
        }
    }
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
