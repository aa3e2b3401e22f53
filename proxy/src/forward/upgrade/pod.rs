//! Asking the pod to switch, on a connection of the upgrade's own (never pooled: after
//! the switch it is a byte pipe): an HTTP/1.1 upgrade through hyper's client with
//! upgrades on, or an extended CONNECT (RFC 8441) to an HTTP/2 pod that advertises it.

use std::time::Duration;

use fairway_proto::model::EndpointAddr;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::pool::{ConnectError, connect_tcp};
use crate::request::UpstreamBody;

/// How long an HTTP/2 pod's first SETTINGS may take to say whether it takes extended
/// CONNECT: it comes with the server's preface, within a round trip on any live pod.
const SETTINGS_WAIT: Duration = Duration::from_millis(500);
/// How often the SETTINGS are looked at meanwhile (hyper exposes the flag, not an event).
const SETTINGS_POLL: Duration = Duration::from_millis(2);

/// Why the exchange with the pod gave no response.
#[derive(Debug)]
pub enum Exchange {
    /// No connection: nothing was sent, another pod may be tried.
    Connect(ConnectError),
    /// The exchange broke before a response head.
    Failed(hyper::Error),
    /// No response head within the Route's request timeout.
    TimedOut(Duration),
    /// The HTTP/2 pod does not advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`.
    NoExtendedConnect,
}

/// Sends an HTTP/1.1 upgrade `request` to `addr` and returns the pod's answer; on `101`,
/// `hyper::upgrade::on(response)` yields the pod's side of the tunnel.
pub async fn http1(
    addr: EndpointAddr,
    connect: Duration,
    request: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Exchange> {
    let stream = connect_tcp(addr, connect)
        .await
        .map_err(Exchange::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Exchange::Failed)?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%addr, %error, "upgrade connection to the pod ended");
        }
    });
    sender.send_request(request).await.map_err(Exchange::Failed)
}

/// Sends an extended CONNECT `request` to the HTTP/2 pod `addr`; on `200`,
/// `hyper::upgrade::on(response)` yields the stream as the pod's side of the tunnel.
pub async fn http2(
    addr: EndpointAddr,
    connect: Duration,
    request: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Exchange> {
    let stream = connect_tcp(addr, connect)
        .await
        .map_err(Exchange::Connect)?;
    let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake::<_, UpstreamBody>(TokioIo::new(stream))
        .await
        .map_err(Exchange::Failed)?;
    // Drive the connection here until the pod's SETTINGS say whether it takes extended
    // CONNECT (only the connection knows), then hand it to a task of its own.
    let mut conn = Box::pin(conn);
    let give_up = tokio::time::sleep(SETTINGS_WAIT);
    tokio::pin!(give_up);
    while !conn.is_extended_connect_protocol_enabled() {
        tokio::select! {
            ended = conn.as_mut() => {
                return Err(ended.err().map_or(Exchange::NoExtendedConnect, Exchange::Failed));
            }
            () = &mut give_up => return Err(Exchange::NoExtendedConnect),
            () = tokio::time::sleep(SETTINGS_POLL) => {}
        }
    }
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%addr, %error, "extended CONNECT connection to the pod ended");
        }
    });
    sender.send_request(request).await.map_err(Exchange::Failed)
}
