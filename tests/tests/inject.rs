//! Injection with the real apiserver: what `fairway inject` writes is a Pod the API
//! accepts, and the controller's webhook (the real `fairway-controller` binary, HTTPS
//! with its own certificate) injects pods as the apiserver creates them, publishes the
//! controller's CA in their namespace, fails open when it is down, and leaves pods that
//! ask for nothing alone.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fairway_controller::inject::Template;
use fairway_controller::inject::template::{self, Defaults};
use fairway_tests::TestCluster;
use fairway_tests::bins::{binary, free_port, loopback};
use fairway_tests::helm::{CHART_DIR, helm};
use fairway_tests::kubectl::{Output, kubectl};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};

const IMAGE: &str = "registry.example/fairway-proxy:0.0.0-test";
/// Bound for the apiserver to start calling a new webhook configuration.
const ACTIVE_WITHIN: Duration = Duration::from_secs(30);

fn cluster() -> &'static TestCluster {
    TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    kubectl(cluster(), args, stdin).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.success, "{what}: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn namespace(prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    ok(
        run(&["create", "namespace", &name], None),
        "create namespace",
    );
    let label = format!("fairway-inject-test={name}");
    ok(
        run(&["label", "namespace", &name, &label], None),
        "label namespace",
    );
    // No controller-manager here makes the namespace's `default` ServiceAccount.
    let account = ["create", "serviceaccount", "default", "-n", &name];
    ok(run(&account, None), "create the default ServiceAccount");
    name
}

fn pod(name: &str, annotations: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    })
    .to_string()
}

fn init_names(ns: &str, pod: &str) -> Vec<String> {
    let out = ok(
        run(&["get", "pod", pod, "-n", ns, "-o", "json"], None),
        "get pod",
    );
    let pod: Value = serde_json::from_str(&out).unwrap();
    pod["spec"]["initContainers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_injected_proxy_and_its_capture_agree_on_uid_and_port() {
    use fairway_proxy::capture::{DEFAULT_OUTBOUND_PORT, DEFAULT_PROXY_UID};
    assert_eq!(template::PROXY_UID, i64::from(DEFAULT_PROXY_UID));
    assert_eq!(template::OUTBOUND_PORT, i32::from(DEFAULT_OUTBOUND_PORT));
}

#[test]
fn what_fairway_inject_writes_is_accepted_by_the_apiserver() {
    let ns = namespace("inject-cli");
    let input = format!(
        "{}\n---\n{}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: gateway\nspec:\n  ports: [{{port: 80}}]\n",
        pod("gateway", json!({"fairway.dev/inject": "enabled"})),
        pod("orders", json!({"fairway.dev/drain": "enabled"})),
    );
    let mut child = Command::new(binary("fairway"))
        .args(["inject", "--image", IMAGE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fairway inject");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "fairway inject failed: {stderr}");
    assert!(
        stderr.contains("Pod/gateway: added fairway-capture, fairway-proxy"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Pod/orders: added fairway-drain-copy"),
        "{stderr}"
    );
    // The API's own validation: native sidecar, probes, projected token, volumes.
    let applied = run(
        &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
        Some(&stdout),
    );
    let applied = ok(
        applied,
        &format!("the apiserver refused what fairway inject wrote:\n{stdout}"),
    );
    assert_eq!(applied.lines().count(), 3, "{applied}");
    ok(
        run(&["delete", "namespace", &ns, "--wait=false"], None),
        "delete namespace",
    );
}

/// The controller binary serving the webhook, killed on drop.
struct Webhook {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and the webhook's certificate for 127.0.0.1: (CA PEM, certificate, key).
fn certificates() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The webhook with `cert` and `key`; with `publish_ca`, it also publishes that CA where
/// it injects (`--publish-ca-file`, through the test cluster's kubeconfig).
fn start_webhook(cert: &str, key: &str, publish_ca: Option<&str>) -> Webhook {
    start_controller(cert, key, publish_ca, None)
}

/// [`start_webhook`]; with `api`, the controller follows the API (not a static
/// directory) with these settings.
fn start_controller(
    cert: &str,
    key: &str,
    publish_ca: Option<&str>,
    api: Option<Api<'_>>,
) -> Webhook {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let template = Template::default_for(&Defaults {
        image: IMAGE.to_owned(),
        ..Defaults::default()
    });
    let template = file(
        "template.yaml",
        &serde_saphyr::to_string(&template).unwrap(),
    );
    let (cert, key) = (file("tls.crt", cert), file("tls.key", key));
    let static_dir = dir.path().join("routes");
    std::fs::create_dir(&static_dir).unwrap();
    let port = free_port();
    let grpc = loopback(free_port()).to_string();
    let admin = loopback(free_port()).to_string();
    let webhook = loopback(port).to_string();
    let mut command = Command::new(binary("fairway-controller"));
    if let Some(ca) = publish_ca {
        command
            .args(["--publish-ca-file", &file("ca.crt", ca)])
            .env("KUBECONFIG", &cluster().kubeconfig);
    }
    match &api {
        Some(api) => {
            // Routes and Services of the test's namespace only; its status Lease there.
            command
                .env("KUBECONFIG", &cluster().kubeconfig)
                .env("POD_NAMESPACE", api.namespace)
                .env("POD_NAME", format!("fairway-controller-{}", api.namespace))
                .args(["--namespace", api.namespace])
                .args(api.args);
        }
        None => {
            command.args(["--static-dir", &static_dir.display().to_string()]);
        }
    }
    let child = command
        .arg("--no-auth")
        .args(["--grpc-addr", &grpc, "--admin-addr", &admin])
        .args(["--webhook-addr", &webhook, "--webhook-cert-file", &cert])
        .args(["--webhook-key-file", &key, "--inject-template", &template])
        .stdout(Stdio::null())
        .spawn()
        .expect("start fairway-controller");
    let started = Instant::now();
    while std::net::TcpStream::connect(loopback(port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the webhook port never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Webhook {
        child,
        port,
        _dir: dir,
    }
}

/// A controller following the API: watching `namespace`, with `args`.
struct Api<'a> {
    namespace: &'a str,
    args: &'a [&'a str],
}

/// The MutatingWebhookConfiguration for `ns` only (the cluster is shared with other
/// tests), deleted on drop.
struct Registration(String);

impl Registration {
    fn new(ns: &str, port: u16, ca: &str) -> Registration {
        let name = format!("fairway-inject-{ns}");
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "inject.fairway.dev",
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{port}/mutate"),
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
                },
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"fairway-inject-test": ns}},
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5
            }]
        });
        ok(
            run(&["apply", "-f", "-"], Some(&config.to_string())),
            "register the webhook",
        );
        Registration(name)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = kubectl(
            cluster(),
            &["delete", "mutatingwebhookconfiguration", &self.0],
            None,
        );
    }
}

/// The chart's in-apiserver check for pods the webhook missed (its
/// ValidatingAdmissionPolicy and binding, as `helm template` renders them), deleted on
/// drop.
struct Check;

const CHECK: &str = "fairway-inject-check";

impl Check {
    fn apply() -> Check {
        let args = ["template", "fairway", CHART_DIR, "--namespace", "fairway"];
        let rendered = helm(&args, None).unwrap_or_else(|e| panic!("helm template: {e}"));
        let rendered = ok(rendered, "helm template");
        let policy: Vec<&str> = rendered
            .split("\n---")
            .filter(|doc| doc.contains("kind: ValidatingAdmissionPolicy"))
            .collect();
        assert_eq!(policy.len(), 2, "the policy and its binding:\n{rendered}");
        ok(
            run(&["apply", "-f", "-"], Some(&policy.join("\n---\n"))),
            "apply the check",
        );
        Check
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = kubectl(cluster(), &["delete", kind, CHECK], None);
        }
    }
}

#[test]
fn the_webhook_injects_pods_that_ask_and_fails_open() {
    let ns = namespace("inject-hook");
    let (ca, cert, key) = certificates();
    let webhook = start_webhook(&cert, &key, Some(&ca));
    let _registration = Registration::new(&ns, webhook.port, &ca);
    // The apiserver picks a new configuration up within a moment: create until injected.
    let started = Instant::now();
    let mut attempt = 0;
    let injected = loop {
        attempt += 1;
        let name = format!("gateway-{attempt}");
        let manifest = pod(&name, json!({"fairway.dev/inject": "enabled"}));
        ok(
            run(&["apply", "-n", &ns, "-f", "-"], Some(&manifest)),
            "create the pod",
        );
        let names = init_names(&ns, &name);
        if !names.is_empty() || started.elapsed() > ACTIVE_WITHIN {
            break names;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        injected,
        ["fairway-capture", "fairway-proxy"],
        "injected by the webhook"
    );
    // The CA its proxy mounts was published in the pod's namespace before the answer.
    let published = ok(
        run(
            &["get", "configmap", "fairway-controller-ca", "-n", &ns]
                .into_iter()
                .chain(["-o", "jsonpath={.data.ca\\.crt}"])
                .collect::<Vec<_>>(),
            None,
        ),
        "the published CA",
    );
    assert_eq!(
        published, ca,
        "ConfigMap fairway-controller-ca holds the CA"
    );

    let plain = pod("plain", json!({}));
    ok(
        run(&["apply", "-n", &ns, "-f", "-"], Some(&plain)),
        "create a plain pod",
    );
    assert!(
        init_names(&ns, "plain").is_empty(),
        "a pod that asks for nothing is left alone"
    );

    let _check = Check::apply();
    drop(webhook);
    // With the webhook down the pod is still created (failurePolicy: Ignore), unmodified,
    // and the check warns whoever created it, once the apiserver has loaded the policy.
    let started = Instant::now();
    let mut attempt = 0;
    let warned = loop {
        attempt += 1;
        let name = format!("late-{attempt}");
        let late = pod(&name, json!({"fairway.dev/inject": "enabled"}));
        let created = run(&["apply", "-n", &ns, "-f", "-"], Some(&late));
        let stderr = created.stderr.clone();
        ok(created, "with the webhook down the pod is still created");
        assert!(init_names(&ns, &name).is_empty(), "created unmodified");
        if stderr.contains("fairway:") || started.elapsed() > ACTIVE_WITHIN {
            break stderr;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        warned.contains("Warning:")
            && warned.contains("asks for fairway.dev/inject but has no proxy"),
        "the creating client is told: {warned:?}"
    );
    ok(
        run(&["delete", "namespace", &ns, "--wait=false"], None),
        "delete namespace",
    );
}

#[test]
fn the_webhook_publishes_the_controllers_ca_where_it_injects_a_drain_hook() {
    let ns = namespace("inject-ca");
    let (ca, cert, key) = certificates();
    // The CA it publishes stands for the controller's (the chart passes the Discovery
    // certificate's ca.crt); any PEM will do.
    let published = "-----BEGIN CERTIFICATE-----\nfairway-test\n-----END CERTIFICATE-----\n";
    let webhook = start_webhook(&cert, &key, Some(published));
    let _registration = Registration::new(&ns, webhook.port, &ca);
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("backend-{attempt}");
        let manifest = pod(&name, json!({"fairway.dev/drain": "enabled"}));
        ok(
            run(&["apply", "-n", &ns, "-f", "-"], Some(&manifest)),
            "create the pod",
        );
        if !init_names(&ns, &name).is_empty() {
            break;
        }
        assert!(
            started.elapsed() < ACTIVE_WITHIN,
            "the webhook injected a pod within {ACTIVE_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Written before the pod was answered: there when the pod exists.
    let out = ok(
        run(
            &[
                "get",
                "configmap",
                "fairway-controller-ca",
                "-n",
                &ns,
                "-o",
                "json",
            ],
            None,
        ),
        "the namespace has the controller's CA once a pod there got the hook",
    );
    let map: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(map["data"]["ca.crt"], published, "{map}");
    ok(
        run(&["delete", "namespace", &ns, "--wait=false"], None),
        "delete namespace",
    );
}

/// Bound for the controller to record an Event after the pod's change.
const EVENT_WITHIN: Duration = Duration::from_secs(30);

/// fairway-controller's Events of `reason` about pod `ns/pod`.
fn events(ns: &str, pod: &str, reason: &str) -> Vec<Value> {
    let args = ["get", "events.events.k8s.io", "-n", ns, "-o", "json"];
    let list: Value = serde_json::from_str(&ok(run(&args, None), "list Events")).unwrap();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|e| {
            e["regarding"]["kind"] == "Pod"
                && e["regarding"]["name"] == pod
                && e["reason"] == reason
                && e["reportingController"] == "fairway-controller"
        })
        .collect()
}

/// The note of the first Warning Event of `reason` on pod `ns/pod`, once there.
fn wait_for_event(ns: &str, pod: &str, reason: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(event) = events(ns, pod, reason).first() {
            assert_eq!(event["type"], "Warning", "{event}");
            return event["note"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            started.elapsed() < EVENT_WITHIN,
            "no {reason} Event on pod {ns}/{pod} within {EVENT_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What nft says without NET_ADMIN, as fairway-capture reports it (proxy/src/capture).
const NO_NET_ADMIN: &str = "Error: nft refused the rules (exit status: 1): netlink: Error: \
    cannot open Netlink socket: Operation not permitted\nThe init container needs the \
    NET_ADMIN capability to change the pod's netfilter rules (docs/security.md).\n";

/// Writes the capture container's status as a kubelet would after running it: exited 1
/// with `message`, `restarts` times before (then it waits in back-off, the failure in
/// lastState). There is no kubelet here: the status subresource is how one reports.
fn capture_exited(ns: &str, pod: &str, restarts: u32, message: &str) {
    let failed = json!({"terminated": {"exitCode": 1, "reason": "Error", "message": message}});
    let status = if restarts == 0 {
        json!({"name": "fairway-capture", "image": "capture:1", "imageID": "", "ready": false,
               "restartCount": 0, "state": failed})
    } else {
        json!({"name": "fairway-capture", "image": "capture:1", "imageID": "", "ready": false,
               "restartCount": restarts,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": failed})
    };
    let patch = json!({"status": {"initContainerStatuses": [status]}}).to_string();
    let args = [
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ];
    ok(
        run(&args, None),
        "write the pod's status as the kubelet would",
    );
}

/// One Event, recorded once: a repeat would be a second Event or, within minutes, the
/// same one patched with a `series` (kube's recorder counts repeats so).
fn assert_once(events: &[Value]) {
    assert_eq!(events.len(), 1, "one Event: {events:?}");
    assert!(
        events[0]["series"].is_null(),
        "recorded once: {}",
        events[0]
    );
}

fn create(ns: &str, name: &str, annotations: Value) {
    let manifest = pod(name, annotations);
    ok(
        run(&["apply", "-n", ns, "-f", "-"], Some(&manifest)),
        "create the pod",
    );
}

#[test]
fn the_controller_warns_on_pods_the_webhook_missed_and_on_a_failed_capture() {
    fairway_tests::controller::cluster_with_crd();
    let ns = namespace("inject-events");
    let excluded = namespace("inject-excluded");
    let (ca, cert, key) = certificates();
    let told = format!("--webhook-excluded-namespace={excluded}");
    let args = ["--pod-events", told.as_str()];
    let api = Api {
        namespace: &ns,
        args: &args,
    };
    let controller = start_controller(&cert, &key, None, Some(api));
    let asks = || json!({"fairway.dev/inject": "enabled"});

    // No webhook registered yet: the apiserver creates the pods as they are, as it does
    // when the webhook is down (failurePolicy: Ignore).
    create(&ns, "missed", asks());
    create(&excluded, "kept-out", asks());
    let note = wait_for_event(&ns, "missed", "NotInjected");
    assert!(
        note.contains("webhook was unavailable") && note.contains("Recreate the pod"),
        "why, and what to do: {note}"
    );
    let note = wait_for_event(&excluded, "kept-out", "NotInjected");
    assert!(
        note.contains(&format!("namespace {excluded} is excluded")),
        "an excluded namespace is not an outage: {note}"
    );
    // Another change of the pod is another watch event, and no second Event. The next
    // pod's Event comes through the same watch after it, so the first was decided by then.
    ok(
        run(&["label", "pod", "missed", "-n", &ns, "seen=again"], None),
        "relabel",
    );
    // Injected before the marks existed (or by hand): the proxy is there, no label.
    let mut old = serde_json::from_str::<Value>(&pod("old-injected", asks())).unwrap();
    old["spec"]["initContainers"] =
        json!([{"name": "fairway-proxy", "image": IMAGE, "restartPolicy": "Always"}]);
    ok(
        run(&["apply", "-n", &ns, "-f", "-"], Some(&old.to_string())),
        "create the pod",
    );
    create(&ns, "missed-2", asks());
    wait_for_event(&ns, "missed-2", "NotInjected");
    assert_once(&events(&ns, "missed", "NotInjected"));
    assert!(
        events(&ns, "old-injected", "NotInjected").is_empty(),
        "a pod with the proxy was injected, mark or not"
    );

    // Registered: the real webhook injects and marks the pod.
    let _registration = Registration::new(&ns, controller.port, &ca);
    let started = Instant::now();
    let mut attempt = 0;
    let gateway = loop {
        attempt += 1;
        let name = format!("gateway-{attempt}");
        create(&ns, &name, asks());
        if !init_names(&ns, &name).is_empty() {
            break name;
        }
        assert!(
            started.elapsed() < ACTIVE_WITHIN,
            "the webhook injected a pod within {ACTIVE_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let label = ["get", "pod", &gateway, "-n", &ns, "-o"]
        .into_iter()
        .chain(["jsonpath={.metadata.labels.fairway\\.dev/injected}"])
        .collect::<Vec<_>>();
    assert_eq!(
        ok(run(&label, None), "the mark"),
        "proxy",
        "marked as injected"
    );

    // Its capture step fails for want of NET_ADMIN: one CaptureFailed with the message.
    capture_exited(&ns, &gateway, 0, NO_NET_ADMIN);
    let note = wait_for_event(&ns, &gateway, "CaptureFailed");
    assert!(
        note.contains("exited with code 1")
            && note.contains("cannot open Netlink socket: Operation not permitted")
            && note.ends_with("(docs/security.md)."),
        "the trimmed termination message: {note:?}"
    );
    // The kubelet restarts it and it fails again: still one Event. A second injected
    // pod's failure, through the same watch, is the point by which it was decided.
    capture_exited(&ns, &gateway, 1, NO_NET_ADMIN);
    create(&ns, "second", asks());
    assert!(!init_names(&ns, "second").is_empty(), "injected");
    capture_exited(&ns, "second", 0, "nft: no such file");
    wait_for_event(&ns, "second", "CaptureFailed");
    assert_once(&events(&ns, &gateway, "CaptureFailed"));
    assert!(
        events(&ns, &gateway, "NotInjected").is_empty(),
        "an injected pod was not missed"
    );
    drop(controller);
    ok(
        run(&["delete", "namespace", &ns, "--wait=false"], None),
        "delete namespace",
    );
    ok(
        run(&["delete", "namespace", &excluded, "--wait=false"], None),
        "delete namespace",
    );
}
