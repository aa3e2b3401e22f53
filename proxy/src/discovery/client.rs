//! The discovery client: one gRPC stream to the controller at a time, reopened with
//! backoff for as long as the proxy runs.
//!
//! Each stream opens with a `Hello` (id, node, zone, last applied version), then every
//! controller message goes through the [`Applier`]; an applied version is built into a
//! [`Table`], published, and only then acked. Losing the controller changes nothing for
//! traffic: the table is never cleared, only replaced by a newer valid one.
//!
//! A controller that wants load reports says so in its response headers
//! ([`LOAD_REPORT_HEADER`], the interval in milliseconds); the client then sends one
//! `LoadReport` per interval beside the acks, never counted as an answer. Controllers
//! from before reports end a stream on a message kind they do not know, so without the
//! header nothing is sent.
//!
//! A sidecar (`--outbound-listen`) says so in its hello, listing the destinations it
//! subscribed to; on a stream to a controller that answers with [`SUBSCRIBE_HEADER`] it
//! sends each destination the captured path newly wants
//! ([`crate::table::Wanted`]), and the controller adds that Service to its table.
//!
//! Every (re)connect re-reads the key material from disk: the CA and client certificate
//! (rotated Secrets) and the ServiceAccount token (kubelet rotates projected tokens well
//! before they expire). A missing or unreadable file, or a controller refusing the token
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`), is one more failed attempt: logged, backed
//! off, and the last table keeps serving.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::digest::TableDigest;
use fairway_proto::load::{self, LoadReport};
use fairway_proto::model::{RouteTable, Version};
use fairway_proto::pb::{self, discovery_client::DiscoveryClient};
use fairway_proto::scope::{HelloScope, ProxyMode};
use http::Uri;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, warn};

use super::apply::{Applier, ApplyError, Step};
use super::backoff::Backoff;
use crate::balance::{SHARE_SLOT, SHARE_SLOTS};
use crate::config::{Config, ControllerTls};
use crate::logs::Chain;
use crate::metrics::{Metrics, UpdateResult};
use crate::table::{Table, TableHandle};

/// Bounds a connect attempt to an unreachable controller (SYNs into the void).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 PING interval: a controller that vanished without a FIN (node loss, network
/// partition) is noticed within interval + timeout, not after TCP's minutes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a PING may go unanswered before the connection counts as dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive as a second line behind HTTP/2 PINGs, for idle intermediaries.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// The controller's response header asking for load reports, and how often (ms).
pub const LOAD_REPORT_HEADER: &str = "fairway-load-report-ms";
/// The controller's response header saying it scopes a sidecar's table and takes its
/// subscriptions.
pub const SUBSCRIBE_HEADER: &str = "fairway-subscribe";
/// The shortest report interval honoured, whatever the controller asks: reports are
/// summaries, not a stream of events.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// The longest: a report older than a few intervals is dropped by the controller.
pub const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What the discovery client needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub controller: Uri,
    /// `None`: plaintext.
    pub tls: Option<ControllerTls>,
    /// Sent as `authorization: Bearer <contents>`; `None`: no token.
    pub token_file: Option<PathBuf>,
    pub id: String,
    pub node: String,
    /// Also used for zone hints when building tables.
    pub zone: Option<String>,
    /// A sidecar's own namespace, for bare hosts in the tables it builds.
    pub namespace: Option<String>,
    /// Sidecar (it captures connections, `--outbound-listen`): its table holds
    /// implicit Services only once it subscribed to them (discovery.proto, "Scope").
    pub mode: ProxyMode,
    pub backoff: Backoff,
}

impl From<&Config> for DiscoveryConfig {
    fn from(config: &Config) -> Self {
        DiscoveryConfig {
            controller: config.controller.clone(),
            tls: config.controller_tls.clone(),
            token_file: config.controller_token_file.clone(),
            id: config.id.clone(),
            node: config.node.clone(),
            zone: config.zone.clone(),
            namespace: config.namespace.clone(),
            mode: if config.outbound.is_some() {
                ProxyMode::Sidecar
            } else {
                ProxyMode::Explicit
            },
            backoff: Backoff::default(),
        }
    }
}

/// Why a stream ended. Every variant leads to the same thing: keep the table, back
/// off, reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("reading {path} failed")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token in {0} is empty or not printable ASCII")]
    BadToken(PathBuf),
    #[error("the controller TLS settings are unusable")]
    Tls(#[source] tonic::transport::Error),
    #[error("connecting to the controller failed")]
    Connect(#[source] tonic::transport::Error),
    #[error("the controller refused the stream")]
    Open(#[source] tonic::Status),
    #[error("the stream failed")]
    Receive(#[source] tonic::Status),
    #[error("the controller ended the stream")]
    Ended,
    #[error("the stream's request side closed")]
    Send,
    #[error("the controller sent an unanswerable message")]
    Protocol(#[source] ApplyError),
}

/// Follows the controller and publishes every applied table into a [`TableHandle`].
#[derive(Debug)]
pub struct Client {
    config: DiscoveryConfig,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    applier: Applier,
    rng: SmallRng,
    /// The zone the controller reported in its last snapshot (the Node's label), used
    /// for topology hints when `--zone` is not set.
    reported_zone: Option<String>,
}

impl Client {
    pub fn new(config: DiscoveryConfig, table: Arc<TableHandle>, metrics: Arc<Metrics>) -> Self {
        Client {
            config,
            table,
            metrics,
            applier: Applier::new(),
            rng: SmallRng::from_os_rng(),
            reported_zone: None,
        }
    }

    /// Runs until `shutdown` completes; never gives up on the controller before that.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        if self.config.tls.is_none() {
            warn!(
                controller = %self.config.controller,
                token = self.config.token_file.is_some(),
                "--controller-plaintext: routes, pod addresses and any token travel unencrypted",
            );
        }
        tokio::select! {
            biased;
            () = shutdown => debug!("discovery client stopping"),
            () = self.follow() => {}
        }
    }

    async fn follow(&mut self) {
        let mut attempt: u32 = 0;
        loop {
            let mut heard = false;
            let reason = self.session(&mut heard).await;
            self.metrics.set_discovery_connected(false);
            self.applier.stream_reset();
            if heard {
                // The controller was up and talking: start the backoff over.
                attempt = 0;
            }
            let delay = self.config.backoff.delay(attempt, &mut self.rng);
            attempt = attempt.saturating_add(1);
            warn!(
                error = %Chain(&reason),
                retry_in_ms = delay.as_millis() as u64,
                serving = %version_text(self.applier.last_applied()),
                "discovery stream down; still serving the last table",
            );
            tokio::time::sleep(delay).await;
            self.metrics.discovery_reconnect();
        }
    }

    /// One stream, from connect to its end. `heard` turns true once a message arrived.
    async fn session(&mut self, heard: &mut bool) -> SessionError {
        match self.session_inner(heard).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn session_inner(
        &mut self,
        heard: &mut bool,
    ) -> Result<std::convert::Infallible, SessionError> {
        // Read before connecting: a missing file should not cost the controller a
        // connection it would refuse anyway.
        let authorization = (self.config.token_file.as_deref())
            .map(authorization)
            .transpose()?;
        let mut endpoint = Endpoint::from(self.config.controller.clone());
        if let Some(tls) = &self.config.tls {
            endpoint = (endpoint.tls_config(client_tls(tls)?)).map_err(SessionError::Tls)?;
        }
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(TCP_KEEPALIVE))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(SessionError::Connect)?;
        // Unbounded on purpose: we send one answer per controller message and must
        // never stop reading the controller because our own queue is full.
        let (tx, rx) = mpsc::unbounded_channel();
        let last_applied = self.applier.last_applied();
        let mut hello = pb::ProxyMessage::hello(
            self.config.id.clone(),
            self.config.node.clone(),
            self.config.zone.clone(),
            last_applied,
        );
        // With a table, say what it holds: a controller of another epoch (restarted,
        // or another replica) then resends only what differs, not a snapshot.
        if let Some(table) = self.applier.current() {
            hello = hello.with_digest(&TableDigest::of(table));
        }
        // A sidecar says so, with every destination it subscribed to: a reconnect (or a
        // restarted controller) keeps them.
        let mut subscribed = 0;
        if self.config.mode == ProxyMode::Sidecar {
            let subscriptions = self.table.wanted().all();
            subscribed = subscriptions.len();
            hello = hello.with_scope(&HelloScope {
                mode: ProxyMode::Sidecar,
                subscriptions,
            });
        }
        tx.send(hello).map_err(|_| SessionError::Send)?;
        let token = move |mut request: tonic::Request<()>| {
            if let Some(value) = &authorization {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        };
        let response = DiscoveryClient::with_interceptor(channel, token)
            .stream(UnboundedReceiverStream::new(rx))
            .await
            .map_err(SessionError::Open)?;
        let mut reports = report_interval(response.metadata()).map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        // Only a controller that says it takes subscriptions gets them (older ones end
        // a stream on a kind they do not know, and send the whole table anyway).
        let subscribing = self.config.mode == ProxyMode::Sidecar
            && response.metadata().contains_key(SUBSCRIBE_HEADER);
        self.table.wanted().set_accepting(subscribing);
        let mut inbound = response.into_inner();
        self.metrics.set_discovery_connected(true);
        info!(
            controller = %self.config.controller,
            last_applied = %version_text(last_applied),
            "discovery stream open",
        );
        loop {
            let msg = tokio::select! {
                msg = inbound.message() => msg,
                () = tick(&mut reports) => {
                    if let Some(report) = self.report() {
                        tx.send(pb::ProxyMessage::report(&report))
                            .map_err(|_| SessionError::Send)?;
                    }
                    continue;
                }
                () = self.table.wanted().added(), if subscribing => {
                    for destination in self.table.wanted().after(subscribed) {
                        debug!(%destination, "subscribing");
                        tx.send(pb::ProxyMessage::subscribe(destination))
                            .map_err(|_| SessionError::Send)?;
                        subscribed += 1;
                    }
                    continue;
                }
            };
            let msg = msg
                .map_err(SessionError::Receive)?
                .ok_or(SessionError::Ended)?;
            *heard = true;
            if let Some(reply) = self.handle(msg).map_err(SessionError::Protocol)? {
                tx.send(reply).map_err(|_| SessionError::Send)?;
            }
        }
    }

    /// Applies one message; returns the ack or nack to send, if any.
    fn handle(
        &mut self,
        msg: pb::ControllerMessage,
    ) -> Result<Option<pb::ProxyMessage>, ApplyError> {
        if let Some(pb::controller_message::Kind::Figures(figures)) = msg.kind {
            // Outside the versioned sequence: applied to the balancers, never answered.
            match load::LoadFigures::try_from(figures) {
                Ok(figures) => self.table.load().take_figures(&figures, Instant::now()),
                Err(error) => debug!(%error, "ignored invalid load figures"),
            }
            return Ok(None);
        }
        if let Some(pb::controller_message::Kind::Begin(begin)) = &msg.kind
            && begin.zone != self.reported_zone
        {
            info!(zone = ?begin.zone, "the controller reports this proxy's zone");
            self.reported_zone.clone_from(&begin.zone);
        }
        match self.applier.step(msg) {
            Step::Pending => Ok(None),
            Step::Applied(source, version) => {
                self.publish(source, version);
                self.metrics.discovery_update(UpdateResult::applied);
                Ok(Some(pb::ProxyMessage::ack(version)))
            }
            Step::Nack(version, reason) => {
                warn!(
                    %version,
                    error = %reason,
                    serving = %version_text(self.applier.last_applied()),
                    "update rejected; keeping the last good table",
                );
                self.metrics.discovery_update(UpdateResult::nacked);
                Ok(Some(pb::ProxyMessage::nack(version, reason.to_string())))
            }
            Step::Invalid(reason) => Err(reason),
        }
    }

    /// This proxy's share-window figures, bounded; `None` while no balancer has
    /// picked a request (nothing to say).
    fn report(&self) -> Option<LoadReport> {
        let mut backends = self.table.load().load(Instant::now());
        if backends.is_empty() {
            return None;
        }
        let truncated = load::bound(&mut backends);
        Some(LoadReport {
            window: SHARE_SLOT * u32::try_from(SHARE_SLOTS).unwrap_or(u32::MAX),
            backends,
            truncated,
            accepts_figures: true,
        })
    }

    /// Builds the request path's table (reusing balancer state) and publishes it.
    fn publish(&self, source: Arc<RouteTable>, version: Version) {
        let first = !self.table.is_ready();
        let (routes, endpoints) = (source.routes.len(), source.endpoint_count());
        let previous = self.table.load();
        // `--zone` wins; without it, the zone the controller found on our Node.
        let zone = self
            .config
            .zone
            .as_deref()
            .or(self.reported_zone.as_deref());
        // `--node` for node hints (PreferSameNode); empty means unknown.
        let node = Some(self.config.node.as_str()).filter(|n| !n.is_empty());
        let table = Table::build(source, version, &previous, (zone, node), Instant::now())
            .in_namespace(self.config.namespace.as_deref());
        self.table.store(Arc::new(table));
        self.metrics.set_table_version(version);
        if first {
            info!(%version, routes, endpoints, "first route table applied; ready");
        } else {
            debug!(%version, routes, endpoints, "route table applied");
        }
    }
}

/// The report interval the controller asked for, clamped; `None` when it did not ask.
fn report_interval(headers: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let millis: u64 = headers
        .get(LOAD_REPORT_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(millis).clamp(MIN_REPORT_INTERVAL, MAX_REPORT_INTERVAL))
}

/// The next report tick, or never when reports are off.
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SessionError> {
    std::fs::read(path).map_err(|source| SessionError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// `Bearer <token>` from the token file, marked sensitive so it is never logged.
fn authorization(path: &Path) -> Result<AsciiMetadataValue, SessionError> {
    let token =
        String::from_utf8(read(path)?).map_err(|_| SessionError::BadToken(path.to_owned()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(SessionError::BadToken(path.to_owned()));
    }
    let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| SessionError::BadToken(path.to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// tonic's TLS settings from the files as they are now.
fn client_tls(tls: &ControllerTls) -> Result<ClientTlsConfig, SessionError> {
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

fn version_text(version: Option<Version>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

#[cfg(test)]
#[path = "client/tests.rs"]
mod tests;
