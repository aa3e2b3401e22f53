//! `Drain.WaitDrained` on the Discovery port: names the pod by its token, waits for it
//! ([`Waiter`]), and turns the outcome into the answer `fairway wait-drained` prints.

use std::sync::Arc;
use std::time::Duration;

use fairway_proto::pb::drain_server::{Drain, DrainServer};
use fairway_proto::pb::{self, wait_drained_response::Outcome as Wire};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::decide::{Answer, Wait};
use super::peers::{self, PEER_HEADER, PeerConfig};
use super::wait::{Outcome, Pending, RECONNECT_GRACE, Waiter};
use crate::auth::{Pod, PodAuthenticator};
use crate::grpc::Proxies;
use crate::grpc::proxies::ProxyAck;
use crate::store::Store;

/// The longest wait a request may ask for: a hook never runs longer than a pod's grace
/// period, and a waiter must not outlive every reason for it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// A request that names no timeout waits this long (`fairway wait-drained`'s default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The Drain service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DrainService {
    /// `None` without an apiserver (`--static-dir`): nobody can be named, so every
    /// request is refused with a reason.
    auth: Option<Arc<PodAuthenticator>>,
    waiter: Waiter,
    shutdown: watch::Receiver<bool>,
    /// The replicas to ask (this one included), if there are several.
    peers: Option<Arc<PeerConfig>>,
}

impl DrainService {
    /// Answers about `store`'s versions and `proxies`' acks; requests end with
    /// `UNAVAILABLE` when `shutdown` turns true.
    pub fn new(
        store: Arc<Store>,
        proxies: Arc<Proxies>,
        auth: Option<Arc<PodAuthenticator>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        DrainService {
            auth,
            waiter: Waiter {
                store,
                proxies,
                grace: RECONNECT_GRACE,
            },
            shutdown,
            peers: None,
        }
    }

    /// Asks every replica `peers` names (see [`peers`]) rather than answering alone.
    pub fn with_peers(mut self, peers: PeerConfig) -> Self {
        self.peers = (!peers.names.is_empty()).then(|| Arc::new(peers));
        self
    }

    /// The same service with another start-up grace (tests of a fresh controller).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.waiter.grace = grace;
        self
    }

    pub fn into_server(self) -> DrainServer<Self> {
        DrainServer::new(self)
    }
}

#[tonic::async_trait]
impl Drain for DrainService {
    async fn wait_drained(
        &self,
        request: Request<pb::WaitDrainedRequest>,
    ) -> Result<Response<pb::WaitDrainedResponse>, Status> {
        let Some(auth) = &self.auth else {
            return Err(Status::failed_precondition(
                "this controller has no Kubernetes API to review tokens with (--static-dir): \
                 the drain handshake is unavailable",
            ));
        };
        let authorization = request.metadata().get("authorization");
        let (outcome, pod) = auth.identify(authorization.map(|v| v.as_bytes())).await;
        let pod = pod.inspect_err(|status| {
            let peer = request.remote_addr();
            tracing::info!(?peer, result = ?outcome, reason = %status.message(), "drain request refused");
        })?;
        let timeout = match request.get_ref().timeout_ms {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(ms).min(MAX_TIMEOUT),
        };
        let forwarded = request.metadata().get(PEER_HEADER).is_some();
        if let (Some(config), false) = (&self.peers, forwarded) {
            // Every replica answers for its own proxies; this one is among them.
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let answers = peers::ask_all(config, authorization, ms).await;
            let answer = peers::combine(answers);
            tracing::info!(
                %pod,
                outcome = ?answer.outcome(),
                waited_ms = answer.waited_ms,
                reason = %answer.reason,
                "drain request answered with every replica"
            );
            return Ok(Response::new(answer));
        }
        let started = tokio::time::Instant::now();
        let mut shutdown = self.shutdown.clone();
        let outcome = tokio::select! {
            outcome = self.waiter.wait(&pod, started + timeout) => outcome,
            _ = shutdown.wait_for(|stop| *stop) => {
                return Err(Status::unavailable("the controller is shutting down"));
            }
        };
        let answer = to_response(&pod, &outcome, started.elapsed());
        tracing::info!(
            %pod,
            outcome = ?answer.outcome(),
            waited_ms = answer.waited_ms,
            reason = %answer.reason,
            "drain request answered"
        );
        Ok(Response::new(answer))
    }
}

/// The wire answer for `outcome` after `waited`.
pub fn to_response(pod: &Pod, outcome: &Outcome, waited: Duration) -> pb::WaitDrainedResponse {
    let (kind, reason, lagging) = match outcome {
        Ok(Answer::Drained { version }) => (
            Wire::Drained,
            format!("every proxy applied version {version}, in which {pod} takes no new requests"),
            Vec::new(),
        ),
        Ok(Answer::Unknown) => (
            Wire::UnknownPod,
            format!("{pod} is no endpoint of any Route's backend: no proxy sends to it"),
            Vec::new(),
        ),
        Ok(Answer::LastServing { set }) => (
            Wire::LastServing,
            format!(
                "{pod} is the last serving endpoint of {set}: proxies keep sending to it \
                 until another one is ready (KEP-1669), so waiting would not help"
            ),
            Vec::new(),
        ),
        Err(Pending::NotSynced) => (
            Wire::TimedOut,
            "the controller had not finished its first sync".to_owned(),
            Vec::new(),
        ),
        Err(Pending::Waiting(Wait::NotTerminating { set })) => (
            Wire::TimedOut,
            format!(
                "{pod} was still ready in {set}: its EndpointSlice never marked it \
                 terminating"
            ),
            Vec::new(),
        ),
        Err(Pending::Waiting(Wait::ControllerStarting { .. })) => (
            Wire::TimedOut,
            "the controller started recently: its proxies may not all have reconnected".to_owned(),
            Vec::new(),
        ),
        Err(Pending::Waiting(Wait::Lagging { target, proxies })) => (
            Wire::TimedOut,
            format!(
                "{} of the proxies had not applied version {target}, which stops new \
                 requests to {pod}: {}",
                proxies.len(),
                describe(proxies)
            ),
            proxies.iter().map(to_wire).collect(),
        ),
    };
    pb::WaitDrainedResponse {
        outcome: kind as i32,
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        reason,
        lagging,
    }
}

/// At most this many proxies are named in the sentence (all are in `lagging`).
const NAMED: usize = 10;

fn describe(proxies: &[ProxyAck]) -> String {
    let mut names: Vec<String> = proxies
        .iter()
        .take(NAMED)
        .map(|p| {
            let acked = p
                .acked
                .map_or_else(|| "nothing".to_owned(), |v| v.to_string());
            let state = if p.connected { "" } else { "disconnected, " };
            format!("{} ({state}acked {acked})", p.id)
        })
        .collect();
    if proxies.len() > NAMED {
        names.push(format!("and {} more", proxies.len() - NAMED));
    }
    names.join(", ")
}

fn to_wire(p: &ProxyAck) -> pb::LaggingProxy {
    pb::LaggingProxy {
        proxy_id: p.id.clone(),
        connected: p.connected,
        acked: p.acked.map(Into::into),
    }
}
