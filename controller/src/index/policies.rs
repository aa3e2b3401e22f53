//! An HTTPRoute rule's own policies over a Route's defaults: `timeouts`, and the
//! experimental channel's `retry` (statuses, attempts, backoff) as the model's
//! [`model::Retries`], the retry budget staying the Route's.

use fairway_proto::model;

use super::base::{Unsupported, unsupported};
use super::routes;
use crate::crd::MAX_RETRY_ATTEMPTS;
use crate::httproute::{HttpRouteRetry, HttpRouteTimeouts};

/// A rule's `timeouts` over a Route's defaults: `request` is ours (until response
/// headers, every try), `backendRequest` our per-try limit; `0s` turns either off.
pub(super) fn timeouts(field: &str, t: &HttpRouteTimeouts) -> Result<model::Timeouts, Unsupported> {
    let parse = |name: &str, value: &Option<String>| match value {
        Some(v) => crate::crd::parse_duration(v)
            .map(Some)
            .map_err(|e| Unsupported {
                field: format!("{field}.{name}"),
                why: e.to_string(),
            }),
        None => Ok(None),
    };
    let request = parse("request", &t.request)?;
    let per_try = parse("backendRequest", &t.backend_request)?.filter(|d| !d.is_zero());
    let mut timeouts = routes::default_config().timeouts;
    if let Some(request) = request {
        timeouts.request = request;
    }
    if per_try
        .zip(request)
        .is_some_and(|(p, r)| !r.is_zero() && p > r)
    {
        return Err(unsupported(
            format!("{field}.backendRequest"),
            "must not be longer than request",
        ));
    }
    timeouts.per_try = per_try;
    Ok(timeouts)
}

/// A rule's `retry` over a Route's defaults: `codes` are the HTTP statuses retried
/// (absent: the defaults, 502, 503 and 504), `attempts` the retries after the first try
/// (absent: the default), `backoff` the least wait before each.
pub(super) fn retries(field: &str, r: &HttpRouteRetry) -> Result<model::Retries, Unsupported> {
    let mut retries = routes::default_config().retries;
    if let Some(attempts) = r.attempts {
        retries.attempts = u32::try_from(attempts)
            .ok()
            .filter(|a| *a <= MAX_RETRY_ATTEMPTS)
            .ok_or_else(|| {
                let why = format!("must be between 0 and {MAX_RETRY_ATTEMPTS}");
                unsupported(format!("{field}.attempts"), &why)
            })?;
    }
    if !r.codes.is_empty() {
        let mut codes = Vec::with_capacity(r.codes.len());
        for (k, code) in r.codes.iter().enumerate() {
            let code = u16::try_from(*code)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| unsupported(format!("{field}.codes[{k}]"), "must be 400-599"))?;
            codes.push(code);
        }
        codes.sort_unstable();
        codes.dedup();
        retries.http_statuses = codes;
    }
    if let Some(backoff) = &r.backoff {
        retries.backoff = crate::crd::parse_duration(backoff).map_err(|e| Unsupported {
            field: format!("{field}.backoff"),
            why: e.to_string(),
        })?;
    }
    Ok(retries)
}
