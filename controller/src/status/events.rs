//! Kubernetes Events for Route state changes a user must see: a condition turning
//! False (ServiceNotFound, PortNotFound, HostConflict, HostNotPermitted, InvalidSpec) and
//! turning back to True. Only transitions: a steady state records nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};

use crate::crd::RouteStatus;
use crate::index::{ACCEPTED, ComputedStatus, ConditionState, ConditionStatus, RESOLVED_REFS};

/// One condition's state as far as Events care: status and reason, as the API spells
/// them (so a status read back from the cluster compares with a computed one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub status: String,
    pub reason: String,
}

/// Both conditions of one Route as last reported (`None`: never seen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenConditions {
    pub accepted: Option<Seen>,
    pub resolved_refs: Option<Seen>,
}

impl SeenConditions {
    /// What a status in the cluster says (the previous writer reported these).
    pub fn of_status(status: &RouteStatus) -> Self {
        let find = |type_: &str| {
            (status.conditions.iter().find(|c| c.type_ == type_)).map(|c| Seen {
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
        };
        SeenConditions {
            accepted: find(ACCEPTED),
            resolved_refs: find(RESOLVED_REFS),
        }
    }

    pub fn of_computed(computed: &ComputedStatus) -> Self {
        SeenConditions {
            accepted: Some(seen(&computed.accepted)),
            resolved_refs: Some(seen(&computed.resolved_refs)),
        }
    }
}

fn seen(state: &ConditionState) -> Seen {
    Seen {
        status: state.status.as_str().to_owned(),
        reason: state.reason.as_str().to_owned(),
    }
}

/// An Event to record, before it meets a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEvent {
    pub warning: bool,
    /// The condition's reason, CamelCase.
    pub reason: String,
    /// The condition's message: names the Service, host or field.
    pub note: String,
    /// Which condition moved: `Accept` or `ResolveRefs`.
    pub action: &'static str,
}

impl RouteEvent {
    pub fn to_event(&self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.clone(),
            note: Some(self.note.clone()),
            action: self.action.to_owned(),
            secondary: None,
        }
    }
}

/// The Events for going from `previous` to `computed`: a False condition whose reason is
/// new is a Warning; a condition back to True after being reported otherwise is Normal.
/// A Route first seen healthy records nothing; `Unknown` (refs of an invalid spec, which
/// `Accepted` already reports) records nothing.
pub fn transitions(previous: &SeenConditions, computed: &ComputedStatus) -> Vec<RouteEvent> {
    let pairs = [
        ("Accept", previous.accepted.as_ref(), &computed.accepted),
        (
            "ResolveRefs",
            previous.resolved_refs.as_ref(),
            &computed.resolved_refs,
        ),
    ];
    let mut events = Vec::new();
    for (action, before, now) in pairs {
        let after = seen(now);
        if before == Some(&after) {
            continue;
        }
        let event = |warning| RouteEvent {
            warning,
            reason: after.reason.clone(),
            note: now.message.clone(),
            action,
        };
        match now.status {
            ConditionStatus::False => events.push(event(true)),
            ConditionStatus::True if before.is_some_and(|b| b.status != after.status) => {
                events.push(event(false));
            }
            ConditionStatus::True | ConditionStatus::Unknown => {}
        }
    }
    events
}

/// The reference an Event about this Route carries (`kubectl describe` finds Events by
/// the uid).
pub fn reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("fairway.dev/v1alpha1".to_owned()),
        kind: Some("Route".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EndpointCounts;
    use crate::index::Reason;

    fn state(status: ConditionStatus, reason: Reason, message: &str) -> ConditionState {
        ConditionState {
            status,
            reason,
            message: message.to_owned(),
        }
    }

    fn ok(reason: Reason) -> ConditionState {
        state(ConditionStatus::True, reason, "fine")
    }

    fn computed(accepted: ConditionState, resolved_refs: ConditionState) -> ComputedStatus {
        ComputedStatus {
            observed_generation: Some(1),
            accepted,
            resolved_refs,
            endpoints: EndpointCounts::default(),
        }
    }

    fn missing() -> ConditionState {
        let message = "service shop/orders not found";
        state(ConditionStatus::False, Reason::ServiceNotFound, message)
    }

    #[test]
    fn a_new_route_with_a_missing_service_warns_once() {
        let now = computed(ok(Reason::Accepted), missing());
        let events = transitions(&SeenConditions::default(), &now);
        let expected = RouteEvent {
            warning: true,
            reason: "ServiceNotFound".to_owned(),
            note: "service shop/orders not found".to_owned(),
            action: "ResolveRefs",
        };
        assert_eq!(events, vec![expected], "one Warning naming the Service");
        let again = transitions(&SeenConditions::of_computed(&now), &now);
        assert_eq!(again, vec![], "a steady state records nothing");
    }

    #[test]
    fn a_new_healthy_route_records_nothing() {
        let now = computed(ok(Reason::Accepted), ok(Reason::ResolvedRefs));
        assert_eq!(transitions(&SeenConditions::default(), &now), vec![]);
    }

    #[test]
    fn resolving_again_is_a_normal_event() {
        let before = computed(ok(Reason::Accepted), missing());
        let now = computed(ok(Reason::Accepted), ok(Reason::ResolvedRefs));
        let events = transitions(&SeenConditions::of_computed(&before), &now);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(!events[0].warning, "back to resolved is Normal: {events:?}");
        assert_eq!(events[0].reason, "ResolvedRefs");
    }

    #[test]
    fn a_changed_failure_reason_warns_again() {
        let before = computed(ok(Reason::Accepted), missing());
        let port = state(ConditionStatus::False, Reason::PortNotFound, "no port 80");
        let now = computed(ok(Reason::Accepted), port);
        let events = transitions(&SeenConditions::of_computed(&before), &now);
        assert_eq!(
            events.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
            ["PortNotFound"]
        );
    }

    #[test]
    fn an_invalid_spec_warns_on_accepted_only() {
        let invalid = state(
            ConditionStatus::False,
            Reason::InvalidSpec,
            "spec.rules[0]: bad",
        );
        let unknown = state(
            ConditionStatus::Unknown,
            Reason::InvalidSpec,
            "not resolved",
        );
        let now = computed(invalid, unknown);
        let events = transitions(&SeenConditions::default(), &now);
        assert_eq!(
            events
                .iter()
                .map(|e| (e.action, e.reason.as_str()))
                .collect::<Vec<_>>(),
            [("Accept", "InvalidSpec")]
        );
    }

    #[test]
    fn the_cluster_status_seeds_what_was_reported() {
        let before = computed(ok(Reason::Accepted), missing());
        let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        );
        let status = before.to_route_status(None, &time);
        let seen = SeenConditions::of_status(&status);
        assert_eq!(seen, SeenConditions::of_computed(&before));
        assert_eq!(
            transitions(&seen, &before),
            vec![],
            "a new leader does not repeat Events"
        );
    }
}
