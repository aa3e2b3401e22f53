//! HTTPRoute status: one `status.parents[]` entry per Service parent with our
//! `controllerName`, written as every shared Gateway API status list is (`shared`).

use std::collections::BTreeMap;

use fairway_proto::model::RouteKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::shared::{SharedStatus, condition};
use crate::httproute::{CONTROLLER_NAME, HTTPRoute, RouteParentStatus};
use crate::index::{ACCEPTED, HttpRouteComputed, Index, RESOLVED_REFS};

impl SharedStatus for HTTPRoute {
    type Entry = RouteParentStatus;
    type Computed = HttpRouteComputed;
    const KIND: &'static str = "httproute";
    const FIELD: &'static str = "parents";

    fn computed(index: &Index) -> BTreeMap<RouteKey, HttpRouteComputed> {
        index.http_route_statuses()
    }

    fn entries(&self) -> &[RouteParentStatus] {
        self.status.as_ref().map(|s| &s.parents[..]).unwrap_or(&[])
    }

    fn merge(
        current: &[RouteParentStatus],
        computed: &HttpRouteComputed,
        now: &Time,
    ) -> Vec<RouteParentStatus> {
        merge_parents(current, computed, now)
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
    let generation = computed.observed_generation;
    for parent in &computed.parents {
        let previous = (current.iter().filter(ours))
            .find(|p| p.parent_ref == parent.parent_ref)
            .map_or(&[][..], |p| &p.conditions);
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

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::httproute::ParentReference;
    use crate::index::{ConditionState, ConditionStatus, ParentStatus, Reason};

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
