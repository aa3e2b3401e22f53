//! The tonic `Discovery` service: admits a stream (synced? hello first?), registers the
//! proxy and hands the stream to `stream::drive`. Also the listener setup: HTTP/2
//! keepalives, graceful shutdown.
//!
//! [`DiscoveryServer`] stands where the generated `pb::discovery_server::DiscoveryServer`
//! would: same path, same limits, but its responses are [`FramedBody`]s, so streams send
//! the messages `shared` encoded once per version without copying them (the wire is
//! unchanged, see `wire`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fairway_proto::Version;
use fairway_proto::digest::TableDigest;
use fairway_proto::pb::discovery_server::SERVICE_NAME;
use fairway_proto::pb::{self, proxy_message};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{Body, BoxFuture, Context, Poll, StdError, http};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use super::proxies::Proxies;
use super::session::Session;
use super::shared::Shared;
use super::stream;
use super::view::Subscriptions;
use super::wire::{Encoded, FramedBody, ProxyMessageDecoder};
use crate::auth::{Authenticator, Outcome};
use crate::drain::DrainService;
use crate::metrics::Metrics;
use crate::store::Store;
use fairway_proto::scope::ProxyMode;

/// HTTP/2 PING interval: a proxy that vanished without a FIN (node lost, network
/// partition) is noticed within interval + timeout, and its registry entry goes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a PING may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a new stream may take to send its hello. A proxy sends it immediately;
/// this only frees streams opened by something that is not a proxy.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued per stream between the session and tonic. Small so a slow proxy
/// holds little memory; the session keeps no backlog of its own (the store's history
/// is shared), so a full queue just means "catch up later".
pub const STREAM_BUFFER: usize = 16;
pub use super::shared::SNAPSHOT_CHUNK_BYTES;

/// The response header asking proxies for load reports, valued with the interval in
/// milliseconds (`LoadReport` in the .proto).
pub const LOAD_REPORT_HEADER: &str = "fairway-load-report-ms";
/// The response header saying this controller scopes a sidecar's table and takes its
/// `Subscribe` messages.
pub const SUBSCRIBE_HEADER: &str = "fairway-subscribe";
/// How often each proxy reports: fairness is judged over 5 s windows, so every 2 s
/// follows it closely at one small message per proxy.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Reports closer together than this are dropped (a proxy ignoring the interval).
pub const REPORT_MIN_GAP: Duration = Duration::from_millis(REPORT_INTERVAL.as_millis() as u64 / 2);
/// A proxy's report counts this long after it arrived: past it, the proxy's traffic
/// may have stopped and its figures would hold the cluster view in the past.
pub const REPORT_MAX_AGE: Duration = Duration::from_millis(REPORT_INTERVAL.as_millis() as u64 * 3);

/// The largest proxy message accepted: acks and nacks are tiny; a load report holds at
/// most `MAX_REPORT_ENDPOINTS` endpoints (~40 bytes each); a hello at most a 4,096-bucket
/// digest and 1,024 subscriptions.
const MAX_PROXY_MESSAGE_BYTES: usize = 64 * 1024;

/// The Discovery service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DiscoveryService {
    shared: Arc<Shared>,
    /// Served beside it on the same port, when set.
    drain: Option<DrainService>,
    /// Streams need a client certificate (the TLS layer verified it, if sent).
    client_certs: bool,
}

impl DiscoveryService {
    /// A service streaming `store`'s versions, recording proxies in `proxies`. Streams
    /// end when `shutdown` turns `true` (or its sender is dropped). It admits every
    /// stream until [`DiscoveryService::with_auth`] says otherwise.
    pub fn new(
        store: Arc<Store>,
        proxies: Arc<Proxies>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        DiscoveryService {
            shared: Arc::new(Shared::new(
                store,
                proxies,
                metrics,
                Arc::new(Authenticator::disabled()),
                shutdown,
            )),
            drain: None,
            client_certs: false,
        }
    }

    /// Opens streams only over connections that presented a client certificate, which
    /// the TLS layer verified against `--tls-client-ca-file`. The handshake itself lets
    /// a client without one through, for `Drain.WaitDrained` on the same port.
    pub fn requiring_client_certs(mut self, required: bool) -> Self {
        self.client_certs = required;
        self
    }

    /// Also serves the drain handshake (`Drain.WaitDrained`) on the same port.
    pub fn with_drain(mut self, drain: DrainService) -> Self {
        self.drain = Some(drain);
        self
    }

    /// Admits only the streams `auth` admits. Call before the service is cloned.
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.auth = auth,
            // Already shared: rebuild, keeping every part (the caches are still empty).
            None => {
                let s = &self.shared;
                self = DiscoveryService {
                    shared: Arc::new(Shared::new(
                        s.store.clone(),
                        s.proxies.clone(),
                        s.metrics.clone(),
                        auth,
                        s.shutdown.clone(),
                    )),
                    drain: self.drain.clone(),
                    client_certs: self.client_certs,
                };
            }
        }
        self
    }

    /// The tonic service, with this server's message limits.
    pub fn into_server(self) -> DiscoveryServer {
        DiscoveryServer { service: self }
    }
}

/// The messages one stream sends, already encoded.
pub type EncodedStream = ReceiverStream<Result<Encoded, Status>>;

/// The Discovery service as tonic serves it: the generated server's routing with the
/// pass-through codec. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DiscoveryServer {
    service: DiscoveryService,
}

impl tonic::server::NamedService for DiscoveryServer {
    const NAME: &'static str = SERVICE_NAME;
}

/// The method's path, as in the generated code.
const STREAM_PATH: &str = "/fairway.discovery.v1.Discovery/Stream";

impl<B> tonic::codegen::Service<http::Request<B>> for DiscoveryServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != STREAM_PATH {
            // As the generated server answers an unknown method.
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let service = self.service.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let inbound = Streaming::new_request(
                ProxyMessageDecoder,
                body,
                None,
                Some(MAX_PROXY_MESSAGE_BYTES),
            );
            let request = Request::from_http(http::Request::from_parts(parts, inbound));
            Ok(match service.stream(request).await {
                Ok(response) => {
                    // The response's metadata (e.g. the load-report request) become
                    // its headers, as tonic's own server does.
                    let (metadata, messages, _) = response.into_parts();
                    let body = FramedBody::new(messages);
                    let mut response = http::Response::new(tonic::body::Body::new(body));
                    *response.headers_mut() = metadata.into_headers();
                    (response.headers_mut()).insert(
                        http::header::CONTENT_TYPE,
                        tonic::metadata::GRPC_CONTENT_TYPE,
                    );
                    response
                }
                // Refused (unauthenticated, not synced, no hello): trailers only.
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Waits for the stream's first message, which must be a hello.
async fn read_hello(inbound: &mut Streaming<pb::ProxyMessage>) -> Result<pb::Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10s of opening the stream"))??;
    match first.and_then(|m| m.kind) {
        Some(proxy_message::Kind::Hello(hello)) if hello.proxy_id.is_empty() => Err(
            Status::invalid_argument("Hello.proxy_id is empty: every proxy needs a unique id"),
        ),
        Some(proxy_message::Kind::Hello(hello)) => Ok(hello),
        Some(_) => Err(Status::invalid_argument(
            "the first message on a stream must be a Hello",
        )),
        None => Err(Status::invalid_argument(
            "the stream ended (or sent an empty message) before its Hello",
        )),
    }
}

impl DiscoveryService {
    /// Admits one stream and starts driving it.
    async fn stream(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<EncodedStream>, Status> {
        let shared = &self.shared;
        if self.client_certs && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            shared
                .metrics
                .discovery_auth(Outcome::missing_client_certificate);
            return Err(Status::unauthenticated(
                "Discovery needs a client certificate signed by the controller's client CA \
                 (--tls-client-ca-file); this connection sent none",
            ));
        }
        // Who is asking comes first: an unauthenticated caller learns nothing, not even
        // whether the controller has synced.
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let (outcome, admitted) = shared.auth.admit(authorization).await;
        shared.metrics.discovery_auth(outcome);
        let account = match admitted {
            Ok(account) => account,
            Err(status) => {
                let peer = request.remote_addr();
                tracing::info!(?peer, result = ?outcome, reason = %status.message(), "discovery stream refused");
                return Err(status);
            }
        };
        // A controller that has not finished its first sync opens no stream: the proxy
        // keeps its last table and retries (design.md section 4).
        if !shared.store.is_ready() {
            return Err(Status::unavailable(
                "the controller has not finished its first sync; retry shortly",
            ));
        }
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound).await?;
        let resume_from = hello.last_applied.map(Version::from);
        let resumable = resume_from.is_some_and(|v| shared.store.deltas_since(v).is_some());
        // A sidecar's table is scoped to the implicit Services it subscribed to.
        let scope = hello.scope();
        // A digest that does not decode only costs the proxy a snapshot.
        let digest = hello.digest.and_then(|d| TableDigest::try_from(d).ok());
        let session = Session::new(resume_from, resumable).with_digest(digest);
        let scoped = (scope.mode == ProxyMode::Sidecar)
            .then(|| Subscriptions::new(scope.subscriptions.iter().copied()));
        let registration =
            (shared.proxies).register(hello.proxy_id.clone(), hello.node.clone(), hello.zone);
        if let Some(subscriptions) = &scoped {
            registration.subscriptions(subscriptions.len());
        }
        if let Some(version) = session.acked() {
            registration.acked(version);
        }
        tracing::info!(
            proxy = %hello.proxy_id,
            node = %hello.node,
            service_account = %account.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            resume_from = ?resume_from.map(|v| v.to_string()),
            resumed = resumable,
            mode = ?scope.mode,
            subscriptions = scope.subscriptions.len(),
            "proxy connected"
        );
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(stream::drive(
            shared.clone(),
            hello.proxy_id,
            session,
            scoped,
            registration,
            inbound,
            tx,
        ));
        let mut response = Response::new(ReceiverStream::new(rx));
        // Asks for load reports: a proxy sends none to a controller that does not.
        response.metadata_mut().insert(
            LOAD_REPORT_HEADER,
            tonic::metadata::AsciiMetadataValue::from(
                u64::try_from(REPORT_INTERVAL.as_millis()).unwrap_or(u64::MAX),
            ),
        );
        // Says that subscriptions are understood: a sidecar sends none to a controller
        // without it (older controllers end a stream on a kind they do not know).
        response.metadata_mut().insert(
            SUBSCRIBE_HEADER,
            tonic::metadata::AsciiMetadataValue::from_static("1"),
        );
        Ok(response)
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then closes every
/// connection gracefully (streams must end on their own: they follow the service's
/// shutdown signal).
pub async fn serve(
    listener: TcpListener,
    service: DiscoveryService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let drain = service.drain.clone().map(DrainService::into_server);
    builder()
        .add_service(service.into_server())
        .add_optional_service(drain)
        // No Nagle: a one-endpoint delta is ~60 bytes and must not wait for an ACK.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// [`serve`] over TLS: connections are handshaken with `tls` (see [`crate::tls`],
/// whose certificate reloads itself) before tonic sees them.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: DiscoveryService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let drain = service.drain.clone().map(DrainService::into_server);
    builder()
        .add_service(service.into_server())
        .add_optional_service(drain)
        .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), shutdown)
        .await
}

fn builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use fairway_proto::scope::{HelloScope, MAX_SUBSCRIPTIONS, ServiceDestination};
    use fairway_proto::testing::{set, table};
    use prost::Message;

    use super::*;

    /// A proxy of a big table names its digest in its hello, and a sidecar its
    /// subscriptions: the hello must still pass this limit (which the previous release
    /// has too), or that proxy could never connect.
    #[test]
    fn the_largest_hello_fits_what_a_controller_accepts() {
        let big = table((0..20_000).map(|i| set(&format!("s{i}"), 0)));
        let longest = "x".repeat(253);
        let version = Version {
            epoch: u64::MAX,
            sequence: u64::MAX,
        };
        let hello =
            pb::ProxyMessage::hello(&longest, &longest, Some(longest.clone()), Some(version))
                .with_digest(&TableDigest::of(&big))
                .with_scope(&HelloScope {
                    mode: ProxyMode::Sidecar,
                    subscriptions: (0..MAX_SUBSCRIPTIONS as u128)
                        .map(|i| {
                            let ip = std::net::Ipv6Addr::from(u128::MAX - i);
                            ServiceDestination::new((ip, u16::MAX).into())
                        })
                        .collect(),
                });
        let len = hello.encoded_len();
        assert!(
            len < MAX_PROXY_MESSAGE_BYTES,
            "{len} bytes against a limit of {MAX_PROXY_MESSAGE_BYTES}"
        );
    }
}
