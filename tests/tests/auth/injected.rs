//! The proxy the webhook injected into an app's pod subscribes with the app's own
//! ServiceAccount, which no one listed (`--admit-injected-sidecars`): admitted only
//! with a token bound to a pod that asks for injection and has the proxy container, as
//! the real apiserver's TokenReview and the pod it holds say. Any other pod of the same
//! ServiceAccount, or an unbound token, is refused as before.

use std::collections::BTreeSet;
use std::sync::Arc;

use fairway_controller::auth::{Authenticator, KubePods, KubeReviewer, Outcome, Policy};
use k8s_openapi::api::authentication::v1::BoundObjectReference;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::support::{AUDIENCE, PROXY_SA, Setup};

/// Creates pod `name` of ServiceAccount `gateway` (no node runs it: the apiserver
/// holds it, which is all a token binding and the check need); returns its uid.
async fn pod(setup: &Setup, name: &str, injected: bool) -> String {
    let mut init = Vec::new();
    let mut annotations = json!({});
    if injected {
        annotations = json!({"fairway.dev/inject": "enabled"});
        init.push(json!({"name": "fairway-proxy", "image": "fairway-proxy:test", "restartPolicy": "Always"}));
    }
    let object: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "serviceAccountName": "gateway",
            "initContainers": init,
            "containers": [{"name": "gateway", "image": "gateway:test"}],
        },
    }))
    .expect("a Pod");
    let api: Api<Pod> = Api::namespaced(setup.client.clone(), &setup.ns);
    let created = (api.create(&PostParams::default(), &object).await)
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    created.metadata.uid.expect("uid")
}

async fn bound_token(setup: &Setup, pod: &str, uid: &str) -> String {
    let bound = BoundObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: Some(pod.to_owned()),
        uid: Some(uid.to_owned()),
    };
    fairway_tests::tokens::token(&setup.client, &setup.ns, "gateway", AUDIENCE, Some(bound)).await
}

fn authenticator(setup: &Setup, admit_injected: bool) -> Authenticator {
    let policy = Policy {
        audience: AUDIENCE.to_owned(),
        allowed: BTreeSet::from([format!("{}/{PROXY_SA}", setup.ns).parse().expect("ns/name")]),
        admit_injected,
    };
    let reviewer = Arc::new(KubeReviewer::new(setup.client.clone()));
    Authenticator::token_review(policy, reviewer)
        .with_pods(Arc::new(KubePods::new(setup.client.clone())))
}

async fn admit(
    auth: &Authenticator,
    token: &str,
) -> (Outcome, Result<String, (tonic::Code, String)>) {
    let (outcome, result) = auth.admit(Some(format!("Bearer {token}").as_bytes())).await;
    let result = result
        .map(|account| account.map(|a| a.to_string()).unwrap_or_default())
        .map_err(|s| (s.code(), s.message().to_owned()));
    (outcome, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_pods_proxy_is_admitted_with_the_apps_service_account() {
    let setup = Setup::new("auth-injected").await;
    setup.service_account("gateway").await;
    let injected_uid = pod(&setup, "gateway-injected", true).await;
    let plain_uid = pod(&setup, "gateway-plain", false).await;
    let injected = bound_token(&setup, "gateway-injected", &injected_uid).await;
    let plain = bound_token(&setup, "gateway-plain", &plain_uid).await;
    let unbound = setup.token("gateway", AUDIENCE).await;
    let gateway = format!("{}/gateway", setup.ns);

    let auth = authenticator(&setup, true);
    assert_eq!(
        admit(&auth, &injected).await,
        (Outcome::admitted_injected, Ok(gateway.clone())),
        "the injected pod's token, its ServiceAccount never listed"
    );
    let (outcome, refused) = admit(&auth, &plain).await;
    assert_eq!(outcome, Outcome::forbidden);
    let (code, message) = refused.expect_err("a pod without the proxy");
    assert_eq!(code, tonic::Code::PermissionDenied);
    assert!(
        message.contains("gateway-plain") && message.contains("not an injected one"),
        "says which pod and why: {message}"
    );
    let (outcome, _) = admit(&auth, &unbound).await;
    assert_eq!(
        outcome,
        Outcome::forbidden,
        "a token bound to no pod proves no injection"
    );

    let off = authenticator(&setup, false);
    let (outcome, _) = admit(&off, &injected).await;
    assert_eq!(outcome, Outcome::forbidden, "off unless asked for");
}
