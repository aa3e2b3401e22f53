//! The drain hook as the injector adds it (`fairway.dev/drain: enabled`), with nothing
//! set up by hand: the chart's webhook gives each backend pod the copy init container,
//! the projected token and the preStop hook, and writes the controller's CA as the
//! ConfigMap `fairway-controller-ca` in the pods' namespace before answering; a rollout
//! then has every old pod's hook answered `DRAINED` through that CA.

use crate::chart::{install_with, route};
use crate::drain::answers;
use crate::support::{
    apply, backend_image, controller_ca, helm_lock, hook_image, kubectl, namespace, rollout,
};
use fairway_tests::node::TEST_TAG;

const REPLICAS: usize = 3;

fn backend(ns: &str) -> String {
    let image = backend_image();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {ns}}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata:
      labels: {{app: backend}}
      annotations: {{fairway.dev/drain: enabled}}
    spec:
      terminationGracePeriodSeconds: 30
      securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
      containers:
      - name: backend
        image: {image}
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
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

#[test]
fn the_injected_drain_hook_finds_the_published_ca_and_is_answered_drained() {
    let _one_release = helm_lock();
    let (release, _) = install_with(&[
        "--set=drain.hookImage.repository=fairway.local/fairway".to_owned(),
        format!("--set=drain.hookImage.tag={TEST_TAG}"),
    ]);
    hook_image();
    let fairway_ns = release.0.clone();
    let ns = namespace("injected");
    apply(&backend(&ns));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");

    let pod = kubectl(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "app=backend",
        "-o",
        "jsonpath={.items[0].spec.containers[0].lifecycle.preStop.exec.command}",
    ]);
    assert!(
        pod.contains("wait-drained"),
        "the webhook added the hook: {pod}"
    );
    let published = kubectl(&[
        "-n",
        &ns,
        "get",
        "configmap",
        "fairway-controller-ca",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    let ca = controller_ca(&fairway_ns);
    assert_eq!(
        published, ca,
        "the namespace has the controller's CA, written by the webhook"
    );

    kubectl(&["-n", &ns, "rollout", "restart", "deployment/backend"]);
    rollout(&ns, "deployment/backend");
    // The old pods may still be in their hooks: wait for their answers (bounded).
    let (answered, reasons) = crate::support::wait_for(
        "every old pod's hook answered",
        crate::support::POD_READY,
        || {
            let (answered, reasons) = answers(&fairway_ns, &ns);
            (answered.len() >= REPLICAS).then_some((answered, reasons))
        },
    );
    let dumped = crate::diagnose::dump(&fairway_ns, &ns);
    assert!(
        answered.iter().all(|(outcome, _)| outcome == "Drained"),
        "every injected hook was answered drained: {answered:?} {reasons:?} (logs in {})",
        dumped.display()
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
    assert!(
        failed_hooks.trim().is_empty(),
        "no hook failed: {failed_hooks}"
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
