//! The bytes of an upgraded connection (a WebSocket after `101`), copied both ways
//! between the client and the pod until both sides are done.
//!
//! Each direction reads into its own bounded buffer and writes it all before reading
//! again, so a slow reader slows its writer (backpressure) and memory stays at two
//! buffers per connection. An end of stream on one side is passed on as a write
//! shutdown to the other (half-close: a client that finished sending still gets the
//! pod's answer). The tunnel ends early when no byte moved for the idle timeout, when
//! it reached its maximum lifetime, or when `drain` says the pod is going away.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::metrics::upgrades::{CloseReason, Direction};

/// Each direction's buffer while bytes flow: a typical WebSocket message in one read.
pub const BUFFER: usize = 16 * 1024;
/// Each direction's buffer while it is quiet. A read waits with its buffer, so an idle
/// WebSocket would hold two full buffers for its whole life (measured: 31.7 KiB per
/// idle WebSocket against HAProxy's 4.6, docs/benchmarks.md); a read that fills this one
/// switches to [`BUFFER`], a short read switches back.
pub const QUIET_BUFFER: usize = 512;

/// When a tunnel must end regardless of its two sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// No byte either way for this long ends it; `None`: never.
    pub idle: Option<Duration>,
    /// It ends at this age; `None`: never.
    pub lifetime: Option<Duration>,
}

/// Copies between `client` and `pod` until both directions ended, a limit passed, or
/// `drain` completed. `count` hears of every chunk copied. Returns why it ended; both
/// streams are dropped (closed) by the caller afterwards.
pub async fn run<C, P>(
    client: C,
    pod: P,
    limits: Limits,
    drain: impl Future<Output = ()>,
    count: impl Fn(Direction, usize),
) -> CloseReason
where
    C: AsyncRead + AsyncWrite,
    P: AsyncRead + AsyncWrite,
{
    let started = Instant::now();
    // When a byte last moved, as nanoseconds since `started`. Both copies and the timer
    // run on this one task; an atomic only because the future must be `Send`.
    let last = Activity {
        started,
        nanos: AtomicU64::new(0),
    };
    let (client_read, client_write) = tokio::io::split(client);
    let (pod_read, pod_write) = tokio::io::split(pod);
    let up = copy(client_read, pod_write, &last, |n| {
        count(Direction::to_pod, n)
    });
    let down = copy(pod_read, client_write, &last, |n| {
        count(Direction::to_client, n)
    });
    // The first error ends both directions: a reset pod must not leave the client's
    // side waiting for bytes that have nowhere to go.
    let both = async {
        match futures::future::try_join(up, down).await {
            Ok(((), ())) => CloseReason::closed,
            Err(_) => CloseReason::error,
        }
    };
    let idle = async {
        let Some(idle) = limits.idle else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep_until(last.get() + idle).await;
            if last.get() + idle <= Instant::now() {
                return;
            }
        }
    };
    let lifetime = async {
        match limits.lifetime {
            Some(lifetime) => tokio::time::sleep_until(started + lifetime).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        reason = both => reason,
        () = idle => CloseReason::idle,
        () = lifetime => CloseReason::lifetime,
        () = drain => CloseReason::drained,
    }
}

/// The buffer for the next read after one of `n` bytes: full size while reads fill the
/// quiet one, back to the quiet size after a short read (the next read likely waits).
fn resized(buffer: Vec<u8>, n: usize) -> Vec<u8> {
    if buffer.len() < BUFFER && n == buffer.len() {
        vec![0u8; BUFFER]
    } else if buffer.len() > QUIET_BUFFER && n < QUIET_BUFFER {
        vec![0u8; QUIET_BUFFER]
    } else {
        buffer
    }
}

/// When a byte last moved through a tunnel.
struct Activity {
    started: Instant,
    nanos: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    fn get(&self) -> Instant {
        self.started + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// One direction: read, write all of it, repeat; at the end of the stream, shut the
/// writer down (the half-close travels on). An error ends only this direction; the
/// caller decides what the other one does.
async fn copy<R, W>(
    mut from: R,
    mut to: W,
    last: &Activity,
    count: impl Fn(usize),
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; QUIET_BUFFER];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        last.touch();
        to.write_all(&buffer[..n]).await?;
        to.flush().await?;
        count(n);
        buffer = resized(buffer, n);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use tokio::io::duplex;

    use super::*;

    const NO_LIMITS: Limits = Limits {
        idle: None,
        lifetime: None,
    };

    #[tokio::test]
    async fn copies_both_ways_and_passes_a_half_close_on() {
        let (client, mut client_far) = duplex(64);
        let (pod, mut pod_far) = duplex(64);
        let counted = RefCell::new((0, 0));
        let tunnel = run(client, pod, NO_LIMITS, std::future::pending(), |d, n| {
            let mut c = counted.borrow_mut();
            match d {
                Direction::to_pod => c.0 += n,
                Direction::to_client => c.1 += n,
            }
        });
        let peers = async {
            client_far.write_all(b"hello").await.expect("client writes");
            client_far.shutdown().await.expect("client half-closes");
            let mut got = Vec::new();
            pod_far.read_to_end(&mut got).await.expect("pod reads");
            assert_eq!(got, b"hello", "the pod gets the client's bytes, then EOF");
            // The client's half-close did not close the way back.
            pod_far
                .write_all(b"answer after the half-close")
                .await
                .expect("pod writes");
            pod_far.shutdown().await.expect("pod closes");
            let mut back = Vec::new();
            client_far
                .read_to_end(&mut back)
                .await
                .expect("client reads");
            assert_eq!(back, b"answer after the half-close");
        };
        let (reason, ()) = tokio::join!(tunnel, peers);
        assert_eq!(reason, CloseReason::closed);
        assert_eq!(*counted.borrow(), (5, 27), "bytes counted per direction");
    }

    #[tokio::test]
    async fn a_large_transfer_passes_through_small_pipes() {
        // 1 MiB through 64-byte pipes: only backpressure keeps this bounded.
        let (client, mut client_far) = duplex(64);
        let (pod, mut pod_far) = duplex(64);
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let tunnel = run(client, pod, NO_LIMITS, std::future::pending(), |_, _| {});
        let peers = async {
            let send = async {
                client_far.write_all(&data).await.expect("client writes");
                client_far.shutdown().await.expect("client closes");
            };
            let receive = async {
                let mut got = Vec::new();
                pod_far.read_to_end(&mut got).await.expect("pod reads");
                pod_far.shutdown().await.expect("pod closes");
                got
            };
            let ((), got) = tokio::join!(send, receive);
            assert!(got == data, "the pod got every byte in order");
        };
        let (reason, ()) = tokio::join!(tunnel, peers);
        assert_eq!(reason, CloseReason::closed);
    }

    #[test]
    fn buffers_grow_while_reads_fill_them_and_shrink_when_quiet() {
        let quiet = vec![0u8; QUIET_BUFFER];
        let busy = resized(quiet, QUIET_BUFFER);
        assert_eq!(busy.len(), BUFFER, "a full quiet read grows the buffer");
        let busy = resized(busy, 4_000);
        assert_eq!(busy.len(), BUFFER, "mid-size reads keep it");
        let quiet = resized(busy, 10);
        assert_eq!(quiet.len(), QUIET_BUFFER, "a short read gives it back");
        assert_eq!(resized(quiet, 10).len(), QUIET_BUFFER);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_ends_a_quiet_tunnel_but_not_a_busy_one() {
        let (client, mut client_far) = duplex(64);
        let (pod, mut pod_far) = duplex(64);
        let limits = Limits {
            idle: Some(Duration::from_secs(10)),
            lifetime: None,
        };
        let started = Instant::now();
        let tunnel = run(client, pod, limits, std::future::pending(), |_, _| {});
        let peers = async {
            // A byte every 6 s keeps it open past the 10 s idle timeout...
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client_far.write_all(b"x").await.expect("write");
                let mut b = [0u8; 1];
                pod_far.read_exact(&mut b).await.expect("read");
            }
            // ...then silence.
            std::future::pending::<()>().await;
        };
        let reason = tokio::select! {
            reason = tunnel => reason,
            () = peers => unreachable!(),
        };
        assert_eq!(reason, CloseReason::idle);
        assert_eq!(
            Instant::now() - started,
            Duration::from_secs(28),
            "closed 10 s after the last byte at 18 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lifetime_and_drain_end_a_busy_tunnel() {
        for (limits, drain_after, expected) in [
            (
                Limits {
                    idle: None,
                    lifetime: Some(Duration::from_secs(5)),
                },
                Duration::from_secs(60),
                CloseReason::lifetime,
            ),
            (NO_LIMITS, Duration::from_secs(3), CloseReason::drained),
        ] {
            let (client, _client_far) = duplex(64);
            let (pod, _pod_far) = duplex(64);
            let drain = tokio::time::sleep(drain_after);
            let reason = run(client, pod, limits, drain, |_, _| {}).await;
            assert_eq!(reason, expected, "{limits:?}, drain after {drain_after:?}");
        }
    }

    #[tokio::test]
    async fn a_pod_that_goes_away_ends_the_tunnel_and_closes_the_client() {
        let (client, mut client_far) = duplex(64);
        let (pod, pod_far) = duplex(64);
        drop(pod_far);
        let tunnel = run(client, pod, NO_LIMITS, std::future::pending(), |_, _| {});
        let client_side = async {
            let mut rest = Vec::new();
            // The pod's end of stream reaches the client as its own.
            client_far
                .read_to_end(&mut rest)
                .await
                .expect("client reads EOF");
            drop(client_far);
        };
        let (reason, ()) = tokio::join!(tunnel, client_side);
        assert!(
            matches!(reason, CloseReason::closed | CloseReason::error),
            "{reason:?}"
        );
    }
}
