//! Status lists shared with other controllers, the Gateway API way: an HTTPRoute's
//! `status.parents` and a BackendTLSPolicy's `status.ancestors` hold one entry per
//! parent (or ancestor) and controller, each with `Accepted` and `ResolvedRefs` and their
//! `observedGeneration`.
//!
//! Such a list is atomic and other controllers write it too (a Gateway's entries,
//! another mesh's), so server-side apply would take their entries. The spec asks for a
//! read-modify-write instead: the writer reads the object, the kind's pure `merge` keeps
//! every entry that is not ours and puts ours in place, and the write is a merge patch
//! guarded by the `resourceVersion` it read, so a concurrent write makes it retry rather
//! than overwrite. Written only by the status leader, after the index's first sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::RouteKey;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::StatusError;
use super::decide::wall_now;
use crate::index::{ConditionState, Index};
use crate::state::IndexHandle;
use crate::store::Published;

/// Everything is checked again this often even without a new table version: a status
/// can change with no table change (a missing backend of a route that is not served, a
/// policy's target Service appearing), and a failed or conflicting write needs another
/// try.
const RECHECK: Duration = Duration::from_secs(5);

/// A Gateway API kind whose status holds a list shared with other controllers.
pub trait SharedStatus:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    /// One entry of the shared list.
    type Entry: Clone + PartialEq + Serialize;
    /// What the index computes for one object: ours, before merging.
    type Computed: Clone + PartialEq;
    /// The kind, lower case, for errors and logs (`httproute`).
    const KIND: &'static str;
    /// The list's field under `status` (`parents`).
    const FIELD: &'static str;

    /// Every object's computed status, by `namespace/name`.
    fn computed(index: &Index) -> BTreeMap<RouteKey, Self::Computed>;
    /// The list as the object holds it.
    fn entries(&self) -> &[Self::Entry];
    /// The list to write (pure): other controllers' entries kept, ours from `computed`.
    fn merge(current: &[Self::Entry], computed: &Self::Computed, now: &Time) -> Vec<Self::Entry>;
}

/// One condition of our entry; one whose status did not move keeps its transition time
/// from `previous` (our entry's conditions as the object holds them).
pub fn condition(
    state: &ConditionState,
    type_: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = state.status.as_str();
    let unchanged = (previous.iter())
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: state.reason.as_str().to_owned(),
        message: state.message.clone(),
        observed_generation: generation,
        last_transition_time: unchanged.unwrap_or_else(|| now.clone()),
    }
}

/// Writes `K`'s statuses while `leader` says so, until `published` closes.
pub(super) async fn run<K: SharedStatus>(
    client: Client,
    index: Arc<IndexHandle>,
    mut leader: watch::Receiver<bool>,
    mut published: watch::Receiver<Arc<Published>>,
) -> Result<(), StatusError> {
    let mut synced = index.synced();
    if synced.wait_for(|synced| *synced).await.is_err() {
        return Ok(());
    }
    // What we last wrote per object: unchanged statuses cost no request.
    let mut written: HashMap<RouteKey, K::Computed> = HashMap::new();
    loop {
        if *leader.borrow_and_update() {
            let computed = index.read(K::computed);
            written.retain(|key, _| computed.contains_key(key));
            for (key, status) in computed {
                if written.get(&key) == Some(&status) {
                    continue;
                }
                match write::<K>(&client, &key, &status).await {
                    Ok(()) => {
                        written.insert(key, status);
                    }
                    Err(error) => {
                        tracing::warn!(%error, kind = K::KIND, "status update failed; retrying later");
                    }
                }
            }
        } else {
            // A new leader trusts the cluster, not its memory.
            written.clear();
        }
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
            }
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// One read-modify-write of one object's shared status list.
async fn write<K: SharedStatus>(
    client: &Client,
    key: &RouteKey,
    computed: &K::Computed,
) -> Result<(), StatusError> {
    let failed = |source| StatusError::Write {
        route: format!("{} {key}", K::KIND),
        source,
    };
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let Some(current) = api.get_opt(&key.name).await.map_err(failed)? else {
        return Ok(()); // Deleted meanwhile: the watch will say so.
    };
    let entries = current.entries();
    let desired = K::merge(entries, computed, &wall_now());
    if desired == entries {
        return Ok(());
    }
    let body = serde_json::json!({
        "metadata": {"resourceVersion": current.meta().resource_version},
        "status": {K::FIELD: desired},
    });
    let params = PatchParams::default();
    match api
        .patch_status(&key.name, &params, &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(failed(source)),
    }
}
