//! CA bundles for TLS to pods: the `ca.crt` of ConfigMaps, checked once as they arrive,
//! and attached (`backend_tls::attach`) to the Routes that name them, or that send to a
//! Service port whose BackendTLSPolicy names them, when they resolve.
//!
//! A set whose CA is missing or unreadable stays TLS with no CA, so every proxy refuses
//! its connections (`502 TlsConfig`) instead of speaking plaintext or trusting
//! anything; the Route's `ResolvedRefs` (for `upstream.tls`) or the policy's says which
//! ConfigMap and why. Every other Route is unaffected. A change to a bundle re-resolves
//! only the Routes it reaches: the new CA gets to the proxies as a Route update, without
//! a restart.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use fairway_proto::model::RouteKey;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::base::DEFAULT_NAMESPACE;
use super::endpoints::ServiceRef;
use super::{Changes, Index};
use crate::crd::CA_KEY;

/// `ca.crt` of every ConfigMap that has one, by (namespace, name): the PEM, or why it
/// cannot be used.
pub(super) type CaStore = BTreeMap<(String, String), Result<String, String>>;

/// A ConfigMap's identity and its bundle, if it carries the key.
fn bundle_of(config_map: &ConfigMap) -> ((String, String), Option<Result<String, String>>) {
    let meta = &config_map.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let name = meta.name.clone().unwrap_or_default();
    let pem = (config_map.data.as_ref()).and_then(|d| d.get(CA_KEY));
    ((namespace.to_owned(), name), pem.map(|pem| check(pem)))
}

/// `pem` when it holds at least one certificate usable as a trust anchor.
pub(super) fn check(pem: &str) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("{CA_KEY} is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{CA_KEY} holds a certificate that is not a usable CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{CA_KEY} holds no PEM certificate"));
    }
    Ok(pem.to_owned())
}

/// The CA of the ConfigMaps `names` in `namespace`, all bundles concatenated, or every
/// reason one of them cannot be used (one bad reference voids the bundle: a partial CA
/// set is not what the object said).
pub(super) fn bundle(
    store: &CaStore,
    namespace: &str,
    names: &[&str],
) -> Result<String, Vec<String>> {
    let mut pem = String::new();
    let mut failures = Vec::new();
    for name in names {
        match store.get(&(namespace.to_owned(), (*name).to_owned())) {
            Some(Ok(bundle)) => pem.push_str(bundle),
            Some(Err(why)) => failures.push(format!("ConfigMap {namespace}/{name}: {why}")),
            None => failures.push(format!(
                "ConfigMap {namespace}/{name} not found, or it has no key {CA_KEY}"
            )),
        }
    }
    match failures.is_empty() {
        true => Ok(pem),
        false => Err(failures),
    }
}

impl Index {
    /// Adds or updates a ConfigMap: re-resolves the Routes naming it if its `ca.crt`
    /// changed (ConfigMaps without one are not kept).
    pub fn apply_config_map(&mut self, config_map: &ConfigMap) -> Changes {
        let (key, bundle) = bundle_of(config_map);
        let changed = match bundle {
            Some(bundle) => self.cas.insert(key.clone(), bundle.clone()) != Some(bundle),
            None => self.cas.remove(&key).is_some(),
        };
        self.ca_changed([key], changed)
    }

    pub fn delete_config_map(&mut self, config_map: &ConfigMap) -> Changes {
        let (key, _) = bundle_of(config_map);
        let changed = self.cas.remove(&key).is_some();
        self.ca_changed([key], changed)
    }

    /// Replaces every ConfigMap at once (a relist).
    pub fn replace_config_maps<I>(&mut self, config_maps: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<ConfigMap>,
    {
        let new: CaStore = (config_maps.into_iter())
            .filter_map(|c| match bundle_of(c.borrow()) {
                (key, Some(bundle)) => Some((key, bundle)),
                (_, None) => None,
            })
            .collect();
        let old = std::mem::replace(&mut self.cas, new);
        let keys: BTreeSet<(String, String)> = old.keys().chain(self.cas.keys()).cloned().collect();
        let changed: Vec<(String, String)> = (keys.into_iter())
            .filter(|k| old.get(k) != self.cas.get(k))
            .collect();
        let any = !changed.is_empty();
        self.ca_changed(changed, any)
    }

    fn ca_changed(
        &mut self,
        keys: impl IntoIterator<Item = (String, String)>,
        changed: bool,
    ) -> Changes {
        let mut changes = Changes::default();
        if !changed {
            return changes;
        }
        let keys: BTreeSet<(String, String)> = keys.into_iter().collect();
        let affected: BTreeSet<RouteKey> = (self.routes.iter())
            .filter(|(key, entry)| {
                let refs = entry.config.as_ref().map(|c| c.ca_refs.as_slice());
                refs.unwrap_or_default()
                    .iter()
                    .any(|name| keys.contains(&(key.namespace.clone(), name.clone())))
            })
            .map(|(key, _)| key.clone())
            .collect();
        // And every route to a Service whose policy names one of them.
        let services: BTreeSet<ServiceRef> = (self.tls_policies.naming_config_maps(&keys))
            .flat_map(|p| p.services())
            .collect();
        self.resolve(affected, &mut changes);
        self.tls_targets_changed(&services, &mut changes);
        changes
    }
}
