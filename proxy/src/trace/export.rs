//! The I/O edge of tracing: [`Tracer`] starts sampled traces on the request path and
//! queues finished ones; one task batches them and exports over OTLP/gRPC.
//!
//! The request path never waits on the collector: the queue is bounded
//! ([`QUEUE_SPANS`]) and a full queue drops the trace (counted in the log at most once
//! per batch). A collector that is down costs a failed export per batch, logged, and the
//! batch is dropped: traces are samples, not records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use super::context::{self, TraceParent};
use super::span::{FinishedTrace, RequestTrace, to_otlp};

/// Finished traces waiting for export; past it, new ones are dropped.
pub const QUEUE_SPANS: usize = 4_096;
/// Most traces in one export request.
pub const BATCH_SPANS: usize = 512;
/// A trace waits at most this long for its batch to fill.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds a connect or an export to a collector that does not answer.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how much to trace (`--otlp-endpoint`, `--trace-sample-ratio`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: Uri,
    /// New traces kept per million requests without a sampled parent.
    pub sample_per_million: u32,
    /// `service.name` of the spans.
    pub service: String,
    /// `service.instance.id`: the proxy's `--id`.
    pub id: String,
}

/// Starts traces and queues them for export. Shared by every request.
#[derive(Debug)]
pub struct Tracer {
    sample_per_million: u32,
    queue: mpsc::Sender<FinishedTrace>,
    dropped: Arc<AtomicU64>,
}

impl Tracer {
    /// A tracer whose exporter runs on the current runtime until the tracer is dropped.
    pub fn spawn(config: TraceConfig) -> Arc<Tracer> {
        let (queue, finished) = mpsc::channel(QUEUE_SPANS);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(export(config.clone(), finished, Arc::clone(&dropped)));
        Arc::new(Tracer {
            sample_per_million: config.sample_per_million,
            queue,
            dropped,
        })
    }

    /// A trace for a request whose `traceparent` is `incoming`, if it is sampled.
    pub fn start(
        &self,
        incoming: Option<&[u8]>,
        method: &str,
        now: Instant,
    ) -> Option<RequestTrace> {
        let parent: Option<TraceParent> = incoming.and_then(context::parse);
        let trace_id: [u8; 16] = rand::random();
        if !context::sampled(parent.as_ref(), &trace_id, self.sample_per_million) {
            return None;
        }
        Some(RequestTrace::start(
            parent,
            trace_id,
            span_id(),
            method,
            (SystemTime::now(), now),
        ))
    }

    /// Queues a finished trace; drops it when the queue is full.
    pub fn finish(&self, trace: FinishedTrace) {
        if self.queue.try_send(trace).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A random, non-zero span id (all zeros is invalid in `traceparent`).
pub fn span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

async fn export(
    config: TraceConfig,
    mut finished: mpsc::Receiver<FinishedTrace>,
    dropped: Arc<AtomicU64>,
) {
    let mut client: Option<TraceServiceClient<Channel>> = None;
    let mut batch = Vec::with_capacity(BATCH_SPANS);
    while let Some(first) = finished.recv().await {
        batch.push(first);
        let flush_at = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < BATCH_SPANS {
            match tokio::time::timeout_at(flush_at, finished.recv()).await {
                Ok(Some(trace)) => batch.push(trace),
                // Closed (the proxy stops): send what there is, then end.
                Ok(None) | Err(_) => break,
            }
        }
        let request = to_otlp(&config.service, &config.id, &batch);
        let traces = batch.len();
        batch.clear();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(lost, "trace queue full: traces dropped");
        }
        if client.is_none() {
            match Endpoint::from(config.endpoint.clone())
                .connect_timeout(EXPORT_TIMEOUT)
                .timeout(EXPORT_TIMEOUT)
                .connect()
                .await
            {
                Ok(channel) => client = Some(TraceServiceClient::new(channel)),
                Err(error) => {
                    tracing::warn!(endpoint = %config.endpoint, %error, traces, "OTLP collector unreachable: traces dropped");
                    continue;
                }
            }
        }
        if let Some(c) = client.as_mut()
            && let Err(status) = c.export(request).await
        {
            tracing::warn!(endpoint = %config.endpoint, code = ?status.code(), message = status.message(), traces, "OTLP export failed: traces dropped");
            // Reconnect next time: the channel may be what broke.
            client = None;
        }
    }
}
