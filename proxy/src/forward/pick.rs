//! Picking a request's endpoint, and ending each pick in the balancer exactly once
//! (with its outcome, as a timeout when the request deadline dropped the try, or as a
//! cancellation when the client went away), and picking again for a retry.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use fairway_proto::model::EndpointAddr;
use http::header::HeaderName;
use http::{Request, Response};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::service::Shared;
use super::view;
use crate::balance::{LOAD_REPORT_HEADER, Outcome, Pick, parse_load_report};
use crate::pod::authority_of;
use crate::request::{RawFields, UpstreamBody};
use crate::response::ProxyBody;
use crate::route::RequestView;
use crate::table::{KeyOf, ResolveError, Resolved, Table, Target};

thread_local! {
    /// Per-thread randomness for the balancers: no lock, no allocation per request.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Routes a request (or an upgrade) and picks its endpoint, counted as started.
pub(super) fn pick(
    table: &Table,
    kind: Pick,
    authority: &str,
    request: &RequestView<'_>,
    key_of: KeyOf<'_>,
    now: Instant,
) -> Result<Resolved, ResolveError> {
    RNG.with(|rng| {
        let rng = &mut *rng.borrow_mut();
        table.resolve_for(kind, authority, request, key_of, now, rng)
    })
}

/// Ends one pick in the balancer exactly once: with the outcome given to
/// [`EndGuard::end`], or as [`Outcome::Cancelled`] if the request is dropped (the
/// client went away) before that.
pub(super) struct EndGuard {
    pub target: Target,
    pub addr: EndpointAddr,
    pub started: Instant,
    ended: bool,
}

impl EndGuard {
    /// `started`: when the pick was made (the caller's clock reading, one fewer).
    pub(super) fn new(target: Target, addr: EndpointAddr, started: Instant) -> Self {
        EndGuard {
            target,
            addr,
            started,
            ended: false,
        }
    }

    pub(super) fn end(&mut self, outcome: Outcome) {
        if !self.ended {
            self.ended = true;
            let now = Instant::now();
            self.target
                .backend
                .on_end(self.addr, now - self.started, outcome, now);
        }
    }
}

impl EndGuard {
    /// [`end`](Self::end) for a try the pod answered with `response`, whose load
    /// report (`endpoint-load-metrics`, in the header map or still in an HTTP/1.1 pod's
    /// raw fields) feeds the balancer's weights.
    pub(super) fn end_answered(&mut self, outcome: Outcome, response: &Response<ProxyBody>) {
        const LOAD_REPORT: HeaderName = HeaderName::from_static(LOAD_REPORT_HEADER);
        let header = match response.headers().get(LOAD_REPORT) {
            Some(value) => Some(value.as_bytes()),
            None => (response.body().fields()).and_then(|f| f.get_all(LOAD_REPORT_HEADER).next()),
        };
        let Some(report) = header.and_then(parse_load_report) else {
            return self.end(outcome);
        };
        if !self.ended {
            self.ended = true;
            let now = Instant::now();
            let ended = (self.addr, now - self.started, outcome);
            self.target.backend.on_end_reported(ended, &report, now);
        }
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

/// Records [`Outcome::Timeout`] for the try in flight if the request deadline drops it
/// (the guard alone would call that a cancellation, which is right only when the client
/// went away).
pub(super) struct TimedOut<'a> {
    pub guard: &'a mut EndGuard,
    pub deadline: Option<tokio::time::Instant>,
}

impl TimedOut<'_> {
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for TimedOut<'_> {
    fn drop(&mut self) {
        if self
            .deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            self.guard.end(Outcome::Timeout);
        }
    }
}

/// The host and target a request was routed by, kept when its rule rewrites them: a
/// retry must route as the first try did, not by what the pod was sent.
#[derive(Clone, Debug)]
pub(super) struct RoutedBy {
    pub authority: String,
    pub path_and_query: String,
}

/// What a request's retries pick by.
#[derive(Debug, Default)]
pub(super) struct Tried {
    /// The endpoints tried, filled only when the request retries (no allocation for
    /// the request that succeeds first time).
    pub addrs: Vec<EndpointAddr>,
    /// What the request was routed by, when its rule rewrote it.
    pub routed_by: Option<RoutedBy>,
}

/// Picks again for a retry, from the newest table (an endpoint may have left), avoiding
/// the endpoints already tried when a few picks find another. A retry has no affinity:
/// its key's endpoint just failed it, so the Route's policy picks.
pub(super) fn repick<U>(
    shared: &Shared<U>,
    request: &Request<UpstreamBody>,
    fallback: &Table,
    tried: &Tried,
) -> Option<(Target, EndpointAddr)> {
    let routed_by = tried.routed_by.as_ref();
    let authority = match routed_by {
        Some(routed) => routed.authority.as_str(),
        None => authority_of(request)?,
    };
    let headers = view::RequestHeaders {
        map: request.headers(),
        fields: request.body().fields(),
    };
    let mut view = view::of(request, &headers);
    if let Some(routed) = routed_by {
        view.path_and_query = &routed.path_and_query;
    }
    let now = Instant::now();
    let table = shared.table.load();
    let table: &Table = if table.version.is_some() {
        &table
    } else {
        fallback
    };
    // A rule that turned into a redirect since the first try has no pod to retry on.
    let pick = || match pick(table, Pick::Request, authority, &view, &|_| None, now) {
        Ok(Resolved::Pod(target, addr)) => Some((target, addr)),
        Ok(Resolved::Redirect { .. }) | Err(_) => None,
    };
    let mut picked = pick()?;
    for _ in 1..REPICKS {
        if !tried.addrs.contains(&picked.1) {
            break;
        }
        let again = pick()?;
        // Every pick counts its endpoint in flight: end the one set aside.
        let (target, addr) = std::mem::replace(&mut picked, again);
        target
            .backend
            .on_end(addr, Duration::ZERO, Outcome::Cancelled, now);
    }
    Some(picked)
}

/// Picks tried per retry to find an endpoint this request has not tried yet.
const REPICKS: usize = 4;
