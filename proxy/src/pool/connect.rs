//! Opening one upstream connection: TCP (with `TCP_NODELAY`) under the connect timeout,
//! then, for a Route with TLS to its pods, the TLS handshake (ALPN deciding between
//! HTTP/2 and HTTP/1.1), then the HTTP/1.1 or HTTP/2 (prior knowledge) handshake. An
//! HTTP/2 connection's driver runs in its own task; the returned sender is the only
//! handle the pool keeps.

use std::sync::Arc;
use std::time::Duration;

use fairway_proto::model::EndpointAddr;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::settings::ConnSettings;
use crate::h1::{self, PodStream};
use crate::request::UpstreamBody;
use crate::tls::{Alpn, PodTls, TlsConfigError};

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
    /// The Route's TLS settings are unusable: nothing was sent, not even a handshake.
    #[error("TLS to {addr}: {source}")]
    TlsConfig {
        addr: EndpointAddr,
        #[source]
        source: TlsConfigError,
    },
    /// The TLS handshake failed: the pod's certificate did not verify (unknown CA,
    /// wrong name, expired), or the pod does not speak TLS.
    #[error("TLS handshake with {addr} (expecting {server_name:?}): {source}")]
    TlsHandshake {
        addr: EndpointAddr,
        server_name: String,
        #[source]
        source: std::io::Error,
    },
}

/// An HTTP/1.1 or an HTTP/2 connection, as ALPN decided.
#[derive(Debug)]
pub enum Negotiated {
    Http1(h1::Conn),
    Http2(http2::SendRequest<UpstreamBody>),
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

/// Opens a connection to `addr` as `settings` say: over TLS when they have it (ALPN
/// then decides the protocol), else HTTP/2 with prior knowledge when `h2`, else
/// HTTP/1.1.
pub async fn open(
    addr: EndpointAddr,
    settings: &ConnSettings,
    h2: bool,
) -> Result<Negotiated, ConnectError> {
    let timeout = settings.connect_timeout;
    match &settings.tls {
        Some(pod_tls) => tls(addr, timeout, pod_tls).await,
        None if h2 => Ok(Negotiated::Http2(http2(addr, timeout).await?)),
        None => Ok(Negotiated::Http1(http1(addr, timeout).await?)),
    }
}

/// Opens an HTTP/1.1 connection to `addr` (driven by the requests that use it).
pub async fn http1(addr: EndpointAddr, timeout: Duration) -> Result<h1::Conn, ConnectError> {
    let stream = PodStream::Plain(tcp(addr, timeout).await?);
    Ok(h1::Conn::new(stream))
}

/// Opens a TLS connection to `addr`, verified as `tls` says, within `timeout` for TCP
/// and the handshake together; HTTP/2 when ALPN chose `h2` (or the Route offered only
/// `h2`), else HTTP/1.1.
pub async fn tls(
    addr: EndpointAddr,
    timeout: Duration,
    tls: &Arc<PodTls>,
) -> Result<Negotiated, ConnectError> {
    let (config, name) = tls
        .client()
        .map_err(|source| ConnectError::TlsConfig { addr, source })?;
    let started = tokio::time::Instant::now();
    let stream = self::tcp(addr, timeout).await?;
    let handshake = TlsConnector::from(config).connect(name, stream);
    let left = timeout.saturating_sub(started.elapsed());
    let stream = match tokio::time::timeout(left, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            let server_name = tls.server_name.clone();
            return Err(ConnectError::TlsHandshake {
                addr,
                server_name,
                source,
            });
        }
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
    };
    let h2 = match tls.alpn {
        Alpn::Http2 => true,
        Alpn::Http1 => false,
        Alpn::Either => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
    };
    if h2 {
        let sender = handshake_h2(addr, left, stream).await?;
        return Ok(Negotiated::Http2(sender));
    }
    Ok(Negotiated::Http1(h1::Conn::new(PodStream::Tls(Box::new(
        stream,
    )))))
}

/// Opens an HTTP/2 (prior knowledge) connection to `addr`.
pub async fn http2(
    addr: EndpointAddr,
    timeout: Duration,
) -> Result<http2::SendRequest<UpstreamBody>, ConnectError> {
    let stream = tcp(addr, timeout).await?;
    handshake_h2(addr, timeout, stream).await
}

/// The HTTP/2 handshake over `stream`; its driver is spawned.
async fn handshake_h2<S>(
    addr: EndpointAddr,
    timeout: Duration,
    stream: S,
) -> Result<http2::SendRequest<UpstreamBody>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
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
