//! Gateway API `BackendTLSPolicy`: which policy gives TLS to which Service port, and
//! what each policy's status says. Pure: the index calls [`parse`] per object and
//! [`Policies::for_set`] when a route resolves.
//!
//! A policy's `targetRefs` name Services of its namespace, each optionally one port by
//! name (`sectionName`). For one endpoint set (a Service port) a policy naming that port
//! wins over one naming the whole Service; among policies naming the same target and
//! section, the oldest by `creationTimestamp`, then by `namespace/name`, applies and the
//! others report `Accepted=False`, `Conflicted` (the spec's rule). A policy that applies
//! but cannot be honoured (a field Fairway does not serve, a CA that does not resolve)
//! still makes the set TLS, with nothing trusted: every connection is refused with a
//! `502`, never sent in plaintext, and the policy's status says why.

use std::collections::BTreeMap;

use fairway_proto::model::{EndpointSetKey, RouteKey};

use super::base::DEFAULT_NAMESPACE;
use super::endpoints::{EndpointStore, ServiceRef};
use super::hosts::Age;
use super::names::is_dns_subdomain;
use crate::backendtlspolicy::{BackendTLSPolicy, WELL_KNOWN_SYSTEM};

/// One `targetRefs` entry as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub section: Option<String>,
}

impl Target {
    /// Only a core Service is a target Fairway serves.
    pub fn is_service(&self) -> bool {
        self.group.is_empty() && self.kind == "Service"
    }
}

/// A `caCertificateRefs` entry: a ConfigMap by name, or something Fairway cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CaRef {
    ConfigMap(String),
    /// Another group or kind (a Secret, say), named in the status as `InvalidKind`.
    OtherKind {
        group: String,
        kind: String,
        name: String,
    },
}

/// What a valid policy asks of the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PolicyTls {
    /// Lowercase: the SNI, and the name verified unless `subject_alt_names`.
    pub hostname: String,
    /// Lowercase DNS names (`subjectAltNames` of type `Hostname`).
    pub subject_alt_names: Vec<String>,
}

/// A BackendTLSPolicy as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PolicyEntry {
    pub key: RouteKey,
    pub created: Age,
    pub generation: Option<i64>,
    pub targets: Vec<Target>,
    pub ca_refs: Vec<CaRef>,
    /// `Err`: why the policy cannot be served (`Accepted=False`, `Invalid`).
    pub tls: Result<PolicyTls, String>,
}

impl PolicyEntry {
    /// The Services this policy targets, in its namespace.
    pub fn services(&self) -> impl Iterator<Item = ServiceRef> + '_ {
        (self.targets.iter())
            .filter(|t| t.is_service())
            .map(|t| ServiceRef::new(&self.key.namespace, &t.name))
    }

    /// The ConfigMaps of its CA, by name.
    pub fn config_maps(&self) -> impl Iterator<Item = &str> {
        self.ca_refs.iter().filter_map(|r| match r {
            CaRef::ConfigMap(name) => Some(name.as_str()),
            CaRef::OtherKind { .. } => None,
        })
    }

    /// Precedence between policies on one target: older first, then by name.
    fn rank(&self) -> (&Age, &RouteKey) {
        (&self.created, &self.key)
    }
}

/// The identity of a policy object.
pub(super) fn policy_key(policy: &BackendTLSPolicy) -> RouteKey {
    let meta = &policy.metadata;
    RouteKey {
        namespace: (meta.namespace.as_deref())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Reads a policy: its targets, CA references and what it asks, or why it cannot be
/// served (each unsupported field by name, never silently ignored).
pub(super) fn parse(policy: &BackendTLSPolicy) -> PolicyEntry {
    let spec = &policy.spec;
    let targets = (spec.target_refs.iter())
        .map(|t| Target {
            group: t.group.clone(),
            kind: t.kind.clone(),
            name: t.name.clone(),
            section: t.section_name.clone().filter(|s| !s.is_empty()),
        })
        .collect();
    let validation = &spec.validation;
    let ca_refs = (validation.ca_certificate_refs.iter())
        .map(|r| match (r.group.as_str(), r.kind.as_str()) {
            ("", "ConfigMap") => CaRef::ConfigMap(r.name.clone()),
            (group, kind) => CaRef::OtherKind {
                group: group.to_owned(),
                kind: kind.to_owned(),
                name: r.name.clone(),
            },
        })
        .collect();
    PolicyEntry {
        key: policy_key(policy),
        created: Age::of(policy.metadata.creation_timestamp.as_ref()),
        generation: policy.metadata.generation,
        targets,
        ca_refs,
        tls: validate(policy),
    }
}

fn validate(policy: &BackendTLSPolicy) -> Result<PolicyTls, String> {
    let spec = &policy.spec;
    let validation = &spec.validation;
    let set = |v: &serde_json::Value| !v.is_null();
    if let Some((name, _)) = spec.other.iter().find(|(_, v)| set(v)) {
        return Err(format!("spec.{name} is not supported by Fairway"));
    }
    if let Some((name, _)) = validation.other.iter().find(|(_, v)| set(v)) {
        return Err(format!(
            "spec.validation.{name} is not supported by Fairway"
        ));
    }
    if let Some(option) = spec.options.keys().next() {
        return Err(format!(
            "spec.options: Fairway defines no options ({option:?} given)"
        ));
    }
    match validation.well_known_ca_certificates.as_deref() {
        Some("") | None => {}
        Some(WELL_KNOWN_SYSTEM) => {
            return Err(format!(
                "spec.validation.wellKnownCACertificates {WELL_KNOWN_SYSTEM:?} is not \
                 supported: name a CA ConfigMap in caCertificateRefs"
            ));
        }
        Some(other) => {
            return Err(format!(
                "spec.validation.wellKnownCACertificates {other:?} is not a set Fairway knows"
            ));
        }
    }
    if validation.ca_certificate_refs.is_empty() {
        return Err("spec.validation.caCertificateRefs is empty".to_owned());
    }
    let hostname = validation.hostname.to_ascii_lowercase();
    if !is_dns_subdomain(&hostname) {
        return Err(format!(
            "spec.validation.hostname {:?} is not a DNS name",
            validation.hostname
        ));
    }
    let mut subject_alt_names = Vec::new();
    for (i, san) in validation.subject_alt_names.iter().enumerate() {
        let field = format!("spec.validation.subjectAltNames[{i}]");
        match (san.type_.as_str(), &san.hostname) {
            ("Hostname", Some(name)) if is_dns_subdomain(&name.to_ascii_lowercase()) => {
                subject_alt_names.push(name.to_ascii_lowercase());
            }
            ("Hostname", _) => return Err(format!("{field}.hostname is not a DNS name")),
            ("URI", _) => {
                return Err(format!(
                    "{field}: URI subject alt names are not supported (the proxy verifies \
                     DNS names only)"
                ));
            }
            (other, _) => return Err(format!("{field}.type {other:?} is unknown")),
        }
    }
    Ok(PolicyTls {
        hostname,
        subject_alt_names,
    })
}

/// Every BackendTLSPolicy, by `namespace/name`.
#[derive(Clone, Debug, Default)]
pub(super) struct Policies {
    pub entries: BTreeMap<RouteKey, PolicyEntry>,
}

impl Policies {
    /// The policies naming `service` as a target with `section` (`None`: the whole
    /// Service), best first.
    fn on(&self, service: &ServiceRef, section: Option<&str>) -> Vec<&PolicyEntry> {
        // Keys sort by namespace first: only the Service's namespace is scanned, since
        // a policy targets only its own.
        let first = RouteKey {
            namespace: service.namespace.clone(),
            name: String::new(),
        };
        let mut found: Vec<&PolicyEntry> = (self.entries.range(first..))
            .take_while(|(key, _)| key.namespace == service.namespace)
            .map(|(_, p)| p)
            .filter(|p| {
                (p.targets.iter()).any(|t| {
                    t.is_service() && t.name == service.name && t.section.as_deref() == section
                })
            })
            .collect();
        found.sort_by(|a, b| a.rank().cmp(&b.rank()));
        found
    }

    /// The policy that applies to the pods of `set`: the best naming its port, else the
    /// best naming its whole Service. `None`: plaintext.
    pub fn for_set(&self, set: &EndpointSetKey, endpoints: &EndpointStore) -> Option<&PolicyEntry> {
        let service = ServiceRef::new(&set.namespace, &set.service);
        let port = (endpoints.service(&service))
            .and_then(|ports| ports.by_number(set.port))
            .map(|p| p.name.as_str())
            .filter(|name| !name.is_empty());
        let by_port = port.and_then(|name| self.on(&service, Some(name)).first().copied());
        by_port.or_else(|| self.on(&service, None).first().copied())
    }

    /// The policy that takes precedence on `policy`'s target `target`, when it is
    /// another one (then `policy` is `Conflicted` there).
    pub fn winner_over(&self, policy: &PolicyEntry, target: &Target) -> Option<&PolicyEntry> {
        let service = ServiceRef::new(&policy.key.namespace, &target.name);
        let best = self
            .on(&service, target.section.as_deref())
            .first()
            .copied();
        best.filter(|best| best.key != policy.key)
    }

    /// The policies whose CA names a ConfigMap among `keys` (namespace, name).
    pub fn naming_config_maps<'a>(
        &'a self,
        keys: &'a std::collections::BTreeSet<(String, String)>,
    ) -> impl Iterator<Item = &'a PolicyEntry> + 'a {
        (self.entries.values()).filter(move |p| {
            (p.config_maps()).any(|name| keys.contains(&(p.key.namespace.clone(), name.to_owned())))
        })
    }
}
