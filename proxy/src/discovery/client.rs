//! The discovery client: one gRPC stream to the controller at a time, reopened with
//! backoff for as long as the proxy runs.
//!
//! Each stream opens with a `Hello` (id, node, zone, last applied version), then every
//! controller message goes through the [`Applier`]; an applied version is built into a
//! [`Table`], published, and only then acked. Losing the controller changes nothing for
//! traffic: the table is never cleared, only replaced by a newer valid one.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{RouteTable, Version};
use fairway_proto::pb::{self, discovery_client::DiscoveryClient};
use http::Uri;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use super::apply::{Applier, ApplyError, Step};
use super::backoff::Backoff;
use crate::config::Config;
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

/// What the discovery client needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub controller: Uri,
    pub id: String,
    pub node: String,
    /// Also used for zone hints when building tables.
    pub zone: Option<String>,
    pub backoff: Backoff,
}

impl From<&Config> for DiscoveryConfig {
    fn from(config: &Config) -> Self {
        DiscoveryConfig {
            controller: config.controller.clone(),
            id: config.id.clone(),
            node: config.node.clone(),
            zone: config.zone.clone(),
            backoff: Backoff::default(),
        }
    }
}

/// Why a stream ended. Every variant leads to the same thing: keep the table, back
/// off, reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
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
}

impl Client {
    pub fn new(config: DiscoveryConfig, table: Arc<TableHandle>, metrics: Arc<Metrics>) -> Self {
        Client {
            config,
            table,
            metrics,
            applier: Applier::new(),
            rng: SmallRng::from_os_rng(),
        }
    }

    /// Runs until `shutdown` completes; never gives up on the controller before that.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
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
        let channel = Endpoint::from(self.config.controller.clone())
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
        let hello = pb::ProxyMessage::hello(
            self.config.id.clone(),
            self.config.node.clone(),
            self.config.zone.clone(),
            last_applied,
        );
        tx.send(hello).map_err(|_| SessionError::Send)?;
        let mut inbound = DiscoveryClient::new(channel)
            .stream(UnboundedReceiverStream::new(rx))
            .await
            .map_err(SessionError::Open)?
            .into_inner();
        self.metrics.set_discovery_connected(true);
        info!(
            controller = %self.config.controller,
            last_applied = %version_text(last_applied),
            "discovery stream open",
        );
        loop {
            let msg = inbound
                .message()
                .await
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

    /// Builds the request path's table (reusing balancer state) and publishes it.
    fn publish(&self, source: Arc<RouteTable>, version: Version) {
        let first = !self.table.is_ready();
        let (routes, endpoints) = (source.routes.len(), source.endpoint_count());
        let previous = self.table.load();
        let table = Table::build(
            source,
            version,
            &previous,
            self.config.zone.as_deref(),
            Instant::now(),
        );
        self.table.store(Arc::new(table));
        self.metrics.set_table_version(version);
        if first {
            info!(%version, routes, endpoints, "first route table applied; ready");
        } else {
            debug!(%version, routes, endpoints, "route table applied");
        }
    }
}

fn version_text(version: Option<Version>) -> String {
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
}
