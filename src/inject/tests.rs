use serde_json::Value;

use super::*;

fn with() -> Injection {
    Injection {
        proxy_image: "example/fairway-proxy:1".into(),
        capture_image: "example/fairway-capture:1".into(),
        controller: "https://fairway-controller.fairway.svc:18000".into(),
        service_cidrs: vec!["10.96.0.0/12".into()],
        proxy_uid: 2140,
        outbound_port: 4143,
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: gateway
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: gateway}
  template:
    metadata:
      labels: {app: gateway}
      annotations:
        fairway.dev/inject: enabled
        fairway.dev/capture-exclude-ports: \"5432\"
    spec:
      containers:
      - name: gateway
        image: example/gateway:1.0
        readinessProbe: {httpGet: {path: /healthz, port: 8080}}
";

const PLAIN_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: shop}   # flow style, kept\nspec:\n  ports: [{port: 8080}]\n";

fn parse(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).expect("valid YAML out")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("named"))
        .collect()
}

#[test]
fn an_annotated_deployment_gets_capture_then_the_proxy_as_a_native_sidecar() {
    let (out, warnings) = inject_documents(DEPLOYMENT, &with()).expect("injects");
    assert!(warnings.is_empty(), "{warnings:?}");
    let docs = parse(&out);
    let spec = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["fairway-capture", "fairway-proxy"]
    );
    assert_eq!(
        names(&spec["containers"]),
        ["gateway"],
        "the app is untouched"
    );
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["httpGet"]["path"], "/healthz",
        "the app keeps its own probes"
    );
    let capture = &spec["initContainers"][0];
    assert_eq!(
        capture["securityContext"]["capabilities"]["add"][0],
        "NET_ADMIN"
    );
    let args: Vec<&str> = capture["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "install",
            "--service-cidr=10.96.0.0/12",
            "--proxy-uid=2140",
            "--to-port=4143",
            "--exclude-port=5432"
        ]
    );
    let proxy = &spec["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(proxy["securityContext"]["runAsUser"], 2140);
    assert_eq!(
        proxy["startupProbe"]["httpGet"]["path"], "/ready",
        "the app waits for the proxy's table"
    );
    assert!(
        proxy["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--outbound-listen=127.0.0.1:4143")
    );
    assert_eq!(
        names(&spec["volumes"]),
        ["fairway-discovery-token", "fairway-controller-ca"]
    );
    assert_eq!(docs[0]["spec"]["replicas"], 2, "everything else is kept");
    assert!(!out.contains('{'), "block-style YAML out:\n{out}");
}

#[test]
fn objects_without_the_annotation_come_back_byte_for_byte() {
    let plain_deployment = DEPLOYMENT.replace("fairway.dev/inject: enabled", "other: annotation");
    let input = format!("{PLAIN_SERVICE}---\n{plain_deployment}");
    let (out, warnings) = inject_documents(&input, &with()).expect("reads");
    assert_eq!(out, input);
    assert!(warnings.is_empty());
}

#[test]
fn several_documents_each_as_they_need() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {fairway.dev/inject: enabled}\nspec:\n  containers: [{name: app, image: a}]\n";
    let cronjob = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata: {annotations: {fairway.dev/inject: enabled}}\n        spec:\n          containers: [{name: job, image: j}]\n";
    let input = format!("---\n{pod}---\n{PLAIN_SERVICE}---\n{cronjob}");
    let (out, _) = inject_documents(&input, &with()).expect("injects");
    let docs = parse(&out);
    assert_eq!(docs.len(), 3);
    assert_eq!(
        names(&docs[0]["spec"]["initContainers"]),
        ["fairway-capture", "fairway-proxy"]
    );
    assert!(
        out.contains(PLAIN_SERVICE),
        "the Service is kept as written"
    );
    let job = &docs[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        names(&job["initContainers"]),
        ["fairway-capture", "fairway-proxy"]
    );
}

#[test]
fn injecting_twice_changes_nothing_the_second_time() {
    let (once, _) = inject_documents(DEPLOYMENT, &with()).expect("injects");
    let (twice, _) = inject_documents(&once, &with()).expect("reads");
    assert_eq!(twice, once);
}

#[test]
fn an_app_running_as_the_proxys_uid_is_warned_about() {
    let input = DEPLOYMENT.replace(
        "        image: example/gateway:1.0\n",
        "        image: example/gateway:1.0\n        securityContext: {runAsUser: 2140}\n",
    );
    let (_, warnings) = inject_documents(&input, &with()).expect("injects");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Deployment/gateway: container gateway runs as UID 2140"),
        "{}",
        warnings[0]
    );
}

#[test]
fn bad_yaml_names_its_document() {
    let input = format!("{PLAIN_SERVICE}---\nkind: [unclosed\n");
    let error = inject_documents(&input, &with()).expect_err("invalid");
    assert!(
        matches!(error, InjectError::Parse { index: 1, .. }),
        "{error}"
    );
}
