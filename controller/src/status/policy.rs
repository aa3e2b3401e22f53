//! BackendTLSPolicy status, the Gateway API way: one `status.ancestors[]` entry per
//! target Service with our `controllerName`, each with `Accepted` and `ResolvedRefs`
//! and their `observedGeneration`.
//!
//! Written as HTTPRoute status is (`gateway`): `ancestors` is shared with other
//! controllers, so the writer reads the object, [`merge_ancestors`] (pure) keeps every
//! entry that is not ours and puts ours in place, and a merge patch guarded by the
//! `resourceVersion` it read makes a concurrent write retry rather than be overwritten.
//! Only the status leader writes, after the index's first sync.

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
use crate::backendtlspolicy::{BackendTLSPolicy, PolicyAncestorStatus};
use crate::httproute::CONTROLLER_NAME;
use crate::index::{ACCEPTED, ConditionState, PolicyComputed, RESOLVED_REFS};
use crate::state::IndexHandle;
use crate::store::Published;

/// Everything is checked again this often even without a new table version: a policy's
/// status can change with no table change (its target Service appears), and a failed
/// or conflicting write needs another try.
const RECHECK: Duration = Duration::from_secs(5);

fn condition(
    state: &ConditionState,
    type_: &str,
    generation: Option<i64>,
    previous: Option<&PolicyAncestorStatus>,
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

/// The `status.ancestors` to write: other controllers' entries as they are, ours from
/// `computed`. A condition whose status did not move keeps its transition time.
pub fn merge_ancestors(
    current: &[PolicyAncestorStatus],
    computed: &PolicyComputed,
    now: &Time,
) -> Vec<PolicyAncestorStatus> {
    let ours = |a: &&PolicyAncestorStatus| a.controller_name == CONTROLLER_NAME;
    let mut ancestors: Vec<PolicyAncestorStatus> =
        current.iter().filter(|a| !ours(a)).cloned().collect();
    let generation = computed.observed_generation;
    for ancestor in &computed.ancestors {
        let previous =
            (current.iter().filter(ours)).find(|a| a.ancestor_ref == ancestor.ancestor_ref);
        let accepted = &ancestor.accepted;
        let resolved = &ancestor.resolved_refs;
        ancestors.push(PolicyAncestorStatus {
            ancestor_ref: ancestor.ancestor_ref.clone(),
            controller_name: CONTROLLER_NAME.to_owned(),
            conditions: vec![
                condition(accepted, ACCEPTED, generation, previous, now),
                condition(resolved, RESOLVED_REFS, generation, previous, now),
            ],
        });
    }
    ancestors
}

/// Writes BackendTLSPolicy statuses while `leader` says so, until `published` closes.
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
    // What we last wrote per policy: unchanged statuses cost no request.
    let mut written: HashMap<RouteKey, PolicyComputed> = HashMap::new();
    loop {
        if *leader.borrow_and_update() {
            let computed = index.read(|index| index.backend_tls_policy_statuses());
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
                        tracing::warn!(%error, "BackendTLSPolicy status update failed; retrying later");
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

/// One read-modify-write of one policy's `status.ancestors`.
async fn write(
    client: &Client,
    key: &RouteKey,
    computed: &PolicyComputed,
) -> Result<(), StatusError> {
    let failed = |source| StatusError::Write {
        route: format!("backendtlspolicy {key}"),
        source,
    };
    let api: Api<BackendTLSPolicy> = Api::namespaced(client.clone(), &key.namespace);
    let Some(current) = api.get_opt(&key.name).await.map_err(failed)? else {
        return Ok(()); // Deleted meanwhile: the watch will say so.
    };
    let ancestors = (current.status.as_ref())
        .map(|s| &s.ancestors[..])
        .unwrap_or(&[]);
    let desired = merge_ancestors(ancestors, computed, &wall_now());
    if desired == ancestors {
        return Ok(());
    }
    let body = serde_json::json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": {"ancestors": desired},
    });
    let params = PatchParams::default();
    match (api.patch_status(&key.name, &params, &Patch::Merge(&body))).await {
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
    use crate::index::{AncestorStatus, ConditionStatus, Reason};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("valid second"))
    }

    fn computed(accepted: ConditionStatus, reason: Reason) -> PolicyComputed {
        let state = |status, reason: Reason| ConditionState {
            status,
            reason,
            message: reason.as_str().to_owned(),
        };
        PolicyComputed {
            observed_generation: Some(2),
            ancestors: vec![AncestorStatus {
                ancestor_ref: ParentReference {
                    group: Some(String::new()),
                    kind: Some("Service".to_owned()),
                    namespace: Some("shop".to_owned()),
                    name: "orders".to_owned(),
                    ..ParentReference::default()
                },
                accepted: state(accepted, reason),
                resolved_refs: state(ConditionStatus::True, Reason::ResolvedRefs),
            }],
        }
    }

    #[test]
    fn other_controllers_ancestors_are_kept_and_ours_replaced() {
        let gateway = PolicyAncestorStatus {
            ancestor_ref: ParentReference {
                name: "public".to_owned(),
                ..ParentReference::default()
            },
            controller_name: "example.com/gateway".to_owned(),
            conditions: Vec::new(),
        };
        let accepted = computed(ConditionStatus::True, Reason::Accepted);
        let first = merge_ancestors(std::slice::from_ref(&gateway), &accepted, &at(100));
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], gateway, "another controller's entry is kept");
        let ours = &first[1];
        assert_eq!(ours.controller_name, "fairway.dev/controller");
        let types: Vec<&str> = ours.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "ResolvedRefs"]);
        assert!(
            ours.conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );

        assert_eq!(
            merge_ancestors(&first, &accepted, &at(500)),
            first,
            "nothing moved: the same list, times kept"
        );
        let conflicted = computed(ConditionStatus::False, Reason::Conflicted);
        let moved = merge_ancestors(&first, &conflicted, &at(500));
        assert_eq!(moved.len(), 2, "our entry replaced, not added");
        let accepted = &moved[1].conditions[0];
        assert_eq!(
            (accepted.reason.as_str(), &accepted.last_transition_time),
            ("Conflicted", &at(500))
        );
        assert_eq!(moved[1].conditions[1].last_transition_time, at(100));
    }
}
