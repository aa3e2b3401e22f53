//! The pods of the fault run: real pods as processes of their own (so SIGKILL is real:
//! the kernel resets their connections), a pod that accepts and never answers, and a pod
//! that resets some connections mid-response, before or after the response headers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fairway::demo::pods::{POD_HEADER, Pod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::world::Proc;

/// Set in a re-executed test binary that is to serve as pod `NAME@IP:PORT`.
pub const BACKEND_ENV: &str = "FAIRWAY_E2E_BACKEND";
/// A restarted pod process binds and answers well within this.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head the flaky pod reads; the load sends a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Between the headers and the reset of an after-headers reset: long enough for the
/// proxy to read and forward the headers, so the reset cannot overtake them.
const HEADERS_THEN_RESET: Duration = Duration::from_millis(20);

/// In a process started with [`BACKEND_ENV`] set: serve as that pod until killed.
/// `None` in every other process.
pub fn backend_main() -> Option<ExitCode> {
    let spec = std::env::var(BACKEND_ENV).ok()?;
    let Some((name, addr)) = spec.split_once('@') else {
        eprintln!("{BACKEND_ENV}={spec}: want NAME@IP:PORT");
        return Some(ExitCode::FAILURE);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{BACKEND_ENV}={spec}: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let served = runtime.map(|rt| {
        rt.block_on(async {
            let pod = Pod::start(name, addr).await?;
            eprintln!("pod {name} serving on {}", pod.addr);
            // Until SIGKILL, or the parent-death signal.
            std::future::pending::<std::io::Result<()>>().await
        })
    });
    match served {
        Ok(Ok(())) => Some(ExitCode::SUCCESS),
        Ok(Err(e)) | Err(e) => {
            eprintln!("pod {name} on {addr}: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// A pod in a process of its own: this test binary re-executed with [`BACKEND_ENV`].
#[derive(Debug)]
pub struct PodProcess {
    pub name: String,
    pub addr: SocketAddr,
    log_dir: std::path::PathBuf,
    starts: usize,
    proc: Option<Proc>,
}

impl PodProcess {
    /// Starts pod `name` on `addr` and waits until it answers.
    pub async fn start(name: &str, addr: SocketAddr, log_dir: &std::path::Path) -> PodProcess {
        let mut pod = PodProcess {
            name: name.to_owned(),
            addr,
            log_dir: log_dir.to_owned(),
            starts: 0,
            proc: None,
        };
        pod.restart().await;
        pod
    }

    /// SIGKILL, as the OOM killer or a node failure would: no goodbye, the kernel resets
    /// its connections.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts the process again on the same address and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.starts += 1;
        let exe = std::env::current_exe()
            .unwrap_or_else(|e| panic!("find the test binary to start pod {}: {e}", self.name));
        let log = self
            .log_dir
            .join(format!("pod-{}-{}.log", self.name, self.starts));
        let env = vec![(
            BACKEND_ENV.to_owned(),
            format!("{}@{}", self.name, self.addr),
        )];
        let mut proc = Proc::spawn("pod", exe, Vec::new(), env, log);
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect(self.addr).await.is_err() {
            proc.check();
            assert!(
                Instant::now() < deadline,
                "pod {} did not listen on {} within {LISTEN_TIMEOUT:?}",
                self.name,
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.proc = Some(proc);
    }
}

/// A pod that accepts connections, reads what arrives and never answers.
#[derive(Debug)]
pub struct Hung {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hung {
    pub async fn start(addr: SocketAddr) -> Hung {
        let listener = (TcpListener::bind(addr).await)
            .unwrap_or_else(|e| panic!("bind the hung pod on {addr}: {e}"));
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut open = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                while open.try_join_next().is_some() {}
                count.fetch_add(1, Ordering::Relaxed);
                open.spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        Hung {
            addr,
            accepted,
            task,
        }
    }
}

/// What the flaky pod did.
#[derive(Debug, Default)]
pub struct FlakyCounts {
    pub requests: AtomicU64,
    pub answered: AtomicU64,
    pub reset_before_headers: AtomicU64,
    pub reset_after_headers: AtomicU64,
}

/// A pod that answers like [`Pod`] but resets (RST) every `before`-th request's
/// connection before writing anything, and every `after`-th one after the headers and
/// part of the body: counted per pod, not per connection, so the pattern is the same
/// whatever the proxy's pooling.
#[derive(Debug)]
pub struct Flaky {
    pub addr: SocketAddr,
    pub counts: Arc<FlakyCounts>,
    task: JoinHandle<()>,
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Flaky {
    pub async fn start(name: &str, addr: SocketAddr, before: u64, after: u64) -> Flaky {
        let listener = (TcpListener::bind(addr).await)
            .unwrap_or_else(|e| panic!("bind the flaky pod on {addr}: {e}"));
        let counts = Arc::new(FlakyCounts::default());
        let shared = Arc::clone(&counts);
        let name: Arc<str> = Arc::from(name);
        let task = tokio::spawn(async move {
            let mut open = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while open.try_join_next().is_some() {}
                let _ = stream.set_nodelay(true);
                open.spawn(flaky_connection(
                    stream,
                    Arc::clone(&name),
                    Arc::clone(&shared),
                    before,
                    after,
                ));
            }
        });
        Flaky { addr, counts, task }
    }
}

/// One connection of the flaky pod: bodiless requests (the load sends GETs), answered in
/// order.
async fn flaky_connection(
    mut stream: TcpStream,
    name: Arc<str>,
    counts: Arc<FlakyCounts>,
    before: u64,
    after: u64,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..head_end);
        let n = counts.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(before) {
            counts.reset_before_headers.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_zero_linger();
            return;
        }
        if n.is_multiple_of(after) {
            counts.reset_after_headers.fetch_add(1, Ordering::Relaxed);
            // Promises more body than it sends: the proxy has forwarded the headers by
            // the time the connection breaks, so nothing can be replayed.
            let head = format!(
                "HTTP/1.1 200 OK\r\n{POD_HEADER}: {name}\r\ncontent-length: {}\r\n\r\n{name}",
                name.len() + 64
            );
            let _ = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(HEADERS_THEN_RESET).await;
            let _ = stream.set_zero_linger();
            return;
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{POD_HEADER}: {name}\r\ncontent-length: {}\r\n\r\n{name}",
            name.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        counts.answered.fetch_add(1, Ordering::Relaxed);
    }
}
