//! Rollouts under the seed's load: the fasthttp gateway sends through the node-local
//! proxy while, one after the other, the backend restarts (`kubectl rollout restart`,
//! pods with a conventional `preStop: sleep`), the controller Deployment restarts, and
//! the proxy DaemonSet is upgraded (`helm upgrade` with a changed argument). Every
//! rollout must complete with the load on and the traffic must end up on the new
//! backend pods; the failed requests of each phase are reported (goal: 0; not asserted
//! here, see docs/benchmarks.md).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::chart::{CHART_DIR_ARG, RELEASE, image_values, install, pods, route, run_helm};
use crate::gateway::{gateway_pod, now_ms, seconds};
use crate::support::{
    POD_READY, apply, backend, gateway_image, helm_lock, kubectl, kubectl_out, namespace, rollout,
    wait_for,
};

/// Long enough for the three rollouts one after the other on a busy 2-core node.
const DURATION: &str = "150s";
/// Quiet time between phases, so each phase's failures are its own.
const SETTLE: Duration = Duration::from_secs(3);

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

#[test]
fn rollouts_of_backend_controller_and_proxy_under_fasthttp_load() {
    let _one_release = helm_lock();
    gateway_image();
    let (release, _) = install();
    let fairway_ns = release.0.clone();
    let ns = namespace("roll");
    apply(&backend(&ns, 4));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");
    let old: BTreeSet<String> = pods(&ns, "app=backend").into_iter().collect();

    apply(&gateway_pod(
        &ns,
        "gateway",
        DURATION,
        &[format!("-via=fairway-proxy.{fairway_ns}.svc:4140")],
    ));
    wait_for("the gateway answered for 3 s", POD_READY, || {
        let out = kubectl_out(&["-n", &ns, "logs", "gateway"]);
        (out.success
            && out
                .stdout
                .lines()
                .filter(|l| l.contains("backend-"))
                .count()
                >= 3)
            .then_some(())
    });

    let mut phases = Vec::new();
    let mut phase = |name: &'static str, run: &dyn Fn()| {
        std::thread::sleep(SETTLE);
        let start = now_ms();
        run();
        std::thread::sleep(SETTLE);
        phases.push((name, start, now_ms()));
    };
    phase("backend rollout restart", &|| {
        kubectl(&["-n", &ns, "rollout", "restart", "deployment/backend"]);
        rollout(&ns, "deployment/backend");
    });
    phase("controller rollout restart", &|| {
        kubectl(&[
            "-n",
            &fairway_ns,
            "rollout",
            "restart",
            "deployment/fairway-controller",
        ]);
        rollout(&fairway_ns, "deployment/fairway-controller");
    });
    phase("proxy DaemonSet helm upgrade", &|| {
        let mut upgrade = vec!["upgrade", RELEASE, CHART_DIR_ARG, "-n", &fairway_ns];
        upgrade.extend(["--wait", "--timeout=5m"]);
        let values = image_values();
        upgrade.extend(values.iter().map(String::as_str));
        upgrade.push("--set=proxy.logFormat=text");
        run_helm(&upgrade);
        rollout(&fairway_ns, "daemonset/fairway-proxy");
    });

    wait_for(
        "the gateway finished its bounded run",
        Duration::from_secs(240),
        || {
            let phase = kubectl(&[
                "-n",
                &ns,
                "get",
                "pod",
                "gateway",
                "-o",
                "jsonpath={.status.phase}",
            ]);
            (phase == "Succeeded").then_some(())
        },
    );
    let lines = seconds(&ns, "gateway");
    let total_failed: u64 = lines.iter().filter_map(|l| l["failed"].as_u64()).sum();
    for (name, from, to) in &phases {
        let (failed, ok) = window(&lines, *from, *to);
        eprintln!(
            "{name}: {failed} failed of {} requests ({:.1} s)",
            failed + ok,
            (to - from) as f64 / 1000.0
        );
        assert!(ok > 0, "the gateway kept sending during the {name}");
    }
    eprintln!("whole run: {total_failed} failed");

    // After the backend's rollout the proxy sends only to its new pods.
    let new: BTreeSet<String> = pods(&ns, "app=backend").into_iter().collect();
    assert!(
        new.is_disjoint(&old),
        "rollout restart replaced every backend pod"
    );
    let last = lines
        .iter()
        .rev()
        .find(|l| l["counts"].as_object().is_some_and(|c| !c.is_empty()));
    let answered: BTreeSet<String> = last
        .and_then(|l| l["counts"].as_object())
        .into_iter()
        .flatten()
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        answered.is_subset(&new) && !answered.is_empty(),
        "the last second's answers came from the new pods {new:?}: {answered:?}"
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
