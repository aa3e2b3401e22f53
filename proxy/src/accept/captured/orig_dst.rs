//! Where a captured connection was going before the capture rules redirected it to the
//! proxy: `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) on the accepted
//! socket, which read the destination conntrack's NAT entry kept (what nftables'
//! `redirect` rewrote). Through socket2's safe wrappers: the workspace has no `unsafe`.
//! Modelled on linkerd2-proxy's `orig_dst.rs`.

use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Why a connection's original destination is unknown.
#[derive(Debug, thiserror::Error)]
pub enum OrigDstError {
    #[error("reading the connection's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// `ENOENT` here means the connection was not redirected (someone dialled the
    /// outbound port directly).
    #[error("reading the original destination (SO_ORIGINAL_DST): {0}")]
    Getsockopt(#[source] std::io::Error),
    #[error("the original destination is not an IP address")]
    NotIp,
    /// The connection was dialled to the outbound port itself: passing it on would
    /// connect the proxy to itself.
    #[error("the original destination {0} is the outbound listener itself")]
    Itself(SocketAddr),
}

/// The destination `stream` was dialled to before it was redirected here.
pub fn original_dst(stream: &TcpStream) -> Result<SocketAddr, OrigDstError> {
    let local = stream.local_addr().map_err(OrigDstError::LocalAddr)?;
    let sock = SockRef::from(stream);
    let addr = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    }
    .map_err(OrigDstError::Getsockopt)?;
    let addr = addr.as_socket().ok_or(OrigDstError::NotIp)?;
    check_not_itself(addr, local)
}

/// `addr` unless it is the listener's own address (no redirect happened: Linux answers
/// with the socket's own destination when conntrack saw no NAT).
pub fn check_not_itself(addr: SocketAddr, local: SocketAddr) -> Result<SocketAddr, OrigDstError> {
    if addr == local {
        Err(OrigDstError::Itself(addr))
    } else {
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_that_is_the_listener_itself_is_refused() {
        let listener: SocketAddr = "127.0.0.1:4143".parse().unwrap();
        let service: SocketAddr = "10.96.0.10:8080".parse().unwrap();
        assert_eq!(check_not_itself(service, listener).unwrap(), service);
        assert!(matches!(
            check_not_itself(listener, listener),
            Err(OrigDstError::Itself(addr)) if addr == listener
        ));
    }

    #[tokio::test]
    async fn a_direct_connection_has_no_other_original_destination() {
        // No capture rule in this namespace: the kernel either knows no NAT entry
        // (ENOENT) or reports the socket's own address; both must be refused.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let error = original_dst(&accepted).unwrap_err();
        assert!(
            matches!(error, OrigDstError::Getsockopt(_) | OrigDstError::Itself(_)),
            "a direct connection is not passed on: {error:?}"
        );
    }
}
