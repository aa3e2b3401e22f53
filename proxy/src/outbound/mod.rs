//! The sidecar's outbound side: connections the pod's capture rules redirected to the
//! proxy (`--outbound-listen`), each still meant for the address its client dialled.
//!
//! Data flows: [`serve`] accepts; `orig_dst` recovers where the connection was going
//! (`SO_ORIGINAL_DST`); then the connection is passed through to that destination by
//! `opaque`, untouched. `detect` tells HTTP/1.1 and HTTP/2 from anything else, under a
//! short deadline, for the connections that will be balanced per request once the table
//! maps a Service's ClusterIP:port (issue 17, step 3): until the table knows the Service
//! a connection is going to, nothing is gained by detecting it, and a
//! server-speaks-first protocol would pay the deadline, so it is passed through at once
//! (a Service the controller does not know yet must work as it would without Fairway).

pub mod detect;
pub mod opaque;
pub mod orig_dst;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long detection waits for a client's first bytes before passing its connection
/// through: a server-speaks-first protocol's client sends nothing until the greeting,
/// and HTTP clients write their request at once after connecting.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Connecting to an original destination: the client's own connect would have had the
/// kernel's (minutes); a ClusterIP that takes longer than this is not answering.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error such as EMFILE, so an out-of-descriptors process does not
/// spin a core.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The outbound listener's settings, typed. Built from the command line's `Config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Where the capture rules redirect to.
    pub listen: SocketAddr,
    /// Detection's deadline for a client's first bytes.
    pub detect_timeout: Duration,
    /// Connecting to a connection's original destination.
    pub connect_timeout: Duration,
    /// Captured connections held at once; past it, accepting pauses.
    pub max_connections: usize,
}

/// Accepts captured connections on `listener` until `stop` completes, one task each.
/// Connections already passed through keep running until either side ends them (they
/// are the app's own connections: the process's exit ends them).
pub async fn serve(
    config: OutboundConfig,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut stop => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let config = Arc::clone(&config);
                tokio::spawn(async move {
                    handle(&config, stream, peer).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "outbound accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// One captured connection, from its original destination to its end.
async fn handle(config: &OutboundConfig, client: TcpStream, peer: SocketAddr) {
    let dest = match orig_dst::original_dst(&client) {
        Ok(dest) => dest,
        Err(error) => {
            // Not a redirected connection: there is nowhere to pass it on to.
            tracing::debug!(%peer, %error, "outbound connection refused");
            opaque::reset(&client);
            return;
        }
    };
    match opaque::pass_through(client, &[], dest, config.connect_timeout).await {
        Ok(copied) => {
            tracing::trace!(%peer, %dest, up = copied.up, down = copied.down, "passed through");
        }
        Err(error) => {
            tracing::debug!(%peer, %dest, reason = error.reason(), %error, "pass-through ended with an error");
        }
    }
}
