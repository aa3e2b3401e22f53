//! The seed's failure and its fix on a real node: a fasthttp keep-alive gateway under
//! steady load while the backend scales 1 -> 4. Straight to the Service (kube-proxy
//! picks a pod per connection) the new pods get next to nothing; through the node-local
//! Fairway proxy each pod gets a quarter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fairway_tests::node::TEST_TAG;
use serde_json::Value;

use crate::chart::{install, route};
use crate::support::{
    POD_READY, apply, backend, gateway_image, helm_lock, kubectl, namespace, rollout, wait_for,
};

/// The gateways' steady load: 200 req/s over 8 keep-alive connections, for 50 s.
const RATE: &str = "200";
const WORKERS: &str = "8";
const DURATION: &str = "50s";
/// RoundRobin after all four pods are Ready: 25% each, ± 2 points.
const SHARE_TOLERANCE: f64 = 2.0;
/// Straight to the ClusterIP, a new pod "near 0%".
const NEAR_ZERO: f64 = 2.0;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn gateway_pod(ns: &str, name: &str, duration: &str, extra: &[String]) -> String {
    let mut args = vec![
        format!("-url=http://backend.{ns}.svc.cluster.local:8080/"),
        format!("-rate={RATE}"),
        format!("-workers={WORKERS}"),
        format!("-duration={duration}"),
    ];
    args.extend_from_slice(extra);
    let args = serde_json::to_string(&args).unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
  containers:
  - name: gateway
    image: fairway.local/gateway:{TEST_TAG}
    imagePullPolicy: Never
    args: {args}
"
    )
}

/// `pod` (a [`gateway_pod`]) annotated for injection: the webhook gives it the capture
/// step and its own sidecar proxy, and it dials the Service as it is.
pub fn injected(pod: &str) -> String {
    let (head, rest) = pod
        .split_once("}\nspec:")
        .expect("a gateway pod's metadata");
    format!("{head}, annotations: {{fairway.dev/inject: enabled}}}}\nspec:{rest}")
}

/// The gateway's per-second lines.
pub fn seconds(ns: &str, pod: &str) -> Vec<Value> {
    kubectl(&["-n", ns, "logs", pod])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{pod}: {e}: {l}")))
        .collect()
}

/// Per-pod counts over the seconds that ended after `after_ms`, and failures overall.
pub fn tally(lines: &[Value], after_ms: i64) -> (BTreeMap<String, u64>, u64) {
    let mut counts = BTreeMap::new();
    let mut failed = 0;
    for line in lines {
        failed += line["failed"].as_u64().unwrap_or(0);
        // A line covers the second before its stamp: whole seconds after the last Ready.
        if line["unix"].as_i64().unwrap_or(0) * 1000 - 1000 < after_ms {
            continue;
        }
        for (pod, n) in line["counts"].as_object().into_iter().flatten() {
            *counts.entry(pod.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
    }
    (counts, failed)
}

pub fn shares(counts: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    let total: u64 = counts.values().sum();
    counts
        .iter()
        .map(|(p, n)| (p.clone(), 100.0 * *n as f64 / total.max(1) as f64))
        .collect()
}

#[test]
fn scale_up_under_fasthttp_load_reaches_new_pods_only_through_the_proxy() {
    let _one_release = helm_lock();
    gateway_image();
    let (release, _) = install();
    let fairway_ns = release.0.clone();
    let ns = namespace("seed");
    apply(&backend(&ns, 1));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");
    let first: BTreeSet<String> = ready_pods(&ns).into_keys().collect();

    apply(&gateway_pod(&ns, "direct", DURATION, &[]));
    apply(&gateway_pod(
        &ns,
        "proxied",
        DURATION,
        &[format!("-via=fairway-proxy.{fairway_ns}.svc:4140")],
    ));
    // Steady load on both before the scale-up: a few seconds of answers each.
    wait_for("both gateways answered for 3 s", POD_READY, || {
        ["direct", "proxied"]
            .iter()
            .all(|g| {
                let out = crate::support::kubectl_out(&["-n", &ns, "logs", g]);
                out.success
                    && out
                        .stdout
                        .lines()
                        .filter(|l| l.contains("backend-"))
                        .count()
                        >= 3
            })
            .then_some(())
    });

    kubectl(&["-n", &ns, "scale", "deployment/backend", "--replicas=4"]);
    // When each pod was first seen Ready (polled), for Ready -> first request.
    let mut ready_at: BTreeMap<String, i64> = BTreeMap::new();
    wait_for("four backend pods Ready", POD_READY, || {
        for pod in ready_pods(&ns).into_keys() {
            ready_at.entry(pod).or_insert_with(now_ms);
        }
        (ready_at.len() == 4).then_some(())
    });
    let all_ready = now_ms();

    for g in ["direct", "proxied"] {
        wait_for(
            "the gateway finished its bounded run",
            Duration::from_secs(120),
            || {
                let phase =
                    kubectl(&["-n", &ns, "get", "pod", g, "-o", "jsonpath={.status.phase}"]);
                (phase == "Succeeded").then_some(())
            },
        );
    }

    let proxied = seconds(&ns, "proxied");
    let (through, failed) = tally(&proxied, all_ready);
    let through_shares = shares(&through);
    let (direct_counts, direct_failed) = tally(&seconds(&ns, "direct"), all_ready);
    let direct_shares = shares(&direct_counts);
    eprintln!(
        "after all 4 Ready, through the proxy: {through:?} = {through_shares:.1?}%, {failed} failed"
    );
    eprintln!(
        "after all 4 Ready, straight to the Service: {direct_counts:?} = {direct_shares:.1?}%, {direct_failed} failed"
    );
    // Ready as the test saw it: a kubectl poll every few hundred ms, so this is the poll's
    // lag minus the proxy's (negative: the proxy was first). A report, not an assertion.
    for (pod, at) in ready_at.iter().filter(|(p, _)| !first.contains(*p)) {
        let first_ms = proxied
            .iter()
            .find_map(|l| l["first_ms"][pod.as_str()].as_i64());
        match first_ms {
            Some(first_ms) => eprintln!(
                "{pod}: first proxied request {} ms after the test saw it Ready",
                first_ms - at
            ),
            None => eprintln!("{pod}: no proxied request"),
        }
    }

    assert_eq!(failed, 0, "no request through the proxy failed");
    assert_eq!(
        through.len(),
        4,
        "all four pods served through the proxy: {through:?}"
    );
    for (pod, share) in &through_shares {
        assert!(
            (share - 25.0).abs() <= SHARE_TOLERANCE,
            "{pod} got {share:.1}% through the proxy (25 ± 2): {through_shares:.1?}"
        );
    }
    for (pod, share) in &direct_shares {
        if !first.contains(pod) {
            assert!(
                *share <= NEAR_ZERO,
                "kube-proxy keeps the keep-alive connections on the first pod; new pod {pod} got {share:.1}%: {direct_shares:.1?}"
            );
        }
    }
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Ready backend pods of `ns`, by name.
pub fn ready_pods(ns: &str) -> BTreeMap<String, ()> {
    let out = kubectl(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app=backend",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, ready)| *ready == "True")
        .map(|(name, _)| (name.to_string(), ()))
        .collect()
}
