//! Pass-through: a captured connection joined, byte for byte, to the destination it was
//! dialled to, as if the proxy were not there. Each direction is copied on its own, so a
//! half-close travels (the client's FIN becomes a FIN to the destination while the
//! destination's answer keeps flowing back), and a failure on either side resets both,
//! so an error the client would have seen without the proxy is still an error, never a
//! clean end of stream.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Each direction's copy buffer: large enough for a full TCP window's worth of reads
/// to take few syscalls, small enough for thousands of idle connections.
const COPY_BUFFER: usize = 16 * 1024;

/// Why a pass-through ended with an error. Every variant ends in a reset of both sides.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("connecting to the original destination {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the original destination {0}: timed out")]
    ConnectTimeout(SocketAddr),
    #[error("the client's side failed: {0}")]
    Client(#[source] io::Error),
    #[error("the destination's side failed: {0}")]
    Destination(#[source] io::Error),
}

impl PassError {
    /// The variant's name, as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            PassError::Connect { .. } => "connect",
            PassError::ConnectTimeout(_) => "connect_timeout",
            PassError::Client(_) => "client",
            PassError::Destination(_) => "destination",
        }
    }
}

/// Bytes copied each way by a finished pass-through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Client to destination, `prefix` included.
    pub up: u64,
    /// Destination to client.
    pub down: u64,
}

/// Connects to `dest` within `connect_timeout` and joins `client` to it, sending
/// `prefix` (bytes already read from the client, e.g. by detection) first. Returns once
/// both directions have ended; on an error both sockets are reset (linger 0), which is
/// how a refused or reset destination reaches a client whose connection the proxy had
/// already accepted.
pub async fn pass_through(
    mut client: TcpStream,
    prefix: &[u8],
    dest: SocketAddr,
    connect_timeout: Duration,
) -> Result<Copied, PassError> {
    let mut upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(dest)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(source)) => {
            reset(&client);
            return Err(PassError::Connect { addr: dest, source });
        }
        Err(_) => {
            reset(&client);
            return Err(PassError::ConnectTimeout(dest));
        }
    };
    // The client chose its own Nagle setting on a socket we cannot see; most latency-
    // sensitive protocols turn it off, and a proxy hop must not add a delayed ACK wait.
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let result = join(
        client_read,
        client_write,
        prefix,
        upstream_read,
        upstream_write,
    )
    .await;
    if result.is_err() {
        reset(&client);
        reset(&upstream);
    }
    result
}

/// Copies both directions until each has seen its end of stream, forwarding each end as
/// a shutdown of the other side's write half. The first error stops both.
pub async fn join<CR, CW, DR, DW>(
    client_read: CR,
    client_write: CW,
    prefix: &[u8],
    dest_read: DR,
    dest_write: DW,
) -> Result<Copied, PassError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    DR: AsyncRead + Unpin,
    DW: AsyncWrite + Unpin,
{
    let up = copy(
        client_read,
        dest_write,
        prefix,
        PassError::Client,
        PassError::Destination,
    );
    let down = copy(
        dest_read,
        client_write,
        &[],
        PassError::Destination,
        PassError::Client,
    );
    let (up, down) = tokio::try_join!(up, down)?;
    Ok(Copied { up, down })
}

/// One direction: `prefix`, then everything `from` sends, then a shutdown of `to`.
async fn copy<R, W>(
    mut from: R,
    mut to: W,
    prefix: &[u8],
    read_failed: fn(io::Error) -> PassError,
    write_failed: fn(io::Error) -> PassError,
) -> Result<u64, PassError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = prefix.len() as u64;
    if !prefix.is_empty() {
        to.write_all(prefix).await.map_err(write_failed)?;
    }
    let mut buf = vec![0; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await.map_err(read_failed)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await.map_err(write_failed)?;
        total += n as u64;
    }
    // A FIN for a FIN: the other direction keeps flowing (half-close).
    to.shutdown().await.map_err(write_failed)?;
    Ok(total)
}

/// Closes `stream` with a reset (linger 0) when it is dropped, instead of a FIN.
pub fn reset(stream: &TcpStream) {
    if let Err(error) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "setting SO_LINGER 0 to reset a connection");
    }
}

#[cfg(test)]
#[path = "opaque_tests.rs"]
mod tests;
