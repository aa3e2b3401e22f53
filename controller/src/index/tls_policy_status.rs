//! What a BackendTLSPolicy's status says, as plain data: one ancestor per `targetRefs`
//! entry (the target Service, with its `sectionName`: a mesh has no Gateway between the
//! client and the Service), each with `Accepted` and `ResolvedRefs` and the spec's
//! reasons. The status writer (`status::policy`) puts it into `status.ancestors`.

use crate::httproute::ParentReference;

use super::ca::{self, CaStore};
use super::endpoints::{EndpointStore, ServiceRef};
use super::status::{ConditionState, ConditionStatus, Reason};
use super::tls_policies::{CaRef, Policies, PolicyEntry, Target};

/// One policy's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyComputed {
    pub observed_generation: Option<i64>,
    pub ancestors: Vec<AncestorStatus>,
}

/// What the policy's status says about one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorStatus {
    pub ancestor_ref: ParentReference,
    pub accepted: ConditionState,
    pub resolved_refs: ConditionState,
}

fn state(status: ConditionStatus, reason: Reason, message: String) -> ConditionState {
    ConditionState {
        status,
        reason,
        message,
    }
}

/// The status of `policy` among `policies`, against the current Services and CAs.
pub(super) fn compute(
    policy: &PolicyEntry,
    policies: &Policies,
    endpoints: &EndpointStore,
    cas: &CaStore,
) -> PolicyComputed {
    let (resolved_refs, usable) = refs(policy, cas);
    let ancestors = (policy.targets.iter())
        .map(|target| AncestorStatus {
            ancestor_ref: ParentReference {
                group: Some(target.group.clone()),
                kind: Some(target.kind.clone()),
                namespace: Some(policy.key.namespace.clone()),
                name: target.name.clone(),
                section_name: target.section.clone(),
                port: None,
            },
            accepted: accepted(policy, target, policies, endpoints, usable),
            resolved_refs: resolved_refs.clone(),
        })
        .collect();
    PolicyComputed {
        observed_generation: policy.generation,
        ancestors,
    }
}

/// `Accepted` on one target: the first fault that keeps the policy from applying there.
fn accepted(
    policy: &PolicyEntry,
    target: &Target,
    policies: &Policies,
    endpoints: &EndpointStore,
    usable_cas: usize,
) -> ConditionState {
    let not = ConditionStatus::False;
    if !target.is_service() {
        let message = format!(
            "targetRefs: {}/{} {} is not a Service (group \"\", kind Service), the only \
             target Fairway serves",
            target.group, target.kind, target.name
        );
        return state(not, Reason::Invalid, message);
    }
    if let Err(why) = &policy.tls {
        return state(not, Reason::Invalid, why.clone());
    }
    let service = ServiceRef::new(&policy.key.namespace, &target.name);
    let Some(ports) = endpoints.service(&service) else {
        let message = format!("service {service} not found");
        return state(not, Reason::TargetNotFound, message);
    };
    if let Some(section) = &target.section
        && ports.by_name(section).is_none()
    {
        let message = format!("service {service} has no TCP port named {section}");
        return state(not, Reason::TargetNotFound, message);
    }
    if let Some(winner) = policies.winner_over(policy, target) {
        let message = format!(
            "BackendTLSPolicy {} targets the same Service port and takes precedence (older, \
             or first by namespace/name)",
            winner.key
        );
        return state(not, Reason::Conflicted, message);
    }
    if usable_cas == 0 {
        let message = "not one caCertificateRef resolves to a usable CA".to_owned();
        return state(not, Reason::NoValidCACertificate, message);
    }
    let message = format!("TLS to the pods of service {service} is verified by this policy");
    state(ConditionStatus::True, Reason::Accepted, message)
}

/// `ResolvedRefs`, and how many CA references resolve.
fn refs(policy: &PolicyEntry, cas: &CaStore) -> (ConditionState, usize) {
    let namespace = &policy.key.namespace;
    let (mut bad_kind, mut bad_ref, mut usable) = (Vec::new(), Vec::new(), 0);
    for (i, reference) in policy.ca_refs.iter().enumerate() {
        match reference {
            CaRef::OtherKind { group, kind, name } => bad_kind.push(format!(
                "caCertificateRefs[{i}]: {group}/{kind} {name}: only ConfigMaps (group \"\") \
                 are read"
            )),
            CaRef::ConfigMap(name) => match ca::bundle(cas, namespace, &[name]) {
                Ok(_) => usable += 1,
                Err(why) => bad_ref.extend(why),
            },
        }
    }
    let reason = match (bad_ref.is_empty(), bad_kind.is_empty()) {
        (true, true) => {
            let message = "every CA certificate reference resolves".to_owned();
            return (
                state(ConditionStatus::True, Reason::ResolvedRefs, message),
                usable,
            );
        }
        (false, _) => Reason::InvalidCACertificateRef,
        (true, false) => Reason::InvalidKind,
    };
    bad_ref.extend(bad_kind);
    let message = format!(
        "{}; connections to the targets are refused until every reference resolves",
        bad_ref.join("; ")
    );
    (state(ConditionStatus::False, reason, message), usable)
}
