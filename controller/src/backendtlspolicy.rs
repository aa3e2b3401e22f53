//! Gateway API's `BackendTLSPolicy` (`gateway.networking.k8s.io/v1`, standard channel of
//! the pinned release, [`PINNED_RELEASE`](crate::httproute::PINNED_RELEASE)), as far as
//! Fairway reads it: our own serde structs, as for HTTPRoute.
//!
//! A policy whose `targetRefs` name a Service (group `""`, kind `Service`, optionally a
//! port by `sectionName`) makes every route's backend to that Service port speak TLS
//! (`index::tls_policies` decides which policy applies where). Fields of a later release
//! are kept in `other` maps, so the index reports them by name instead of ignoring them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::httproute::ParentReference;

/// The resource name, as API discovery lists it.
pub const PLURAL: &str = "backendtlspolicies";
/// `wellKnownCACertificates`' one standard value.
pub const WELL_KNOWN_SYSTEM: &str = "System";

/// TLS to a Service's pods, verified against `validation`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "BackendTLSPolicy",
    plural = "backendtlspolicies",
    namespaced,
    status = "PolicyStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    #[serde(default)]
    pub validation: Validation,
    /// Implementation-specific options: Fairway defines none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `LocalPolicyTargetReferenceWithSectionName`: an object in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    pub name: String,
    /// For a Service: one of its port names; absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub well_known_ca_certificates: Option<String>,
    /// Required by the CRD: the SNI, and the name verified unless `subjectAltNames`.
    #[serde(default)]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A CA bundle: a ConfigMap (key `ca.crt`) in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    pub name: String,
}

/// `Hostname` (with `hostname`) or `URI` (with `uri`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAltName {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// `status`: one entry per ancestor and controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: ParentReference,
    pub controller_name: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_specs_example() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: orders-tls, namespace: shop}
spec:
  targetRefs:
  - {group: "", kind: Service, name: orders, sectionName: https}
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: orders-ca}]
    hostname: orders.shop.svc.cluster.local
    subjectAltNames: [{type: URI, uri: "spiffe://cluster.local/ns/shop/sa/orders"}]
"#;
        let policy: BackendTLSPolicy = serde_saphyr::from_str(yaml).expect("parses");
        let target = &policy.spec.target_refs[0];
        assert_eq!(
            (target.kind.as_str(), target.section_name.as_deref()),
            ("Service", Some("https"))
        );
        let validation = &policy.spec.validation;
        assert_eq!(validation.ca_certificate_refs[0].name, "orders-ca");
        assert_eq!(validation.subject_alt_names[0].type_, "URI");
        assert!(validation.other.is_empty() && policy.spec.other.is_empty());
    }
}
