//! Host claims against a real kube-apiserver (design.md section 9): a Service's
//! namespaced names belong to its namespace. A Route in another namespace that lists
//! them keeps its other hosts and says why in its status, and a Service created later
//! takes its two-label name back from an older Route elsewhere.

use std::time::Duration;

use fairway_controller::status::StatusConfig;
use fairway_proto::model::{RouteKey, RouteTable};
use fairway_tests::controller::{self, Controller};
use fairway_tests::discovery::TestProxy;
use fairway_tests::objects::{route, service};
use fairway_tests::{TestCluster, eventually};
use kube::api::PostParams;
use kube::{Api, Client};

/// A synced controller opens streams within this (first list of three kinds).
const CONNECT: Duration = Duration::from_secs(60);
/// A watch event reaches the stream, or a status write shows, within this.
const CHANGE: Duration = Duration::from_secs(30);

const PORT: i32 = 8080;

async fn create<K>(client: &Client, namespace: &str, object: &K)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    (api.create(&PostParams::default(), object).await)
        .unwrap_or_else(|e| panic!("create {} in {namespace}: {e}", K::kind(&())));
}

/// Waits until `kubectl get route` shows `Accepted` with this reason; returns its message.
async fn accepted(cluster: &TestCluster, namespace: &str, name: &str, reason: &str) -> String {
    let what = format!("route {namespace}/{name} Accepted reason {reason}");
    eventually(CHANGE, &what, || async {
        let args = ["get", "route", name, "-n", namespace, "-o", "json"];
        let out = fairway_tests::kubectl::kubectl(cluster, &args, None).ok()?;
        let route: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let conditions = route["status"]["conditions"].as_array()?;
        let found = conditions.iter().find(|c| c["type"] == "Accepted")?;
        (found["reason"] == reason).then(|| found["message"].as_str().unwrap_or("").to_owned())
    })
    .await
}

fn hosts(table: &RouteTable, key: &RouteKey) -> Option<Vec<String>> {
    table.routes.get(key).map(|r| r.hosts.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_name_is_served_only_by_routes_of_its_namespace() {
    let cluster = controller::cluster_with_crd();
    let shop = (cluster.namespace("claims-shop").await).unwrap_or_else(|e| panic!("{e}"));
    let web = (cluster.namespace("claims-web").await).unwrap_or_else(|e| panic!("{e}"));
    let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
    let long = format!("orders.{shop}.svc.cluster.local");
    let short = format!("orders.{shop}");

    // Created first, so it is the oldest claimant of every name it lists.
    let grab = route(
        &web,
        "grab",
        &[&long, &short, "grab.example"],
        "orders",
        PORT,
    );
    create(&client, &web, &grab).await;
    let controller: Controller = controller::start_with(
        client.clone(),
        vec![shop.clone(), web.clone()],
        StatusConfig {
            lease_namespace: shop.clone(),
            identity: format!("claims-{shop}"),
            owner: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut proxy = (TestProxy::connect(&controller.endpoint, "claims", None, CONNECT).await)
        .unwrap_or_else(|e| panic!("{e}"));
    let grab_key = RouteKey {
        namespace: web.clone(),
        name: "grab".into(),
    };

    // No Service `orders` in the shop namespace yet: the two-label name is an ordinary
    // one, the `.svc` name is reserved regardless.
    let want = vec![short.clone(), "grab.example".to_owned()];
    (proxy
        .until(CHANGE, "grab serving the two-label name", |t| {
            hosts(t, &grab_key).as_ref() == Some(&want)
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    let message = accepted(cluster, &web, "grab", "HostNotPermitted").await;
    assert_eq!(
        message,
        format!(
            "host {long} is a Service name of namespace {shop}: only Routes in {shop} may claim it"
        ),
        "the message names the host and the namespace that owns it"
    );

    // The Service appears: its two-label name now belongs to the shop namespace, though
    // the Route claiming it is older than the Service.
    create(&client, &shop, &service(&shop, "orders", "http", PORT)).await;
    (proxy
        .until(CHANGE, "grab keeping only its own host", |t| {
            hosts(t, &grab_key) == Some(vec!["grab.example".to_owned()])
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    let what = format!("grab's status naming {short}");
    let message = eventually(CHANGE, &what, || async {
        let m = accepted(cluster, &web, "grab", "HostNotPermitted").await;
        m.contains(&format!("host {short} is")).then_some(m)
    })
    .await;
    assert!(message.contains(&format!("namespace {shop}")), "{message}");

    // The owner's Route, younger than grab, gets both names and is accepted.
    create(
        &client,
        &shop,
        &route(&shop, "orders", &[&long, &short], "orders", PORT),
    )
    .await;
    let owner_key = RouteKey {
        namespace: shop.clone(),
        name: "orders".into(),
    };
    let want = vec![long.clone(), short.clone()];
    (proxy
        .until(CHANGE, "the shop Route serving its Service's names", |t| {
            hosts(t, &owner_key).as_ref() == Some(&want)
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    accepted(cluster, &shop, "orders", "Accepted").await;
    controller.stop().await;
}

/// Most clusters lack the Gateway API CRDs (this binary's cluster never installs them):
/// the controller must still sync, open streams and serve Routes, with HTTPRoute input
/// off rather than a watcher failing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gateway_api_crds_the_controller_still_syncs() {
    let cluster = controller::cluster_with_crd();
    let ns = (cluster.namespace("no-gateway-api").await).unwrap_or_else(|e| panic!("{e}"));
    let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
    let served = fairway_controller::watch::httproutes::served(&client).await;
    assert!(
        matches!(served, Ok(false)),
        "this test needs a cluster without HTTPRoute: discovery said {served:?}"
    );
    create(&client, &ns, &service(&ns, "orders", "http", PORT)).await;
    create(
        &client,
        &ns,
        &route(&ns, "orders", &["orders.example"], "orders", PORT),
    )
    .await;
    let controller: Controller = controller::start_with(
        client.clone(),
        vec![ns.clone()],
        StatusConfig {
            lease_namespace: ns.clone(),
            identity: format!("no-gateway-api-{ns}"),
            owner: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // A controller opens no stream before its first full sync: connecting is the proof.
    let mut proxy = (TestProxy::connect(&controller.endpoint, "no-gateway-api", None, CONNECT)
        .await)
        .unwrap_or_else(|e| panic!("the controller must sync without the Gateway API CRDs: {e}"));
    let key = RouteKey {
        namespace: ns.clone(),
        name: "orders".into(),
    };
    (proxy
        .until(CHANGE, "the Route served", |t| t.routes.contains_key(&key))
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    accepted(cluster, &ns, "orders", "Accepted").await;
    controller.stop().await;
}
