use serde_json::{Value, json};

use super::review;
use crate::inject::template::Defaults;
use crate::inject::{Template, Wanted, inject, mark};

fn template() -> Template {
    Template::default_for(&Defaults {
        image: "registry.example/fairway-proxy:1.2.3".into(),
        controller: "https://fw.example:8443".into(),
        ..Defaults::default()
    })
}

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "gateway-7c9d-", "namespace": "shop", "annotations": annotations},
        "spec": {"containers": [{"name": "gateway", "image": "gateway:1"}]}
    })
}

fn request(object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "dryRun": false
        }
    }))
    .unwrap()
}

fn answer(object: Value) -> Value {
    let (reviewed, _) = review(&request(object), &template()).expect("a review");
    serde_json::to_value(reviewed).unwrap()["response"].clone()
}

/// The JSON patch of a response, decoded (kube writes the bytes as a JSON array, which
/// the apiserver reads as Go's `[]byte` like the usual base64 string).
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes: Vec<u8> = serde_json::from_value(response.get("patch")?.clone()).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn an_annotated_pod_is_allowed_with_the_patch_that_injects_it() {
    let pod = pod(json!({"fairway.dev/inject": "enabled"}));
    let response = answer(pod.clone());
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = patch_of(&response).expect("a patch");
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let mut expected = pod;
    let done = inject(&mut expected["spec"], &Wanted::Proxy.into(), &template()).unwrap();
    mark(&mut expected["metadata"], Wanted::Proxy, &done);
    assert_eq!(
        patched, expected,
        "the patch is exactly the injection and its marks"
    );
    assert_eq!(
        patched["metadata"]["labels"]["fairway.dev/injected"],
        "proxy"
    );
    assert_eq!(
        patched["metadata"]["annotations"]["fairway.dev/injected"],
        "fairway-capture,fairway-proxy"
    );
}

#[test]
fn other_pods_are_allowed_untouched() {
    for annotations in [json!({}), json!({"fairway.dev/inject": "disabled"})] {
        let response = answer(pod(annotations));
        assert_eq!(response["allowed"], true);
        assert!(response["patch"].is_null(), "{response}");
    }
}

#[test]
fn a_pod_that_cannot_be_injected_is_still_allowed_with_a_warning() {
    let mut pod = pod(json!({"fairway.dev/inject": "enabled"}));
    pod["spec"]["volumes"] = json!([{"name": "fairway-token", "emptyDir": {}}]);
    let response = answer(pod.clone());
    assert_eq!(
        response["allowed"], true,
        "Fairway never stops a pod from starting"
    );
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch_of(&response).expect("a patch")).unwrap();
    let annotations = patched["metadata"]["annotations"].as_object_mut().unwrap();
    let reason = annotations
        .remove("fairway.dev/inject-error")
        .unwrap_or_default();
    assert!(
        reason.as_str().is_some_and(|r| r.contains("fairway-token")),
        "the reason, on the pod: {reason}"
    );
    assert_eq!(patched, pod, "and nothing else");
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("fairway: not injected") && warning.contains("fairway-token"),
        "{warning}"
    );
}

#[test]
fn a_body_that_is_no_review_is_an_error() {
    assert!(review(b"{}", &template()).is_err());
    assert!(review(b"not json", &template()).is_err());
}
