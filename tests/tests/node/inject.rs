//! The mission in one annotation, on the real node: the seed's gateway (fasthttp,
//! unchanged, dialling `backend.NS.svc.cluster.local:8080` with keep-alive connections)
//! in a pod annotated `fairway.dev/inject: enabled`, its namespace labelled
//! `fairway.dev/implicit: enabled` (no Route), the chart installed with its defaults.
//! The webhook injects the capture step and the proxy; the proxy subscribes with the
//! gateway's own ServiceAccount (never listed) and the CA the webhook published; after
//! `kubectl scale` 1 -> 4 every pod gets its quarter of the requests, none fails.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::chart::install_injecting;
use crate::gateway::{gateway_pod, injected, now_ms, ready_pods, seconds, shares, tally};
use crate::support::{
    POD_READY, apply, backend, gateway_image, helm_lock, jsonpath, kubectl, namespace, rollout,
    wait_for,
};

/// RoundRobin after all four pods are Ready: 25% each, ± 2 points.
const SHARE_TOLERANCE: f64 = 2.0;

#[test]
fn one_annotation_balances_the_unchanged_gateway_after_a_scale_up() {
    let _one_release = helm_lock();
    gateway_image();
    let (release, _) = install_injecting();
    let ns = namespace("inject");
    kubectl(&["label", "namespace", &ns, "fairway.dev/implicit=enabled"]);
    apply(&backend(&ns, 1));
    rollout(&ns, "deployment/backend");
    let first: BTreeSet<String> = ready_pods(&ns).into_keys().collect();

    // The seed's gateway, as its owner runs it: no proxy address, one annotation.
    apply(&injected(&gateway_pod(&ns, "gateway", "45s", &[])));
    let init = jsonpath(&ns, "pod/gateway", "{.spec.initContainers[*].name}");
    assert_eq!(
        init, "fairway-capture fairway-proxy",
        "the webhook injected the capture step and the proxy"
    );
    let published = jsonpath(&ns, "configmap/fairway-controller-ca", "{.data.ca\\.crt}");
    assert!(
        published.contains("BEGIN CERTIFICATE"),
        "the controller's CA, published in the gateway's namespace: {published}"
    );
    wait_for("the gateway answered for 3 s", POD_READY, || {
        let out = crate::support::kubectl_out(&["-n", &ns, "logs", "gateway", "-c", "gateway"]);
        let answered = out
            .stdout
            .lines()
            .filter(|l| l.contains("backend-"))
            .count();
        (out.success && answered >= 3).then_some(())
    });

    kubectl(&["-n", &ns, "scale", "deployment/backend", "--replicas=4"]);
    wait_for("four backend pods Ready", POD_READY, || {
        (ready_pods(&ns).len() == 4).then_some(())
    });
    let all_ready = now_ms();
    wait_for(
        "the gateway finished its bounded run",
        Duration::from_secs(120),
        || {
            let phase = jsonpath(&ns, "pod/gateway", "{.status.phase}");
            (phase == "Succeeded" || phase == "Failed").then_some(())
        },
    );
    let proxy_log = kubectl(&["-n", &ns, "logs", "gateway", "-c", "fairway-proxy"]);
    let lines = seconds(&ns, "gateway");
    let (counts, failed) = tally(&lines, all_ready);
    let spread = shares(&counts);
    eprintln!(
        "after all 4 Ready, the injected gateway: {counts:?} = {spread:.1?}%, {failed} failed"
    );
    assert_eq!(
        failed, 0,
        "no request failed through the injected sidecar:\n{proxy_log}"
    );
    assert_eq!(
        counts.len(),
        4,
        "all four pods served: {counts:?}\n{proxy_log}"
    );
    for (pod, share) in &spread {
        assert!(
            (share - 25.0).abs() <= SHARE_TOLERANCE,
            "{pod} got {share:.1}% (25 ± 2; the first pod was {first:?}): {spread:.1?}"
        );
    }
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    drop(release);
}
