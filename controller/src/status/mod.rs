//! Route status: server-side apply of `status` (`observedGeneration`, `Accepted`,
//! `ResolvedRefs`, endpoint counts) and Kubernetes Events for transitions, written by
//! one replica at a time (a Lease). HTTPRoute status (`gateway`) and BackendTLSPolicy
//! status (`policy`) follow the same Lease, the Gateway API way.
//!
//! Where to start: [`run`]. The sources mark Routes [`Dirty`] on every index change;
//! the writer checks those against what the cluster shows ([`Observed`]) with the pure
//! [`decide::plan`], rate-limited per Route, and never blocks the sources or the
//! publisher (it only reads the index, briefly). Pure decisions live in `decide`
//! (what to write), `events` (which transitions to report) and `lease` (whether to lead).

pub mod decide;
pub mod events;
pub mod gateway;
pub mod lease;
mod observed;
pub mod policy;
mod shared;
mod writer;
pub(crate) use writer::recorder;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use tokio::sync::watch;

use crate::state::IndexHandle;
use crate::store::Published;
pub use observed::{Dirty, Observed, ObservedRoute, key_of};

/// The field manager of status writes and the reporting controller of Events.
pub const FIELD_MANAGER: &str = "fairway-controller";
/// Where the Lease lives when `POD_NAMESPACE` is unset.
pub const DEFAULT_LEASE_NAMESPACE: &str = "default";
/// The in-cluster ServiceAccount token, whose claims name the Pod that owns the Lease.
pub const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Who this replica is in the status election.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusConfig {
    /// The namespace of the Lease (the controller's own).
    pub lease_namespace: String,
    /// This replica's holder identity (its pod name).
    pub identity: String,
    /// Who owns the Lease while this replica holds it (its Pod), so the garbage
    /// collector deletes the Lease with the last controller Pod. `None`: no owner.
    pub owner: Option<OwnerReference>,
}

impl Default for StatusConfig {
    /// `POD_NAMESPACE` (else `default`) and `POD_NAME` (else the host name plus a random
    /// suffix, so two processes on one host never share an identity).
    fn default() -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let identity = env("POD_NAME").unwrap_or_else(|| {
            let host = env("HOSTNAME")
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| FIELD_MANAGER.to_owned());
            format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
        });
        let token = std::fs::read_to_string(POD_TOKEN_FILE).ok();
        StatusConfig {
            lease_namespace: env("POD_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_LEASE_NAMESPACE.to_owned()),
            identity,
            owner: token.as_deref().and_then(lease::pod_owner),
        }
    }
}

/// A step of status reporting that failed. Logged per Route and retried; never fatal.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("writing the status of route {route}: {source}")]
    Write {
        route: String,
        #[source]
        source: kube::Error,
    },
    #[error("recording an event for route {route}: {source}")]
    Event {
        route: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {lease}: {0}", lease = lease::LEASE_NAME)]
    Lease(#[source] kube::Error),
}

/// Runs the election and the writer until `stop` turns true (then the Lease is
/// released, see [`lease::run`]) or `published` closes. `leader` says whether this
/// replica leads (others that record Events subscribe to it).
#[allow(clippy::too_many_arguments)] // each is one part the sources wire in
pub async fn run(
    client: Client,
    index: Arc<IndexHandle>,
    observed: Arc<Observed>,
    dirty: Arc<Dirty>,
    config: StatusConfig,
    published: watch::Receiver<Arc<Published>>,
    stop: watch::Receiver<bool>,
    leader: watch::Sender<bool>,
) -> Result<(), StatusError> {
    let leading = leader.subscribe();
    let election = lease::run(
        client.clone(),
        config.lease_namespace.clone(),
        config.identity.clone(),
        config.owner.clone(),
        leader,
        stop,
    );
    let gateway = shared::run::<crate::httproute::HTTPRoute>(
        client.clone(),
        index.clone(),
        leading.clone(),
        published.clone(),
    );
    let policies = shared::run::<crate::backendtlspolicy::BackendTLSPolicy>(
        client.clone(),
        index.clone(),
        leading.clone(),
        published.clone(),
    );
    let writer = writer::Writer {
        recorder: writer::recorder(client.clone(), &config.identity),
        client,
        index,
        observed,
        dirty,
        written: HashMap::new(),
        reported: HashMap::new(),
        later: HashMap::new(),
    };
    tokio::select! {
        () = election => Ok(()),
        result = writer.run(leading, published) => result,
        result = gateway => result,
        result = policies => result,
    }
}
