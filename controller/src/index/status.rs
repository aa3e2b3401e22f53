//! What the index says about each Route, as plain data: two conditions (`Accepted`,
//! `ResolvedRefs`) and endpoint counts. [`ComputedStatus::to_route_status`] turns it into
//! the `status` the status writer patches, keeping transition times that did not move.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::base::{RefFailure, SpecError};
use super::hosts::HostDenied;
use crate::crd::{EndpointCounts, RouteStatus};

/// The condition type saying whether the Route's spec is served.
pub const ACCEPTED: &str = "Accepted";
/// The condition type saying whether every backend's Service port was found.
pub const RESOLVED_REFS: &str = "ResolvedRefs";

/// A condition's status, as in metav1.Condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Why a condition has its status. CamelCase as Kubernetes wants, and usable as a metric
/// label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `Accepted=True`: the Route serves all its hosts.
    Accepted,
    /// `Accepted=False`: the spec is invalid (the Route is out of the table); also
    /// `ResolvedRefs=Unknown` for such a Route.
    InvalidSpec,
    /// `Accepted=False`: an earlier Route serves some of this Route's hosts.
    HostConflict,
    /// `Accepted=False`: some of this Route's hosts are a Service name of another
    /// namespace (design.md section 9).
    HostNotPermitted,
    /// `ResolvedRefs=True`: every backend's Service port exists.
    ResolvedRefs,
    /// `ResolvedRefs=False`: a backend's Service does not exist.
    ServiceNotFound,
    /// `ResolvedRefs=False`: a backend's Service has no such TCP port.
    PortNotFound,
    /// Gateway API, `Accepted=False`: a field or value Fairway does not serve (named in
    /// the message).
    UnsupportedValue,
    /// Gateway API, `Accepted=False`: the parent Service does not exist.
    NoMatchingParent,
    /// Gateway API, `Accepted=Unknown`: not decided yet.
    Pending,
    /// Gateway API, `ResolvedRefs=False`: a backend's Service or port does not exist.
    BackendNotFound,
    /// Gateway API, `ResolvedRefs=False`: a backendRef to another namespace (Fairway
    /// reads no ReferenceGrants).
    RefNotPermitted,
    /// Gateway API, `ResolvedRefs=False`: a backendRef to something other than a Service.
    InvalidKind,
    /// `ResolvedRefs=False`: a CA ConfigMap of `upstream.tls` is missing or holds no
    /// usable certificate (Gateway API's reason for the same fault in BackendTLSPolicy).
    InvalidCACertificateRef,
    /// BackendTLSPolicy, `Accepted=False`: an older policy applies to the same target.
    Conflicted,
    /// BackendTLSPolicy, `Accepted=False`: a field or value Fairway does not serve.
    Invalid,
    /// BackendTLSPolicy, `Accepted=False`: the target Service (or its port) is missing.
    TargetNotFound,
    /// BackendTLSPolicy, `Accepted=False`: not one CA reference resolves.
    NoValidCACertificate,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::HostConflict => "HostConflict",
            Reason::HostNotPermitted => "HostNotPermitted",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::PortNotFound => "PortNotFound",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::Pending => "Pending",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::InvalidKind => "InvalidKind",
            Reason::InvalidCACertificateRef => "InvalidCACertificateRef",
            Reason::Conflicted => "Conflicted",
            Reason::Invalid => "Invalid",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::NoValidCACertificate => "NoValidCACertificate",
        }
    }
}

impl From<&RefFailure> for Reason {
    fn from(failure: &RefFailure) -> Self {
        match failure {
            RefFailure::ServiceNotFound(_) => Reason::ServiceNotFound,
            RefFailure::PortNotFound(_) => Reason::PortNotFound,
        }
    }
}

/// One condition, without the timestamps the status writer adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub status: ConditionStatus,
    pub reason: Reason,
    /// Names the object at fault: a host and the Route holding it, a Service, a field.
    pub message: String,
}

impl ConditionState {
    pub(super) fn invalid_spec(error: &SpecError) -> Self {
        ConditionState {
            status: ConditionStatus::False,
            reason: Reason::InvalidSpec,
            message: error.to_string(),
        }
    }

    pub(super) fn not_resolved_while_invalid() -> Self {
        ConditionState {
            status: ConditionStatus::Unknown,
            reason: Reason::InvalidSpec,
            message: "backends are not resolved while the spec is invalid".to_owned(),
        }
    }

    /// `denied`: each host this Route does not serve, and why, in spec order.
    pub(super) fn accepted(denied: &[HostDenied]) -> Self {
        if denied.is_empty() {
            return ConditionState {
                status: ConditionStatus::True,
                reason: Reason::Accepted,
                message: "all hosts are served".to_owned(),
            };
        }
        // A forbidden name is the bigger news: no edit of the other Route will fix it.
        let forbidden = denied
            .iter()
            .any(|d| matches!(d, HostDenied::NotPermitted { .. }));
        let messages: Vec<String> = denied.iter().map(ToString::to_string).collect();
        ConditionState {
            status: ConditionStatus::False,
            reason: if forbidden {
                Reason::HostNotPermitted
            } else {
                Reason::HostConflict
            },
            message: messages.join("; "),
        }
    }

    /// `failures`: one per unresolved backend, in spec order, without repeats.
    pub(super) fn resolved_refs(failures: &[RefFailure]) -> Self {
        if failures.is_empty() {
            return ConditionState {
                status: ConditionStatus::True,
                reason: Reason::ResolvedRefs,
                message: "all backends resolved".to_owned(),
            };
        }
        // A missing Service is the bigger news; otherwise it is a port.
        let reason = if (failures.iter()).any(|f| matches!(f, RefFailure::ServiceNotFound(_))) {
            Reason::ServiceNotFound
        } else {
            Reason::PortNotFound
        };
        let messages: Vec<&str> = failures.iter().map(RefFailure::message).collect();
        ConditionState {
            status: ConditionStatus::False,
            reason,
            message: messages.join("; "),
        }
    }

    fn to_condition(
        &self,
        type_: &str,
        generation: Option<i64>,
        previous: Option<&RouteStatus>,
        now: &Time,
    ) -> Condition {
        let status = self.status.as_str();
        let conditions = previous.iter().flat_map(|p| &p.conditions);
        let unchanged = conditions
            .filter(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .next();
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: self.reason.as_str().to_owned(),
            message: self.message.clone(),
            observed_generation: generation,
            last_transition_time: unchanged.unwrap_or_else(|| now.clone()),
        }
    }
}

/// A Route's computed status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputedStatus {
    /// The generation of the Route object this was computed from.
    pub observed_generation: Option<i64>,
    pub accepted: ConditionState,
    pub resolved_refs: ConditionState,
    /// Summed over the distinct endpoint sets the Route's table entry uses (weight-0
    /// backends included); zero for a Route out of the table.
    pub endpoints: EndpointCounts,
}

impl ComputedStatus {
    /// The Route's `status`. A condition whose status is what `previous` says keeps its
    /// `lastTransitionTime`; one that moved gets `now`.
    pub fn to_route_status(&self, previous: Option<&RouteStatus>, now: &Time) -> RouteStatus {
        let generation = self.observed_generation;
        RouteStatus {
            observed_generation: generation,
            conditions: vec![
                (self.accepted).to_condition(ACCEPTED, generation, previous, now),
                (self.resolved_refs).to_condition(RESOLVED_REFS, generation, previous, now),
            ],
            endpoints: Some(self.endpoints),
        }
    }
}
