//! Test support: a controller started in-process in `--static-dir` mode on loopback
//! ports, a real tonic Discovery client that acks or nacks by hand, an HTTP GET for
//! the admin port, and the YAML objects the tests write.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fairway_controller::{Config, Running};
use fairway_proto::diff::{TableDiff, apply};
use fairway_proto::pb::controller_message::Kind;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::pb::{self};
use fairway_proto::snapshot::SnapshotAssembler;
use fairway_proto::{
    Backend, Endpoint, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Rule, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

/// Upper bound on any single wait in these tests: generous for a loaded CI machine,
/// while a hang still fails in seconds, not minutes.
pub const WAIT: Duration = Duration::from_secs(10);

/// A controller running in this process on a static directory.
pub struct Controller {
    pub dir: tempfile::TempDir,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub store: Arc<fairway_controller::store::Store>,
    pub index: Arc<fairway_controller::state::IndexHandle>,
    pub proxies: Arc<fairway_controller::grpc::Proxies>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), fairway_controller::RunError>>,
}

impl Controller {
    /// Writes `files` into a fresh directory and starts the controller on it; returns
    /// once the first version is published.
    pub async fn start(files: &[(&str, &str)]) -> Controller {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            write_atomic(&dir.path().join(name), text);
        }
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let config = Config::static_dir(dir.path(), loopback, loopback);
        let running: Running = fairway_controller::start(config).await.expect("start");
        let (grpc, admin) = (running.grpc_addr(), running.admin_addr());
        let (store, index, proxies) = (
            running.store.clone(),
            running.index.clone(),
            running.proxies.clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(running.serve(async {
            let _ = stopped.await;
        }));
        let mut latest = store.subscribe();
        tokio::time::timeout(WAIT, latest.wait_for(|p| !p.is_initial()))
            .await
            .expect("the first version is published")
            .expect("store alive");
        Controller {
            dir,
            grpc,
            admin,
            store,
            index,
            proxies,
            stop: Some(stop),
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a file atomically (a poll never sees it half-written).
    pub fn write(&self, name: &str, text: &str) {
        write_atomic(&self.path(name), text);
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).expect("remove");
    }

    pub fn version(&self) -> Version {
        self.store.latest().version
    }

    /// Waits until the store publishes a version after `after`.
    pub async fn wait_version_after(&self, after: Version) -> Version {
        let mut latest = self.store.subscribe();
        let published = tokio::time::timeout(WAIT, latest.wait_for(|p| p.version > after))
            .await
            .expect("a new version is published")
            .expect("store alive");
        published.version
    }

    pub async fn connect(&self, id: &str, last_applied: Option<Version>) -> TestProxy {
        TestProxy::connect(&self.endpoint(), id, last_applied)
            .await
            .expect("stream opens")
    }

    /// Stops the controller and returns what `run` returned.
    pub async fn shutdown(mut self) -> Result<(), fairway_controller::RunError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the controller stops within the wait")
            .expect("controller task")
    }
}

pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// One version as received.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    Snapshot {
        version: Version,
        table: RouteTable,
        /// Encoded bytes of all its messages.
        bytes: usize,
    },
    Delta {
        base: Version,
        version: Version,
        diff: TableDiff,
        /// Encoded bytes of the message.
        bytes: usize,
    },
}

impl Received {
    pub fn version(&self) -> Version {
        match self {
            Received::Snapshot { version, .. } | Received::Delta { version, .. } => *version,
        }
    }

    pub fn delta(self) -> (Version, Version, TableDiff, usize) {
        match self {
            Received::Delta {
                base,
                version,
                diff,
                bytes,
            } => (base, version, diff, bytes),
            other => panic!("expected a delta, got {other:?}"),
        }
    }

    pub fn snapshot(self) -> (Version, RouteTable) {
        match self {
            Received::Snapshot { version, table, .. } => (version, table),
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }
}

/// A real Discovery client. It does not ack on its own: tests call [`TestProxy::ack`]
/// or [`TestProxy::nack`].
pub struct TestProxy {
    outbound: mpsc::Sender<pb::ProxyMessage>,
    inbound: tonic::Streaming<pb::ControllerMessage>,
    assembler: SnapshotAssembler,
    /// The table after every version received so far.
    pub table: RouteTable,
    /// The controller's response headers (`fairway-load-report-ms`, ...).
    pub headers: tonic::metadata::MetadataMap,
}

impl TestProxy {
    /// Opens a stream and says hello. `Err` is the status the controller answered.
    pub async fn connect(
        endpoint: &str,
        id: &str,
        last_applied: Option<Version>,
    ) -> Result<TestProxy, tonic::Status> {
        Self::connect_with(
            endpoint,
            pb::ProxyMessage::hello(id, "node-a", None, last_applied),
        )
        .await
    }

    /// Opens a stream whose first message is `first`.
    pub async fn connect_with(
        endpoint: &str,
        first: pb::ProxyMessage,
    ) -> Result<TestProxy, tonic::Status> {
        let mut client = tokio::time::timeout(WAIT, DiscoveryClient::connect(endpoint.to_owned()))
            .await
            .expect("connect within the wait")
            .expect("connect");
        let (outbound, rx) = mpsc::channel(16);
        outbound.send(first).await.expect("queue the first message");
        let response = tokio::time::timeout(WAIT, client.stream(ReceiverStream::new(rx)))
            .await
            .expect("the controller answers within the wait")?;
        Ok(TestProxy {
            outbound,
            headers: response.metadata().clone(),
            inbound: response.into_inner(),
            assembler: SnapshotAssembler::new(),
            table: RouteTable::default(),
        })
    }

    /// The next raw message.
    pub async fn message(&mut self) -> Result<Option<pb::ControllerMessage>, tonic::Status> {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("a message within the wait")
    }

    /// The next complete version (a whole snapshot, or one delta), applied to `table`.
    pub async fn next(&mut self) -> Received {
        let mut bytes = 0;
        loop {
            let message = self
                .message()
                .await
                .expect("stream healthy")
                .expect("stream open");
            bytes += prost::Message::encoded_len(&message);
            let version = message.table_version().expect("version");
            if let Some(Kind::Delta(delta)) = message.kind {
                assert!(!self.assembler.is_assembling(), "a delta inside a snapshot");
                let (base, diff) = TableDiff::from_proto(delta).expect("valid delta");
                apply(&mut self.table, &diff);
                return Received::Delta {
                    base,
                    version,
                    diff,
                    bytes,
                };
            }
            if let Some(table) = self.assembler.feed(message).expect("valid snapshot") {
                self.table = table.clone();
                return Received::Snapshot {
                    version,
                    table,
                    bytes,
                };
            }
        }
    }

    pub async fn ack(&self, version: Version) {
        self.outbound
            .send(pb::ProxyMessage::ack(version))
            .await
            .expect("ack sent");
    }

    pub async fn nack(&self, version: Version, error: &str) {
        self.outbound
            .send(pb::ProxyMessage::nack(version, error))
            .await
            .expect("nack sent");
    }

    pub async fn send(&self, message: pb::ProxyMessage) {
        self.outbound.send(message).await.expect("sent");
    }
}

/// `GET path` on `addr`: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect admin");
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8(response).expect("utf-8")
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("admin answers");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

// === Objects ===

pub const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports: [{name: http, port: 8080, targetPort: 9000}]
";

pub const ROUTE: &str = "apiVersion: fairway.dev/v1alpha1
kind: Route
metadata: {name: orders, namespace: shop}
spec:
  hosts: [Orders.Shop, orders.shop.svc.cluster.local]
  rules:
  - pathPrefix: /
    backends: [{service: orders, port: 8080}]
";

/// One EndpointSlice endpoint: `(ip, ready, serving, terminating)`.
pub type Ep<'a> = (&'a str, bool, bool, bool);

pub fn ready(ip: &str) -> Ep<'_> {
    (ip, true, true, false)
}

/// An EndpointSlice of `shop/orders` named `name`, port `http` = 9000.
pub fn slice(name: &str, endpoints: &[Ep<'_>]) -> String {
    let mut yaml = format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: shop
  labels: {{kubernetes.io/service-name: orders}}
addressType: IPv4
ports: [{{name: http, port: 9000, protocol: TCP}}]
endpoints:
"
    );
    for (ip, ready, serving, terminating) in endpoints {
        yaml.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}\n"
        ));
    }
    if endpoints.is_empty() {
        yaml = yaml.replace("endpoints:\n", "endpoints: []\n");
    }
    yaml
}

pub fn set_key() -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: std::num::NonZeroU16::new(8080).expect("nonzero"),
    }
}

pub fn route_key() -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    }
}

/// The domain endpoint for `ep` (port 9000).
pub fn endpoint((ip, ready, serving, terminating): Ep<'_>) -> Endpoint {
    Endpoint {
        ready,
        serving,
        terminating,
        ..Endpoint::ready(format!("{ip}:9000").parse().expect("addr"))
    }
}

/// The table [`ROUTE`] + [`SERVICE`] + slices holding `endpoints` should produce.
/// Endpoints neither ready nor serving are not in the table (the index drops them).
pub fn expected_table(endpoints: &[Ep<'_>]) -> RouteTable {
    let route = Route {
        key: route_key(),
        hosts: vec!["orders.shop".into(), "orders.shop.svc.cluster.local".into()],
        rules: vec![Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![Backend {
                endpoint_set: set_key(),
                weight: 1,
            }],
            unresolved: Vec::new(),
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    let mut set = EndpointSet::new(set_key());
    for ep in endpoints
        .iter()
        .filter(|(_, ready, serving, _)| *ready || *serving)
    {
        let ep = endpoint(*ep);
        set.endpoints.insert(ep.addr, ep);
    }
    let mut table = RouteTable::default();
    table.routes.insert(route.key.clone(), route.into());
    table.endpoint_sets.insert(set.key.clone(), set.into());
    table
}
