//! Host claims (design.md section 9): who may answer for a name, and who wins a contest.
//!
//! Two rules, applied in this order on every resolve, so they are re-decided whenever a
//! Route or a Service changes:
//! 1. **A Service's namespaced names belong to its namespace.** `*.NS.svc` and
//!    `*.NS.svc.<cluster domain>` always, and `NAME.NS` while a Service `NAME` exists in
//!    `NS`, may be claimed only by Routes in `NS`. This mirrors cluster DNS, where a pod
//!    asking for `example.com` gets Service `example` of namespace `com` first.
//! 2. **Between permitted claims the oldest wins**: by creationTimestamp, then
//!    namespace/name (Gateway API's tie rule). A forbidden claim never wins, whatever its
//!    age.

use std::collections::{BTreeMap, BTreeSet};

use fairway_proto::model::RouteKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::endpoints::{EndpointStore, ServiceRef};

/// The cluster DNS domain when `--cluster-domain` is not given.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Who claims hosts, and in which order a contest is decided: older first (by
/// creationTimestamp; none, as in `--static-dir`, counts as newest), then by
/// namespace/name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Claim {
    pub created: Age,
    pub key: RouteKey,
}

// Variant order is the claim order: a known timestamp beats an unknown one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Age {
    /// Whole seconds since the epoch: the apiserver stores no finer, and a claim order
    /// finer than its tie message ("broken by namespace/name") would contradict it.
    Created(i64),
    Unknown,
}

impl Age {
    pub fn of(created: Option<&Time>) -> Self {
        created.map_or(Age::Unknown, |t| Age::Created(t.0.as_second()))
    }
}

/// Why a Route does not serve one of its hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HostDenied {
    /// The host is a namespaced name of namespace `owner`, and the Route is elsewhere.
    NotPermitted { host: String, owner: String },
    /// A permitted, earlier claim holds the host.
    Conflict {
        host: String,
        winner: RouteKey,
        /// Both were created in the same second (or neither has a timestamp): the tie
        /// went by namespace/name, so the message must not call the winner older.
        tie: bool,
    },
}

impl std::fmt::Display for HostDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostDenied::NotPermitted { host, owner } => write!(
                f,
                "host {host} is a Service name of namespace {owner}: only Routes in {owner} may claim it"
            ),
            HostDenied::Conflict {
                host,
                winner,
                tie: false,
            } => write!(f, "host {host} is served by older route {winner}"),
            HostDenied::Conflict {
                host,
                winner,
                tie: true,
            } => write!(
                f,
                "host {host} is served by route {winner}, created in the same second: \
                 the tie is broken by namespace/name"
            ),
        }
    }
}

/// The namespace that owns `host`, if it is one of a Service's namespaced names.
///
/// `host` is already lowercase without port or trailing dot (Route validation). A
/// two-label name is reserved only while its Service exists, since it can also be an
/// outside name (`example.com`).
pub(super) fn owning_namespace<'h>(
    host: &'h str,
    cluster_domain: &str,
    services: &EndpointStore,
) -> Option<&'h str> {
    let short = host
        .strip_suffix(cluster_domain)
        .and_then(|h| h.strip_suffix('.'))
        .filter(|h| h.ends_with(".svc"))
        .unwrap_or(host);
    if let Some(rest) = short.strip_suffix(".svc") {
        // `*.NS.svc`: at least one label before the namespace.
        return match rest.rsplit_once('.') {
            Some((name, namespace)) if !name.is_empty() && !namespace.is_empty() => Some(namespace),
            _ => None,
        };
    }
    let (name, namespace) = host.split_once('.')?;
    if namespace.contains('.') {
        return None;
    }
    services
        .service(&ServiceRef::new(namespace, name))
        .map(|_| namespace)
}

/// Host claims of valid Routes, each host's claimants in [`Claim`] order.
#[derive(Debug, Default)]
pub(super) struct HostClaims(BTreeMap<String, BTreeSet<Claim>>);

impl HostClaims {
    pub fn add(&mut self, claim: &Claim, hosts: &[String]) {
        for host in hosts {
            let claims = self.0.entry(host.clone()).or_default();
            claims.insert(claim.clone());
        }
    }

    pub fn remove(&mut self, claim: &Claim, hosts: &[String]) {
        for host in hosts {
            if let Some(claims) = self.0.get_mut(host) {
                claims.remove(claim);
                if claims.is_empty() {
                    self.0.remove(host);
                }
            }
        }
    }

    /// Every Route that claims `host`, permitted or not.
    pub fn claimants(&self, host: &str) -> impl Iterator<Item = &RouteKey> {
        self.0.get(host).into_iter().flatten().map(|c| &c.key)
    }

    /// Whether `claim` serves `host`, and if not, why. `owner`: the namespace that owns
    /// the host ([`owning_namespace`]), if any.
    pub fn decide(&self, host: &str, claim: &Claim, owner: Option<&str>) -> Result<(), HostDenied> {
        let permitted = |c: &Claim| owner.is_none_or(|ns| c.key.namespace == ns);
        if let Some(owner) = owner.filter(|_| !permitted(claim)) {
            return Err(HostDenied::NotPermitted {
                host: host.to_owned(),
                owner: owner.to_owned(),
            });
        }
        let first = self
            .0
            .get(host)
            .into_iter()
            .flatten()
            .find(|c| permitted(c));
        match first {
            Some(winner) if winner.key != claim.key => Err(HostDenied::Conflict {
                host: host.to_owned(),
                winner: winner.key.clone(),
                // Equal ages (or none on either side): decided by namespace/name.
                tie: winner.created == claim.created,
            }),
            _ => Ok(()),
        }
    }
}
