//! Traces against a real OTLP/gRPC receiver, built here from the OTLP protobufs
//! (`opentelemetry-proto`'s generated tonic server): a real proxy continues the client's
//! W3C trace, sends each upstream try with its own span id, and exports spans with the
//! route, the pod chosen, the policy, the tries and why they were retried.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairway_tests::bins::{free_port, loopback};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::world::{WAIT, World};

/// The receiver: every export request, as it arrived.
struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_receiver() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let addr = loopback(free_port());
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind the OTLP receiver: {e}"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

/// `traceparent` values a pod received.
type Seen = Arc<Mutex<Vec<String>>>;

/// A pod on `addr` answering `status` to everything, recording each `traceparent`.
async fn recording_pod(addr: SocketAddr, status: StatusCode) -> Seen {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind pod {addr}: {e}"));
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    if let Some(value) = request.headers().get("traceparent") {
                        let value = value.to_str().unwrap_or("").to_owned();
                        record.lock().unwrap_or_else(|e| e.into_inner()).push(value);
                    }
                    let mut response = Response::new(Full::new(Bytes::from_static(b"pod\n")));
                    *response.status_mut() = status;
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    seen
}

fn seen(pod: &Seen) -> Vec<String> {
    pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_arrive_with_route_pod_policy_tries_and_retry_reasons() {
    let (collector, mut exports) = start_receiver().await;
    // Pod 1 always answers 503, pod 2 answers 200: a request round robin sends to pod 1
    // is retried on pod 2.
    let mut world = World::start(190, 0, 2).await;
    let pod = |i: u8| SocketAddr::from(([127, 0, 0, 190 + i], world.port));
    let (failing, healthy) = (pod(1), pod(2));
    let failing_seen = recording_pod(failing, StatusCode::SERVICE_UNAVAILABLE).await;
    let healthy_seen = recording_pod(healthy, StatusCode::OK).await;
    let endpoint = format!("--otlp-endpoint=http://{collector}");
    let traced = world
        .add_proxy("traced", &[&endpoint, "--trace-sample-ratio=1"])
        .await;
    let untraced = world.add_proxy("untraced", &[]).await;

    // Clients' own traces, sampled; each request once through the traced proxy.
    let client_trace = |i: u8| format!("4bf92f3577b34da6a3ce929d0e0e47{i:02x}");
    let client_parent = "00f067aa0ba902b7";
    for i in 0..4 {
        let header = format!("00-{}-{client_parent}-01", client_trace(i));
        let answer = super::world::get_with(
            world.proxies[traced].listen,
            "orders.fair",
            "/",
            &[("traceparent", &header)],
        )
        .await
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "retried onto the healthy pod: {answer}"
        );
    }

    // Collect the request spans of the four client traces.
    let mut spans: Vec<Span> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let wanted: Vec<String> = (0..4).map(client_trace).collect();
    loop {
        let servers: usize = spans
            .iter()
            .filter(|s| s.kind == 2 && wanted.contains(&hex(&s.trace_id)))
            .count();
        if servers == 4 {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let export = tokio::time::timeout(left, exports.recv())
            .await
            .unwrap_or_else(|_| panic!("the four traces never arrived; got {spans:#?}"))
            .expect("receiver open");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            assert_eq!(service, Some(Any::StringValue("fairway-proxy".into())));
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }

    let mut by_trace: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for span in &spans {
        by_trace.entry(hex(&span.trace_id)).or_default().push(span);
    }
    let mut retried = 0;
    for trace in &wanted {
        let spans = &by_trace[trace];
        let server = spans.iter().find(|s| s.kind == 2).expect("a server span");
        assert_eq!(
            hex(&server.parent_span_id),
            client_parent,
            "continues the client's trace"
        );
        assert_eq!(text(server, "fairway.route"), "fair/orders");
        assert_eq!(text(server, "fairway.policy"), "RoundRobin");
        assert_eq!(
            text(server, "fairway.pod"),
            healthy.to_string(),
            "the pod that answered"
        );
        assert_eq!(int(server, "http.response.status_code"), 200);
        assert!(
            matches!(attr(server, "fairway.upstream.duration_ms"), Some(Any::DoubleValue(ms)) if *ms > 0.0)
        );
        let mut tries: Vec<&&Span> = spans.iter().filter(|s| s.kind == 3).collect();
        tries.sort_by_key(|s| int(s, "fairway.try"));
        assert_eq!(int(server, "fairway.tries"), tries.len() as i64);
        for attempt in &tries {
            assert_eq!(
                attempt.parent_span_id, server.span_id,
                "a try is the request's child"
            );
            // The pod saw exactly this try's span as its parent.
            let header = format!("00-{trace}-{}-01", hex(&attempt.span_id));
            let pod = text(attempt, "fairway.pod");
            let at = if pod == failing.to_string() {
                &failing_seen
            } else {
                &healthy_seen
            };
            assert!(seen(at).contains(&header), "{pod} received {header}");
        }
        if tries.len() == 2 {
            retried += 1;
            assert_eq!(text(tries[0], "fairway.pod"), failing.to_string());
            assert_eq!(int(tries[0], "http.response.status_code"), 503);
            assert_eq!(text(tries[1], "fairway.retry_reason"), "status");
            assert_ne!(tries[0].span_id, tries[1].span_id, "a new span id per try");
        }
    }
    assert!(
        retried >= 1,
        "round robin sent some request to the failing pod first"
    );

    // Tracing off (the default): the client's traceparent reaches the pod untouched.
    let header = format!("00-{}-{client_parent}-01", client_trace(9));
    let answer = super::world::get_with(
        world.proxies[untraced].listen,
        "orders.fair",
        "/",
        &[("traceparent", &header)],
    )
    .await
    .unwrap_or_else(|e| panic!("untraced request: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let all: Vec<String> = seen(&failing_seen)
        .into_iter()
        .chain(seen(&healthy_seen))
        .collect();
    assert!(all.contains(&header), "passed through as it came: {all:?}");
    drop(world);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
