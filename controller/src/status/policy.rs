//! BackendTLSPolicy status: one `status.ancestors[]` entry per target Service with our
//! `controllerName`, written as every shared Gateway API status list is (`shared`).

use std::collections::BTreeMap;

use fairway_proto::model::RouteKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::shared::{SharedStatus, condition};
use crate::backendtlspolicy::{BackendTLSPolicy, PolicyAncestorStatus};
use crate::httproute::CONTROLLER_NAME;
use crate::index::{ACCEPTED, Index, PolicyComputed, RESOLVED_REFS};

impl SharedStatus for BackendTLSPolicy {
    type Entry = PolicyAncestorStatus;
    type Computed = PolicyComputed;
    const KIND: &'static str = "backendtlspolicy";
    const FIELD: &'static str = "ancestors";

    fn computed(index: &Index) -> BTreeMap<RouteKey, PolicyComputed> {
        index.backend_tls_policy_statuses()
    }

    fn entries(&self) -> &[PolicyAncestorStatus] {
        self.status
            .as_ref()
            .map(|s| &s.ancestors[..])
            .unwrap_or(&[])
    }

    fn merge(
        current: &[PolicyAncestorStatus],
        computed: &PolicyComputed,
        now: &Time,
    ) -> Vec<PolicyAncestorStatus> {
        merge_ancestors(current, computed, now)
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
        let previous = (current.iter().filter(ours))
            .find(|a| a.ancestor_ref == ancestor.ancestor_ref)
            .map_or(&[][..], |a| &a.conditions);
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

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::httproute::ParentReference;
    use crate::index::{AncestorStatus, ConditionState, ConditionStatus, Reason};

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
