//! Gateway API's CRDs installed after the controller started: HTTPRoute and
//! BackendTLSPolicy input turn on by themselves, with no restart. A real apiserver
//! without the CRDs, a controller that starts there (and turns Ready with both inputs
//! off), then the HTTPRoute CRD of the pinned release, then an HTTPRoute: the
//! controller serves it (its group is in the published table) and writes its status;
//! then the BackendTLSPolicy CRD and a policy on the route's Service: the group's
//! backend turns TLS and the policy gets its status.
//!
//! Its own test binary on purpose: the cluster is shared per binary, and any test that
//! installed the CRDs first would hide what this one proves.

use std::time::Duration;

use fairway_tests::controller::{cluster_with_crd, start};
use fairway_tests::eventually;
use fairway_tests::kubectl::kubectl;
use fairway_tests::objects::{State, endpoint, service, slice};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;

/// Discovery is asked again at most every 10 s; the rest is watch latency.
const PICKED_UP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_input_turns_on_when_the_crds_arrive() {
    let cluster = cluster_with_crd();
    let crds = kubectl(cluster, &["get", "crd", "-o", "name"], None).expect("kubectl");
    assert!(
        !crds.stdout.contains("httproutes.gateway.networking.k8s.io")
            && !crds
                .stdout
                .contains("backendtlspolicies.gateway.networking.k8s.io"),
        "this binary's cluster must start without Gateway API: {}",
        crds.stdout
    );
    let ns = (cluster.namespace("late-crds").await).unwrap_or_else(|e| panic!("{e}"));
    let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = service(&ns, "orders", "http", 8080);
    (services.create(&PostParams::default(), &svc).await).expect("create the Service");
    let slices: Api<EndpointSlice> = Api::namespaced(client, &ns);
    // Never dialled: the controller only reads it.
    let ready = vec![endpoint("10.244.1.1", State::Ready)];
    let s = slice(&ns, "orders-a", "orders", "http", 8080, ready);
    (slices.create(&PostParams::default(), &s).await).expect("create the EndpointSlice");

    let controller = (start(cluster, &ns).await).unwrap_or_else(|e| panic!("{e}"));
    eventually(
        PICKED_UP,
        "the controller synced without HTTPRoute",
        || async { controller.store.is_ready().then_some(()) },
    )
    .await;

    fairway_tests::gateway_api::install(cluster);
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: orders, namespace: {ns}}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: orders}}]
  rules:
  - backendRefs: [{{name: orders, port: 8080}}]
"
    );
    let applied = kubectl(cluster, &["apply", "-f", "-"], Some(&route)).expect("kubectl");
    assert!(
        applied.success,
        "kubectl apply the HTTPRoute: {}",
        applied.stderr
    );

    let group = format!("{ns}/service:orders");
    eventually(PICKED_UP, "the HTTPRoute's group published", || async {
        let published = controller.store.latest();
        let served = published
            .table
            .routes
            .keys()
            .any(|k| k.to_string() == group);
        served.then_some(())
    })
    .await;
    let accepted = eventually(
        PICKED_UP,
        "our Accepted condition on the HTTPRoute",
        || async {
            let args = ["get", "httproute", "orders", "-n", &ns, "-o", "json"];
            let out = kubectl(cluster, &args, None).ok()?;
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            let parents = doc["status"]["parents"].as_array()?;
            let ours = parents
                .iter()
                .find(|p| p["controllerName"] == "fairway.dev/controller")?;
            let conditions = ours["conditions"].as_array()?;
            conditions.iter().find(|c| c["type"] == "Accepted").cloned()
        },
    )
    .await;
    assert_eq!(accepted["status"], "True", "{accepted}");

    fairway_tests::gateway_api::install_backend_tls_policy(cluster);
    let policy = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: orders-tls, namespace: {ns}}}
spec:
  targetRefs: [{{group: \"\", kind: Service, name: orders}}]
  validation:
    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: orders-ca}}]
    hostname: orders.example
"
    );
    let applied = kubectl(cluster, &["apply", "-f", "-"], Some(&policy)).expect("kubectl");
    assert!(
        applied.success,
        "kubectl apply the policy: {}",
        applied.stderr
    );
    eventually(PICKED_UP, "the group's backend turned TLS", || async {
        let published = controller.store.latest();
        let route = published
            .table
            .routes
            .iter()
            .find(|(k, _)| k.to_string() == group)?;
        let tls = route.1.upstream.tls.values().next()?;
        (tls.hostname.as_deref() == Some("orders.example")).then_some(())
    })
    .await;
    let refs = eventually(
        PICKED_UP,
        "our ResolvedRefs condition on the policy",
        || async {
            let args = [
                "get",
                "backendtlspolicy",
                "orders-tls",
                "-n",
                &ns,
                "-o",
                "json",
            ];
            let out = kubectl(cluster, &args, None).ok()?;
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            let ancestors = doc["status"]["ancestors"].as_array()?;
            let ours = ancestors
                .iter()
                .find(|a| a["controllerName"] == "fairway.dev/controller")?;
            let conditions = ours["conditions"].as_array()?;
            conditions
                .iter()
                .find(|c| c["type"] == "ResolvedRefs")
                .cloned()
        },
    )
    .await;
    assert_eq!(
        refs["reason"], "InvalidCACertificateRef",
        "no such ConfigMap: {refs}"
    );
    controller.stop().await;
}
