//! A test proxy: a real tonic Discovery client that speaks the protocol (hello, acks),
//! assembles snapshots with the proxy's own [`SnapshotAssembler`], applies deltas, and
//! hands each update to the test so it can assert on exactly what came over the wire.

use std::time::Duration;

use fairway_proto::diff::{self, TableDiff};
use fairway_proto::model::{RouteTable, Version};
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::pb::{self, controller_message::Kind};
use fairway_proto::snapshot::SnapshotAssembler;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Between tries while the controller is not up or not synced yet.
const RETRY: Duration = Duration::from_millis(100);

/// What went wrong on the test proxy's side.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no {what} within {timeout:?}; last error: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
    #[error("the controller ended the stream: {0}")]
    Ended(String),
    #[error("bad message from the controller: {0}")]
    Protocol(String),
}

/// One version as the proxy received it (already acked).
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    Snapshot {
        version: Version,
        table: RouteTable,
    },
    Delta {
        base: Version,
        version: Version,
        diff: TableDiff,
        /// The encoded size of the message on the wire.
        bytes: usize,
    },
}

impl Update {
    pub fn version(&self) -> Version {
        match self {
            Update::Snapshot { version, .. } | Update::Delta { version, .. } => *version,
        }
    }
}

/// A connected test proxy. Its `table` is the table it applied last.
#[derive(Debug)]
pub struct TestProxy {
    outbound: mpsc::Sender<pb::ProxyMessage>,
    inbound: tonic::Streaming<pb::ControllerMessage>,
    assembler: SnapshotAssembler,
    pub table: RouteTable,
    pub version: Option<Version>,
}

impl TestProxy {
    /// Opens a stream to `endpoint` (`http://127.0.0.1:PORT`) and says hello with
    /// `last_applied`. Retries, until `timeout`, while the controller refuses the
    /// connection or answers `UNAVAILABLE` (not synced yet).
    pub async fn connect(
        endpoint: &str,
        id: &str,
        last_applied: Option<Version>,
        timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match Self::try_connect(endpoint, id, last_applied).await {
                Ok(proxy) => return Ok(proxy),
                Err(error) => error,
            };
            if Instant::now() + RETRY > deadline {
                return Err(ProxyError::Timeout {
                    what: format!("stream from {endpoint}"),
                    timeout,
                    last,
                });
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn try_connect(
        endpoint: &str,
        id: &str,
        last_applied: Option<Version>,
    ) -> Result<Self, String> {
        let mut client = DiscoveryClient::connect(endpoint.to_owned())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (outbound, rx) = mpsc::channel(16);
        let hello = pb::ProxyMessage::hello(id, "test-node", None, last_applied);
        outbound
            .send(hello)
            .await
            .map_err(|_| "hello not sent".to_owned())?;
        let response = client
            .stream(ReceiverStream::new(rx))
            .await
            .map_err(|status| format!("open stream: {status}"))?;
        Ok(TestProxy {
            outbound,
            inbound: response.into_inner(),
            assembler: SnapshotAssembler::new(),
            table: RouteTable::default(),
            version: last_applied,
        })
    }

    /// The next version, applied to `table` and acked. Waits at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Update, ProxyError> {
        let deadline = Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.inbound.message()).await;
            let message = match message {
                Err(_) => {
                    return Err(ProxyError::Timeout {
                        what: "message".to_owned(),
                        timeout,
                        last: format!("at version {:?}", self.version),
                    });
                }
                Ok(Err(status)) => return Err(ProxyError::Ended(status.to_string())),
                Ok(Ok(None)) => return Err(ProxyError::Ended("end of stream".to_owned())),
                Ok(Ok(Some(message))) => message,
            };
            if let Some(update) = self.take(message)? {
                // The controller waits for no ack, but records it: send it like a proxy.
                let ack = pb::ProxyMessage::ack(update.version());
                let _ = self.outbound.send(ack).await;
                return Ok(update);
            }
        }
    }

    fn take(&mut self, message: pb::ControllerMessage) -> Result<Option<Update>, ProxyError> {
        let bytes = prost::Message::encoded_len(&message);
        let version = message
            .table_version()
            .map_err(|e| ProxyError::Protocol(e.to_string()))?;
        match message.kind {
            Some(Kind::Delta(delta)) => {
                let (base, diff) = TableDiff::from_proto(delta)
                    .map_err(|e| ProxyError::Protocol(e.to_string()))?;
                if Some(base) != self.version {
                    return Err(ProxyError::Protocol(format!(
                        "delta on {base} but the proxy serves {:?}",
                        self.version
                    )));
                }
                diff::apply(&mut self.table, &diff);
                self.version = Some(version);
                Ok(Some(Update::Delta {
                    base,
                    version,
                    diff,
                    bytes,
                }))
            }
            _ => match self.assembler.feed(message) {
                Ok(Some(table)) => {
                    self.table = table.clone();
                    self.version = Some(version);
                    Ok(Some(Update::Snapshot { version, table }))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(ProxyError::Protocol(e.to_string())),
            },
        }
    }

    /// Takes updates until `table` satisfies `done`; returns them. Waits at most
    /// `timeout` in all.
    pub async fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&RouteTable) -> bool,
    ) -> Result<Vec<Update>, ProxyError> {
        let deadline = Instant::now() + timeout;
        let mut updates = Vec::new();
        while !done(&self.table) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(update) => updates.push(update),
                Err(ProxyError::Timeout { last, .. }) => {
                    return Err(ProxyError::Timeout {
                        what: what.to_owned(),
                        timeout,
                        last: format!("{last}; table: {:?}", self.table),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(updates)
    }

    /// Takes updates until one is not an empty delta (a version with no change, if the
    /// controller ever sends one), and returns it.
    pub async fn next_change(&mut self, timeout: Duration) -> Result<Update, ProxyError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let update = self.next(left).await?;
            match &update {
                Update::Delta { diff, .. } if diff.is_empty() => continue,
                _ => return Ok(update),
            }
        }
    }
}
