//! One request, start to end: route and pick, the try loop (timeouts, safe retries
//! within the budget, outcomes into the balancer), the answer and its metrics.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{AppProtocol, EndpointAddr, Route, RouteKey};
use http::header::HeaderValue;
use http::{Method, Request, Response};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::errors::ProxyError;
use super::forward::{self, TryError, authority_of};
use super::grpc;
use super::headers;
use super::retry::{self, Failure, SharedBudget};
use super::upgrade;
use crate::balance::{Outcome, Pick};
use crate::body::UpstreamBody;
use crate::body::{ProxyBody, RawFields as _};
use crate::metrics::{Metrics, RetryReason};
use crate::pool::{ConnSettings, Pools};
use crate::table::{ResolveError, Table, TableHandle, Target};

pub use crate::body::RequestBody;

/// What every request on every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub table: Arc<TableHandle>,
    pub pools: Arc<Pools>,
    pub metrics: Arc<Metrics>,
    pub budget: SharedBudget,
    /// Most headers in a request (HTTP/2; hyper enforces it for HTTP/1.1).
    pub max_headers: usize,
}

thread_local! {
    /// Per-thread randomness for the balancers: no lock, no allocation per request.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Routes a request (or an upgrade) and picks its endpoint, counted as started.
pub(super) fn pick(
    table: &Table,
    kind: Pick,
    authority: &str,
    path: &str,
    now: Instant,
) -> Result<(Target, EndpointAddr), ResolveError> {
    RNG.with(|rng| table.resolve_for(kind, authority, path, now, &mut *rng.borrow_mut()))
}

/// How one request ended, for metrics.
pub(super) struct Answer {
    pub response: Response<ProxyBody>,
    pub route: Option<Arc<Route>>,
    pub endpoint: Option<EndpointAddr>,
}

/// Serves one request. Never fails: every error becomes its response.
/// `conflicting_framing`: the request carried both `Content-Length` and
/// `Transfer-Encoding` (the sentry saw it), so it is answered `400` unforwarded.
pub async fn handle(
    shared: Arc<Shared>,
    client: HeaderValue,
    conflicting_framing: bool,
    request: Request<RequestBody>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let start = Instant::now();
    let grpc = grpc::is_grpc(request.version(), request.headers());
    let answered = if conflicting_framing {
        // hyper already closes the connection after this answer (RFC 9112 §6.1).
        Err((ProxyError::ConflictingFraming, None, None))
    } else {
        proxy(&shared, &client, request, grpc, start).await
    };
    match answered {
        Ok(answer) => {
            let route = answer.route.as_ref().map(|r| &r.key);
            let status = answer.response.status().as_u16();
            record(
                &shared.metrics,
                route,
                answer.endpoint,
                status,
                start.elapsed(),
            );
            Ok(answer.response)
        }
        Err((error, route, endpoint)) => {
            tracing::debug!(%error, reason = error.reason(), grpc, "answered with an error");
            let response = if grpc {
                grpc::error_response(&error)
            } else {
                error.to_response()
            };
            // Errors before routing finished still name their route when they know it.
            let route = route.as_ref().map(|r| &r.key).or_else(|| error.route());
            let status = response.status().as_u16();
            record(&shared.metrics, route, endpoint, status, start.elapsed());
            Ok(response)
        }
    }
}

fn record(
    metrics: &Metrics,
    route: Option<&RouteKey>,
    endpoint: Option<EndpointAddr>,
    status: u16,
    duration: Duration,
) {
    metrics.record(route, endpoint, status, duration);
}

pub(super) type Failed = (ProxyError, Option<Arc<Route>>, Option<EndpointAddr>);

/// Ends one pick in the balancer exactly once: with the outcome given to
/// [`EndGuard::end`], or as [`Outcome::Cancelled`] if the request is dropped (the
/// client went away) before that.
pub(super) struct EndGuard {
    target: Target,
    addr: EndpointAddr,
    started: Instant,
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

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

async fn proxy(
    shared: &Shared,
    client: &HeaderValue,
    request: Request<RequestBody>,
    grpc: bool,
    start: Instant,
) -> Result<Answer, Failed> {
    // Only hyper's requests can be upgrades: the fast loop hands every request with
    // `Upgrade` to hyper, so its own requests skip the look.
    let from_hyper = matches!(request.body(), RequestBody::Hyper(_));
    if let Some(ask) = from_hyper.then(|| upgrade::asked(&request)).flatten() {
        match upgrade::admit(&shared.table.load(), &request, &ask) {
            upgrade::Admit::Tunnel(protocol) => {
                return upgrade::proxy(shared, client, request, ask.via, protocol, start).await;
            }
            upgrade::Admit::Refuse(error) => return Err((error, None, None)),
            upgrade::Admit::Plain => {}
        }
    }
    if request.method() == Method::CONNECT {
        return Err((ProxyError::ConnectMethod, None, None));
    }
    let count = request.headers().len() + request.body().fields().map_or(0, |f| f.len());
    if count > shared.max_headers {
        return Err((
            ProxyError::TooManyHeaders {
                count,
                max: shared.max_headers,
            },
            None,
            None,
        ));
    }
    let Some(authority) = authority_of(&request) else {
        return Err((ProxyError::MissingHost, None, None));
    };
    let table = shared.table.load();
    let (target, addr) = pick(
        &table,
        Pick::Request,
        authority,
        request.uri().path(),
        start,
    )
    .map_err(|e| (ProxyError::Resolve(e), None, None))?;
    let route = Arc::clone(&target.route);
    // From here the pick is ended exactly once, whatever happens to this future.
    let guard = EndGuard::new(target, addr, start);
    shared.budget.deposit(route.retries.budget_percent);
    // HTTP: the route's request timeout; gRPC: the call's own deadline (`grpc::limit`).
    let asked = grpc.then(|| grpc::timeout(request.headers()));
    let limit = grpc::limit(&route.timeouts, asked);
    let deadline = limit.map(|limit| tokio::time::Instant::from_std(start) + limit);
    // Built and pinned in place: the try loop's future is kilobytes, and moving it (into
    // a timeout, or into a pinned local) would copy all of it on every request.
    let attempt = std::pin::pin!(tries(shared, client, request, guard, &table, deadline));
    let outcome = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result,
            // The try in flight was dropped with the future; its `TimedOut` guard told
            // the balancer.
            Err(_) => {
                let (route, timeout) = (route.key.clone(), limit.unwrap_or_default());
                let error = if grpc {
                    ProxyError::Deadline { route, timeout }
                } else {
                    ProxyError::Timeout { route, timeout }
                };
                Err((error, None))
            }
        },
        None => attempt.await,
    };
    outcome
        .map_err(|(error, endpoint)| (error, Some(Arc::clone(&route)), endpoint))
        .map(|(mut response, endpoint)| {
            if grpc {
                response.body_mut().end_as_grpc();
            }
            Answer {
                response,
                route: Some(route),
                endpoint: Some(endpoint),
            }
        })
}

/// The try loop. Returns the response and the endpoint that gave it, or the last
/// failure and the endpoint it came from.
async fn tries(
    shared: &Shared,
    client: &HeaderValue,
    request: Request<RequestBody>,
    mut guard: EndGuard,
    table: &Table,
    deadline: Option<tokio::time::Instant>,
) -> Result<(Response<ProxyBody>, EndpointAddr), (ProxyError, Option<EndpointAddr>)> {
    let route = Arc::clone(&guard.target.route);
    let idempotent = retry::is_idempotent(request.method());
    let (mut parts, body) = request.into_parts();
    // Extensions belong to the downstream connection (upgrades, header case).
    parts.extensions.clear();
    // A body still to be read (hyper's path) is the client's upload, not the pod's time.
    let uploading = matches!(body, RequestBody::Hyper(_));
    let mut body = body.into_upstream(idempotent).await.map_err(|source| {
        (
            ProxyError::ClientBody {
                route: route.key.clone(),
                source,
            },
            None,
        )
    })?;
    if uploading {
        guard.started = Instant::now();
    }
    // The fast loop's raw fields go to the pod as they are (its map is empty) unless
    // something in them needs an edit, or an absolute-form target's authority replaces
    // their `Host`.
    let as_sent = body
        .fields()
        .is_some_and(|f| parts.uri.authority().is_none() && headers::raw_fields_pass(f));
    if as_sent {
        body.forward_raw_for(client.clone());
    } else {
        let raw = body.take_raw();
        let fields = raw.as_ref().map(|raw| &raw.fields);
        headers::edit_request(&mut parts.headers, fields, Some(client));
    }

    let mut attempts_left = route.retries.attempts;
    // The request for the next try. HTTP/1.1 only borrows it, so after a try it is still
    // here for a retry without a copy; HTTP/2 takes it.
    let mut request = Some(Request::from_parts(parts, body));
    // Endpoints this request already tried, filled only when it retries (no allocation
    // for the request that succeeds first time): a retry goes elsewhere when it can.
    let mut tried: Vec<EndpointAddr> = Vec::new();
    loop {
        let addr = guard.addr;
        let settings = ConnSettings::new(&guard.target.route, guard.target.protocol);
        // A copy to send again if this one fails after it was sent: only worth making
        // when that retry could happen, and only for HTTP/2, which consumes the request
        // (HTTP/1.1 borrows it).
        // A per-try timeout drops the try mid-write: copy it then too.
        let per_try = route.timeouts.per_try;
        let consumed = settings.protocol == AppProtocol::H2c || per_try.is_some();
        let backup = (attempts_left > 0 && idempotent && consumed)
            .then(|| request.as_ref().and_then(clone_request))
            .flatten();
        let timer = TimedOut {
            guard: &mut guard,
            deadline,
        };
        let sent = {
            // In a block: the try ends (and gives back its borrow of the request) here.
            let send = std::pin::pin!(forward::send(&shared.pools, addr, &settings, &mut request));
            match per_try {
                Some(limit) => tokio::time::timeout(limit, send)
                    .await
                    .unwrap_or(Err(TryError::TimedOut(limit))),
                None => send.await,
            }
        };
        timer.disarm();
        let (failure, error, next) = match sent {
            Ok(mut response) => {
                let status = response.status();
                // The status first: a request is only moved about when it may go again.
                let again = (retry::is_retryable_status(status) && attempts_left > 0 && idempotent)
                    .then(|| backup.or_else(|| request.take()))
                    .flatten()
                    .filter(|r| r.body().is_replayable());
                if again.is_none() || !shared.budget.try_withdraw(std::time::Instant::now()) {
                    guard.end(if status.is_server_error() {
                        Outcome::Status5xx
                    } else {
                        Outcome::Success
                    });
                    headers::strip_response(response.headers_mut());
                    return Ok((response, addr));
                }
                guard.end(Outcome::Status5xx);
                // A retry replaces this response; its connection goes if it is mid-body.
                drop(response);
                attempts_left -= 1;
                count_retry(shared, &route, Failure::Status);
                let again = again.expect("checked above");
                tried.push(addr);
                guard = match repick(shared, &again, table, &tried) {
                    Some((target, addr)) => EndGuard::new(target, addr, Instant::now()),
                    None => {
                        let error = ProxyError::Resolve(ResolveError::NoEndpoint {
                            route: route.key.clone(),
                            set: guard.target.backend.set.clone(),
                        });
                        return Err((error, Some(addr)));
                    }
                };
                request = Some(again);
                continue;
            }
            Err(TryError::Connect(source)) => {
                guard.end(Outcome::ConnectFailure);
                let error = ProxyError::ConnectFailed {
                    route: route.key.clone(),
                    source,
                };
                (Failure::NotSent, error, request.take())
            }
            Err(TryError::NotSent(source)) => {
                // A pooled connection the pod closed just as we picked it (keep-alive
                // race): says nothing about the pod's health.
                guard.end(Outcome::Cancelled);
                let error = ProxyError::UpstreamReset {
                    route: route.key.clone(),
                    endpoint: addr,
                    source,
                };
                (Failure::NotSent, error, request.take())
            }
            Err(TryError::ClientBody(source)) => {
                // Our side failed: the client's body broke off. Not the pod's fault.
                guard.end(Outcome::Cancelled);
                return Err((
                    ProxyError::ClientBody {
                        route: route.key.clone(),
                        source,
                    },
                    Some(addr),
                ));
            }
            Err(TryError::TimedOut(timeout)) => {
                // The pod may have the request: retried only where a reset would be.
                guard.end(Outcome::Timeout);
                let error = ProxyError::TryTimeout {
                    route: route.key.clone(),
                    endpoint: addr,
                    timeout,
                };
                (Failure::Reset, error, backup)
            }
            Err(TryError::Sent(source)) => {
                guard.end(Outcome::Reset);
                let error = ProxyError::UpstreamReset {
                    route: route.key.clone(),
                    endpoint: addr,
                    source,
                };
                (Failure::Reset, error, backup.or_else(|| request.take()))
            }
        };
        let Some(next_request) = next else {
            return Err((error, Some(addr)));
        };
        let safe = retry::is_safe(
            failure,
            next_request.method(),
            next_request.body().is_replayable(),
        );
        // The budget keeps retries from multiplying the load on struggling pods; a try
        // that never reached a pod (refused connect) cost them nothing, so it retries
        // within `attempts` alone. Otherwise a dead pod, picked again in the balancer's
        // panic mode, could exhaust the budget while healthy pods stand by.
        let budgeted = failure != Failure::NotSent;
        if attempts_left == 0
            || !safe
            || (budgeted && !shared.budget.try_withdraw(std::time::Instant::now()))
        {
            return Err((error, Some(addr)));
        }
        attempts_left -= 1;
        count_retry(shared, &route, failure);
        tried.push(addr);
        match repick(shared, &next_request, table, &tried) {
            Some((target, addr)) => guard = EndGuard::new(target, addr, Instant::now()),
            None => return Err((error, Some(addr))),
        }
        request = Some(next_request);
    }
}

/// `fairway_proxy_retries_total`: one more try of `route` after `failure`.
fn count_retry(shared: &Shared, route: &Route, failure: Failure) {
    let reason = match failure {
        Failure::NotSent => RetryReason::not_sent,
        Failure::Reset => RetryReason::reset,
        Failure::Status => RetryReason::status,
    };
    shared.metrics.record_retry(&route.key.to_string(), reason);
}

/// Records [`Outcome::Timeout`] for the try in flight if the request deadline drops it
/// (the guard alone would call that a cancellation, which is right only when the client
/// went away).
struct TimedOut<'a> {
    guard: &'a mut EndGuard,
    deadline: Option<tokio::time::Instant>,
}

impl TimedOut<'_> {
    fn disarm(self) {
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

/// Picks again for a retry, from the newest table (an endpoint may have left), avoiding
/// the endpoints in `tried` when a few picks find another.
fn repick(
    shared: &Shared,
    request: &Request<UpstreamBody>,
    fallback: &Table,
    tried: &[EndpointAddr],
) -> Option<(Target, EndpointAddr)> {
    let authority = authority_of(request)?;
    let path = request.uri().path();
    let now = Instant::now();
    let table = shared.table.load();
    let table: &Table = if table.version.is_some() {
        &table
    } else {
        fallback
    };
    let mut picked = pick(table, Pick::Request, authority, path, now).ok()?;
    for _ in 1..REPICKS {
        if !tried.contains(&picked.1) {
            break;
        }
        let again = pick(table, Pick::Request, authority, path, now).ok()?;
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

fn clone_request(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}
