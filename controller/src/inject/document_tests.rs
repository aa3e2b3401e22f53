use serde_json::Value;

use super::inject_yaml;
use crate::inject::Template;
use crate::inject::template::Defaults;

fn template() -> Template {
    Template::default_for(&Defaults {
        image: "registry.example/fairway-proxy:1.2.3".into(),
        controller: "https://fw.example:8443".into(),
        ..Defaults::default()
    })
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: gateway  # the gateway's\nspec:\n  ports: [{port: 80}]\n";

const PLAIN_POD: &str = "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\nspec:\n  containers:\n    - name: app\n      image: app\n";

const DEPLOYMENT: &str = r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gateway
spec:
  selector: {matchLabels: {app: gateway}}
  template:
    metadata:
      labels: {app: gateway}
      annotations:
        fairway.dev/inject: enabled
    spec:
      containers:
        - name: gateway
          image: gateway:1
"#;

const CRONJOB: &str = r#"---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {fairway.dev/drain: enabled}
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
"#;

fn docs(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str(doc.trim_start_matches("---\n")).unwrap())
        .collect()
}

#[test]
fn unannotated_objects_come_back_byte_for_byte() {
    let input = format!("# a comment\n{SERVICE}{PLAIN_POD}");
    let (out, reports) = inject_yaml(&input, &template()).unwrap();
    assert!(reports.is_empty());
    assert_eq!(out, input);
}

#[test]
fn every_pod_template_that_asks_is_injected_and_the_rest_kept() {
    let input = format!("{SERVICE}{DEPLOYMENT}{PLAIN_POD}{CRONJOB}");
    let (out, reports) = inject_yaml(&input, &template()).unwrap();
    let objects: Vec<&str> = reports.iter().map(|r| r.object.as_str()).collect();
    assert_eq!(objects, ["Deployment/gateway", "CronJob/report"]);
    assert!(out.starts_with(SERVICE), "{out}");
    assert!(out.contains(PLAIN_POD), "{out}");
    let docs = docs(&out);
    assert_eq!(docs.len(), 4, "{out}");
    let gateway = &docs[1]["spec"]["template"]["spec"];
    assert_eq!(gateway["initContainers"][1]["name"], "fairway-proxy");
    assert_eq!(gateway["initContainers"][1]["restartPolicy"], "Always");
    let marks = &docs[1]["spec"]["template"]["metadata"];
    assert_eq!(marks["labels"]["fairway.dev/injected"], "proxy", "{out}");
    assert_eq!(
        marks["labels"]["app"], "gateway",
        "the selector's label kept"
    );
    assert_eq!(
        marks["annotations"]["fairway.dev/injected"], "fairway-capture,fairway-proxy",
        "marked as the webhook marks pods"
    );
    let marks = &docs[3]["spec"]["jobTemplate"]["spec"]["template"]["metadata"];
    assert_eq!(marks["labels"]["fairway.dev/injected"], "drain", "{out}");
    let report = &docs[3]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(report["initContainers"][0]["name"], "fairway-drain-copy");
    assert_eq!(
        report["initContainers"].as_array().unwrap().len(),
        1,
        "drain alone: no proxy"
    );
    let injected = &out[out.find("kind: Deployment").unwrap()..out.find("kind: Pod").unwrap()];
    // Block style: no value opens a flow sequence or mapping (an empty `{}` aside).
    let flow = injected.lines().find(|line| {
        let value = line.trim_start().trim_start_matches("- ");
        let value = value.split_once(": ").map_or(value, |(_, v)| v);
        (value.starts_with('[') || value.starts_with('{')) && value != "{}"
    });
    assert_eq!(flow, None, "block style:\n{injected}");
}

#[test]
fn the_items_of_a_list_are_injected() {
    let input = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata:\n      name: a\n      annotations: {fairway.dev/inject: enabled}\n    spec:\n      containers: [{name: a, image: a}]\n";
    let (out, reports) = inject_yaml(input, &template()).unwrap();
    assert_eq!(reports.len(), 1);
    let list: Value = serde_saphyr::from_str(&out).unwrap();
    assert_eq!(
        list["items"][0]["spec"]["initContainers"][1]["name"],
        "fairway-proxy"
    );
}

#[test]
fn broken_yaml_names_its_document_and_line() {
    let input = format!("{SERVICE}---\nkind: Pod\nspec: [unclosed\n");
    let error = inject_yaml(&input, &template()).unwrap_err().to_string();
    assert!(error.starts_with("document 2 (line 7)"), "{error}");
}

#[test]
fn an_annotated_pod_that_cannot_be_injected_is_an_error_naming_it() {
    let input = "kind: Pod\nmetadata:\n  name: empty\n  annotations: {fairway.dev/inject: enabled}\nspec:\n  containers: []\n";
    let error = inject_yaml(input, &template()).unwrap_err().to_string();
    assert_eq!(error, "Pod/empty: the pod has no containers");
}
