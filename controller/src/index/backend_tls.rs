//! TLS to pods per endpoint set: a Route's own `upstream.tls` checked into the model
//! (`validate`, before its CA is known), then, when a route resolves, the TLS each of
//! its sets gets (`attach`): the Route's own `upstream.tls` for every set it sends to,
//! else the BackendTLSPolicy on the set's Service port (`tls_policies`), else none.
//!
//! The Route's own block wins over a policy: it is inline, more specific (one route,
//! not every route to the Service), and written by someone who may already name the
//! Service; either way the set is TLS, so neither choice can downgrade to plaintext.
//! HTTPRoutes carry no TLS of their own, so for them a policy always applies.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use fairway_proto::model::{self, EndpointSetKey, RouteKey};

use super::base::SpecError;
use super::ca::{self, CaStore};
use super::endpoints::{EndpointStore, ServiceRef};
use super::resolve::Resolution;
use super::routes::RouteEntry;
use super::status::{ConditionState, ConditionStatus, Reason};
use super::tls_policies::{self, CaRef, Policies, PolicyEntry};
use super::tls_policy_status::{self, PolicyComputed};
use super::{Changes, Index};
use crate::backendtlspolicy::BackendTLSPolicy;

/// The model's `upstream.tls` without its CA, and the ConfigMaps that hold the CA.
pub(super) fn validate(
    spec: Option<&crate::crd::UpstreamTlsSpec>,
    health_checked: bool,
) -> Result<(Option<model::UpstreamTls>, Vec<String>), SpecError> {
    let Some(spec) = spec else {
        return Ok((None, Vec::new()));
    };
    if health_checked {
        return Err(SpecError::HealthCheckOverTls);
    }
    let tls = model::UpstreamTls {
        ca_pem: String::new(),
        hostname: spec.hostname.clone(),
        cluster_domain: String::new(),
        subject_alt_names: Vec::new(),
    };
    let refs = spec.ca_certificate_refs.iter();
    Ok((Some(tls), refs.map(|r| r.name.clone()).collect()))
}

/// What `attach` reads besides the route itself.
pub(super) struct TlsSources<'a> {
    pub cas: &'a CaStore,
    pub policies: &'a Policies,
    pub endpoints: &'a EndpointStore,
    pub cluster_domain: &'a str,
}

impl TlsSources<'_> {
    /// The TLS a BackendTLSPolicy gives `set`, if one applies.
    pub fn policy_tls(&self, set: &EndpointSetKey) -> Option<model::UpstreamTls> {
        let policy = self.policies.for_set(set, self.endpoints)?;
        Some(self.tls_of_policy(policy))
    }

    /// A policy that cannot be honoured still makes its sets TLS, with no CA: refused.
    fn tls_of_policy(&self, policy: &PolicyEntry) -> model::UpstreamTls {
        let refused = model::UpstreamTls {
            ca_pem: String::new(),
            hostname: None,
            cluster_domain: self.cluster_domain.to_owned(),
            subject_alt_names: Vec::new(),
        };
        let Ok(tls) = &policy.tls else {
            return refused;
        };
        let other_kind = (policy.ca_refs.iter()).any(|r| matches!(r, CaRef::OtherKind { .. }));
        let names: Vec<&str> = policy.config_maps().collect();
        let ca_pem = match other_kind {
            true => String::new(),
            false => ca::bundle(self.cas, &policy.key.namespace, &names).unwrap_or_default(),
        };
        model::UpstreamTls {
            ca_pem,
            hostname: Some(tls.hostname.clone()),
            subject_alt_names: tls.subject_alt_names.clone(),
            ..refused
        }
    }
}

/// Completes `resolution` of `entry`: each set its table entry sends to gets its TLS.
/// A missing or unusable CA of the Route's own `upstream.tls` is `ResolvedRefs=False`,
/// `InvalidCACertificateRef`, on the Route; a policy's faults are the policy's status.
pub(super) fn attach(
    mut resolution: Resolution,
    entry: &RouteEntry,
    sources: &TlsSources<'_>,
) -> Resolution {
    let Ok(config) = &entry.config else {
        return resolution;
    };
    let Some(route) = resolution.route.as_mut() else {
        return resolution;
    };
    let namespace = &entry.claim.key.namespace;
    let mut failures = Vec::new();
    let own = config.tls.as_ref().map(|tls| {
        let names: Vec<&str> = config.ca_refs.iter().map(String::as_str).collect();
        let ca_pem = match ca::bundle(sources.cas, namespace, &names) {
            Ok(pem) => pem,
            Err(why) => {
                failures = why;
                String::new()
            }
        };
        model::UpstreamTls {
            ca_pem,
            cluster_domain: sources.cluster_domain.to_owned(),
            ..tls.clone()
        }
    });
    let tls: BTreeMap<EndpointSetKey, model::UpstreamTls> = (resolution.sets.iter())
        .filter_map(|set| {
            let tls = match &own {
                Some(own) => Some(own.clone()),
                None => sources.policy_tls(set),
            };
            tls.map(|tls| (set.clone(), tls))
        })
        .collect();
    // Health probes speak plaintext h2c: a Route's own TLS refuses them at validation;
    // TLS from a policy turns them off, and the Route's status says so.
    if !tls.is_empty() && route.health_check.take().is_some() {
        let refs = &mut resolution.resolved_refs;
        refs.message.push_str(
            "; spec.healthCheck is off: a BackendTLSPolicy makes a backend TLS, and health \
             checks do not speak TLS yet",
        );
    }
    route.upstream.tls = tls;
    if !failures.is_empty() {
        let refs = &mut resolution.resolved_refs;
        let mut message = failures.join("; ");
        if refs.status == ConditionStatus::False {
            message = format!("{}; {message}", refs.message);
        }
        *refs = ConditionState {
            status: ConditionStatus::False,
            reason: Reason::InvalidCACertificateRef,
            message,
        };
    }
    resolution
}

impl Index {
    pub(super) fn tls_sources(&self) -> TlsSources<'_> {
        TlsSources {
            cas: &self.cas,
            policies: &self.tls_policies,
            endpoints: &self.endpoints,
            cluster_domain: &self.cluster_domain,
        }
    }

    /// Adds or updates a BackendTLSPolicy: re-resolves the routes to the Services it
    /// targeted or targets now.
    pub fn apply_backend_tls_policy(&mut self, policy: &BackendTLSPolicy) -> Changes {
        let entry = tls_policies::parse(policy);
        let key = entry.key.clone();
        let old = self.tls_policies.entries.insert(key, entry.clone());
        let services = old.iter().chain([&entry]).flat_map(|p| p.services());
        let services: BTreeSet<ServiceRef> = services.collect();
        let mut changes = Changes::default();
        self.tls_targets_changed(&services, &mut changes);
        changes
    }

    pub fn delete_backend_tls_policy(&mut self, policy: &BackendTLSPolicy) -> Changes {
        let key = tls_policies::policy_key(policy);
        let mut changes = Changes::default();
        if let Some(old) = self.tls_policies.entries.remove(&key) {
            let services: BTreeSet<ServiceRef> = old.services().collect();
            self.tls_targets_changed(&services, &mut changes);
        }
        changes
    }

    /// Replaces every BackendTLSPolicy at once (a relist).
    pub fn replace_backend_tls_policies<I>(&mut self, policies: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<BackendTLSPolicy>,
    {
        let new: BTreeMap<RouteKey, PolicyEntry> = (policies.into_iter())
            .map(|p| tls_policies::parse(p.borrow()))
            .map(|e| (e.key.clone(), e))
            .collect();
        let old = std::mem::replace(&mut self.tls_policies.entries, new);
        let services: BTreeSet<ServiceRef> = (old.values())
            .chain(self.tls_policies.entries.values())
            .flat_map(|p| p.services())
            .collect();
        let mut changes = Changes::default();
        self.tls_targets_changed(&services, &mut changes);
        changes
    }

    /// Re-resolves every route to `services` (Routes, HTTPRoute groups, implicit ones).
    pub(super) fn tls_targets_changed(
        &mut self,
        services: &BTreeSet<ServiceRef>,
        changes: &mut Changes,
    ) {
        let affected: BTreeSet<RouteKey> = (services.iter())
            .filter_map(|s| self.routes_by_service.get(s))
            .flatten()
            .cloned()
            .collect();
        self.resolve(affected, changes);
        for service in services {
            self.refresh_implicit(service, changes);
        }
    }

    /// The status of every BackendTLSPolicy, by `namespace/name`.
    pub fn backend_tls_policy_statuses(&self) -> BTreeMap<RouteKey, PolicyComputed> {
        (self.tls_policies.entries.iter())
            .map(|(key, policy)| {
                let status = tls_policy_status::compute(
                    policy,
                    &self.tls_policies,
                    &self.endpoints,
                    &self.cas,
                );
                (key.clone(), status)
            })
            .collect()
    }
}
