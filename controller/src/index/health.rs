//! `spec.healthCheck`: validated into the `model::GrpcHealthCheck` the proxies run.

use std::time::Duration;

use fairway_proto::model;

use super::base::SpecError;
use crate::crd;

/// The shortest interval: every proxy probes every endpoint of the Route, so 1,000
/// proxies at 100 ms are already 10,000 probes a second per pod.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The check a Route asks for, or `None`; `upstream` is the Route's validated
/// protocol choice (gRPC health checks speak HTTP/2 whatever the Service says, so an
/// explicit `HTTP1` contradicts them).
pub(super) fn validate(
    spec: Option<&crd::HealthCheckSpec>,
    upstream: model::UpstreamProtocol,
) -> Result<Option<model::GrpcHealthCheck>, SpecError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let grpc = spec.grpc.as_ref().ok_or(SpecError::HealthCheckKind)?;
    if upstream == model::UpstreamProtocol::Http1 {
        return Err(SpecError::HealthCheckOverHttp1);
    }
    let duration = |field: &'static str, text: &str| {
        crd::parse_duration(text).map_err(|source| SpecError::Duration { field, source })
    };
    let interval = duration("spec.healthCheck.grpc.interval", &grpc.interval)?;
    if interval < MIN_INTERVAL {
        return Err(SpecError::HealthInterval(interval));
    }
    let timeout = duration("spec.healthCheck.grpc.timeout", &grpc.timeout)?;
    if timeout.is_zero() || timeout > interval {
        return Err(SpecError::HealthTimeout { timeout, interval });
    }
    let threshold = |field: &'static str, value: u32| {
        if (1..=crd::MAX_HEALTH_THRESHOLD).contains(&value) {
            Ok(value)
        } else {
            Err(SpecError::HealthThreshold { field, value })
        }
    };
    Ok(Some(model::GrpcHealthCheck {
        service: grpc.service.clone(),
        interval,
        timeout,
        unhealthy_threshold: threshold("unhealthyThreshold", grpc.unhealthy_threshold)?,
        healthy_threshold: threshold("healthyThreshold", grpc.healthy_threshold)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(f: impl FnOnce(&mut crd::GrpcHealthCheckSpec)) -> crd::HealthCheckSpec {
        let mut grpc = crd::GrpcHealthCheckSpec::default();
        f(&mut grpc);
        crd::HealthCheckSpec { grpc: Some(grpc) }
    }

    fn check(spec: &crd::HealthCheckSpec) -> Result<Option<model::GrpcHealthCheck>, SpecError> {
        validate(Some(spec), model::UpstreamProtocol::Auto)
    }

    #[test]
    fn defaults_validate_to_the_model_defaults() {
        assert_eq!(
            check(&grpc(|_| {})),
            Ok(Some(model::GrpcHealthCheck::default())),
            "the CRD's defaults and the model's agree"
        );
        assert_eq!(validate(None, model::UpstreamProtocol::Http1), Ok(None));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (crd::HealthCheckSpec { grpc: None }, "names no check"),
            (grpc(|g| g.interval = "50ms".into()), "interval"),
            (grpc(|g| g.interval = "5x".into()), "interval"),
            (grpc(|g| g.timeout = "0s".into()), "timeout"),
            (grpc(|g| g.timeout = "6s".into()), "timeout"),
            (grpc(|g| g.unhealthy_threshold = 0), "unhealthyThreshold 0"),
            (grpc(|g| g.healthy_threshold = 101), "healthyThreshold 101"),
        ];
        for (spec, needle) in cases {
            let message = check(&spec).expect_err("invalid").to_string();
            assert!(message.contains(needle), "{message:?} names {needle:?}");
        }
        let over_h1 = validate(Some(&grpc(|_| {})), model::UpstreamProtocol::Http1);
        assert_eq!(over_h1, Err(SpecError::HealthCheckOverHttp1));
    }
}
