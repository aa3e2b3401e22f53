//! The status writer's loop: takes the Routes marked dirty, decides per Route
//! ([`super::decide::plan`]), server-side-applies the statuses that differ, and records
//! Events for transitions. Writes only while leading.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::RouteKey;
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio::time::Instant;

use super::decide::{Plan, Written, plan, wall_now};
use super::events::{RouteEvent, SeenConditions, reference, transitions};
use super::observed::{Dirty, Observed};
use super::{FIELD_MANAGER, StatusError};
use crate::crd::{Route, RouteStatus};
use crate::index::ComputedStatus;
use crate::state::IndexHandle;

/// Status writes in flight at once: enough to clear a start-up backlog of thousands of
/// Routes in seconds without crowding the apiserver.
const WRITE_CONCURRENCY: usize = 8;
/// After a failed write, try that Route again after this long.
const WRITE_RETRY: Duration = Duration::from_secs(5);

pub(super) struct Writer {
    pub(super) client: Client,
    pub(super) index: Arc<IndexHandle>,
    pub(super) observed: Arc<Observed>,
    pub(super) dirty: Arc<Dirty>,
    pub(super) recorder: Recorder,
    /// Our last write per Route, for rate limiting and unechoed writes.
    pub(super) written: HashMap<RouteKey, Written>,
    /// The conditions last reported per Route, so Events fire on transitions only.
    pub(super) reported: HashMap<RouteKey, SeenConditions>,
    /// Routes to check again at a time (rate-limited or failed writes).
    pub(super) later: HashMap<RouteKey, Instant>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("written", &self.written.len())
            .field("later", &self.later.len())
            .finish_non_exhaustive()
    }
}

/// One Route's check, ready for I/O.
struct Check {
    key: RouteKey,
    uid: Option<String>,
    write: Option<RouteStatus>,
    events: Vec<RouteEvent>,
}

impl Writer {
    /// Runs until `published` closes. Waits for the index's first full sync: before
    /// it, a Service not yet listed would read as missing.
    pub(super) async fn run(
        mut self,
        mut leader: watch::Receiver<bool>,
        mut published: watch::Receiver<Arc<crate::store::Published>>,
    ) -> Result<(), StatusError> {
        let mut synced = self.index.synced();
        tokio::select! {
            result = synced.wait_for(|synced| *synced) => {
                if result.is_err() {
                    return Ok(());
                }
            }
            () = closed(&mut published) => return Ok(()),
        }
        loop {
            if *leader.borrow_and_update() {
                self.round().await;
            } else {
                // A follower keeps nothing: on gaining the lease it checks everything.
                self.dirty.take();
                self.later.clear();
            }
            let next = self.later.values().min().copied();
            tokio::select! {
                changed = published.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                changed = leader.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if *leader.borrow() {
                        self.gained_lease();
                    }
                }
                () = self.dirty.marked() => {}
                () = sleep_until(next) => {}
            }
        }
    }

    /// A new leader trusts the cluster, not its memory, and checks every Route.
    fn gained_lease(&mut self) {
        self.written.clear();
        self.reported.clear();
        let keys: Vec<RouteKey> = self
            .index
            .read(|index| index.statuses().into_keys().collect());
        self.dirty.mark(keys);
    }

    /// Checks the dirty and due Routes and writes what differs.
    async fn round(&mut self) {
        let now = Instant::now();
        let mut keys = self.dirty.take();
        let due: Vec<RouteKey> = (self.later.iter())
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.later.remove(&key);
            keys.insert(key);
        }
        if keys.is_empty() {
            return;
        }
        let checks = self.decide(keys, now);
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let results: Vec<(RouteKey, Option<RouteStatus>, Result<(), StatusError>)> =
            futures::stream::iter(checks)
                .map(|check| {
                    let client = client.clone();
                    let recorder = recorder.clone();
                    async move {
                        let result = perform(&client, &recorder, &check).await;
                        (check.key, check.write, result)
                    }
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect()
                .await;
        let done = Instant::now();
        for (key, write, result) in results {
            match (result, write) {
                (Ok(()), Some(status)) => {
                    tracing::debug!(route = %key, "status written");
                    self.written.insert(key, Written { status, at: done });
                }
                (Ok(()), None) => {}
                (Err(error), _) => {
                    tracing::warn!(route = %key, %error, "status update failed; retrying later");
                    self.later.insert(key, done + WRITE_RETRY);
                }
            }
        }
    }

    /// The pure part of a round, per Route: the status to write and the Events due.
    fn decide(&mut self, keys: BTreeSet<RouteKey>, now: Instant) -> Vec<Check> {
        let computed: Vec<(RouteKey, Option<ComputedStatus>)> = self.index.read(|index| {
            keys.into_iter()
                .map(|key| {
                    let status = index.status(&key);
                    (key, status)
                })
                .collect()
        });
        let wall = wall_now();
        let mut checks = Vec::new();
        for (key, computed) in computed {
            let Some(computed) = computed else {
                // The Route is gone: nothing to write, nothing to remember.
                self.written.remove(&key);
                self.reported.remove(&key);
                self.later.remove(&key);
                continue;
            };
            let observed = self.observed.get(&key).unwrap_or_default();
            let previous = (self.reported.remove(&key))
                .or_else(|| observed.status.as_ref().map(SeenConditions::of_status))
                .unwrap_or_default();
            let events = transitions(&previous, &computed);
            self.reported
                .insert(key.clone(), SeenConditions::of_computed(&computed));
            let write = match plan(
                &computed,
                observed.status.as_ref(),
                self.written.get(&key),
                now,
                &wall,
            ) {
                Plan::Skip => None,
                Plan::Write(status) => Some(status),
                Plan::Later(at) => {
                    self.later.insert(key.clone(), at);
                    None
                }
            };
            if write.is_some() || !events.is_empty() {
                checks.push(Check {
                    key,
                    uid: observed.uid,
                    write,
                    events,
                });
            }
        }
        checks
    }
}

/// Writes one Route's status, then records its Events (after, so `kubectl describe`
/// never shows an Event the status does not yet explain). An Event that fails is logged:
/// it is informative, and retrying would repeat the others.
async fn perform(client: &Client, recorder: &Recorder, check: &Check) -> Result<(), StatusError> {
    let key = &check.key;
    if let Some(status) = &check.write {
        let api: Api<Route> = Api::namespaced(client.clone(), &key.namespace);
        let body = serde_json::json!({
            "apiVersion": Route::api_version(&()),
            "kind": Route::kind(&()),
            "metadata": {"name": key.name, "namespace": key.namespace},
            "status": status,
        });
        // Forced: a status edited by hand is ours to set right.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.name, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: the watch will say so.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(source) => {
                return Err(StatusError::Write {
                    route: key.to_string(),
                    source,
                });
            }
        }
    }
    let regarding = reference(&key.namespace, &key.name, check.uid.clone());
    for event in &check.events {
        if let Err(error) = recorder.publish(&event.to_event(), &regarding).await {
            let error = StatusError::Event {
                route: key.to_string(),
                source: error,
            };
            tracing::warn!(%error, reason = %event.reason, "could not record Event");
        }
    }
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the sender of `published` is gone.
async fn closed<T>(published: &mut watch::Receiver<T>) {
    while published.changed().await.is_ok() {}
}

/// The Event reporter: this controller, this replica.
pub(crate) fn recorder(client: Client, identity: &str) -> Recorder {
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(identity.to_owned()),
    };
    Recorder::new(client, reporter)
}
