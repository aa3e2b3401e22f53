//! One request, start to end: route and pick (`pick`), the try loop (timeouts, safe retries
//! within the budget, outcomes into the balancer), the answer and its metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{AppProtocol, EndpointAddr, Route};
use http::header::HeaderValue;
use http::{Method, Request, Response};
use http_body::Body as _;

use super::affinity;
use super::errors::ProxyError;
use super::filters;
use super::grpc;
use super::pick::{EndGuard, RoutedBy, TimedOut, Tried, pick, repick};
use super::prepare::prepare;
use super::resend;
use super::retry::{self, SharedBudget};
use super::step::{self, Resend, Step};
use super::traced;
use super::upgrade;
use super::view;
use crate::balance::{Outcome, Pick};
use crate::headers;
use crate::metrics::grpc::{self as grpc_metrics, GrpcCall};
use crate::metrics::{Metrics, RetryReason};
use crate::pod::{TryError, Upstream, authority_of};
use crate::pool::{ConnSettings, Pools};
use crate::request::RawFields as _;
use crate::request::UpstreamBody;
use crate::response::{GrpcEnd, ProxyBody};
use crate::table::{ResolveError, Resolved, Table, TableHandle};
use crate::tls::Alpn;
use crate::trace::{RequestTrace, Tracer};

pub use crate::request::RequestBody;

/// What every request on every connection shares. `U` is where tries go: the pools, or
/// a unit test's fake.
#[derive(Debug)]
pub struct Shared<U = Pools> {
    pub table: Arc<TableHandle>,
    pub pools: Arc<U>,
    pub metrics: Arc<Metrics>,
    pub budget: SharedBudget,
    /// Most headers in a request (HTTP/2; hyper enforces it for HTTP/1.1).
    pub max_headers: usize,
    /// `None`: tracing is off, and requests pay one branch for it.
    pub tracer: Option<Arc<Tracer>>,
}

/// How one request ended, for metrics.
pub(super) struct Answer {
    pub response: Response<ProxyBody>,
    pub route: Option<Arc<Route>>,
    pub endpoint: Option<EndpointAddr>,
}

/// Serves one request. Never fails: every error becomes its response.
/// `conflicting_framing`: the request carried both `Content-Length` and
/// `Transfer-Encoding` (the fast loop saw it), so it is answered `400` unforwarded.
pub async fn handle<U: Upstream>(
    shared: Arc<Shared<U>>,
    client: HeaderValue,
    conflicting_framing: bool,
    request: Request<RequestBody>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let start = Instant::now();
    let grpc = grpc::is_grpc(request.version(), request.headers());
    // A gRPC call counts by its status however it ends: answered, or dropped here when
    // the client goes away first (its deadline, a cancel).
    let mut call = grpc.then(|| {
        let asked = grpc::timeout(request.headers());
        GrpcCall::new(Arc::clone(&shared.metrics), start, asked)
    });
    let mut trace = shared
        .tracer
        .as_ref()
        .and_then(|tracer| traced::start(tracer, &request, start));
    let answered = if conflicting_framing {
        // The fast loop closes the connection after this answer.
        Err((ProxyError::ConflictingFraming, None, None))
    } else {
        proxy(
            &shared,
            &client,
            request,
            call.as_mut(),
            start,
            trace.as_mut(),
        )
        .await
    };
    if let (Some(tracer), Some(trace)) = (&shared.tracer, trace) {
        traced::finish(tracer, trace, &answered);
    }
    match answered {
        Ok(mut answer) => {
            let route = answer.route.as_ref().map(|r| &r.key);
            let status = answer.response.status().as_u16();
            shared
                .metrics
                .record(route, answer.endpoint, status, start.elapsed());
            if let Some(mut call) = call {
                if let Some(route) = route {
                    call.aim(route, answer.endpoint);
                }
                follow_grpc(&mut answer.response, call);
            }
            if let Some(route) = &answer.route {
                // After `follow_grpc`: a gRPC stream ends with its call's trailers.
                let grace = route.upstream.drain_timeout;
                answer.response.body_mut().end_when_drained(grace);
            }
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
            let elapsed = start.elapsed();
            shared.metrics.record(route, endpoint, status, elapsed);
            if let Some(mut call) = call {
                if let Some(route) = route {
                    call.aim(route, endpoint);
                }
                call.finish(grpc::code(&error).number());
            }
            Ok(response)
        }
    }
}

/// Records a gRPC call in the metrics when it ends: now for a trailers-only answer,
/// else at its trailers (the body carries `call`).
fn follow_grpc(response: &mut Response<ProxyBody>, call: GrpcCall) {
    let ended = grpc::trailers_only_status(response.headers(), response.body().is_end_stream());
    if let Some(code) = ended {
        return call.finish(code);
    }
    let end = GrpcEnd {
        call,
        broken: grpc::broken_stream_trailers,
        drained: grpc::drained_stream_trailers,
    };
    if let Some(end) = response.body_mut().end_as_grpc(end) {
        // Not an HTTP/2 pod's stream (a gRPC pod behind a Route on HTTP1): its status,
        // if any, is in the headers.
        let code = grpc::grpc_status(response.headers());
        end.call.finish(code.unwrap_or(grpc_metrics::NO_TRAILERS));
    }
}

pub(super) type Failed = (ProxyError, Option<Arc<Route>>, Option<EndpointAddr>);

async fn proxy<U: Upstream>(
    shared: &Shared<U>,
    client: &HeaderValue,
    request: Request<RequestBody>,
    call: Option<&mut GrpcCall>,
    start: Instant,
    mut trace: Option<&mut RequestTrace>,
) -> Result<Answer, Failed> {
    let grpc = call.is_some();
    let asked = call.as_deref().map(GrpcCall::asked);
    // Only hyper's requests can be upgrades: the fast loop hands every request with
    // `Upgrade` to hyper, so its own requests skip the look.
    let from_hyper = matches!(request.body(), RequestBody::Hyper(_));
    if let Some(ask) = from_hyper.then(|| upgrade::asked(&request)).flatten() {
        match upgrade::admit(&shared.table.load(), &request, &ask) {
            upgrade::Admit::Tunnel(protocol) => {
                // Boxed: a tunnel's future is large and rare, and inline it would grow
                // every request's future (moved, and so copied, per HTTP/2 stream).
                return Box::pin(upgrade::proxy(
                    shared, client, request, ask.via, protocol, start,
                ))
                .await;
            }
            upgrade::Admit::Refuse(error) => return Err((error, None, None)),
            upgrade::Admit::Plain => {}
        }
    }
    if request.method() == Method::CONNECT {
        return Err((ProxyError::ConnectMethod, None, None));
    }
    let count = request.headers().len() + request.body().fields().map_or(0, |f| f.len());
    let max = shared.max_headers;
    if count > max {
        return Err((ProxyError::TooManyHeaders { count, max }, None, None));
    }
    let Some(authority) = authority_of(&request) else {
        return Err((ProxyError::MissingHost, None, None));
    };
    let table = shared.table.load();
    let resolved = {
        let key_of = affinity::key_of(request.headers(), request.body().fields(), client);
        let headers = view::RequestHeaders {
            map: request.headers(),
            fields: request.body().fields(),
        };
        let view = view::of(&request, &headers);
        pick(&table, Pick::Request, authority, &view, &key_of, start)
    }
    .map_err(|e| (ProxyError::Resolve(e), None, None))?;
    let (target, addr) = match resolved {
        Resolved::Pod(target, addr) => (target, addr),
        Resolved::Redirect { route, rule } => {
            return Ok(filters::redirect(request.uri(), authority, route, rule));
        }
    };
    let route = Arc::clone(&target.route);
    if let Some(call) = call {
        call.aim(&route.key, Some(addr));
    }
    if let Some(trace) = trace.as_deref_mut() {
        trace.route(
            route.key.to_string(),
            format!("{:?}", route.load_balancer.policy),
        );
    }
    // From here the pick is ended exactly once, whatever happens to this future.
    let guard = EndGuard::new(target, addr, start);
    shared.budget.deposit(route.retries.budget_percent);
    // HTTP: the route's request timeout; gRPC: the call's own deadline (`grpc::limit`).
    let limit = grpc::limit(guard.target.timeouts(), asked);
    // `checked_add`: a client's grpc-timeout may be 99999999H; past what the clock can
    // hold there is no deadline to keep.
    let deadline = limit.and_then(|limit| tokio::time::Instant::from_std(start).checked_add(limit));
    // Built and pinned in place: the try loop's future is kilobytes, and moving it (into
    // a timeout, or into a pinned local) would copy all of it on every request.
    let attempt = std::pin::pin!(tries(
        shared,
        client,
        request,
        grpc,
        guard,
        &table,
        (deadline, trace)
    ));
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
        .map(|(response, endpoint)| Answer {
            response,
            route: Some(route),
            endpoint: Some(endpoint),
        })
}

/// The try loop. Returns the response and the endpoint that gave it, or the last
/// failure and the endpoint it came from. What each try's end means is `step`'s to
/// decide; this sends, applies the answer and picks again.
async fn tries<U: Upstream>(
    shared: &Shared<U>,
    client: &HeaderValue,
    request: Request<RequestBody>,
    grpc: bool,
    mut guard: EndGuard,
    table: &Table,
    // When the request must be answered, and its trace if sampled.
    (deadline, mut trace): (Option<tokio::time::Instant>, Option<&mut RequestTrace>),
) -> Result<(Response<ProxyBody>, EndpointAddr), (ProxyError, Option<EndpointAddr>)> {
    let route = Arc::clone(&guard.target.route);
    let idempotent = retry::is_idempotent(request.method());
    let traced = trace.is_some();
    // A request its rule rewrites is retried by what it was routed by.
    let rewritten = guard
        .target
        .rule_filters
        .as_ref()
        .is_some_and(|f| f.rewrite.is_some());
    let routed_by = rewritten
        .then(|| {
            Some(RoutedBy {
                authority: authority_of(&request)?.to_owned(),
                path_and_query: request.uri().path_and_query()?.as_str().to_owned(),
            })
        })
        .flatten();
    let mut request = prepare(client, request, idempotent, &route, &mut guard, traced)
        .await
        .map_err(|error| (error, None))?;
    // The rule's own retries (an HTTPRoute's `retry`), else the Route's.
    let retries = route.rules[guard.target.rule_index].retries.as_ref();
    let retries = retries.unwrap_or(&route.retries);
    let mut attempts_left = retries.attempts;
    // A gRPC call that may be retried on a status keeps a copy of its head and records
    // its streamed body, so it can go again although hyper's HTTP/2 takes it.
    let recorded = (grpc && attempts_left > 0 && !retries.grpc_statuses.is_empty())
        .then(|| {
            let playback = request.body_mut().record()?;
            Some((resend::head_of(&request), playback))
        })
        .flatten();
    // The request for the next try. HTTP/1.1 only borrows it, so after a try it is still
    // here for a retry without a copy; HTTP/2 takes it.
    let mut request = Some(request);
    // Endpoints this request already tried: a retry goes elsewhere when it can.
    let mut tried = Tried {
        addrs: Vec::new(),
        routed_by,
    };
    loop {
        let addr = guard.addr;
        let target = &guard.target;
        let settings = ConnSettings::new(&target.route, target.protocol, target.tls.clone());
        // A copy to send again if this one fails after it was sent: only worth making
        // when that retry could happen, and only for HTTP/2, which consumes the request
        // (HTTP/1.1 borrows it). A per-try timeout drops the try mid-write: copy it then
        // too.
        let per_try = guard.target.timeouts().per_try;
        // Over TLS, ALPN may pick HTTP/2 for an HTTP/1.1 Route: count it as consumed.
        let alpn_h2 = (settings.tls.as_ref()).is_some_and(|tls| tls.alpn != Alpn::Http1);
        let consumed = settings.protocol == AppProtocol::H2c || alpn_h2 || per_try.is_some();
        let backup = (attempts_left > 0 && idempotent && consumed)
            .then(|| request.as_ref().and_then(resend::clone_request))
            .flatten();
        if let Some(trace) = trace.as_deref_mut() {
            traced::begin_try(trace, addr, &mut request);
        }
        let timer = TimedOut {
            guard: &mut guard,
            deadline,
        };
        let sent = send(shared, addr, &settings, per_try, &mut request).await;
        timer.disarm();
        if let Some(trace) = trace.as_deref_mut() {
            traced::end_try(trace, &sent);
        }
        let (failure, error, next) = match sent {
            Ok(mut response) => {
                let status = response.status();
                let (again, wait, reason) = if grpc {
                    resend::after_grpc(
                        &response,
                        &retries.grpc_statuses,
                        attempts_left,
                        backup,
                        &mut request,
                        recorded.as_ref(),
                    )
                } else {
                    let retried = (&retries.http_statuses[..], attempts_left, idempotent);
                    resend::after_status(status, retried, backup, &mut request)
                };
                let again = again.filter(|_| shared.budget.try_withdraw(std::time::Instant::now()));
                let Some(again) = again else {
                    guard.end_answered(step::response_outcome(status), &response);
                    headers::strip_response(response.headers_mut());
                    let filters = guard.target.rule_filters.as_deref();
                    if let Some(edits) = filters.and_then(|f| f.response_headers.as_ref()) {
                        filters::edit_response(&mut response, edits);
                    }
                    return Ok((response, addr));
                };
                guard.end(Outcome::Status5xx);
                // A retry replaces this response; its connection goes if it is mid-body.
                drop(response);
                attempts_left -= 1;
                // The pod's pushback, or the rule's backoff; the request deadline still
                // bounds it.
                let wait = wait.max(retries.backoff);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                if let Some(trace) = trace.as_deref_mut() {
                    trace.retrying(reason.as_str());
                }
                guard = match next_pick(shared, &route, table, &mut tried, addr, reason, &again) {
                    Some(next) => next,
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
            Err(try_error) => {
                let classified = step::classify(&try_error);
                guard.end(classified.outcome);
                let next = match classified.resend {
                    Resend::Slot => request.take(),
                    Resend::Backup => backup,
                    Resend::BackupOrSlot => backup.or_else(|| request.take()),
                };
                let error = step::error(&route.key, addr, try_error);
                let Some(failure) = classified.failure else {
                    return Err((error, Some(addr)));
                };
                (failure, error, next)
            }
        };
        let Some(next_request) = next else {
            return Err((error, Some(addr)));
        };
        let replayable = next_request.body().is_replayable();
        let safe = retry::is_safe(failure, next_request.method(), replayable);
        let go = match step::decide(failure, attempts_left, safe) {
            Step::Stop => false,
            Step::Retry { budgeted } => {
                !budgeted || shared.budget.try_withdraw(std::time::Instant::now())
            }
        };
        if !go {
            return Err((error, Some(addr)));
        }
        attempts_left -= 1;
        if !retries.backoff.is_zero() {
            tokio::time::sleep(retries.backoff).await;
        }
        let reason = resend::retry_reason(failure);
        if let Some(trace) = trace.as_deref_mut() {
            trace.retrying(reason.as_str());
        }
        match next_pick(
            shared,
            &route,
            table,
            &mut tried,
            addr,
            reason,
            &next_request,
        ) {
            Some(next) => guard = next,
            None => return Err((error, Some(addr))),
        }
        request = Some(next_request);
    }
}

/// One try, within the route's per-try timeout when it has one.
async fn send<U: Upstream>(
    shared: &Shared<U>,
    addr: EndpointAddr,
    settings: &ConnSettings,
    per_try: Option<Duration>,
    request: &mut Option<Request<UpstreamBody>>,
) -> Result<Response<ProxyBody>, TryError> {
    let send = std::pin::pin!(shared.pools.send(addr, settings, request));
    match per_try {
        Some(limit) => tokio::time::timeout(limit, send)
            .await
            .unwrap_or(Err(TryError::TimedOut(limit))),
        None => send.await,
    }
}

/// Counts a retry after `failure` at `addr` and picks where it goes, away from the
/// endpoints already tried; `None` when no endpoint is left.
fn next_pick<U: Upstream>(
    shared: &Shared<U>,
    route: &Route,
    table: &Table,
    tried: &mut Tried,
    addr: EndpointAddr,
    reason: RetryReason,
    request: &Request<UpstreamBody>,
) -> Option<EndGuard> {
    shared.metrics.record_retry(&route.key.to_string(), reason);
    tried.addrs.push(addr);
    let (target, addr) = repick(shared, request, table, tried)?;
    Some(EndGuard::new(target, addr, Instant::now()))
}

#[cfg(test)]
mod tests;
