//! `spec.upstream.tls`: TLS from the proxy to the pods, verified against a CA the
//! Route names and a hostname, as Gateway API's `BackendTLSPolicy` validation says it
//! for a Service (`caCertificateRefs`, `hostname`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{HOST_PATTERN, MAX_HOST_LEN};

/// The key of a CA ConfigMap that holds the PEM certificates (Gateway API's and
/// cert-manager's trust bundles use it too).
pub const CA_KEY: &str = "ca.crt";

/// TLS to every pod of the Route's backends: never plaintext once set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTlsSpec {
    /// ConfigMaps in the Route's namespace whose key `ca.crt` holds PEM CA
    /// certificates; a pod's certificate must chain to one of them. A change to them
    /// reaches the proxies without a restart.
    #[schemars(length(min = 1, max = 8))]
    pub ca_certificate_refs: Vec<CaCertificateRef>,
    /// The name the pods' certificates must carry (also sent as SNI). Default: the
    /// backend Service's DNS name, `NAME.NAMESPACE.svc.<cluster domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_HOST_LEN), regex(pattern = HOST_PATTERN))]
    pub hostname: Option<String>,
}

/// A CA certificate bundle, in the Route's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificateRef {
    /// Only ConfigMap: a CA certificate is public, so no Secret need be readable.
    #[serde(default)]
    pub kind: CaKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What holds a CA bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CaKind {
    #[default]
    ConfigMap,
}
