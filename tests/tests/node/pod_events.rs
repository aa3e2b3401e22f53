//! The injector's pod Events on the real node: the real kubelet runs the capture step of a
//! pod that cannot install rules (its NET_ADMIN capability taken away), it exits with
//! nft's `Operation not permitted`, and the chart's controller records one Warning
//! `CaptureFailed` on the pod carrying that message, however often the kubelet restarts
//! the step.
//!
//! The pod is injected offline (`fairway inject` with the chart's own template, then the
//! capability removed), as a GitOps user would apply it: the webhook, seeing the
//! containers already there, leaves it as it is, and the marks `fairway inject` wrote
//! put it under the controller's watch.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use fairway_tests::bins::binary;
use serde_json::Value;

use crate::chart::install_injecting;
use crate::support::{apply, backend_image, helm_lock, kubectl, namespace, wait_for};

/// Bound for the kubelet to run and restart the capture step, and the controller to
/// record the Event.
const WITHIN: Duration = Duration::from_secs(180);

/// fairway-controller's `CaptureFailed` Events on pod `ns/pod`.
fn capture_failed(ns: &str, pod: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&kubectl(&[
        "-n",
        ns,
        "get",
        "events.events.k8s.io",
        "-o",
        "json",
    ]))
    .expect("an Event list");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|e| {
            e["regarding"]["name"] == pod
                && e["reason"] == "CaptureFailed"
                && e["reportingController"] == "fairway-controller"
        })
        .collect()
}

/// `fairway inject --template` on `yaml`.
fn inject(template: &str, yaml: &str) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("template.yaml");
    std::fs::write(&path, template).expect("write the template");
    let mut child = Command::new(binary("fairway"))
        .args(["inject", "--template", &path.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fairway inject");
    (child.stdin.take().expect("stdin"))
        .write_all(yaml.as_bytes())
        .expect("write the pod");
    let out = child.wait_with_output().expect("fairway inject");
    assert!(
        out.status.success(),
        "fairway inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("YAML")
}

#[test]
fn a_capture_step_without_net_admin_gets_one_capture_failed_event() {
    let _one_release = helm_lock();
    let (release, _) = install_injecting();
    let ns = namespace("podevents");
    let template = kubectl(&[
        "-n",
        &release.0,
        "get",
        "configmap",
        "fairway-inject",
        "-o",
        "jsonpath={.data.template\\.yaml}",
    ]);
    let image = backend_image();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gateway\n  namespace: {ns}\n  \
         annotations: {{fairway.dev/inject: enabled}}\nspec:\n  containers:\n  - name: app\n    \
         image: {image}\n    imagePullPolicy: Never\n"
    );
    let mut injected: Value = serde_saphyr::from_str(&inject(&template, &pod)).expect("a pod");
    assert_eq!(
        injected["metadata"]["labels"]["fairway.dev/injected"], "proxy",
        "fairway inject marks the pod as the webhook does"
    );
    let capture = (injected["spec"]["initContainers"].as_array_mut())
        .and_then(|inits| inits.iter_mut().find(|c| c["name"] == "fairway-capture"))
        .expect("the capture step");
    // What a policy that strips capabilities leaves: none.
    capture["securityContext"]["capabilities"] = serde_json::json!({"drop": ["ALL"]});
    apply(&injected.to_string());

    let events = wait_for("a CaptureFailed Event on the pod", WITHIN, || {
        let events = capture_failed(&ns, "gateway");
        (!events.is_empty()).then_some(events)
    });
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert_eq!(events[0]["type"], "Warning");
    assert!(
        note.contains("Operation not permitted") && note.contains("NET_ADMIN"),
        "the capture step's own message, from the kubelet's termination message: {note}"
    );
    // The kubelet restarts the step with back-off; each restart is a pod update.
    let restarts =
        "jsonpath={.status.initContainerStatuses[?(@.name==\"fairway-capture\")].restartCount}";
    wait_for(
        "the kubelet restarted the capture step twice",
        WITHIN,
        || {
            let count: u32 = kubectl(&["-n", &ns, "get", "pod", "gateway", "-o", restarts])
                .parse()
                .ok()?;
            (count >= 2).then_some(())
        },
    );
    // A second such pod's Event comes through the same watch after those restarts, so
    // by then they were decided.
    injected["metadata"]["name"] = "second".into();
    apply(&injected.to_string());
    wait_for("a CaptureFailed Event on the second pod", WITHIN, || {
        (!capture_failed(&ns, "second").is_empty()).then_some(())
    });
    let after = capture_failed(&ns, "gateway");
    assert_eq!(after.len(), 1, "one Event: {after:?}");
    assert!(
        after[0]["series"].is_null(),
        "recorded once, not per restart: {}",
        after[0]
    );
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
