//! The status Lease on the real node: a stopping controller releases it, a standby takes
//! it without waiting for expiry, and `helm uninstall` leaves none behind, so a
//! reinstall writes Route status at once. The gaps are reported, not asserted as times;
//! what is asserted is the order of events against the Lease's own timestamps.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::chart::{CHART_DIR_ARG, RELEASE, image_values, install, route, run_helm};
use crate::support::{
    POD_READY, apply, backend, helm_lock, jsonpath, kubectl, kubectl_out, namespace, rollout,
    wait_for,
};

/// The controller's Lease (controller/src/status/lease.rs).
const LEASE: &str = "fairway-controller-status";
/// Its `leaseDurationSeconds` while held.
const LEASE_DURATION: SignedDuration = SignedDuration::from_secs(15);

/// The Lease's holder and last renewal, once someone holds it.
fn holder(fairway_ns: &str) -> (String, Timestamp) {
    wait_for("a controller holds the status Lease", POD_READY, || {
        let out = kubectl_out(&[
            "-n",
            fairway_ns,
            "get",
            "lease",
            LEASE,
            "-o",
            "jsonpath={.spec.holderIdentity} {.spec.renewTime}",
        ]);
        let (who, when) = out.stdout.trim().split_once(' ')?;
        Some((who.to_owned(), when.parse().ok()?))
    })
}

/// Edits the Route (a new generation) and waits until its status observes the edit;
/// returns how long that took.
fn edit_and_wait_for_status(ns: &str, policy: &str) -> Duration {
    let patch = format!(r#"{{"spec":{{"loadBalancer":{{"policy":"{policy}"}}}}}}"#);
    let started = Instant::now();
    kubectl(&[
        "-n",
        ns,
        "patch",
        "route",
        "backend",
        "--type=merge",
        "-p",
        &patch,
    ]);
    let generation = jsonpath(ns, "route/backend", "{.metadata.generation}");
    wait_for("the Route's status observes the edit", POD_READY, || {
        let observed = jsonpath(ns, "route/backend", "{.status.observedGeneration}");
        (observed == generation).then_some(())
    });
    started.elapsed()
}

#[test]
fn status_writing_resumes_after_a_controller_stops_and_after_a_reinstall() {
    let _one_release = helm_lock();
    let (release, _) = install();
    let fairway_ns = release.0.clone();
    let ns = namespace("lease");
    apply(&backend(&ns, 1));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");
    edit_and_wait_for_status(&ns, "LeastRequest");

    // A controller rollout in miniature: the holder's pod is deleted (SIGTERM). Its claim
    // would stand until at least its last renewal + 15 s; the edit must show before.
    let (old, renewed) = holder(&fairway_ns);
    kubectl(&["-n", &fairway_ns, "delete", "pod", &old, "--wait=false"]);
    let gap = edit_and_wait_for_status(&ns, "RoundRobin");
    let written = Timestamp::now();
    let (new, _) = holder(&fairway_ns);
    eprintln!(
        "holder {old} stopped: status written {:.2}s after the edit",
        gap.as_secs_f64()
    );
    assert_ne!(new, old, "another replica holds the Lease");
    assert!(
        written < renewed + LEASE_DURATION,
        "status was written at {written}, not before the stopped holder's Lease could \
         expire ({renewed} + 15s): the Lease was not released"
    );

    // Uninstall leaves no Lease (its ownerReference names the holder's Pod, which the
    // garbage collector follows), so a reinstall into the same namespace writes status
    // without waiting for a stale holder to expire.
    run_helm(&[
        "uninstall",
        RELEASE,
        "-n",
        &fairway_ns,
        "--wait",
        "--timeout=5m",
    ]);
    wait_for("helm uninstall leaves no status Lease", POD_READY, || {
        let out = kubectl_out(&["-n", &fairway_ns, "get", "lease", LEASE, "-o", "name"]);
        (!out.success && out.stderr.contains("NotFound")).then_some(())
    });
    let values = image_values();
    let mut reinstall = vec![
        "install",
        RELEASE,
        CHART_DIR_ARG,
        "-n",
        &fairway_ns,
        "--wait",
        "--timeout=5m",
    ];
    reinstall.extend(values.iter().map(String::as_str));
    run_helm(&reinstall);
    let gap = edit_and_wait_for_status(&ns, "LeastRequest");
    eprintln!(
        "reinstalled: status written {:.2}s after the edit",
        gap.as_secs_f64()
    );

    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    drop(release);
}
