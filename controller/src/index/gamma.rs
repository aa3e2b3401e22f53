//! HTTPRoutes attached to Services (GAMMA) into the same table entries as Routes.
//!
//! Each HTTPRoute is read once into an [`HttpRouteEntry`]: its Service parents, each
//! with a verdict (a producer route in the Service's namespace is served; a consumer
//! route from another namespace, or a parent naming a port or section, is not, see
//! design.md section 9), and its rules, or the first field Fairway does not serve.
//!
//! The producer routes of one Service merge into one synthesized Route, the Service's
//! *group*, keyed `NS/service:NAME` (a name no Kubernetes object can have), serving the
//! Service's DNS names with a Route's default policies. From there the group is a Route
//! like any other: it claims hosts with the age of its oldest member (so a Route and the
//! HTTPRoutes of a name contest by age, section 9) and resolves its backends the same
//! way. Within the group, a path both members match goes to the older member's rule, then
//! by namespace/name, then by rule order: Gateway API's tie-breaking.

use std::collections::BTreeSet;

use fairway_proto::model::{self, RouteKey};

use super::base::{Unsupported, other_fields, unsupported};
use super::endpoints::{EndpointStore, ServiceRef};
use super::filters;
use super::hosts::{Age, Claim};
use super::matching;
use super::policies;
use super::resolve;
use super::routes::{self, BackendConfig, PortRef, RouteConfig, RouteEntry, RuleConfig};
use super::status::{ConditionState, ConditionStatus, Reason};
use crate::httproute::{HTTPRoute, HttpBackendRef, HttpRouteRule, ParentReference};

/// The group's name prefix: `:` is in no Kubernetes object name, so no Route collides.
pub(super) const GROUP_PREFIX: &str = "service:";

/// The key of a Service's group in the table.
pub(super) fn group_key(service: &ServiceRef) -> RouteKey {
    RouteKey {
        namespace: service.namespace.clone(),
        name: format!("{GROUP_PREFIX}{}", service.name),
    }
}

/// Whether `key` is a group (synthesized, no object of ours to write a status to).
pub(super) fn is_group_key(key: &RouteKey) -> bool {
    key.name.starts_with(GROUP_PREFIX)
}

/// One Service parent of an HTTPRoute and whether Fairway serves it.
#[derive(Clone, Debug)]
pub(super) struct Parent {
    pub reference: ParentReference,
    pub service: ServiceRef,
    pub verdict: Result<(), Unsupported>,
}

/// A backendRef: a Service port, or one that can never resolve (its share of the rule
/// is answered `500`, as Gateway API asks of an invalid backendRef).
#[derive(Clone, Debug)]
pub(super) enum Backend {
    Service(BackendConfig),
    Invalid {
        name: String,
        weight: u32,
        reason: Reason,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Rule {
    /// Its matches, in spec order: a path value and how it (and the conditions) match.
    pub matches: Vec<(String, model::Matching)>,
    pub backends: Vec<Backend>,
    /// The rule's own `timeouts` over a Route's defaults; `None`: the defaults.
    pub timeouts: Option<model::Timeouts>,
    /// The rule's own `retry` over a Route's defaults; `None`: the defaults.
    pub retries: Option<model::Retries>,
    /// Its filters.
    pub filters: model::Filters,
}

/// An HTTPRoute as the index keeps it.
#[derive(Clone, Debug)]
pub(super) struct HttpRouteEntry {
    pub key: RouteKey,
    pub created: Age,
    pub generation: Option<i64>,
    /// Only Service parents: the others (Gateways) belong to other controllers.
    pub parents: Vec<Parent>,
    /// The rules, or the first field Fairway does not serve.
    pub rules: Result<Vec<Rule>, Unsupported>,
}

impl HttpRouteEntry {
    /// The Services this route is served for: producer parents of a servable route.
    pub fn served_services(&self) -> BTreeSet<ServiceRef> {
        if self.rules.is_err() {
            return BTreeSet::new();
        }
        let parents = self.parents.iter().filter(|p| p.verdict.is_ok());
        parents.map(|p| p.service.clone()).collect()
    }
}

/// The identity of an HTTPRoute object.
pub(super) fn key_of(route: &HTTPRoute) -> RouteKey {
    let service = ServiceRef::of(&route.metadata);
    RouteKey {
        namespace: service.namespace,
        name: service.name,
    }
}

/// Reads an HTTPRoute, applying the CRD's defaults where a field is absent.
pub(super) fn parse(route: &HTTPRoute) -> HttpRouteEntry {
    let key = key_of(route);
    let parents = (route.spec.parent_refs.iter().enumerate())
        .filter(|(_, p)| p.is_service())
        .map(|(i, reference)| parent(&key, i, reference))
        .collect();
    let mut other = route.spec.other.clone();
    // Whether the route also attaches to default Gateways is their controller's concern.
    other.remove("useDefaultGateways");
    let rules = if let Err(why) = other_fields("spec", &other) {
        Err(why)
    } else if route.spec.hostnames.is_empty() {
        parse_rules(&key.namespace, &route.spec.rules)
    } else {
        Err(unsupported(
            "spec.hostnames".to_owned(),
            "a route attached to a Service serves the Service's DNS names; remove hostnames",
        ))
    };
    HttpRouteEntry {
        key,
        created: Age::of(route.metadata.creation_timestamp.as_ref()),
        generation: route.metadata.generation,
        parents,
        rules,
    }
}

fn parent(key: &RouteKey, i: usize, reference: &ParentReference) -> Parent {
    let namespace = reference.namespace.as_deref().unwrap_or(&key.namespace);
    let field = |name: &str| format!("spec.parentRefs[{i}].{name}");
    let verdict = if namespace != key.namespace {
        Err(unsupported(
            field("namespace"),
            "a consumer route (from another namespace than the Service's) applies only to \
             clients in its own namespace, which a proxy serving every namespace on a node \
             cannot tell; it is not served",
        ))
    } else if reference.port.is_some() {
        Err(unsupported(
            field("port"),
            "the proxy routes by host and ignores the port: attach to the whole Service",
        ))
    } else if reference.section_name.is_some() {
        Err(unsupported(
            field("sectionName"),
            "a Service has no sections",
        ))
    } else {
        Ok(())
    };
    Parent {
        reference: reference.clone(),
        service: ServiceRef::new(namespace, &reference.name),
        verdict,
    }
}

fn parse_rules(namespace: &str, rules: &[HttpRouteRule]) -> Result<Vec<Rule>, Unsupported> {
    // The CRD's default: one rule matching everything, with no backends (so `500`).
    let default = [HttpRouteRule::default()];
    let rules = if rules.is_empty() {
        &default[..]
    } else {
        rules
    };
    let mut parsed = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        other_fields(&field, &rule.other)?;
        let mut matches = Vec::new();
        for (j, m) in rule.matches.iter().enumerate() {
            let field = format!("{field}.matches[{j}]");
            let parsed = matching::parse(&field, m)?;
            if !matches.contains(&parsed) {
                matches.push(parsed);
            }
        }
        if matches.is_empty() {
            matches.push(("/".to_owned(), model::Matching::default()));
        }
        let backends = (rule.backend_refs.iter().enumerate())
            .map(|(j, b)| backend(namespace, &format!("{field}.backendRefs[{j}]"), b))
            .collect::<Result<_, _>>()?;
        let timeouts = match &rule.timeouts {
            Some(t) => Some(policies::timeouts(&format!("{field}.timeouts"), t)?),
            None => None,
        };
        let retries = match &rule.retry {
            Some(r) => Some(policies::retries(&format!("{field}.retry"), r)?),
            None => None,
        };
        let shape = filters::RuleShape {
            matches: &matches,
            backends: rule.backend_refs.len(),
        };
        let filters = filters::parse(&field, &rule.filters, &shape)?;
        parsed.push(Rule {
            matches,
            backends,
            timeouts,
            retries,
            filters,
        });
    }
    Ok(parsed)
}

fn backend(namespace: &str, field: &str, backend: &HttpBackendRef) -> Result<Backend, Unsupported> {
    other_fields(field, &backend.other)?;
    let weight = backend.weight.unwrap_or(1);
    let weight = u32::try_from(weight)
        .ok()
        .filter(|w| *w <= crate::crd::MAX_WEIGHT)
        .ok_or_else(|| unsupported(format!("{field}.weight"), "must be between 0 and 1000000"))?;
    let name = backend.name.clone();
    let invalid = |reason, message: String| Backend::Invalid {
        name: name.clone(),
        weight,
        reason,
        message,
    };
    let group = backend.group.as_deref().unwrap_or("");
    let kind = backend.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        let message = format!("backendRef {name} is a {group}/{kind}: only Services are supported");
        return Ok(invalid(Reason::InvalidKind, message));
    }
    if backend
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != namespace)
    {
        let message = format!(
            "backendRef {name} is in another namespace: Fairway does not read ReferenceGrants"
        );
        return Ok(invalid(Reason::RefNotPermitted, message));
    }
    let port = backend.port.and_then(|p| u16::try_from(p).ok());
    let Some(port) = port.and_then(std::num::NonZeroU16::new) else {
        let message = format!("backendRef {name} names no port (1-65535)");
        return Ok(invalid(Reason::BackendNotFound, message));
    };
    Ok(Backend::Service(BackendConfig {
        service: name,
        port: PortRef::Number(port),
        weight,
    }))
}

/// The Service's DNS names, as design.md section 9 lists them.
pub(super) fn service_hosts(service: &ServiceRef, cluster_domain: &str) -> Vec<String> {
    let (name, ns) = (&service.name, &service.namespace);
    vec![
        name.clone(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.{cluster_domain}"),
    ]
}

/// The group of `service`: its served members merged, in Gateway API precedence order.
/// `None` when no member is served.
pub(super) fn group<'a>(
    service: &ServiceRef,
    members: impl IntoIterator<Item = &'a HttpRouteEntry>,
    cluster_domain: &str,
) -> Option<RouteEntry> {
    let mut members: Vec<&HttpRouteEntry> = members.into_iter().collect();
    members.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    let oldest = members.first()?.created.clone();
    let mut seen: Vec<(&String, &model::Matching)> = Vec::new();
    let mut rules = Vec::new();
    for member in &members {
        let Ok(member_rules) = &member.rules else {
            continue;
        };
        for rule in member_rules {
            let mut backends = Vec::new();
            let mut unresolved = Vec::new();
            for backend in &rule.backends {
                match backend {
                    Backend::Service(config) => backends.push(config.clone()),
                    Backend::Invalid {
                        name,
                        weight,
                        reason,
                        message,
                    } => unresolved.push(model::UnresolvedBackend {
                        service: name.clone(),
                        weight: *weight,
                        reason: reason.as_str().to_owned(),
                        message: message.clone(),
                    }),
                }
            }
            let answers_itself = rule.filters.redirect.is_some();
            if backends.is_empty() && unresolved.is_empty() && !answers_itself {
                // Gateway API: a rule without backendRefs is answered `500`.
                unresolved.push(model::UnresolvedBackend {
                    service: String::new(),
                    weight: 1,
                    reason: "NoBackendRefs".to_owned(),
                    message: format!("a rule of httproute {} has no backendRefs", member.key),
                });
            }
            // An earlier (older, or earlier-listed) identical match wins; the router
            // keeps this order among equal ones.
            for (path, matching) in &rule.matches {
                if seen.contains(&(path, matching)) {
                    continue;
                }
                seen.push((path, matching));
                rules.push(RuleConfig {
                    path_prefix: path.clone(),
                    matching: matching.clone(),
                    timeouts: rule.timeouts.clone(),
                    retries: rule.retries.clone(),
                    filters: rule.filters.clone(),
                    backends: backends.clone(),
                    unresolved: unresolved.clone(),
                });
            }
        }
    }
    let config = RouteConfig {
        tls: None,
        ca_refs: Vec::new(),
        hosts: service_hosts(service, cluster_domain),
        rules,
        ..routes::default_config()
    };
    Some(RouteEntry {
        claim: Claim {
            created: oldest,
            key: group_key(service),
        },
        generation: None,
        config: Ok(config),
    })
}

/// What one HTTPRoute's status says about one Service parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentStatus {
    pub parent_ref: ParentReference,
    pub accepted: ConditionState,
    pub resolved_refs: ConditionState,
}

/// One HTTPRoute's computed status: an entry per Service parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRouteComputed {
    pub observed_generation: Option<i64>,
    pub parents: Vec<ParentStatus>,
}

fn condition(status: ConditionStatus, reason: Reason, message: String) -> ConditionState {
    ConditionState {
        status,
        reason,
        message,
    }
}

/// The status of `entry`. `group_accepted`: the `Accepted` condition of a Service's
/// group, if the group is in the index.
pub(super) fn status(
    entry: &HttpRouteEntry,
    endpoints: &EndpointStore,
    group_accepted: impl Fn(&ServiceRef) -> Option<ConditionState>,
) -> HttpRouteComputed {
    let resolved_refs = resolved_refs(entry, endpoints);
    let parents = entry.parents.iter().map(|parent| {
        let accepted = match (&parent.verdict, &entry.rules) {
            (Err(why), _) | (_, Err(why)) => condition(
                ConditionStatus::False,
                Reason::UnsupportedValue,
                why.to_string(),
            ),
            _ if endpoints.service(&parent.service).is_none() => condition(
                ConditionStatus::False,
                Reason::NoMatchingParent,
                format!("service {} not found", parent.service),
            ),
            _ => group_accepted(&parent.service).unwrap_or_else(|| {
                condition(ConditionStatus::Unknown, Reason::Pending, String::new())
            }),
        };
        ParentStatus {
            parent_ref: parent.reference.clone(),
            accepted,
            resolved_refs: resolved_refs.clone(),
        }
    });
    HttpRouteComputed {
        observed_generation: entry.generation,
        parents: parents.collect(),
    }
}

/// `ResolvedRefs` over every backendRef of every rule: the first failure's reason, all
/// their messages.
fn resolved_refs(entry: &HttpRouteEntry, endpoints: &EndpointStore) -> ConditionState {
    let Ok(rules) = &entry.rules else {
        return condition(
            ConditionStatus::Unknown,
            Reason::UnsupportedValue,
            "backends are not resolved while the route is not served".to_owned(),
        );
    };
    let mut failures: Vec<(Reason, String)> = Vec::new();
    for backend in rules.iter().flat_map(|r| &r.backends) {
        let failure = match backend {
            Backend::Invalid {
                reason, message, ..
            } => Some((*reason, message.clone())),
            Backend::Service(config) => {
                resolve::resolve_backend(&entry.key.namespace, config, endpoints)
                    .err()
                    .map(|f| (Reason::BackendNotFound, f.message().to_owned()))
            }
        };
        if let Some(failure) = failure.filter(|f| !failures.contains(f)) {
            failures.push(failure);
        }
    }
    match failures.first() {
        None => condition(
            ConditionStatus::True,
            Reason::ResolvedRefs,
            "all backends resolved".to_owned(),
        ),
        Some((reason, _)) => {
            let messages: Vec<&str> = failures.iter().map(|(_, m)| m.as_str()).collect();
            condition(ConditionStatus::False, *reason, messages.join("; "))
        }
    }
}
