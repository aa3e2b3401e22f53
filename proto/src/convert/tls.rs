//! TLS to pods on the wire, and the compatibility rule that keeps older proxies from
//! speaking plaintext to pods that expect TLS.
//!
//! A Route that speaks TLS to any endpoint set sends its rules in `Route.tls_rules`
//! and leaves `rules`
//! and `match_rules` empty: a proxy that predates TLS to pods skips both unknown
//! fields, sees a Route with no rule and answers its hosts `404`, where reading the
//! rules would have sent every request to the pods in plaintext.

use std::collections::BTreeMap;

use super::{ConvertError, required, rule};
use crate::model::{EndpointSetKey, Route, Rule, UpstreamTls};
use crate::pb;

impl From<&UpstreamTls> for pb::UpstreamTls {
    fn from(t: &UpstreamTls) -> Self {
        pb::UpstreamTls {
            ca_pem: t.ca_pem.clone(),
            hostname: t.hostname.clone(),
            cluster_domain: t.cluster_domain.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
        }
    }
}

impl From<pb::UpstreamTls> for UpstreamTls {
    fn from(t: pb::UpstreamTls) -> Self {
        UpstreamTls {
            ca_pem: t.ca_pem,
            hostname: t.hostname,
            cluster_domain: t.cluster_domain,
            subject_alt_names: t.subject_alt_names,
        }
    }
}

/// The per-set TLS of an `Upstream` on the wire, in key order.
pub(super) fn set_tls(tls: &BTreeMap<EndpointSetKey, UpstreamTls>) -> Vec<pb::SetTls> {
    (tls.iter())
        .map(|(set, tls)| pb::SetTls {
            endpoint_set: Some(set.into()),
            tls: Some(tls.into()),
        })
        .collect()
}

/// The per-set TLS from the wire; an entry without its set or its TLS is refused
/// rather than read as plaintext.
pub(super) fn set_tls_from_wire(
    wire: Vec<pb::SetTls>,
) -> Result<BTreeMap<EndpointSetKey, UpstreamTls>, ConvertError> {
    (wire.into_iter())
        .map(|entry| {
            let set = required(entry.endpoint_set, "SetTls.endpoint_set")?;
            let tls = required(entry.tls, "SetTls.tls")?;
            Ok((EndpointSetKey::try_from(set)?, UpstreamTls::from(tls)))
        })
        .collect()
}

/// `(rules, match_rules, tls_rules)` of `route` on the wire.
pub(super) fn wire_rules(route: &Route) -> (Vec<pb::Rule>, Vec<pb::Rule>, Vec<pb::Rule>) {
    if !route.upstream.tls.is_empty() {
        let all = route.rules.iter().map(pb::Rule::from).collect();
        return (Vec::new(), Vec::new(), all);
    }
    (
        rule::rules(&route.rules),
        rule::match_rules(&route.rules),
        Vec::new(),
    )
}

/// The rules of a wire Route: `tls_rules` when it has TLS, else as before.
pub(super) fn rules_from_wire(
    tls: bool,
    rules: Vec<pb::Rule>,
    match_rules: Vec<pb::Rule>,
    tls_rules: Vec<pb::Rule>,
) -> Result<Vec<Rule>, ConvertError> {
    if tls {
        return tls_rules.into_iter().map(Rule::try_from).collect();
    }
    rule::from_wire(rules, match_rules)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::testing::route;

    /// The previous release's `Route`: no `tls_rules`, and an `Upstream` without `tls`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct PreviousRoute {
        #[prost(message, repeated, tag = "3")]
        rules: Vec<pb::Rule>,
        #[prost(message, repeated, tag = "9")]
        match_rules: Vec<pb::Rule>,
    }

    fn with_tls(hostname: Option<&str>) -> Route {
        let mut r = route("orders");
        let set = r.rules[0].backends[0].endpoint_set.clone();
        let tls = UpstreamTls {
            ca_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
            hostname: hostname.map(str::to_owned),
            cluster_domain: "cluster.local".into(),
            subject_alt_names: vec!["api.example".into()],
        };
        r.upstream.tls = BTreeMap::from([(set, tls)]);
        r
    }

    #[test]
    fn a_tls_route_round_trips() {
        for r in [with_tls(None), with_tls(Some("api.example"))] {
            let wire = pb::Route::from(&r);
            assert!(wire.rules.is_empty() && wire.match_rules.is_empty());
            assert_eq!(Route::try_from(wire).expect("converts"), r);
        }
    }

    #[test]
    fn a_proxy_of_the_previous_release_sees_a_tls_route_without_rules() {
        let wire = pb::Route::from(&with_tls(None)).encode_to_vec();
        let previous = PreviousRoute::decode(wire.as_slice()).expect("decodes");
        assert!(
            previous.rules.is_empty() && previous.match_rules.is_empty(),
            "an older proxy must answer 404, never send plaintext to a TLS pod"
        );
    }

    #[test]
    fn a_plaintext_route_encodes_as_before() {
        let r = route("orders");
        let wire = pb::Route::from(&r);
        assert!(wire.tls_rules.is_empty());
        assert_eq!(wire.upstream.as_ref().map(|u| u.set_tls.len()), Some(0));
        assert_eq!(wire.rules.len(), 1);
    }
}
