//! charts/fairway as a user installs it: only image repository, tag and pull policy
//! overridden, `helm install --wait` on the real node, then traffic, RBAC, `helm
//! upgrade` and `helm uninstall`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fairway_tests::helm::{CHART_DIR, helm};
use fairway_tests::node::{CONTROLLER_IMAGE, PROXY_IMAGE, TEST_TAG};

use crate::support::{
    POD_READY, apply, backend, curl, fairway_images, helm_lock, kubectl, kubectl_out, namespace,
    node, rollout, wait_for,
};

/// The release name users copy from docs/install.md.
pub const RELEASE: &str = "fairway";
/// The chart directory, as a helm argument.
pub const CHART_DIR_ARG: &str = CHART_DIR;
/// Requests per measurement: enough for 25% ± 2 to be exact with RoundRobin.
const REQUESTS: usize = 100;

/// `helm ARGS` against the node; must succeed; its stdout.
pub fn run_helm(args: &[&str]) -> String {
    let out = helm(args, Some(&node().kubeconfig))
        .unwrap_or_else(|e| panic!("helm {}: {e}", args.join(" ")));
    assert!(
        out.success,
        "helm {} failed:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The only values a user overrides: where the images are.
pub fn image_values() -> Vec<String> {
    let mut set = Vec::new();
    for (component, repository) in [("controller", CONTROLLER_IMAGE), ("proxy", PROXY_IMAGE)] {
        set.push(format!("--set={component}.image.repository={repository}"));
        set.push(format!("--set={component}.image.tag={TEST_TAG}"));
        set.push(format!("--set={component}.image.pullPolicy=Never"));
    }
    set
}

/// Pod names (label selector `selector`) of `namespace`.
pub fn pods(namespace: &str, selector: &str) -> Vec<String> {
    kubectl(&[
        "-n",
        namespace,
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// `count` keep-alive requests on one curl connection to `url` with `host`; the
/// answering pod names, counted.
pub fn spread(url: &str, host: &str, count: usize) -> BTreeMap<String, usize> {
    let mut args = vec![
        "-sS".to_string(),
        "--max-time".into(),
        "60".into(),
        "-H".into(),
        format!("Host: {host}"),
        "-w".into(),
        " %{http_code}\\n".into(),
    ];
    args.extend(std::iter::repeat_n(url.to_string(), count));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&args);
    assert!(out.success, "curl {url}: {}", out.stderr);
    let mut errors: Vec<&str> = out.stderr.lines().collect();
    errors.dedup();
    assert!(errors.is_empty(), "curl {url} (Host {host}): {errors:?}");
    let mut counts = BTreeMap::new();
    for line in out.stdout.lines() {
        // "POD 200": a body naming the pod, then curl's status code.
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// `helm install --wait` of the chart as a user runs it, into a fresh namespace
/// `fairway-xxxxxx`; returns the release (uninstalled when dropped) and helm's output
/// (NOTES.txt).
pub fn install() -> (Release, String) {
    install_with(&[])
}

/// [`install`] with more `--set=...` values.
pub fn install_with(extra: &[String]) -> (Release, String) {
    fairway_images();
    let ns = format!("fairway-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut values = image_values();
    values.extend_from_slice(extra);
    let mut install = vec![
        "install",
        RELEASE,
        CHART_DIR,
        "-n",
        &ns,
        "--create-namespace",
    ];
    install.extend(["--wait", "--timeout=5m"]);
    install.extend(values.iter().map(String::as_str));
    let started = Instant::now();
    let notes = run_helm(&install);
    eprintln!(
        "helm install --wait: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    (Release(ns), notes)
}

/// [`install`] with the injector's capture image (imported into the node): the webhook
/// can then inject pods that really run.
pub fn install_injecting() -> (Release, String) {
    let capture = crate::support::capture_image();
    let (repository, tag) = capture.rsplit_once(':').expect("image:tag");
    install_with(&[
        format!("--set=injector.captureImage.repository={repository}"),
        format!("--set=injector.captureImage.tag={tag}"),
    ])
}

/// Uninstalls the release when dropped, also when a test fails half-way: the chart's
/// ClusterRoles are cluster-wide, so a release left behind fails the next install.
pub struct Release(pub String);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(
            &[
                "uninstall",
                RELEASE,
                "-n",
                &self.0,
                "--wait",
                "--timeout=5m",
            ],
            Some(&node().kubeconfig),
        );
        let _ = node().kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
    }
}

#[test]
fn helm_install_wait_runs_fairway_on_the_node_then_upgrades_and_uninstalls() {
    let _one_release = helm_lock();
    let (release, notes) = install();
    let ns = release.0.clone();
    let values = image_values();

    // --wait must mean Ready: the controllers and the node's proxy.
    let controller = kubectl(&[
        "-n",
        &ns,
        "get",
        "deployment",
        "fairway-controller",
        "-o",
        "jsonpath={.status.readyReplicas}/{.spec.replicas}",
    ]);
    assert_eq!(
        controller, "2/2",
        "controller replicas Ready when --wait returns"
    );
    let proxy = kubectl(&[
        "-n",
        &ns,
        "get",
        "daemonset",
        "fairway-proxy",
        "-o",
        "jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}",
    ]);
    assert_eq!(
        proxy, "1/1",
        "the proxy DaemonSet's pod Ready when --wait returns (a surge rollout)"
    );

    // NOTES.txt's commands work as printed.
    for line in notes.lines().map(str::trim) {
        if let Some(command) = line.strip_prefix("kubectl ")
            && command.contains("rollout status")
        {
            let args: Vec<&str> = command.split_whitespace().collect();
            kubectl(&args);
        }
    }

    // The proxy reached the controller by its DNS name (glibc's resolver in our image),
    // over TLS, with its projected token admitted by TokenReview: the controller logs
    // the ServiceAccount the review returned.
    let url = kubectl(&[
        "-n",
        &ns,
        "get",
        "daemonset",
        "fairway-proxy",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(
        url.contains(&format!("https://fairway-controller.{ns}.svc:18000")),
        "the chart points proxies at the controller's DNS name over TLS: {url}"
    );
    let account = format!("{ns}/fairway-proxy");
    wait_for(
        "the controller logs the proxy's reviewed ServiceAccount",
        Duration::from_secs(30),
        || {
            let logs = kubectl(&[
                "-n",
                &ns,
                "logs",
                "-l",
                "app.kubernetes.io/component=controller",
                "--tail=-1",
            ]);
            (logs.contains("proxy connected") && logs.contains(&account)).then_some(())
        },
    );

    per_request_balancing(&ns);
    rbac(&ns);

    // helm upgrade with a changed argument rolls the DaemonSet; --wait means the new
    // pod is Ready.
    let before = pods(&ns, "app.kubernetes.io/component=proxy");
    let mut upgrade = vec![
        "upgrade",
        RELEASE,
        CHART_DIR,
        "-n",
        &ns,
        "--wait",
        "--timeout=5m",
    ];
    upgrade.extend(values.iter().map(String::as_str));
    upgrade.push("--set=proxy.logFormat=text");
    run_helm(&upgrade);
    let ready = kubectl(&[
        "-n",
        &ns,
        "get",
        "daemonset",
        "fairway-proxy",
        "-o",
        "jsonpath={.status.numberReady}/{.status.updatedNumberScheduled}",
    ]);
    assert_eq!(
        ready, "1/1",
        "the upgraded proxy pod is Ready when --wait returns"
    );
    // The old pod drains (terminationGracePeriodSeconds) beside its Ready successor.
    wait_for("helm upgrade replaced the proxy pod", POD_READY, || {
        let after = pods(&ns, "app.kubernetes.io/component=proxy");
        (after.len() == 1 && !before.contains(&after[0])).then_some(())
    });

    run_helm(&["uninstall", RELEASE, "-n", &ns, "--wait", "--timeout=5m"]);
    wait_for("no pod left after helm uninstall", POD_READY, || {
        pods(&ns, "app.kubernetes.io/instance=fairway")
            .is_empty()
            .then_some(())
    });
    let left = kubectl(&[
        "-n",
        &ns,
        "get",
        "all,configmaps,secrets,serviceaccounts",
        "-l",
        "app.kubernetes.io/instance=fairway",
        "-o",
        "name",
    ]);
    // The generated TLS Secret stays (helm.sh/resource-policy: keep, docs/install.md),
    // so a reinstall keeps the CA proxies trust; nothing else may.
    assert_eq!(
        left.trim(),
        "secret/fairway-controller-tls",
        "helm uninstall leaves only the documented TLS Secret"
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// Four backend pods behind a Route: through the proxy each gets a quarter of one
/// keep-alive connection's requests; straight to the ClusterIP one pod gets them all.
fn per_request_balancing(fairway_ns: &str) {
    let ns = namespace("shop");
    apply(&backend(&ns, 4));
    apply(&route(&ns));
    rollout(&ns, "deployment/backend");
    let proxy_ip = kubectl(&[
        "-n",
        fairway_ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=proxy",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let url = format!("http://{proxy_ip}:4140/");
    let host = format!("backend.{ns}.svc.cluster.local");
    // The proxy has the Route once all four pods answer through it.
    wait_for(
        "all four backend pods reachable through the proxy",
        POD_READY,
        || (spread(&url, &host, 8).len() == 4).then_some(()),
    );
    let through = spread(&url, &host, REQUESTS);
    eprintln!("through the proxy, per pod: {through:?}");
    assert_eq!(through.len(), 4, "every pod answered: {through:?}");
    for (pod, n) in &through {
        assert!(
            (23..=27).contains(n),
            "pod {pod} got {n} of {REQUESTS} (25 ± 2): {through:?}"
        );
    }

    let cluster_ip = kubectl(&[
        "-n",
        &ns,
        "get",
        "service",
        "backend",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let direct_url = format!("http://{cluster_ip}:8080/");
    // kube-proxy programs a new Service's rules a moment after its pods are Ready
    // (until then the ClusterIP refuses): ten fresh connections in a row first.
    wait_for(
        "the ClusterIP answers through kube-proxy",
        POD_READY,
        || {
            let mut args = vec!["-s", "-w", " %{http_code}\\n", "-H", "Connection: close"];
            args.extend(std::iter::repeat_n(direct_url.as_str(), 10));
            let codes = curl(&args).stdout;
            (codes.lines().filter(|c| c.ends_with(" 200")).count() == 10).then_some(())
        },
    );
    let direct = spread(&direct_url, &host, REQUESTS);
    eprintln!("straight to the ClusterIP, per pod: {direct:?}");
    assert_eq!(
        direct.len(),
        1,
        "kube-proxy picks a pod per connection, not per request: {direct:?}"
    );
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// A Route for the backend Service: RoundRobin, no slow start (docs/install.md).
pub fn route(ns: &str) -> String {
    format!(
        "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {{name: backend, namespace: {ns}}}
spec:
  hosts: [backend.{ns}.svc.cluster.local, backend.{ns}]
  loadBalancer: {{policy: RoundRobin}}
  rules:
  - backends: [{{service: backend, port: 8080}}]
"
    )
}

/// What the two ServiceAccounts may do, as the apiserver answers it.
fn rbac(ns: &str) {
    let can = |account: &str| {
        let out = kubectl_out(&[
            "auth",
            "can-i",
            "--list",
            &format!("--as=system:serviceaccount:{ns}:{account}"),
            "-n",
            ns,
        ]);
        assert!(out.success, "kubectl auth can-i --list: {}", out.stderr);
        out.stdout
    };
    let controller = can("fairway-controller");
    for needed in [
        "routes.fairway.dev",
        "endpointslices.discovery.k8s.io",
        "tokenreviews.authentication.k8s.io",
        "leases.coordination.k8s.io",
    ] {
        assert!(
            controller.contains(needed),
            "the controller may use {needed}:\n{controller}"
        );
    }
    assert!(
        !controller.contains("secrets"),
        "the controller reads no Secret:\n{controller}"
    );
    let proxy = can("fairway-proxy");
    for denied in [
        "routes.fairway.dev",
        "endpointslices",
        "services",
        "secrets",
        "pods",
    ] {
        assert!(
            !proxy.contains(denied),
            "the proxy has no API access ({denied}):\n{proxy}"
        );
    }
}
