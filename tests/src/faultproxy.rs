//! A small TCP forwarder that injects faults between a proxy and a pod: latency on every
//! chunk, connections dropped (closed with a FIN) and connections reset (`SO_LINGER` 0,
//! so the kernel sends an RST). For fault runs on kernels without `sch_netem`, where
//! `tc netem` cannot do it; point an EndpointSlice at [`FaultProxy::addr`] instead of
//! the pod.
//!
//! Faults are decided per connection (dropped on accept) and per chunk the pod sends
//! back (delayed, dropped or reset before it is forwarded), so with small responses a
//! reset or drop lands before the proxy has seen response headers: the case a proxy may
//! retry. Settings change at run time ([`FaultProxy::set`]); counts are in
//! [`FaultProxy::stats`]. Everything stops when the `FaultProxy` is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long connecting to the pod may take before the client's connection is reset.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer per direction: HTTP heads and small bodies fit in one chunk.
const CHUNK: usize = 16 * 1024;
/// Probabilities are in parts per this many.
pub const PER_MILLE: u32 = 1000;

/// What to inject. The default injects nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added before every forwarded chunk, both directions.
    pub latency: Duration,
    /// Up to this much more, uniformly at random, on top of `latency`.
    pub jitter: Duration,
    /// Per mille of new connections closed at once, and of response chunks after which
    /// the connection is closed instead (a FIN both ways, nothing forwarded).
    pub drop_per_mille: u32,
    /// Per mille of response chunks replaced by an RST to both sides.
    pub reset_per_mille: u32,
}

/// What a [`FaultProxy`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub connections: u64,
    pub chunks: u64,
    pub dropped: u64,
    pub reset: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    chunks: AtomicU64,
    dropped: AtomicU64,
    reset: AtomicU64,
}

/// A running forwarder from [`FaultProxy::addr`] to one upstream address.
#[derive(Debug)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns every connection task: aborting it ends them all.
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks one) and forwards each connection to
    /// `upstream`, injecting `faults`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: Faults,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Mutex::new(faults));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept(
            listener,
            upstream,
            Arc::clone(&faults),
            Arc::clone(&counters),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            faults,
            counters,
            task,
        })
    }

    /// Replaces the faults for chunks and connections from now on.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    pub fn stats(&self) -> FaultStats {
        let c = &self.counters;
        FaultStats {
            connections: c.connections.load(Ordering::Relaxed),
            chunks: c.chunks.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
        }
    }
}

fn current(faults: &Mutex<Faults>) -> Faults {
    *faults.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True with probability `per_mille` / 1000.
fn chance(per_mille: u32) -> bool {
    per_mille > 0 && rand::random_range(0..PER_MILLE) < per_mille
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    while let Ok((down, _)) = listener.accept().await {
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        counters.connections.fetch_add(1, Ordering::Relaxed);
        if chance(current(&faults).drop_per_mille) {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            drop(down);
            continue;
        }
        connections.spawn(forward(
            down,
            upstream,
            Arc::clone(&faults),
            Arc::clone(&counters),
        ));
    }
}

/// What ended a forwarded connection.
enum End {
    /// One side closed or failed: close the other normally.
    Closed,
    /// Injected: close both with an RST.
    Reset,
}

async fn forward(
    mut down: TcpStream,
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Counters>,
) {
    let _ = down.set_nodelay(true);
    let connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let mut up = match connected.await {
        Ok(Ok(up)) => up,
        // The pod is down: tell the client the way the pod itself would have.
        _ => {
            let _ = down.set_zero_linger();
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let end = pump(&mut down, &mut up, &faults, &counters).await;
    if let End::Reset = end {
        let _ = down.set_zero_linger();
        let _ = up.set_zero_linger();
    }
}

async fn pump(
    down: &mut TcpStream,
    up: &mut TcpStream,
    faults: &Mutex<Faults>,
    counters: &Counters,
) -> End {
    let (mut down_read, mut down_write) = down.split();
    let (mut up_read, mut up_write) = up.split();
    let mut request = vec![0u8; CHUNK];
    let mut response = vec![0u8; CHUNK];
    loop {
        // Both reads are cancel-safe: the arm not taken loses nothing.
        tokio::select! {
            read = down_read.read(&mut request) => {
                let n = match read { Ok(0) | Err(_) => return End::Closed, Ok(n) => n };
                delay(current(faults)).await;
                if up_write.write_all(&request[..n]).await.is_err() {
                    return End::Closed;
                }
            }
            read = up_read.read(&mut response) => {
                let n = match read { Ok(0) | Err(_) => return End::Closed, Ok(n) => n };
                counters.chunks.fetch_add(1, Ordering::Relaxed);
                let now = current(faults);
                if chance(now.reset_per_mille) {
                    counters.reset.fetch_add(1, Ordering::Relaxed);
                    return End::Reset;
                }
                if chance(now.drop_per_mille) {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return End::Closed;
                }
                delay(now).await;
                if down_write.write_all(&response[..n]).await.is_err() {
                    return End::Closed;
                }
            }
        }
    }
}

async fn delay(faults: Faults) {
    let jitter = if faults.jitter.is_zero() {
        Duration::ZERO
    } else {
        let micros = u64::try_from(faults.jitter.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::random_range(0..=micros))
    };
    let total = faults.latency + jitter;
    if !total.is_zero() {
        tokio::time::sleep(total).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_without_faults_and_resets_when_told() {
        let (upstream, _echo) = echo().await;
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let fp = FaultProxy::start(any, upstream, Faults::default())
            .await
            .expect("start");
        for _ in 0..10 {
            assert_eq!(round_trip(fp.addr).await.expect("no faults"), b"ping");
        }
        fp.set(Faults {
            reset_per_mille: PER_MILLE,
            ..Faults::default()
        });
        let err = round_trip(fp.addr)
            .await
            .expect_err("every response chunk is replaced by a reset");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset,
            "an RST, not a clean close: {err}"
        );
        fp.set(Faults {
            drop_per_mille: PER_MILLE,
            ..Faults::default()
        });
        let err = round_trip(fp.addr)
            .await
            .expect_err("every connection is dropped");
        // A close with our "ping" unread goes out as an RST; before it arrived, a FIN.
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
        let stats = fp.stats();
        assert_eq!((stats.connections, stats.reset, stats.dropped), (12, 1, 1));
    }

    #[tokio::test]
    async fn latency_delays_each_chunk() {
        let (upstream, _echo) = echo().await;
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let faults = Faults {
            latency: Duration::from_millis(30),
            ..Faults::default()
        };
        let fp = FaultProxy::start(any, upstream, faults)
            .await
            .expect("start");
        let started = std::time::Instant::now();
        assert_eq!(round_trip(fp.addr).await.expect("round trip"), b"ping");
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "one chunk each way, 30 ms each: {:?}",
            started.elapsed()
        );
    }
}
