//! Small builders for discovery tests: tables, versions and the controller messages
//! that carry them, made with the controller's own encoders (`snapshot_messages`,
//! `TableDiff::to_message`) so tests speak the real wire format; and [`Controller`], a
//! real tonic Discovery server on loopback that a test scripts message by message.

use std::net::SocketAddr;
use std::time::Duration;

use fairway_proto::diff;
use fairway_proto::model::{Endpoint, EndpointAddr, EndpointSet, RouteTable, Version};
use fairway_proto::pb::{self, proxy_message::Kind};
use fairway_proto::snapshot::{DEFAULT_MAX_CHUNK_BYTES, snapshot_messages};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

pub const EPOCH: u64 = 7;

pub fn v(sequence: u64) -> Version {
    Version {
        epoch: EPOCH,
        sequence,
    }
}

/// One route `shop/orders` (host `orders.shop`) over one set with `endpoints`.
pub fn table(endpoints: &[&str]) -> RouteTable {
    let route = fairway_proto::testing::route("orders");
    let mut set = EndpointSet::new(fairway_proto::testing::set_key("orders", 8080));
    for e in endpoints {
        let addr: SocketAddr = e.parse().expect("socket address");
        set.endpoints
            .insert(EndpointAddr(addr), Endpoint::ready(addr));
    }
    let mut t = RouteTable::default();
    t.routes.insert(route.key.clone(), route.into());
    t.endpoint_sets.insert(set.key.clone(), set.into());
    t
}

/// `table` at `version` as begin, chunks, end.
pub fn snapshot(table: &RouteTable, version: Version) -> Vec<pb::ControllerMessage> {
    snapshot_messages(table, version, DEFAULT_MAX_CHUNK_BYTES)
}

/// The delta taking `old` at `base` to `new` at `version`.
pub fn delta(
    old: &RouteTable,
    new: &RouteTable,
    base: Version,
    version: Version,
) -> pb::ControllerMessage {
    diff::diff(old, new).to_message(base, version)
}

/// A snapshot whose `end` claims one endpoint more than it carries.
pub fn snapshot_with_bad_count(table: &RouteTable, version: Version) -> Vec<pb::ControllerMessage> {
    let mut msgs = snapshot(table, version);
    let Some(pb::ControllerMessage {
        kind: Some(pb::controller_message::Kind::End(end)),
        ..
    }) = msgs.last_mut()
    else {
        panic!("a snapshot ends with `end`");
    };
    end.endpoints += 1;
    msgs
}

/// Upper bound on any single wait; tests finish far sooner unless something is broken.
pub const WAIT: Duration = Duration::from_secs(10);
pub type Outbound = mpsc::Sender<Result<pb::ControllerMessage, Status>>;

/// The test's Discovery service: hands every opened stream to the test.
pub struct Scripted {
    opened: mpsc::UnboundedSender<(Streaming<pb::ProxyMessage>, Outbound)>,
    /// Asks for load reports at this interval, as a current controller does; `None`
    /// answers as controllers before load reports did (no header).
    reports: Option<Duration>,
}

#[tonic::async_trait]
impl pb::discovery_server::Discovery for Scripted {
    type StreamStream = ReceiverStream<Result<pb::ControllerMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        self.opened
            .send((request.into_inner(), tx))
            .map_err(|_| Status::unavailable("test is over"))?;
        let mut response = Response::new(ReceiverStream::new(rx));
        // Takes subscriptions, as a current controller does (only a sidecar sends any).
        response.metadata_mut().insert(
            crate::discovery::client::SUBSCRIBE_HEADER,
            tonic::metadata::AsciiMetadataValue::from_static("1"),
        );
        if let Some(every) = self.reports {
            let value = every.as_millis().to_string().parse().expect("ascii digits");
            response
                .metadata_mut()
                .insert(crate::discovery::client::LOAD_REPORT_HEADER, value);
        }
        Ok(response)
    }
}

/// A scripted controller serving on loopback.
pub struct Controller {
    pub addr: SocketAddr,
    opened: mpsc::UnboundedReceiver<(Streaming<pb::ProxyMessage>, Outbound)>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Controller {
    /// A controller from before load reports: it never asks for one.
    pub async fn start(addr: SocketAddr) -> Controller {
        Controller::start_with(addr, None).await
    }

    /// A controller asking for a load report every `reports` (when `Some`).
    pub async fn start_with(addr: SocketAddr, reports: Option<Duration>) -> Controller {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the test controller");
        let addr = listener.local_addr().expect("local addr");
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = pb::discovery_server::DiscoveryServer::new(Scripted {
            opened: opened_tx,
            reports,
        });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .expect("test controller serves");
        });
        Controller {
            addr,
            opened,
            stop,
            server,
        }
    }

    /// The next stream a proxy opens, with its hello already read.
    pub async fn accept(&mut self) -> Stream {
        let (mut inbound, outbound) = tokio::time::timeout(WAIT, self.opened.recv())
            .await
            .expect("the proxy opens a stream")
            .expect("server running");
        let hello = match next(&mut inbound).await {
            Kind::Hello(hello) => hello,
            other => panic!("the first message must be a hello, got {other:?}"),
        };
        Stream {
            hello,
            inbound,
            outbound,
        }
    }

    /// Shuts the server down: the listener is gone, connections refused.
    pub async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.server)
            .await
            .expect("the test controller stops")
            .expect("server task");
        self.addr
    }
}

async fn next(inbound: &mut Streaming<pb::ProxyMessage>) -> Kind {
    tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("the proxy answers in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
        .kind
        .expect("a message kind")
}

/// One open stream, from the controller's side.
pub struct Stream {
    pub hello: pb::Hello,
    inbound: Streaming<pb::ProxyMessage>,
    outbound: Outbound,
}

impl Stream {
    pub async fn send(&self, msgs: Vec<pb::ControllerMessage>) {
        for m in msgs {
            self.outbound
                .send(Ok(m))
                .await
                .expect("proxy still connected");
        }
    }

    /// The proxy's next answer: `Ok(version)` for an ack, `Err((version, reason))`
    /// for a nack.
    pub async fn answer(&mut self) -> Result<Version, (Version, String)> {
        match next(&mut self.inbound).await {
            Kind::Ack(ack) => Ok(ack.version.expect("acked version").into()),
            Kind::Nack(nack) => Err((nack.version.expect("nacked version").into(), nack.error)),
            Kind::Hello(_) => panic!("hello only once per stream"),
            Kind::Report(_) => panic!("a load report where an ack or nack was due"),
            Kind::Subscribe(_) => panic!("a subscription where an ack or nack was due"),
        }
    }

    /// The proxy's next message, whatever its kind.
    pub async fn next_kind(&mut self) -> Kind {
        next(&mut self.inbound).await
    }

    /// The proxy's next load report, skipping nothing: any other message fails.
    pub async fn report(&mut self) -> fairway_proto::load::LoadReport {
        match next(&mut self.inbound).await {
            Kind::Report(report) => report.try_into().expect("a valid report"),
            other => panic!("expected a load report, got {other:?}"),
        }
    }
}
