//! Opening one upstream connection: TCP (with `TCP_NODELAY`) under the connect timeout,
//! then the HTTP/1.1 or HTTP/2 (prior knowledge) handshake. The connection's driver
//! runs in its own task; the returned sender is the only handle the pool keeps.

use std::time::Duration;

use fairway_proto::model::EndpointAddr;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::h1;
use crate::request::UpstreamBody;

/// HTTP/2 PING interval on upstream connections: a pod that vanished without a FIN
/// (node lost) is noticed in tens of seconds instead of at the kernel's TCP timeout.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a PING may go unanswered before the connection is closed.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to an endpoint could not be opened. Nothing was sent: the request
/// can always go to another endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Tcp {
        addr: EndpointAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {addr}: no answer within {timeout:?}")]
    Timeout {
        addr: EndpointAddr,
        timeout: Duration,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: EndpointAddr,
        #[source]
        source: hyper::Error,
    },
}

/// Opens a TCP connection to `addr` within `timeout`, `TCP_NODELAY` set.
pub async fn tcp(addr: EndpointAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr.0)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(ConnectError::Tcp { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    // Requests are small writes answered by small reads: Nagle would add up to 40 ms.
    stream
        .set_nodelay(true)
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    Ok(stream)
}

/// Opens an HTTP/1.1 connection to `addr` (driven by the requests that use it).
pub async fn http1(addr: EndpointAddr, timeout: Duration) -> Result<h1::Conn, ConnectError> {
    Ok(h1::Conn::new(tcp(addr, timeout).await?))
}

/// Opens an HTTP/2 (prior knowledge) connection to `addr`.
pub async fn http2(
    addr: EndpointAddr,
    timeout: Duration,
) -> Result<http2::SendRequest<UpstreamBody>, ConnectError> {
    let stream = tcp(addr, timeout).await?;
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .handshake(TokioIo::new(stream));
    // The h2 handshake waits for nothing from the peer, but bound it all the same.
    let (sender, conn) = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(source)) => return Err(ConnectError::Handshake { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%addr, %error, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}
