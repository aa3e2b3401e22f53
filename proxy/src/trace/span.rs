//! One traced request as it happens ([`RequestTrace`]): the request's server span and
//! one client span per upstream try, each try with its own span id (what the pod sees
//! as its parent in `traceparent`); and the finished spans as OTLP messages
//! ([`to_otlp`]), pure.
//!
//! Attributes (the contract docs/operations.md lists): on the request span
//! `fairway.route`, `fairway.policy`, `fairway.pod` (the pod that answered, or the last
//! one tried), `fairway.tries`, `fairway.upstream.duration_ms` (the tries' time summed),
//! `http.request.method`, `http.response.status_code`, and `fairway.error` when the proxy
//! answered itself; on each try span `fairway.pod`, `fairway.try` (1-based),
//! `fairway.retry_reason` (why this try happened, from the second on) and
//! `http.response.status_code` or `fairway.error`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use super::context::{self, TraceParent};

/// One upstream try.
#[derive(Clone, Debug, PartialEq)]
pub struct TrySpan {
    pub span_id: [u8; 8],
    pub pod: String,
    pub start: SystemTime,
    pub duration: Duration,
    /// Why this try happened (`None` for the first).
    pub retry_reason: Option<&'static str>,
    /// The pod's status, when it answered.
    pub status: Option<u16>,
    /// Why the try failed, when it did without an answer.
    pub error: Option<String>,
}

/// A request being traced. Lives on the request's stack; only sampled requests get one.
#[derive(Debug)]
pub struct RequestTrace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: SystemTime,
    started: Instant,
    method: String,
    route: Option<String>,
    policy: Option<String>,
    tries: Vec<TrySpan>,
    /// When the running try started, if one runs.
    running: Option<Instant>,
    /// Why the next try will happen.
    next_reason: Option<&'static str>,
}

/// A request's spans, complete.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedTrace {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub start: SystemTime,
    pub duration: Duration,
    pub method: String,
    pub route: Option<String>,
    pub policy: Option<String>,
    pub status: u16,
    pub error: Option<&'static str>,
    pub tries: Vec<TrySpan>,
}

impl RequestTrace {
    /// Starts a trace: continues `parent`'s trace when there is one, else `trace_id`.
    pub fn start(
        parent: Option<TraceParent>,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        method: &str,
        now: (SystemTime, Instant),
    ) -> RequestTrace {
        RequestTrace {
            trace_id: parent.map_or(trace_id, |p| p.trace_id),
            span_id,
            parent: parent.map(|p| p.parent_id),
            start: now.0,
            started: now.1,
            method: method.to_owned(),
            route: None,
            policy: None,
            tries: Vec::new(),
            running: None,
            next_reason: None,
        }
    }

    pub fn route(&mut self, route: String, policy: String) {
        self.route = Some(route);
        self.policy = Some(policy);
    }

    /// A try to `pod` starts now with its own `span_id`; returns the `traceparent` to
    /// send it.
    pub fn begin_try(
        &mut self,
        pod: String,
        span_id: [u8; 8],
        now: (SystemTime, Instant),
    ) -> String {
        self.end_try(None, Some("abandoned".to_owned()), now.1);
        self.tries.push(TrySpan {
            span_id,
            pod,
            start: now.0,
            duration: Duration::ZERO,
            retry_reason: self.next_reason.take(),
            status: None,
            error: None,
        });
        self.running = Some(now.1);
        context::format(&self.trace_id, &span_id, true)
    }

    /// The running try ended with the pod's `status`, or with `error`.
    pub fn end_try(&mut self, status: Option<u16>, error: Option<String>, now: Instant) {
        let (Some(started), Some(last)) = (self.running.take(), self.tries.last_mut()) else {
            return;
        };
        last.duration = now.saturating_duration_since(started);
        last.status = status;
        last.error = error;
    }

    /// The next try is a retry, for `reason`.
    pub fn retrying(&mut self, reason: &'static str) {
        self.next_reason = Some(reason);
    }

    /// The request was answered with `status` (`error`: the proxy's own reason).
    pub fn finish(
        mut self,
        status: u16,
        error: Option<&'static str>,
        now: Instant,
    ) -> FinishedTrace {
        // A try still running was cut by the request's deadline.
        self.end_try(None, Some("deadline".to_owned()), now);
        FinishedTrace {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            start: self.start,
            duration: now.saturating_duration_since(self.started),
            method: self.method,
            route: self.route,
            policy: self.policy,
            status,
            error,
            tries: self.tries,
        }
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_owned()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn end(start: SystemTime, duration: Duration) -> u64 {
    nanos(start).saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

fn request_span(t: &FinishedTrace) -> Span {
    let mut attributes = vec![
        text("http.request.method", &t.method),
        int("http.response.status_code", i64::from(t.status)),
        int("fairway.tries", t.tries.len() as i64),
    ];
    if let Some(route) = &t.route {
        attributes.push(text("fairway.route", route));
    }
    if let Some(policy) = &t.policy {
        attributes.push(text("fairway.policy", policy));
    }
    if let Some(last) = t.tries.last() {
        attributes.push(text("fairway.pod", &last.pod));
    }
    let upstream: Duration = t.tries.iter().map(|t| t.duration).sum();
    attributes.push(kv(
        "fairway.upstream.duration_ms",
        any_value::Value::DoubleValue(upstream.as_secs_f64() * 1e3),
    ));
    if let Some(error) = t.error {
        attributes.push(text("fairway.error", error));
    }
    let failed = t.status >= 500;
    Span {
        trace_id: t.trace_id.to_vec(),
        span_id: t.span_id.to_vec(),
        parent_span_id: t.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: t
            .route
            .as_ref()
            .map_or_else(|| t.method.clone(), |r| format!("{} {r}", t.method)),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: nanos(t.start),
        end_time_unix_nano: end(t.start, t.duration),
        attributes,
        status: Some(Status {
            message: t.error.unwrap_or_default().to_owned(),
            code: if failed {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
        }),
        ..Span::default()
    }
}

fn try_span(t: &FinishedTrace, n: usize, attempt: &TrySpan) -> Span {
    let mut attributes = vec![
        text("fairway.pod", &attempt.pod),
        int("fairway.try", n as i64 + 1),
    ];
    if let Some(reason) = attempt.retry_reason {
        attributes.push(text("fairway.retry_reason", reason));
    }
    if let Some(status) = attempt.status {
        attributes.push(int("http.response.status_code", i64::from(status)));
    }
    if let Some(error) = &attempt.error {
        attributes.push(text("fairway.error", error));
    }
    let failed = attempt.error.is_some() || attempt.status.is_some_and(|s| s >= 500);
    Span {
        trace_id: t.trace_id.to_vec(),
        span_id: attempt.span_id.to_vec(),
        parent_span_id: t.span_id.to_vec(),
        name: format!("try {} {}", n + 1, attempt.pod),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: nanos(attempt.start),
        end_time_unix_nano: end(attempt.start, attempt.duration),
        attributes,
        status: Some(Status {
            message: attempt.error.clone().unwrap_or_default(),
            code: if failed {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
        }),
        ..Span::default()
    }
}

/// The export request for `traces`, from the proxy `service` (`service.name`) with
/// instance `id` (`service.instance.id`).
pub fn to_otlp(service: &str, id: &str, traces: &[FinishedTrace]) -> ExportTraceServiceRequest {
    let spans = traces
        .iter()
        .flat_map(|t| {
            std::iter::once(request_span(t))
                .chain(t.tries.iter().enumerate().map(|(n, a)| try_span(t, n, a)))
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service),
                    text("service.instance.id", id),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "fairway-proxy".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_retried_request_is_one_server_span_and_a_client_span_per_try() {
        let t0 = (
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            Instant::now(),
        );
        let at = |ms| {
            (
                t0.0 + Duration::from_millis(ms),
                t0.1 + Duration::from_millis(ms),
            )
        };
        let parent = context::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let mut trace = RequestTrace::start(parent, [9; 16], [1; 8], "GET", t0);
        trace.route("shop/orders".into(), "RoundRobin".into());
        let first = trace.begin_try("10.0.0.1:80".into(), [2; 8], at(1));
        assert_eq!(
            first,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0202020202020202-01"
        );
        trace.end_try(Some(503), None, at(3).1);
        trace.retrying("status");
        let second = trace.begin_try("10.0.0.2:80".into(), [3; 8], at(4));
        assert_ne!(first, second, "a new span id per try");
        trace.end_try(Some(200), None, at(9).1);
        let done = trace.finish(200, None, at(10).1);

        let request = to_otlp("fairway-proxy", "proxy-a", &[done]);
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        let server = &spans[0];
        assert_eq!(
            server.trace_id,
            parent.expect("valid").trace_id.to_vec(),
            "the client's trace"
        );
        assert_eq!(
            server.parent_span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(
            attr(server, "fairway.tries"),
            Some(&any_value::Value::IntValue(2))
        );
        assert_eq!(
            attr(server, "fairway.pod"),
            Some(&any_value::Value::StringValue("10.0.0.2:80".into()))
        );
        assert_eq!(
            attr(server, "fairway.upstream.duration_ms"),
            Some(&any_value::Value::DoubleValue(7.0)),
            "2 ms, then 5 ms"
        );
        assert_eq!(
            spans[1].parent_span_id,
            vec![1; 8],
            "tries are children of the request"
        );
        assert_eq!(spans[2].span_id, vec![3; 8]);
        assert_eq!(
            attr(&spans[2], "fairway.retry_reason"),
            Some(&any_value::Value::StringValue("status".into()))
        );
        assert_eq!(
            attr(&spans[1], "fairway.retry_reason"),
            None,
            "the first try is no retry"
        );
        assert_eq!(
            spans[0].end_time_unix_nano - spans[0].start_time_unix_nano,
            10_000_000
        );
    }
}
