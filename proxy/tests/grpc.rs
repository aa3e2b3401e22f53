//! gRPC through the proxy to a real tonic server over h2c: a unary call, a
//! bidirectional stream (one message each way at a time, so nothing is buffered), and
//! a non-OK status that travels in the trailers.

mod support;

use std::net::SocketAddr;

use fairway_proto::model::UpstreamProtocol;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::pb::discovery_server::{Discovery, DiscoveryServer};
use fairway_proto::pb::{self, ControllerMessage, ProxyMessage, proxy_message};
use http::uri::PathAndQuery;
use support::*;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

/// Echoes each `Ack`'s version back; a `Hello` from proxy id `fail` ends the stream
/// with `FAILED_PRECONDITION` (after one message, so the status comes in trailers).
struct Echo;

#[tonic::async_trait]
impl Discovery for Echo {
    type StreamStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(Ok(message)) = incoming.next().await {
                match message.kind {
                    Some(proxy_message::Kind::Ack(ack)) => {
                        let reply = ControllerMessage {
                            version: ack.version,
                            kind: None,
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    }
                    Some(proxy_message::Kind::Hello(hello)) if hello.proxy_id == "fail" => {
                        let _ = tx.send(Ok(ControllerMessage::default())).await;
                        let _ = tx
                            .send(Err(Status::failed_precondition("scripted failure")))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn grpc_pod(ip: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DiscoveryServer::new(Echo))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

fn ack(sequence: u64) -> ProxyMessage {
    ProxyMessage {
        kind: Some(proxy_message::Kind::Ack(pb::Ack {
            version: Some(pb::Version { epoch: 1, sequence }),
        })),
    }
}

/// A channel to the proxy whose `:authority` is the route's host.
async fn channel(proxy: &Proxy) -> Channel {
    Endpoint::from_shared(format!("http://{}", proxy.addr))
        .expect("endpoint")
        .origin("http://echo.grpc".parse().expect("origin"))
        .connect()
        .await
        .expect("connect to the proxy")
}

async fn start() -> Proxy {
    let pod = grpc_pod("127.0.0.51").await;
    let mut r = route("echo", &["echo.grpc"], &[("echo", 1)]);
    r.upstream.protocol = UpstreamProtocol::Http2;
    Proxy::start(table(vec![r], vec![set("echo", &[pod])])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_through_the_proxy() {
    let proxy = start().await;
    let mut grpc = tonic::client::Grpc::new(channel(&proxy).await);
    grpc.ready().await.expect("ready");
    let reply: Response<ControllerMessage> = tokio::time::timeout(
        WAIT,
        grpc.unary(
            Request::new(ack(7)),
            PathAndQuery::from_static("/fairway.discovery.v1.Discovery/Stream"),
            tonic_prost::ProstCodec::<ProxyMessage, ControllerMessage>::default(),
        ),
    )
    .await
    .expect("bounded")
    .expect("a unary reply with status OK");
    assert_eq!(reply.into_inner().version.map(|v| v.sequence), Some(7));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_stream_through_the_proxy() {
    let proxy = start().await;
    let mut client = DiscoveryClient::new(channel(&proxy).await);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ack(1)).await.expect("first message");
    let mut replies = tokio::time::timeout(WAIT, client.stream(ReceiverStream::new(rx)))
        .await
        .expect("bounded")
        .expect("stream opened")
        .into_inner();
    // Ping-pong: the next message is only sent after the previous echo arrived, so both
    // directions must stream through the proxy (nothing waits for the end).
    for sequence in 1..=20u64 {
        let reply = tokio::time::timeout(WAIT, replies.next())
            .await
            .expect("an echo within the bound")
            .expect("stream open")
            .expect("a message");
        assert_eq!(reply.version.map(|v| v.sequence), Some(sequence));
        if sequence < 20 {
            tx.send(ack(sequence + 1)).await.expect("send");
        }
    }
    drop(tx);
    let end = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("bounded");
    assert!(
        end.is_none(),
        "the stream ends cleanly (status OK in trailers): {end:?}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ok_status_in_trailers_reaches_the_client() {
    let proxy = start().await;
    let mut client = DiscoveryClient::new(channel(&proxy).await);
    let hello = ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(pb::Hello {
            proxy_id: "fail".into(),
            ..Default::default()
        })),
    };
    let mut replies = tokio::time::timeout(WAIT, client.stream(tokio_stream::iter([hello])))
        .await
        .expect("bounded")
        .expect("stream opened")
        .into_inner();
    let first = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("bounded");
    assert!(matches!(first, Some(Ok(_))), "one message first: {first:?}");
    let status = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("bounded")
        .expect("a final item")
        .expect_err("the scripted status");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "scripted failure");
    proxy.stop().await;
}
