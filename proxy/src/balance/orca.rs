//! Server-reported load: a pod's responses may carry an ORCA load report in the
//! `endpoint-load-metrics` header, in Envoy's text format
//! (`TEXT cpu_utilization=0.3, rps_fractional=120, eps=2`). From each report an
//! endpoint's weight is computed as gRPC's weighted round robin computes it (gRFC A58):
//! `qps / (utilization + eps / qps * penalty)`, utilization being the application's own
//! figure when it sends one, else the CPU's. The balancer divides each weight by the mean
//! of the fresh ones, so a pod reporting half the cost per request gets about twice the
//! share, under any policy; pods without reports weigh as the mean. Pure.

use std::time::Duration;

/// The response header that carries a pod's load report.
pub const HEADER: &str = "endpoint-load-metrics";
/// gRPC's default `error_utilization_penalty`.
pub const ERROR_PENALTY: f64 = 1.0;
/// A report older than this no longer weighs (gRPC's `weight_expiration_period`).
pub const EXPIRY: Duration = Duration::from_secs(180);
/// How far from the mean one weight may go: a pod reporting nonsense (or a burst of
/// idleness) can neither take everything nor be starved.
pub const MAX_FACTOR: f64 = 10.0;

/// The figures of one report that weights use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Report {
    pub cpu_utilization: f64,
    pub application_utilization: f64,
    /// Requests per second.
    pub rps_fractional: f64,
    /// Errors per second.
    pub eps: f64,
}

/// Reads a `TEXT` report; `None` for another format (`JSON`, `BIN`), or no figure this
/// module uses. Unknown keys (`mem_utilization`, `named_metrics.*`) are skipped, and a
/// malformed pair ends nothing but itself.
pub fn parse(value: &[u8]) -> Option<Report> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let body = text.strip_prefix("TEXT")?;
    if !body.starts_with(char::is_whitespace) {
        return None;
    }
    let mut report = Report::default();
    let mut any = false;
    for pair in body.split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        let field = match key.trim() {
            "cpu_utilization" => &mut report.cpu_utilization,
            "application_utilization" => &mut report.application_utilization,
            "rps_fractional" => &mut report.rps_fractional,
            "eps" => &mut report.eps,
            _ => continue,
        };
        *field = value;
        any = true;
    }
    any.then_some(report)
}

/// The weight gRPC's weighted round robin gives a report; `None` when it gives none
/// (no rate or no utilization: such a report says nothing about cost per request).
pub fn weight(report: &Report) -> Option<f64> {
    let utilization = if report.application_utilization > 0.0 {
        report.application_utilization
    } else {
        report.cpu_utilization
    };
    let qps = report.rps_fractional;
    if qps <= 0.0 || utilization <= 0.0 {
        return None;
    }
    Some(qps / (utilization + report.eps / qps * ERROR_PENALTY))
}

/// An endpoint's weight over the mean of the fresh ones, bounded by [`MAX_FACTOR`].
pub fn factor(weight: f64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 1.0;
    }
    (weight / mean).clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reports_parse_and_other_formats_do_not() {
        let r = parse(b"TEXT cpu_utilization=0.3, rps_fractional=120, named_metrics.foo=7")
            .expect("a report");
        assert_eq!(r.cpu_utilization, 0.3);
        assert_eq!(r.rps_fractional, 120.0);
        assert_eq!(r.eps, 0.0);
        let r =
            parse(b"TEXT application_utilization=0.5,eps=2, cpu_utilization=x, rps_fractional=10")
                .expect("the good pairs");
        assert_eq!(
            (r.application_utilization, r.eps, r.cpu_utilization),
            (0.5, 2.0, 0.0)
        );
        for bad in [
            &b"JSON {\"cpu_utilization\": 0.3}"[..],
            b"BIN CgQ=",
            b"TEXTcpu_utilization=0.3",
            b"TEXT mem_utilization=0.4",
            b"TEXT cpu_utilization=-1",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn weights_follow_grpc_wrr() {
        let w = |cpu: f64, app: f64, qps: f64, eps: f64| {
            weight(&Report {
                cpu_utilization: cpu,
                application_utilization: app,
                rps_fractional: qps,
                eps,
            })
        };
        assert_eq!(w(0.5, 0.0, 100.0, 0.0), Some(200.0));
        assert_eq!(
            w(0.9, 0.25, 100.0, 0.0),
            Some(400.0),
            "the application's figure wins"
        );
        assert_eq!(
            w(0.5, 0.0, 100.0, 50.0),
            Some(100.0),
            "errors cost: 100 / (0.5 + 0.5)"
        );
        assert_eq!(w(0.5, 0.0, 0.0, 0.0), None);
        assert_eq!(w(0.0, 0.0, 100.0, 0.0), None);
        assert_eq!(factor(400.0, 200.0), 2.0);
        assert_eq!(factor(1e9, 1.0), MAX_FACTOR);
        assert_eq!(factor(1.0, 0.0), 1.0);
    }
}
