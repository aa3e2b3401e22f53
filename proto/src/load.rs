//! Load reports: what a proxy's balancers saw over their sliding window (the domain side
//! of `LoadReport`), and the fairness figure both sides compute from it.
//!
//! **Skew**, precisely: for one Route's balancer over one endpoint set, with `n_i` the
//! requests endpoint `i` got in the window and `x_i` the requests it was expected to get
//! (its expected share, slot by slot, times that slot's requests),
//!
//! ```text
//! share_i    = n_i / Σn          expected_i = x_i / Σx
//! skew       = max over i with expected_i > 0 of |share_i − expected_i| / expected_i
//! ```
//!
//! 0 is perfectly fair; 0.08 means some pod is 8% above or below its fair share (27%
//! instead of 25%); 3 is one pod of four taking everything. No request in the window:
//! no skew ([`skew`] returns `None`). One endpoint: always 0.

use std::time::Duration;

use crate::convert::ConvertError;
use crate::model::{EndpointAddr, EndpointSetKey, RouteKey};
use crate::pb;

/// Most endpoints one report carries: at worst (IPv6, large counters) a full report is
/// 45,048 bytes, inside the controller's 64 KiB limit on proxy messages (tested).
pub const MAX_REPORT_ENDPOINTS: usize = 1_000;

/// One proxy's report (see the `LoadReport` message).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub window: Duration,
    pub backends: Vec<BackendLoad>,
    /// Endpoints were left out to stay under [`MAX_REPORT_ENDPOINTS`].
    pub truncated: bool,
    /// The proxy wants [`LoadFigures`] in answer.
    pub accepts_figures: bool,
}

/// The controller's answer to a report that accepts one (the `LoadFigures` message):
/// per endpoint set, the requests the other proxies have in flight to each endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadFigures {
    pub sets: Vec<(EndpointSetKey, Vec<(EndpointAddr, u32)>)>,
}

/// One Route's balancer over one endpoint set.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendLoad {
    pub route: RouteKey,
    pub set: EndpointSetKey,
    pub endpoints: Vec<EndpointLoad>,
}

/// One endpoint's figures over the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EndpointLoad {
    pub addr: EndpointAddr,
    /// Requests started in the window.
    pub requests: u64,
    pub in_flight: u32,
    /// Requests a fair split would have given it in the window.
    pub expected: f64,
}

impl BackendLoad {
    /// This backend's skew (module docs); `None` without requests in the window.
    pub fn skew(&self) -> Option<f64> {
        skew(self.endpoints.iter().map(|e| (e.requests, e.expected)))
    }

    /// Requests in the window over every endpoint.
    pub fn requests(&self) -> u64 {
        self.endpoints.iter().map(|e| e.requests).sum()
    }
}

/// The skew of `(requests, expected requests)` pairs (module docs). `None` when there
/// were no requests, or nothing was expected anywhere.
pub fn skew(endpoints: impl Iterator<Item = (u64, f64)> + Clone) -> Option<f64> {
    let observed: u64 = endpoints.clone().map(|(n, _)| n).sum();
    let expected: f64 = endpoints.clone().map(|(_, x)| x.max(0.0)).sum();
    if observed == 0 || expected <= 0.0 {
        return None;
    }
    let worst = endpoints
        .filter(|&(_, x)| x > 0.0)
        .map(|(n, x)| {
            let share = n as f64 / observed as f64;
            let fair = x / expected;
            (share - fair).abs() / fair
        })
        .fold(0.0_f64, f64::max);
    Some(worst)
}

/// Caps `backends` at [`MAX_REPORT_ENDPOINTS`] endpoints in all, keeping whole backends
/// in order and cutting the last one that does not fit; true when anything was cut.
pub fn bound(backends: &mut Vec<BackendLoad>) -> bool {
    let mut room = MAX_REPORT_ENDPOINTS;
    let mut cut = false;
    backends.retain_mut(|backend| {
        if room == 0 {
            cut = true;
            return false;
        }
        if backend.endpoints.len() > room {
            backend.endpoints.truncate(room);
            cut = true;
        }
        room -= backend.endpoints.len();
        true
    });
    cut
}

impl From<&LoadReport> for pb::LoadReport {
    fn from(report: &LoadReport) -> Self {
        pb::LoadReport {
            window_ms: u64::try_from(report.window.as_millis()).unwrap_or(u64::MAX),
            backends: report.backends.iter().map(pb::BackendLoad::from).collect(),
            truncated: report.truncated,
            accepts_figures: report.accepts_figures,
        }
    }
}

impl From<&BackendLoad> for pb::BackendLoad {
    fn from(backend: &BackendLoad) -> Self {
        pb::BackendLoad {
            route: Some(pb::RouteKey::from(&backend.route)),
            set: Some(pb::EndpointSetKey::from(&backend.set)),
            endpoints: backend
                .endpoints
                .iter()
                .map(|e| pb::EndpointLoad {
                    address: Some(e.addr.into()),
                    requests: e.requests,
                    in_flight: e.in_flight,
                    expected_requests: e.expected,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::LoadReport> for LoadReport {
    type Error = ConvertError;

    fn try_from(report: pb::LoadReport) -> Result<Self, ConvertError> {
        let backends = report
            .backends
            .into_iter()
            .map(BackendLoad::try_from)
            .collect::<Result<_, _>>()?;
        Ok(LoadReport {
            window: Duration::from_millis(report.window_ms),
            backends,
            truncated: report.truncated,
            accepts_figures: report.accepts_figures,
        })
    }
}

impl From<&LoadFigures> for pb::LoadFigures {
    fn from(figures: &LoadFigures) -> Self {
        pb::LoadFigures {
            sets: figures
                .sets
                .iter()
                .map(|(set, endpoints)| pb::SetFigures {
                    set: Some(pb::EndpointSetKey::from(set)),
                    endpoints: endpoints
                        .iter()
                        .map(|&(addr, others)| pb::EndpointFigure {
                            address: Some(addr.into()),
                            others_in_flight: others,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::LoadFigures> for LoadFigures {
    type Error = ConvertError;

    fn try_from(figures: pb::LoadFigures) -> Result<Self, ConvertError> {
        let sets = figures
            .sets
            .into_iter()
            .map(|set| {
                let key = set
                    .set
                    .ok_or(ConvertError::MissingField("SetFigures.set"))?;
                let endpoints = set
                    .endpoints
                    .into_iter()
                    .map(|e| {
                        let address = e
                            .address
                            .ok_or(ConvertError::MissingField("EndpointFigure.address"))?;
                        Ok((EndpointAddr::try_from(address)?, e.others_in_flight))
                    })
                    .collect::<Result<_, ConvertError>>()?;
                Ok((EndpointSetKey::try_from(key)?, endpoints))
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(LoadFigures { sets })
    }
}

impl TryFrom<pb::BackendLoad> for BackendLoad {
    type Error = ConvertError;

    fn try_from(backend: pb::BackendLoad) -> Result<Self, ConvertError> {
        let route = backend
            .route
            .ok_or(ConvertError::MissingField("BackendLoad.route"))?;
        let set = backend
            .set
            .ok_or(ConvertError::MissingField("BackendLoad.set"))?;
        let endpoints = backend
            .endpoints
            .into_iter()
            .map(|e| {
                let address = e
                    .address
                    .ok_or(ConvertError::MissingField("EndpointLoad.address"))?;
                Ok(EndpointLoad {
                    addr: EndpointAddr::try_from(address)?,
                    requests: e.requests,
                    in_flight: e.in_flight,
                    // A NaN or negative figure from a broken proxy counts as nothing.
                    expected: if e.expected_requests.is_finite() {
                        e.expected_requests.max(0.0)
                    } else {
                        0.0
                    },
                })
            })
            .collect::<Result<_, ConvertError>>()?;
        Ok(BackendLoad {
            route: RouteKey::from(route),
            set: EndpointSetKey::try_from(set)?,
            endpoints,
        })
    }
}

impl pb::ProxyMessage {
    /// A load report, outside the versioned sequence.
    pub fn report(report: &LoadReport) -> Self {
        pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Report(report.into())),
        }
    }
}

#[cfg(test)]
mod tests;
