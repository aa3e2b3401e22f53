//! TLS to pods: what the pods of one endpoint set must prove (Gateway API's
//! `BackendTLSPolicy` on the set's Service port, or a Route's `upstream.tls`), as the
//! proxy needs it. A Route carries one per set it speaks TLS to (`Upstream::tls`).

use super::EndpointSetKey;

/// How the proxy verifies the pods of one endpoint set. Its presence alone means every
/// connection to them is TLS: a set with it is never spoken to in plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// PEM CA certificates a pod's certificate must chain to. Empty when the reference
    /// could not be resolved (the Route's status says why): then nothing is trusted and
    /// every connection is refused, never downgraded to plaintext.
    pub ca_pem: String,
    /// The name sent as SNI, and the one a pod's certificate must carry unless
    /// `subject_alt_names` is set; `None`: the backend Service's DNS name.
    pub hostname: Option<String>,
    /// The cluster domain of that default name (`cluster.local`).
    pub cluster_domain: String,
    /// DNS names of which a pod's certificate must carry at least one, in place of the
    /// hostname (a `BackendTLSPolicy`'s `subjectAltNames` of type `Hostname`); empty:
    /// the hostname.
    pub subject_alt_names: Vec<String>,
}

impl UpstreamTls {
    /// The name the pods of `set` must present: the explicit hostname, else
    /// `NAME.NS.svc.<cluster domain>` of the set's Service.
    pub fn server_name(&self, set: &EndpointSetKey) -> String {
        match &self.hostname {
            Some(name) => name.clone(),
            None => format!(
                "{}.{}.svc.{}",
                set.service, set.namespace, self.cluster_domain
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;

    #[test]
    fn the_default_name_is_the_services_dns_name_and_an_explicit_one_wins() {
        let set = EndpointSetKey {
            namespace: "shop".into(),
            service: "orders".into(),
            port: NonZeroU16::new(8443).unwrap(),
        };
        let mut tls = UpstreamTls {
            ca_pem: String::new(),
            hostname: None,
            cluster_domain: "cluster.local".into(),
            subject_alt_names: Vec::new(),
        };
        assert_eq!(tls.server_name(&set), "orders.shop.svc.cluster.local");
        tls.hostname = Some("api.example".into());
        assert_eq!(tls.server_name(&set), "api.example");
    }
}
