//! The controller against a real kube-apiserver, seen through a real Discovery stream:
//! each test creates Services, EndpointSlices and Routes in its own namespace, runs a
//! controller in-process watching that namespace, and asserts on what a proxy receives
//! and on what `kubectl` shows. Every wait is bounded and ends on an observable fact.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use fairway_controller::crd::Route;
use fairway_controller::status::StatusConfig;
use fairway_controller::status::lease::{LEASE_DURATION, LEASE_NAME, RENEW_INTERVAL};
use fairway_proto::diff::{EndpointSetChange, TableDiff};
use fairway_proto::model::{
    Backend, Endpoint, EndpointAddr, EndpointSetKey, RouteKey, RouteTable, Rule,
};
use fairway_tests::controller::{self, Controller};
use fairway_tests::discovery::{TestProxy, Update};
use fairway_tests::objects::{State, endpoint, route, service, slice};
use fairway_tests::{TestCluster, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// A synced controller opens streams within this (first list of three kinds).
const CONNECT: Duration = Duration::from_secs(60);
/// A watch event reaches the stream within this (typically tens of ms).
const CHANGE: Duration = Duration::from_secs(30);
/// A status write or an Event shows within this (rate limit plus a round trip).
const STATUS: Duration = Duration::from_secs(30);

const PORT: i32 = 8080;

fn addr(ip: &str) -> EndpointAddr {
    let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
    EndpointAddr(SocketAddr::new(ip, PORT as u16))
}

fn ready(ip: &str) -> Endpoint {
    Endpoint::ready(addr(ip).0)
}

fn terminating(ip: &str) -> Endpoint {
    Endpoint {
        ready: false,
        serving: true,
        terminating: true,
        ..ready(ip)
    }
}

fn set_key(namespace: &str, service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        port: NonZeroU16::new(PORT as u16).expect("nonzero port"),
    }
}

fn route_key(namespace: &str, name: &str) -> RouteKey {
    RouteKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A delta changing one set by these endpoint upserts and removals, nothing else.
fn set_delta(key: &EndpointSetKey, upsert: Vec<Endpoint>, remove: Vec<EndpointAddr>) -> TableDiff {
    TableDiff {
        sets: vec![EndpointSetChange {
            key: key.clone(),
            app_protocol: None,
            cluster_ips: None,
            upsert,
            remove,
        }],
        ..TableDiff::default()
    }
}

/// A test's world: the cluster (CRD installed), a namespace, a client.
struct World {
    cluster: &'static TestCluster,
    namespace: String,
    client: Client,
}

impl World {
    async fn new(prefix: &str) -> World {
        let cluster = controller::cluster_with_crd();
        let namespace = (cluster.namespace(prefix).await).unwrap_or_else(|e| panic!("{e}"));
        let client = (cluster.client().await).unwrap_or_else(|e| panic!("{e}"));
        World {
            cluster,
            namespace,
            client,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn create<K>(&self, object: &K)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        (self.api::<K>().create(&PostParams::default(), object).await)
            .unwrap_or_else(|e| panic!("create {} {name}: {e}", K::kind(&())));
    }

    /// Sets the endpoints of slice `name` (a merge patch replaces the list).
    async fn set_endpoints(
        &self,
        name: &str,
        endpoints: Vec<k8s_openapi::api::discovery::v1::Endpoint>,
    ) {
        let patch = serde_json::json!({ "endpoints": endpoints });
        let api = self.api::<EndpointSlice>();
        (api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await)
            .unwrap_or_else(|e| panic!("patch slice {name}: {e}"));
    }

    /// The usual trio: Service `orders`, slice `orders-a` with `endpoints`, Route
    /// `orders` for `orders.shop`.
    async fn orders(&self, endpoints: Vec<k8s_openapi::api::discovery::v1::Endpoint>) {
        let ns = &self.namespace;
        self.create(&service(ns, "orders", "http", PORT)).await;
        self.create(&slice(ns, "orders-a", "orders", "http", PORT, endpoints))
            .await;
        self.create(&route(ns, "orders", &["orders.shop"], "orders", PORT))
            .await;
    }

    async fn controller(&self) -> Controller {
        (controller::start(self.cluster, &self.namespace).await).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn proxy(&self, controller: &Controller, id: &str) -> TestProxy {
        (TestProxy::connect(&controller.endpoint, id, None, CONNECT).await)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl get route NAME -o yaml`, parsed.
    fn route_yaml(&self, name: &str) -> serde_json::Value {
        let out = fairway_tests::kubectl::kubectl(
            self.cluster,
            &["get", "route", name, "-n", &self.namespace, "-o", "yaml"],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.success, "kubectl get route {name}: {}", out.stderr);
        serde_saphyr::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("kubectl's YAML: {e}\n{}", out.stdout))
    }

    /// Waits until `kubectl get route` shows condition `type_` with this status and
    /// reason; returns the whole condition.
    async fn condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> serde_json::Value {
        let what = format!("route {name} {type_}={status} ({reason}) in kubectl get -o yaml");
        eventually(STATUS, &what, || async {
            let yaml = self.route_yaml(name);
            let conditions = yaml["status"]["conditions"].as_array()?;
            let found = conditions.iter().find(|c| c["type"] == type_)?;
            (found["status"] == status && found["reason"] == reason).then(|| found.clone())
        })
        .await
    }
}

/// Takes the next change and asserts it is a delta equal to `expected`.
async fn expect_delta(proxy: &mut TestProxy, expected: TableDiff, what: &str) {
    let update = (proxy.next_change(CHANGE).await).unwrap_or_else(|e| panic!("{what}: {e}"));
    match update {
        Update::Delta { diff, .. } => assert_eq!(diff, expected, "{what}: exactly this delta"),
        Update::Snapshot { .. } => panic!("{what}: expected a delta, got a snapshot"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_service_and_slices_give_the_expected_snapshot() {
    let world = World::new("ctl-snapshot").await;
    let ns = world.namespace.as_str();
    world.create(&service(ns, "orders", "http", PORT)).await;
    let a = vec![
        endpoint("10.244.1.1", State::Ready),
        endpoint("10.244.1.2", State::Terminating),
    ];
    // The same address in two slices appears once; a not-ready one is left out.
    let b = vec![
        endpoint("10.244.1.3", State::Ready),
        endpoint("10.244.1.1", State::Ready),
        endpoint("10.244.1.4", State::NotReady),
    ];
    world
        .create(&slice(ns, "orders-a", "orders", "http", PORT, a))
        .await;
    world
        .create(&slice(ns, "orders-b", "orders", "http", PORT, b))
        .await;
    let hosts = ["orders.shop", "orders"];
    world
        .create(&route(ns, "orders", &hosts, "orders", PORT))
        .await;
    let controller = world.controller().await;

    let mut proxy = world.proxy(&controller, "snapshot").await;
    let update = (proxy.next(CHANGE).await).unwrap_or_else(|e| panic!("{e}"));
    let Update::Snapshot { table, .. } = update else {
        panic!("a new proxy starts with a snapshot, got {update:?}");
    };

    let key = set_key(ns, "orders");
    let keys: Vec<&RouteKey> = table.routes.keys().collect();
    assert_eq!(keys, [&route_key(ns, "orders")], "one Route in the table");
    let served = &table.routes[&route_key(ns, "orders")];
    let mut served_hosts = served.hosts.clone();
    served_hosts.sort();
    assert_eq!(served_hosts, ["orders", "orders.shop"]);
    let rule = Rule {
        path_prefix: "/".to_owned(),
        matching: Default::default(),
        timeouts: None,
        retries: None,
        filters: Default::default(),
        backends: vec![Backend {
            endpoint_set: key.clone(),
            weight: 1,
        }],
        unresolved: Vec::new(),
    };
    assert_eq!(served.rules, [rule]);
    let sets: Vec<&EndpointSetKey> = table.endpoint_sets.keys().collect();
    assert_eq!(sets, [&key], "one endpoint set, keyed by Service and port");
    let endpoints: Vec<Endpoint> = table.endpoint_sets[&key]
        .endpoints
        .values()
        .cloned()
        .collect();
    let expected = vec![
        ready("10.244.1.1"),
        terminating("10.244.1.2"),
        ready("10.244.1.3"),
    ];
    assert_eq!(
        endpoints, expected,
        "slices merged, deduplicated, not-ready dropped"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_removing_unreadying_and_terminating_endpoints_send_one_endpoint_each() {
    let world = World::new("ctl-deltas").await;
    let ns = world.namespace.as_str();
    let (a, b, c) = ("10.244.2.1", "10.244.2.2", "10.244.2.3");
    world
        .orders(vec![endpoint(a, State::Ready), endpoint(b, State::Ready)])
        .await;
    let controller = world.controller().await;
    let mut proxy = world.proxy(&controller, "deltas").await;
    let key = set_key(ns, "orders");
    (proxy
        .until(CHANGE, "the first table", |t| t.endpoint_count() == 2)
        .await)
        .unwrap_or_else(|e| panic!("{e}"));

    let all = |states: &[(&str, State)]| states.iter().map(|(ip, s)| endpoint(ip, *s)).collect();
    world
        .set_endpoints(
            "orders-a",
            all(&[(a, State::Ready), (b, State::Ready), (c, State::Ready)]),
        )
        .await;
    expect_delta(
        &mut proxy,
        set_delta(&key, vec![ready(c)], vec![]),
        "adding c",
    )
    .await;

    world
        .set_endpoints("orders-a", all(&[(b, State::Ready), (c, State::Ready)]))
        .await;
    expect_delta(
        &mut proxy,
        set_delta(&key, vec![], vec![addr(a)]),
        "removing a",
    )
    .await;

    world
        .set_endpoints("orders-a", all(&[(b, State::NotReady), (c, State::Ready)]))
        .await;
    let what = "un-readying b (neither ready nor serving: it leaves the set)";
    expect_delta(&mut proxy, set_delta(&key, vec![], vec![addr(b)]), what).await;

    world
        .set_endpoints(
            "orders-a",
            all(&[(b, State::NotReady), (c, State::Terminating)]),
        )
        .await;
    let what = "terminating c (serving: kept, marked terminating)";
    expect_delta(
        &mut proxy,
        set_delta(&key, vec![terminating(c)], vec![]),
        what,
    )
    .await;

    let expected: Vec<Endpoint> = vec![terminating(c)];
    let endpoints: Vec<Endpoint> = proxy.table.endpoint_sets[&key]
        .endpoints
        .values()
        .cloned()
        .collect();
    assert_eq!(endpoints, expected, "the proxy's table after the deltas");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_the_last_version_receives_only_the_changes_since() {
    let world = World::new("ctl-resume").await;
    let ns = world.namespace.as_str();
    let (a, b) = ("10.244.3.1", "10.244.3.2");
    world.orders(vec![endpoint(a, State::Ready)]).await;
    let controller = world.controller().await;

    let mut first = world.proxy(&controller, "resumer").await;
    let update = (first.next(CHANGE).await).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(update, Update::Snapshot { .. }),
        "first contact is a snapshot"
    );
    let applied = update.version();
    let before = first.table.clone();
    drop(first);

    // A second proxy sees the change published before the first one comes back.
    let mut watcher = world.proxy(&controller, "watcher").await;
    let both = vec![endpoint(a, State::Ready), endpoint(b, State::Ready)];
    world.set_endpoints("orders-a", both).await;
    (watcher
        .until(CHANGE, "b published", |t| t.endpoint_count() == 2)
        .await)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut back = (TestProxy::connect(&controller.endpoint, "resumer", Some(applied), CONNECT)
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    back.table = before;
    let update = (back.next(CHANGE).await).unwrap_or_else(|e| panic!("{e}"));
    let Update::Delta { base, diff, .. } = update else {
        panic!("a resume from {applied} must get a delta, got {update:?}");
    };
    assert_eq!(
        base, applied,
        "the delta builds on the version the proxy applied"
    );
    let key = set_key(ns, "orders");
    assert_eq!(
        diff,
        set_delta(&key, vec![ready(b)], vec![]),
        "only the change since"
    );
    assert_eq!(back.table, watcher.table, "the resumed proxy converges");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_shows_resolved_refs_false_until_it_is_created() {
    let world = World::new("ctl-missing").await;
    let ns = world.namespace.as_str();
    world
        .create(&route(ns, "orders", &["orders.shop"], "orders", PORT))
        .await;
    let controller = world.controller().await;

    let condition = world
        .condition("orders", "ResolvedRefs", "False", "ServiceNotFound")
        .await;
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{ns}/orders")),
        "the message names the missing Service: {message}"
    );
    let yaml = world.route_yaml("orders");
    assert_eq!(yaml["status"]["observedGeneration"], 1, "{yaml}");
    let accepted = world
        .condition("orders", "Accepted", "True", "Accepted")
        .await;
    assert!(accepted["lastTransitionTime"].is_string(), "{accepted}");

    // The Route still serves (with no endpoints) while its Service is missing.
    let mut proxy = world.proxy(&controller, "missing").await;
    let key = route_key(ns, "orders");
    (proxy
        .until(CHANGE, "the Route in the table", |t| {
            t.routes.contains_key(&key)
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        proxy.table.endpoint_sets.is_empty(),
        "no set without a Service"
    );

    world.create(&service(ns, "orders", "http", PORT)).await;
    let ips = vec![endpoint("10.244.4.1", State::Ready)];
    world
        .create(&slice(ns, "orders-a", "orders", "http", PORT, ips))
        .await;
    world
        .condition("orders", "ResolvedRefs", "True", "ResolvedRefs")
        .await;
    let what = "one ready endpoint in status";
    eventually(STATUS, what, || async {
        let yaml = world.route_yaml("orders");
        (yaml["status"]["endpoints"]["ready"] == 1).then_some(())
    })
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_not_found_records_a_warning_event() {
    let world = World::new("ctl-event").await;
    let ns = world.namespace.as_str();
    world
        .create(&route(ns, "orders", &["orders.shop"], "orders", PORT))
        .await;
    let controller = world.controller().await;
    let events: Api<Event> = world.api();
    let event = eventually(STATUS, "a ServiceNotFound Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ServiceNotFound"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let regarding = event.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("Route"));
    assert_eq!(regarding.name.as_deref(), Some("orders"));
    assert!(
        regarding.uid.is_some(),
        "kubectl describe finds Events by uid: {event:?}"
    );
    let note = event.note.clone().unwrap_or_default();
    assert!(
        note.contains(&format!("{ns}/orders")),
        "the note names the Service: {note}"
    );
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("fairway-controller")
    );

    // Fixing it is a Normal Event, and the warning is not repeated.
    world.create(&service(ns, "orders", "http", PORT)).await;
    eventually(STATUS, "a ResolvedRefs Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ResolvedRefs"))
    })
    .await;
    let list = (events.list(&ListParams::default()).await).unwrap_or_else(|e| panic!("{e}"));
    let warnings = (list.items.iter())
        .filter(|e| e.reason.as_deref() == Some("ServiceNotFound"))
        .count();
    assert_eq!(warnings, 1, "one Event per transition");
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_route_removes_it_from_the_stream() {
    let world = World::new("ctl-delete").await;
    let ns = world.namespace.as_str();
    world
        .orders(vec![endpoint("10.244.5.1", State::Ready)])
        .await;
    let controller = world.controller().await;
    let mut proxy = world.proxy(&controller, "delete").await;
    let key = route_key(ns, "orders");
    (proxy
        .until(CHANGE, "the Route", |t| t.routes.contains_key(&key))
        .await)
        .unwrap_or_else(|e| panic!("{e}"));

    let routes: Api<Route> = world.api();
    (routes.delete("orders", &DeleteParams::default()).await).unwrap_or_else(|e| panic!("{e}"));
    let expected = TableDiff {
        routes_removed: vec![key],
        sets_removed: vec![set_key(ns, "orders")],
        ..TableDiff::default()
    };
    expect_delta(
        &mut proxy,
        expected,
        "deleting the Route (its set loses its last user)",
    )
    .await;
    assert_eq!(proxy.table, RouteTable::default(), "nothing left");
    controller.stop().await;
}

/// The same objects, once read from the API and once from `--static-dir` YAML files,
/// give the same route table: the two sources feed one index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_dir_mode_gives_the_same_table_as_api_mode() {
    use clap::Parser;
    use k8s_openapi::api::core::v1::Service;

    let world = World::new("ctl-static").await;
    let ns = world.namespace.as_str();
    world.create(&service(ns, "orders", "http", PORT)).await;
    let endpoints = vec![
        endpoint("10.244.2.1", State::Ready),
        endpoint("10.244.2.2", State::Terminating),
        endpoint("10.244.2.3", State::NotReady),
    ];
    world
        .create(&slice(ns, "orders-a", "orders", "http", PORT, endpoints))
        .await;
    world
        .create(&route(ns, "orders", &["orders.shop"], "orders", PORT))
        .await;

    let controller = world.controller().await;
    let mut proxy = world.proxy(&controller, "api-mode").await;
    let update = (proxy.next(CHANGE).await).unwrap_or_else(|e| panic!("{e}"));
    let Update::Snapshot {
        table: from_api, ..
    } = update
    else {
        panic!("a new proxy starts with a snapshot, got {update:?}");
    };
    controller.stop().await;

    // The objects exactly as the API holds them, one YAML file each.
    let dir = tempfile::tempdir().expect("tempdir");
    let lp = ListParams::default();
    let mut documents = Vec::new();
    for s in (world.api::<Service>().list(&lp).await).expect("list services") {
        documents.push(serde_saphyr::to_string(&s).expect("service yaml"));
    }
    for s in (world.api::<EndpointSlice>().list(&lp).await).expect("list slices") {
        documents.push(serde_saphyr::to_string(&s).expect("slice yaml"));
    }
    for r in (world.api::<Route>().list(&lp).await).expect("list routes") {
        documents.push(serde_saphyr::to_string(&r).expect("route yaml"));
    }
    for (i, doc) in documents.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i}.yaml")), doc).expect("write yaml");
    }

    // Port 0, listeners kept bound: no window for another socket to take the port.
    let args = fairway_controller::Args::parse_from([
        "fairway-controller".to_owned(),
        format!("--static-dir={}", dir.path().display()),
        "--no-auth".to_owned(),
        "--grpc-addr=127.0.0.1:0".to_owned(),
        "--admin-addr=127.0.0.1:0".to_owned(),
        "--log-format=text".to_owned(),
    ]);
    let started = fairway_controller::start(fairway_controller::Config::from_args(args)).await;
    let started = started.unwrap_or_else(|e| panic!("start the static-dir controller: {e}"));
    let grpc = started.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(started.serve(async move {
        let _ = stopped.await;
    }));
    let endpoint = format!("http://{grpc}");
    let mut proxy = (TestProxy::connect(&endpoint, "static-mode", None, CONNECT).await)
        .unwrap_or_else(|e| panic!("{e}"));
    let update = (proxy.next(CHANGE).await).unwrap_or_else(|e| panic!("{e}"));
    let Update::Snapshot {
        table: from_files, ..
    } = update
    else {
        panic!("a new proxy starts with a snapshot, got {update:?}");
    };
    let _ = stop.send(());
    let _ = running.await;

    assert!(
        !from_api.endpoint_sets.is_empty(),
        "the API table has the endpoint set"
    );
    assert_eq!(
        from_files, from_api,
        "--static-dir and the API must give the same table for the same objects"
    );
}

/// A Pod object standing for a controller replica (no kubelet runs it): the owner its
/// Lease names. The ServiceAccount admission plugin wants the namespace's `default`
/// ServiceAccount, which no controller-manager made here.
async fn replica_pod(world: &World, name: &str) -> OwnerReference {
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match world
        .api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create the default ServiceAccount: {e}"),
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "controller", "image": "fairway-controller"}]
        }
    }))
    .unwrap_or_else(|e| panic!("pod JSON: {e}"));
    let pod = (world
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await)
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: name.to_owned(),
        uid: pod
            .metadata
            .uid
            .unwrap_or_else(|| panic!("pod {name} has a uid")),
        ..OwnerReference::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_status_and_another_takes_over_when_it_stops() {
    let world = World::new("ctl-lease").await;
    let ns = world.namespace.as_str();
    world
        .create(&route(ns, "orders", &["orders.shop"], "orders", PORT))
        .await;
    let leases: Api<Lease> = world.api();
    let lease = || async { leases.get_opt(LEASE_NAME).await.ok()? };
    let holder = || async { lease().await?.spec?.holder_identity };
    let owners = || async { lease().await?.metadata.owner_references };
    let (pod_a, pod_b) = (
        replica_pod(&world, "replica-a").await,
        replica_pod(&world, "replica-b").await,
    );
    let start = |identity: &'static str, owner: &OwnerReference| {
        let status = StatusConfig {
            lease_namespace: ns.to_owned(),
            identity: identity.to_owned(),
            owner: Some(owner.clone()),
        };
        let client = world.client.clone();
        async move {
            (controller::start_with(client, vec![ns.to_owned()], status).await)
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };

    let first = start("replica-a", &pod_a).await;
    eventually(STATUS, "replica-a holding the Lease", || async {
        (holder().await? == "replica-a").then_some(())
    })
    .await;
    assert_eq!(
        owners().await,
        Some(vec![pod_a.clone()]),
        "the holder's Pod owns the Lease, so the garbage collector deletes it with the last controller Pod"
    );
    let second = start("replica-b", &pod_b).await;
    // Both serve streams; only the holder reports.
    let mut proxy = world.proxy(&second, "follower-stream").await;
    let key = route_key(ns, "orders");
    (proxy
        .until(CHANGE, "the Route from the follower", |t| {
            t.routes.contains_key(&key)
        })
        .await)
        .unwrap_or_else(|e| panic!("{e}"));
    world
        .condition("orders", "ResolvedRefs", "False", "ServiceNotFound")
        .await;
    let events: Api<Event> = world.api();
    let reported_by = |reason: &'static str| {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            let found = list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))?;
            found.reporting_instance
        }
    };
    let warned = eventually(STATUS, "the ServiceNotFound Event", || {
        reported_by("ServiceNotFound")
    })
    .await;
    assert_eq!(warned, "replica-a", "the holder records Events");
    assert_eq!(
        holder().await.as_deref(),
        Some("replica-a"),
        "a live holder keeps the Lease"
    );

    // Stopped as SIGTERM stops it, the holder releases the Lease on its way out...
    let stopped_at = std::time::Instant::now();
    first.stop().await;
    let after_stop = holder().await;
    assert_ne!(
        after_stop.as_deref(),
        Some("replica-a"),
        "a stopped controller must not keep the Lease until it expires"
    );
    // ...and the follower takes it without waiting out the old record's duration.
    eventually(STATUS, "replica-b taking the Lease over", || async {
        (holder().await? == "replica-b").then_some(())
    })
    .await;
    let took_over = stopped_at.elapsed();
    assert_eq!(
        owners().await,
        Some(vec![pod_b.clone()]),
        "the new holder's Pod owns it"
    );
    world.create(&service(ns, "orders", "http", PORT)).await;
    world
        .condition("orders", "ResolvedRefs", "True", "ResolvedRefs")
        .await;
    let resolved = eventually(STATUS, "the ResolvedRefs Event", || {
        reported_by("ResolvedRefs")
    })
    .await;
    assert_eq!(resolved, "replica-b", "the new holder reports");
    // Measured, not asserted (timings depend on the machine): report it.
    eprintln!(
        "lease takeover: replica-b held the Lease {took_over:?} after replica-a was told to stop \
         (expiry alone would take up to {:?})",
        LEASE_DURATION + RENEW_INTERVAL
    );
    second.stop().await;
}
