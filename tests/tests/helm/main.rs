//! The Helm chart (charts/fairway) against real tools: helm (built from
//! helm.sh/helm/v3, tests/helm) lints and renders it, installs it into the tests' real
//! kube-apiserver, and a controller holding only the chart's ServiceAccount token proves
//! the RBAC is enough (and no more).

mod defaults;
mod discovery;
mod inject;
mod observability;

use std::path::Path;
use std::time::Duration;

use fairway_controller::status::StatusConfig;
use fairway_proto::model::RouteKey;
use fairway_tests::discovery::TestProxy;
use fairway_tests::helm::{CHART_DIR, helm};
use fairway_tests::kubectl::{Output, kubectl};
use fairway_tests::objects::{State, endpoint, route, service, slice};
use fairway_tests::{TestCluster, controller, eventually};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

/// A synced controller opens streams within this.
const CONNECT: Duration = Duration::from_secs(60);
/// A watch event or a status write shows within this.
const STATUS: Duration = Duration::from_secs(30);

fn run_helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    helm(args, kubeconfig).unwrap_or_else(|e| panic!("helm {}: {e}", args.join(" ")))
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.success, "{what} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

/// Every object of a multi-document YAML stream (empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let doc: Value = serde_saphyr::from_str(&current)
                .unwrap_or_else(|e| panic!("rendered YAML: {e}\n{current}"));
            if doc.is_object() {
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

/// `helm template RELEASE CHART -n NAMESPACE EXTRA...`, parsed.
fn template(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART_DIR, "--namespace", namespace];
    args.extend_from_slice(extra);
    documents(&ok(
        run_helm(&args, None),
        &format!("helm {}", args.join(" ")),
    ))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered; got {:?}", kinds(objects)))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the hardening every container of every pod template must carry.
fn assert_hardened(objects: &[Value]) {
    let mut pods = 0;
    for object in objects {
        let pod = &object["spec"]["template"]["spec"];
        if !pod.is_object() {
            continue;
        }
        pods += 1;
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"], true,
            "{name}: pod runAsNonRoot"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: pod seccomp"
        );
        let containers = pod["containers"].as_array().expect("containers");
        let init = pod["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for container in containers.iter().chain(init.iter()) {
            let c = container["name"].as_str().unwrap_or("?");
            let sc = &container["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "{name}/{c}: runAsNonRoot");
            assert_eq!(
                sc["readOnlyRootFilesystem"], true,
                "{name}/{c}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc["allowPrivilegeEscalation"], false,
                "{name}/{c}: allowPrivilegeEscalation"
            );
            assert_eq!(
                strings(&sc["capabilities"]["drop"]),
                ["ALL"],
                "{name}/{c}: drop ALL"
            );
            assert_eq!(
                sc["seccompProfile"]["type"], "RuntimeDefault",
                "{name}/{c}: seccomp"
            );
            assert!(
                container["resources"]["requests"].is_object(),
                "{name}/{c}: resources"
            );
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"], "/live",
                "{name}/{c}"
            );
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"], "/ready",
                "{name}/{c}"
            );
        }
    }
    assert!(pods > 0, "no pod templates rendered");
}

fn env_field(container: &Value, name: &str) -> String {
    let env = container["env"].as_array().expect("env");
    let var = env
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("env {name}"));
    var["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn lint_passes_with_default_and_non_default_values() {
    ok(
        run_helm(&["lint", "--strict", CHART_DIR], None),
        "helm lint (defaults)",
    );
    let others: &[&[&str]] = &[
        &["--set", "proxy.mode=sidecar"],
        &[
            "--set",
            "proxy.hostPort.enabled=true,serviceMonitor.enabled=true",
        ],
        &["--set", "prometheusRule.enabled=true"],
        &[
            "--set",
            "controller.replicas=3,controller.watchNamespaces={shop,pay},controller.selector=team=shop",
        ],
        &[
            "--set",
            "controller.podDisruptionBudget.enabled=false,proxy.service.enabled=false",
        ],
    ];
    for extra in others {
        let mut args = vec!["lint", "--strict", CHART_DIR];
        args.extend_from_slice(extra);
        ok(run_helm(&args, None), &format!("helm {}", args.join(" ")));
    }
}

#[test]
fn default_render_is_hardened_and_wired() {
    let objects = template("fairway", "fairway", &[]);
    assert_hardened(&objects);

    // Controller: 2 replicas, downward-API env, both ports, probes on admin, spread.
    let deploy = find(&objects, "Deployment", "fairway-controller");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "fairway-controller");
    assert!(
        pod["topologySpreadConstraints"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/fairway-dev/fairway-controller:0.1.0");
    assert_eq!(env_field(c, "POD_NAME"), "metadata.name");
    assert_eq!(env_field(c, "POD_NAMESPACE"), "metadata.namespace");
    let args = strings(&c["args"]);
    assert!(
        args.contains(&"--grpc-addr=0.0.0.0:18000".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--admin-addr=0.0.0.0:9090".to_owned()),
        "{args:?}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    find(&objects, "PodDisruptionBudget", "fairway-controller");
    let svc = find(&objects, "Service", "fairway-controller");
    let ports: Vec<i64> = (svc["spec"]["ports"].as_array().expect("ports").iter())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(
        ports,
        [18000, 9090, 443],
        "Discovery, metrics, the injection webhook"
    );

    // Proxy: no API access, the controller URL, its identity from the downward API.
    let ds = find(&objects, "DaemonSet", "fairway-proxy");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], "fairway-proxy");
    let sa = find(&objects, "ServiceAccount", "fairway-proxy");
    assert_eq!(sa["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/fairway-dev/fairway-proxy:0.1.0");
    let args = strings(&c["args"]);
    for want in [
        "--controller=https://fairway-controller.fairway.svc:18000",
        "--controller-ca-file=/var/run/fairway/controller-ca/ca.crt",
        "--controller-token-file=/var/run/secrets/fairway/token",
        "--admin-addr=0.0.0.0:4191",
        "--id=$(POD_NAME)",
        "--node=$(NODE_NAME)",
    ] {
        assert!(
            args.contains(&want.to_owned()),
            "proxy args {args:?} lack {want}"
        );
    }
    assert_eq!(env_field(c, "POD_NAME"), "metadata.name");
    assert_eq!(env_field(c, "NODE_NAME"), "spec.nodeName");
    assert!(c["ports"][0]["hostPort"].is_null(), "hostPort is opt-in");
    let local = find(&objects, "Service", "fairway-proxy");
    assert_eq!(local["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(local["spec"]["ports"][0]["port"], 4140);
    // No RoleBinding names the proxy: it has no API access at all.
    for binding in objects
        .iter()
        .filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
    {
        assert!(
            !binding["subjects"].to_string().contains("fairway-proxy"),
            "the proxy is bound: {binding}"
        );
    }

    discovery::assert_protected(&objects, "fairway", "fairway");

    // Least privilege: no wildcard, no secrets; ConfigMaps read (CA bundles of TLS
    // Routes), created, and patched only for the CA's (the injector publishes it,
    // inject/publish.rs).
    let role = find(&objects, "ClusterRole", "fairway-controller");
    let rules = role["rules"].to_string();
    for forbidden in ["\"*\"", "secrets"] {
        assert!(
            !rules.contains(forbidden),
            "ClusterRole grants {forbidden}: {rules}"
        );
    }
    let config_maps: Vec<&Value> = (role["rules"].as_array().into_iter().flatten())
        .filter(|r| r["resources"][0] == "configmaps")
        .collect();
    assert_eq!(
        config_maps,
        [
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}),
            &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}),
            &json!({"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["fairway-controller-ca"], "verbs": ["patch"]}),
        ],
        "{rules}"
    );
    let pods: Vec<&Value> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["resources"].to_string().contains("\"pods\""))
        .collect();
    // One named pod at a time (an injected proxy's), and list/watch for the injector's
    // pod Events (injector.podEvents); nothing that changes a pod.
    let verbs: Vec<&Value> = pods.iter().map(|r| &r["verbs"]).collect();
    assert_eq!(
        verbs,
        [&json!(["get"]), &json!(["list", "watch"])],
        "{rules}"
    );
    // HTTPRoute input (issue 20): explicit verbs, status by patch only.
    let granted = |resource: &str| -> Vec<String> {
        let rules = role["rules"].as_array().into_iter().flatten();
        let rule = rules
            .filter(|r| r["apiGroups"][0] == "gateway.networking.k8s.io")
            .find(|r| r["resources"][0] == resource);
        let verbs = rule.map(|r| r["verbs"].clone()).unwrap_or_default();
        serde_json::from_value(verbs).unwrap_or_default()
    };
    assert_eq!(granted("httproutes"), ["get", "list", "watch"], "{rules}");
    assert_eq!(granted("httproutes/status"), ["patch"], "{rules}");
    assert_eq!(
        granted("backendtlspolicies"),
        ["get", "list", "watch"],
        "{rules}"
    );
    assert_eq!(granted("backendtlspolicies/status"), ["patch"], "{rules}");
    // TLS to pods: CA bundles from ConfigMaps, read only.
    let config_maps = (role["rules"].as_array().into_iter().flatten())
        .find(|r| r["resources"][0] == "configmaps")
        .map(|r| (r["apiGroups"].clone(), r["verbs"].clone()));
    let expected = (
        serde_json::json!([""]),
        serde_json::json!(["get", "list", "watch"]),
    );
    assert_eq!(config_maps, Some(expected), "{rules}");
    assert!(objects.iter().all(|o| o["kind"] != "ServiceMonitor"));
    // The default ConfigMaps: the Grafana dashboard and the injection template (the
    // sidecar's needs sidecar mode).
    let config_maps: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect();
    let names: Vec<&Value> = config_maps.iter().map(|c| &c["metadata"]["name"]).collect();
    assert_eq!(names, ["fairway-dashboard", "fairway-inject"]);
    assert_eq!(config_maps[0]["metadata"]["name"], "fairway-dashboard");
    assert_eq!(
        config_maps[0]["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
}

#[test]
fn non_default_values_change_the_render() {
    // Another release name and namespace move the controller URL with them.
    let objects = template(
        "edge",
        "infra",
        &[
            "--set",
            "proxy.hostPort.enabled=true,serviceMonitor.enabled=true,controller.replicas=3",
            "--set",
            "controller.watchNamespaces={shop,pay},proxy.zone=eu-1a,proxy.endpointLabels=false",
            "--set",
            "controller.image.tag=dev,controller.podDisruptionBudget.enabled=false",
        ],
    );
    assert_hardened(&objects);
    let deploy = find(&objects, "Deployment", "edge-fairway-controller");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/fairway-dev/fairway-controller:dev");
    let args = strings(&c["args"]);
    assert!(
        args.contains(&"--namespace=shop".to_owned())
            && args.contains(&"--namespace=pay".to_owned()),
        "{args:?}"
    );
    assert!(objects.iter().all(|o| o["kind"] != "PodDisruptionBudget"));
    let ds = find(&objects, "DaemonSet", "edge-fairway-proxy");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["hostPort"], 4140);
    let args = strings(&c["args"]);
    for want in [
        "--controller=https://edge-fairway-controller.infra.svc:18000",
        "--zone=eu-1a",
        "--endpoint-labels=false",
    ] {
        assert!(
            args.contains(&want.to_owned()),
            "proxy args {args:?} lack {want}"
        );
    }
    find(&objects, "ServiceMonitor", "edge-fairway-controller");
    find(&objects, "PodMonitor", "edge-fairway-proxy");
}

#[test]
fn sidecar_mode_renders_a_container_instead_of_a_daemonset() {
    let daemonset = template("fairway", "fairway", &[]);
    let sidecar = template("fairway", "fairway", &["--set", "proxy.mode=sidecar"]);
    assert!(
        sidecar.iter().all(|o| o["kind"] != "DaemonSet"),
        "{:?}",
        kinds(&sidecar)
    );
    assert!(
        sidecar
            .iter()
            .all(|o| !(o["kind"] == "Service" && o["metadata"]["name"] == "fairway-proxy")),
        "no node-local Service in sidecar mode"
    );
    assert_ne!(kinds(&daemonset), kinds(&sidecar));
    let cm = find(&sidecar, "ConfigMap", "fairway-proxy-sidecar");
    let text = cm["data"]["container.yaml"]
        .as_str()
        .expect("container.yaml");
    let container: Value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The very container the DaemonSet runs, but for its traffic port: loopback only (both
    // families), so no other pod can send through the gateway's sidecar (issue 26).
    let ds = find(&daemonset, "DaemonSet", "fairway-proxy");
    let mut expected = ds["spec"]["template"]["spec"]["containers"][0].clone();
    let args: Vec<Value> = (expected["args"].as_array().expect("args").iter())
        .flat_map(|arg| match arg.as_str() {
            Some("--listen=0.0.0.0:4140") => vec![
                Value::from("--listen=127.0.0.1:4140"),
                Value::from("--listen=[::1]:4140"),
            ],
            _ => vec![arg.clone()],
        })
        .collect();
    expected["args"] = Value::from(args);
    assert_eq!(container, expected);
    assert!(
        strings(&container["args"])
            .contains(&"--controller=https://fairway-controller.fairway.svc:18000".to_owned())
    );
    let volumes = cm["data"]["volumes.yaml"].as_str().expect("volumes.yaml");
    let volumes: Value =
        serde_saphyr::from_str(volumes).unwrap_or_else(|e| panic!("{e}\n{volumes}"));
    assert_eq!(
        volumes, ds["spec"]["template"]["spec"]["volumes"],
        "the volumes the container mounts, to paste beside it"
    );
}

#[test]
fn schema_rejects_wrong_types() {
    for bad in [
        "controller.replicas=two",
        "proxy.port=http",
        "proxy.mode=mesh",
        "proxy.hostPort.enabled=maybe",
        "controller.logFormat=xml",
        "controller.replicaz=2",
        "discovery.auth.tokenExpirationSeconds=60",
        "discovery.auth.extraAllowedServiceAccounts={nobody}",
        "discovery.tls.enabled=yes",
    ] {
        let out = run_helm(&["template", "fairway", CHART_DIR, "--set", bad], None);
        assert!(!out.success, "--set {bad} was accepted");
        assert!(
            out.stderr.contains("schema") || out.stderr.contains("values don't meet"),
            "--set {bad}: the error should name the schema: {}",
            out.stderr
        );
    }
}

#[test]
fn chart_crds_are_identical_to_crds() {
    let root = Path::new(CHART_DIR).join("../../crds");
    let chart = Path::new(CHART_DIR).join("crds");
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&root), names(&chart), "the same CRD files");
    for name in names(&root) {
        let a = std::fs::read(root.join(&name)).expect("read crds/");
        let b = std::fs::read(chart.join(&name)).expect("read the chart's crds/");
        assert!(
            a == b,
            "charts/fairway/crds/{name} differs from crds/{name}: cp crds/{name} charts/fairway/crds/"
        );
    }
}

/// `kubectl get` target for a rendered object: `kind.group` (or just `kind` for core).
fn resource(object: &Value) -> String {
    let kind = object["kind"].as_str().expect("kind").to_lowercase();
    match object["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .split_once('/')
    {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

fn get(cluster: &TestCluster, object: &Value, namespace: &str) -> Output {
    let name = object["metadata"]["name"].as_str().expect("name");
    let mut args = vec![
        "get".to_owned(),
        resource(object),
        name.to_owned(),
        "-o".to_owned(),
        "name".to_owned(),
    ];
    if object["kind"] != "ClusterRole" && object["kind"] != "ClusterRoleBinding" {
        args.extend(["-n".to_owned(), namespace.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kubectl(cluster, &args, None).unwrap_or_else(|e| panic!("{e}"))
}

fn kubectl_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let out = kubectl(cluster, args, None).unwrap_or_else(|e| panic!("{e}"));
    ok(out, &format!("kubectl {}", args.join(" ")))
}

/// `kubectl auth can-i VERB... --token TOKEN` answers yes (`true`) or no.
fn can_i(cluster: &TestCluster, token: &str, query: &[&str]) -> bool {
    let mut args = vec!["auth", "can-i"];
    args.extend_from_slice(query);
    args.extend_from_slice(&["--token", token]);
    let out = kubectl(cluster, &args, None).unwrap_or_else(|e| panic!("{e}"));
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl {}: {}{}", args.join(" "), out.stdout, out.stderr),
    }
}

/// Waits until Route `orders` in `namespace` shows ResolvedRefs with this status and reason.
async fn condition(cluster: &TestCluster, namespace: &str, status: &str, reason: &str) {
    let what = format!("ResolvedRefs={status} ({reason}) written by the token's controller");
    eventually(STATUS, &what, || async {
        let args = ["get", "route", "orders", "-n", namespace, "-o", "json"];
        let out = kubectl(cluster, &args, None).ok()?;
        let route: Value = serde_json::from_str(&out.stdout).ok()?;
        let conditions = route["status"]["conditions"].as_array()?;
        conditions
            .iter()
            .find(|c| c["type"] == "ResolvedRefs" && c["status"] == status && c["reason"] == reason)
            .cloned()
    })
    .await;
}

async fn client_from(kubeconfig: &Path) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).unwrap_or_else(|e| panic!("{e}"));
    let config = (Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await)
        .unwrap_or_else(|e| panic!("{e}"));
    Client::try_from(config).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_grants_the_controller_enough_and_uninstall_removes_it() {
    let cluster = TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"));
    let ns = (cluster.namespace("fw-helm").await).unwrap_or_else(|e| panic!("{e}"));
    let kc = Some(cluster.kubeconfig.as_path());

    // Install (no --wait: there is no kubelet). Helm creates the CRD from crds/.
    let notes = ok(
        run_helm(&["install", "fairway", CHART_DIR, "--namespace", &ns], kc),
        "helm install",
    );
    // NOTES.txt tells the user where the node-local proxy is.
    let proxy_url = format!("HTTP_PROXY=http://fairway-proxy.{ns}.svc:4140");
    assert!(
        notes.contains(&proxy_url),
        "the notes lack {proxy_url}:\n{notes}"
    );
    kubectl_ok(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "crd/routes.fairway.dev",
            "--timeout=60s",
        ],
    );
    let manifest = ok(
        run_helm(&["get", "manifest", "fairway", "--namespace", &ns], kc),
        "helm get manifest",
    );
    let objects = documents(&manifest);
    let mut installed = kinds(&objects);
    installed.sort();
    let expected = [
        "ClusterRole/fairway-controller",
        "ClusterRoleBinding/fairway-controller",
        // The Grafana dashboard, on by default.
        "ConfigMap/fairway-dashboard",
        "ConfigMap/fairway-inject",
        "DaemonSet/fairway-proxy",
        "Deployment/fairway-controller",
        "MutatingWebhookConfiguration/fairway-inject",
        "PodDisruptionBudget/fairway-controller",
        "Role/fairway-controller-lease",
        "RoleBinding/fairway-controller-lease",
        "Secret/fairway-controller-tls",
        "Service/fairway-controller",
        // Headless: the drain handshake's replicas ask each other through it.
        "Service/fairway-controller-peers",
        "Service/fairway-proxy",
        "ServiceAccount/fairway-controller",
        "ServiceAccount/fairway-proxy",
        "ValidatingAdmissionPolicy/fairway-inject-check",
        "ValidatingAdmissionPolicyBinding/fairway-inject-check",
    ];
    assert_eq!(installed, expected, "what helm installed");
    for object in &objects {
        let out = get(cluster, object, &ns);
        assert!(
            out.success,
            "{} missing after install: {}",
            resource(object),
            out.stderr
        );
    }

    // The controller's ServiceAccount token, and a kubeconfig holding only it.
    let token = kubectl_ok(
        cluster,
        &[
            "create",
            "token",
            "fairway-controller",
            "-n",
            &ns,
            "--duration=1h",
        ],
    );
    let token = token.trim().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("controller.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: fairway-controller\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: fairway-controller}}\ncurrent-context: c\n",
            cluster.server,
            cluster.ca_file().display()
        ),
    )
    .expect("write the kubeconfig");

    // What the chart grants, and what it must not.
    let app = (cluster.namespace("fw-helm-app").await).unwrap_or_else(|e| panic!("{e}"));
    assert!(can_i(
        cluster,
        &token,
        &["watch", "routes.fairway.dev", "--all-namespaces"]
    ));
    assert!(can_i(
        cluster,
        &token,
        &[
            "patch",
            "routes.fairway.dev",
            "--subresource=status",
            "-n",
            &app
        ]
    ));
    assert!(can_i(
        cluster,
        &token,
        &[
            "list",
            "endpointslices.discovery.k8s.io",
            "--all-namespaces"
        ]
    ));
    assert!(
        can_i(
            cluster,
            &token,
            &["watch", "configmaps", "--all-namespaces"]
        ),
        "CA bundles of Routes with TLS to pods are read from ConfigMaps"
    );
    assert!(can_i(
        cluster,
        &token,
        &["create", "events.events.k8s.io", "-n", &app]
    ));
    assert!(can_i(
        cluster,
        &token,
        &["create", "tokenreviews.authentication.k8s.io"]
    ));
    assert!(
        can_i(cluster, &token, &["watch", "pods", "--all-namespaces"]),
        "pods are watched for the injector's Warning Events (injector.podEvents)"
    );
    assert!(can_i(
        cluster,
        &token,
        &[
            "update",
            "leases.coordination.k8s.io/fairway-controller-status",
            "-n",
            &ns
        ]
    ));
    assert!(can_i(
        cluster,
        &token,
        &["patch", "configmaps/fairway-controller-ca", "-n", &app]
    ));
    assert!(can_i(
        cluster,
        &token,
        &["create", "configmaps", "-n", &app]
    ));
    for denied in [
        &["get", "secrets", "-n", &ns][..],
        &["patch", "configmaps/app-settings", "-n", &app],
        // ConfigMaps are read (TLS Routes' CA bundles), never changed but for the CA's.
        &["list", "secrets", "--all-namespaces"],
        &["create", "pods", "-n", &app],
        // Pods are read (the injector's Warning Events), never changed.
        &["patch", "pods", "-n", &app],
        &["update", "pods", "-n", &app],
        &["delete", "pods", "-n", &app],
        &["update", "routes.fairway.dev", "-n", &app],
        &["create", "leases.coordination.k8s.io", "-n", &app],
        &["delete", "services", "-n", &app],
        &["update", "configmaps", "-n", &app],
    ] {
        assert!(
            !can_i(cluster, &token, denied),
            "the controller may {denied:?}"
        );
    }

    // The controller, with only that kubeconfig, watching every namespace as deployed.
    let admin = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
    let slice = slice(
        &app,
        "orders-a",
        "orders",
        "http",
        8080,
        vec![endpoint("10.244.1.1", State::Ready)],
    );
    (Api::namespaced(admin.clone(), &app)
        .create(&PostParams::default(), &slice)
        .await)
        .unwrap_or_else(|e| panic!("create slice: {e}"));
    let route = route(&app, "orders", &["orders.shop"], "orders", 8080);
    (Api::namespaced(admin.clone(), &app)
        .create(&PostParams::default(), &route)
        .await)
        .unwrap_or_else(|e| panic!("create route: {e}"));

    let client = client_from(&kubeconfig).await;
    let status = StatusConfig {
        lease_namespace: ns.clone(),
        identity: "fairway-controller-0".to_owned(),
        owner: None,
    };
    let ctl = (controller::start_with(client, Vec::new(), status).await)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut proxy = (TestProxy::connect(&ctl.endpoint, "fairway-proxy-test", None, CONNECT).await)
        .unwrap_or_else(|e| panic!("{e}"));
    // The Service is missing at first: a status write and a Warning Event (events.k8s.io
    // create) by the token's controller; then the Service appears.
    condition(cluster, &app, "False", "ServiceNotFound").await;
    let events: Api<Event> = Api::namespaced(admin.clone(), &app);
    eventually(
        STATUS,
        "a ServiceNotFound Event from fairway-controller",
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("ServiceNotFound")
                    && e.reporting_controller.as_deref() == Some("fairway-controller")
            })
        },
    )
    .await;
    (Api::namespaced(admin.clone(), &app)
        .create(
            &PostParams::default(),
            &service(&app, "orders", "http", 8080),
        )
        .await)
        .unwrap_or_else(|e| panic!("create service: {e}"));
    let key = RouteKey {
        namespace: app.clone(),
        name: "orders".to_owned(),
    };
    (proxy
        .until(STATUS, "the Route on the stream", |t| {
            t.routes.contains_key(&key) && t.endpoint_count() == 1
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    condition(cluster, &app, "True", "ResolvedRefs").await;
    let holder = kubectl_ok(
        cluster,
        &[
            "get",
            "lease",
            "fairway-controller-status",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert_eq!(holder, "fairway-controller-0");
    ctl.stop().await;

    // With only its chart RBAC, the controller reviews a token of the proxy's projected
    // kind and admits the ServiceAccount its Deployment names.
    let deploy = (objects.iter())
        .find(|o| o["kind"] == "Deployment")
        .expect("the controller Deployment");
    let allowed: std::collections::BTreeSet<_> =
        strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"])
            .iter()
            .filter_map(|a| a.strip_prefix("--allowed-service-account="))
            .map(|sa| sa.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect();
    let policy = fairway_controller::auth::Policy {
        audience: "fairway".to_owned(),
        allowed,
        admit_injected: false,
    };
    let reviewer = fairway_controller::auth::KubeReviewer::new(client_from(&kubeconfig).await);
    let auth = fairway_controller::auth::Authenticator::token_review(
        policy,
        std::sync::Arc::new(reviewer),
    );
    let proxy_token = kubectl_ok(
        cluster,
        &[
            "create",
            "token",
            "fairway-proxy",
            "-n",
            &ns,
            "--audience=fairway",
            "--duration=10m",
        ],
    );
    let bearer = format!("Bearer {}", proxy_token.trim());
    let (outcome, admitted) = auth.admit(Some(bearer.as_bytes())).await;
    let admitted = admitted
        .unwrap_or_else(|s| panic!("the chart's proxy token is refused ({outcome:?}): {s:?}"));
    assert_eq!(
        admitted.map(|sa| sa.to_string()),
        Some(format!("{ns}/fairway-proxy"))
    );

    // Uninstall removes everything it installed, except the CRD (Helm never deletes
    // crds/) and the generated TLS Secret (kept, so a reinstall keeps the same CA).
    ok(
        run_helm(&["uninstall", "fairway", "--namespace", &ns], kc),
        "helm uninstall",
    );
    for object in objects.iter().filter(|o| o["kind"] != "Secret") {
        let out = get(cluster, object, &ns);
        assert!(
            !out.success && out.stderr.contains("NotFound"),
            "{} left after uninstall: {}{}",
            resource(object),
            out.stdout,
            out.stderr
        );
    }
    kubectl_ok(cluster, &["get", "crd", "routes.fairway.dev"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_default_renders_pass_the_apiservers_validation() {
    let cluster = TestCluster::shared().unwrap_or_else(|e| panic!("test cluster: {e}"));
    let ns = (cluster.namespace("fw-helm-dry").await).unwrap_or_else(|e| panic!("{e}"));
    for values in [
        "proxy.mode=sidecar,controller.replicas=1,controller.podDisruptionBudget.enabled=false",
        "proxy.hostPort.enabled=true,proxy.zone=eu-1a,controller.watchNamespaces={shop,pay}",
    ] {
        let args = [
            "template",
            "dry",
            CHART_DIR,
            "--namespace",
            &ns,
            "--set",
            values,
        ];
        let rendered = ok(
            run_helm(&args, None),
            &format!("helm template --set {values}"),
        );
        let apply = ["apply", "--dry-run=server", "--namespace", &ns, "-f", "-"];
        let out = kubectl(cluster, &apply, Some(&rendered)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.success,
            "--set {values}: the apiserver rejects the render:\n{}{}",
            out.stdout, out.stderr
        );
    }
}
