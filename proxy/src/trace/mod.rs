//! Request tracing (off unless `--otlp-endpoint` is set): W3C `traceparent` continued
//! from the client, a new span id per upstream try sent to the pod, and spans (route,
//! pod chosen, policy, tries, retry reasons, upstream time) exported over OTLP/gRPC for
//! the sampled requests.
//!
//! Where to start: `context` (parse, format, sample: pure), `span` (one request's spans
//! and their OTLP form: pure), `export` ([`Tracer`] on the request path, the batching
//! exporter task at the edge). With tracing off the request path holds a `None` and
//! pays one branch per request; an unsampled request is untouched (its `traceparent`,
//! if any, goes to the pod as it came).

pub mod context;
pub mod export;
pub mod span;

pub use context::TRACEPARENT;
pub use export::{TraceConfig, Tracer, span_id};
pub use span::{FinishedTrace, RequestTrace, TrySpan};
