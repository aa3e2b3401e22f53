//! A Route's `upstream.tls` checked and turned into the model, before its CA is known
//! (`ca::attach` adds it when the Route resolves).

use fairway_proto::model;

use super::base::SpecError;
use crate::crd;

/// The model's `upstream.tls` without its CA, and the ConfigMaps that hold the CA.
pub(super) fn validate(
    spec: Option<&crd::UpstreamTlsSpec>,
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
    };
    let refs = spec.ca_certificate_refs.iter();
    Ok((Some(tls), refs.map(|r| r.name.clone()).collect()))
}
