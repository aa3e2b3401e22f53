//! HTTPRoute status, the Gateway API way: one `status.parents[]` entry per Service
//! parent with our `controllerName`, each with `Accepted` and `ResolvedRefs` and their
//! `observedGeneration`.
//!
//! `parents` is an atomic list that other controllers write too (a Gateway's entries,
//! another mesh's), so server-side apply would take their entries. The spec asks for a
//! read-modify-write instead: the writer reads the object, [`merge_parents`] (pure) keeps
//! every entry that is not ours and puts ours in place, and the write is a merge patch
//! guarded by the `resourceVersion` it read, so a concurrent write makes it retry rather
//! than overwrite. Written only by the status leader, after the index's first sync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::RouteKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::StatusError;
use super::decide::wall_now;
use crate::httproute::{CONTROLLER_NAME, HTTPRoute, RouteParentStatus};
use crate::index::{ACCEPTED, ConditionState, HttpRouteComputed, RESOLVED_REFS};
use crate::state::IndexHandle;
use crate::store::Published;

/// Everything is checked again this often even without a new table version: a status
/// can change with no table change (a missing backend of a route that is not served),
/// and a failed or conflicting write needs another try.
const RECHECK: Duration = Duration::from_secs(5);

fn condition(
    state: &ConditionState,
    type_: &str,
    generation: Option<i64>,
    previous: Option<&RouteParentStatus>,
    now: &Time,
) -> Condition {
    let status = state.status.as_str();
    let unchanged = (previous.iter().flat_map(|p| &p.conditions))
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

/// The `status.parents` to write: `current`'s entries of other controllers (and of
/// parents we no longer report, which are dropped only if ours) kept as they are, ours
/// from `computed`. A condition whose status did not move keeps its transition time.
pub fn merge_parents(
    current: &[RouteParentStatus],
    computed: &HttpRouteComputed,
    now: &Time,
) -> Vec<RouteParentStatus> {
    let ours = |p: &&RouteParentStatus| p.controller_name == CONTROLLER_NAME;
    let mut parents: Vec<RouteParentStatus> =
        current.iter().filter(|p| !ours(p)).cloned().collect();
    for parent in &computed.parents {
        let previous = (current.iter().filter(ours)).find(|p| p.parent_ref == parent.parent_ref);
        let generation = computed.observed_generation;
        parents.push(RouteParentStatus {
            parent_ref: parent.parent_ref.clone(),
            controller_name: CONTROLLER_NAME.to_owned(),
            conditions: vec![
                condition(&parent.accepted, ACCEPTED, generation, previous, now),
                condition(
                    &parent.resolved_refs,
                    RESOLVED_REFS,
                    generation,
                    previous,
                    now,
                ),
            ],
        });
    }
    parents
}

/// Writes HTTPRoute statuses while `leader` says so, until `published` closes.
pub(super) async fn run(
    client: Client,
    index: Arc<IndexHandle>,
    mut leader: watch::Receiver<bool>,
    mut published: watch::Receiver<Arc<Published>>,
) -> Result<(), StatusError> {
    let mut synced = index.synced();
    if synced.wait_for(|synced| *synced).await.is_err() {
        return Ok(());
    }
    // What we last wrote per route: unchanged statuses cost no request.
    let mut written: HashMap<RouteKey, HttpRouteComputed> = HashMap::new();
    loop {
        if *leader.borrow_and_update() {
            let computed = index.read(|index| index.http_route_statuses());
            written.retain(|key, _| computed.contains_key(key));
            for (key, status) in computed {
                if written.get(&key) == Some(&status) {
                    continue;
                }
                match write(&client, &key, &status).await {
                    Ok(()) => {
                        written.insert(key, status);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "HTTPRoute status update failed; retrying later");
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

/// One read-modify-write of one HTTPRoute's `status.parents`.
async fn write(
    client: &Client,
    key: &RouteKey,
    computed: &HttpRouteComputed,
) -> Result<(), StatusError> {
    let failed = |source| StatusError::Write {
        route: format!("httproute {key}"),
        source,
    };
    let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &key.namespace);
    let Some(current) = api.get_opt(&key.name).await.map_err(failed)? else {
        return Ok(()); // Deleted meanwhile: the watch will say so.
    };
    let parents = current
        .status
        .as_ref()
        .map(|s| &s.parents[..])
        .unwrap_or(&[]);
    let desired = merge_parents(parents, computed, &wall_now());
    if desired == parents {
        return Ok(());
    }
    let body = serde_json::json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": {"parents": desired},
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

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::httproute::ParentReference;
    use crate::index::{ConditionStatus, ParentStatus, Reason};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid second"))
    }

    fn service(name: &str) -> ParentReference {
        ParentReference {
            group: Some(String::new()),
            kind: Some("Service".to_owned()),
            name: name.to_owned(),
            ..ParentReference::default()
        }
    }

    fn computed(accepted: ConditionStatus) -> HttpRouteComputed {
        let state = |status, reason: Reason| ConditionState {
            status,
            reason,
            message: reason.as_str().to_owned(),
        };
        HttpRouteComputed {
            observed_generation: Some(4),
            parents: vec![ParentStatus {
                parent_ref: service("orders"),
                accepted: state(accepted, Reason::Accepted),
                resolved_refs: state(ConditionStatus::True, Reason::ResolvedRefs),
            }],
        }
    }

    #[test]
    fn other_controllers_entries_are_kept_and_ours_replaced() {
        let gateway = RouteParentStatus {
            parent_ref: ParentReference {
                name: "public".to_owned(),
                ..ParentReference::default()
            },
            controller_name: "example.com/gateway".to_owned(),
            conditions: Vec::new(),
        };
        let first = merge_parents(
            std::slice::from_ref(&gateway),
            &computed(ConditionStatus::True),
            &at(100),
        );
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0], gateway,
            "another controller's entry is not ours to touch"
        );
        let ours = &first[1];
        assert_eq!(ours.controller_name, "fairway.dev/controller");
        let types: Vec<&str> = ours.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "ResolvedRefs"]);
        assert!(
            ours.conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );

        let again = merge_parents(&first, &computed(ConditionStatus::True), &at(500));
        assert_eq!(again, first, "nothing moved: the same list, times kept");

        let moved = merge_parents(&first, &computed(ConditionStatus::False), &at(500));
        assert_eq!(moved.len(), 2, "our entry replaced, not added");
        let times: Vec<&Time> = (moved[1].conditions.iter())
            .map(|c| &c.last_transition_time)
            .collect();
        assert_eq!(
            times,
            [&at(500), &at(100)],
            "only the moved condition is stamped now"
        );
    }
}
