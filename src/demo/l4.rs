//! A stand-in for kube-proxy: a plain TCP forwarder that picks a backend once per
//! *connection*, round robin over the backends it knows at connect time. Updating the
//! backend list affects new connections only, exactly like a ClusterIP's iptables/IPVS
//! rules: keep-alive connections stay where they were put.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running per-connection balancer.
#[derive(Debug)]
pub struct L4Balancer {
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Drop for L4Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl L4Balancer {
    pub async fn start(listen: SocketAddr, backends: Vec<SocketAddr>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(Mutex::new(backends));
        let task = tokio::spawn(accept(listener, Arc::clone(&backends)));
        Ok(L4Balancer {
            addr,
            backends,
            task,
        })
    }

    /// New connections go to `backends` from now on; open ones stay put.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self.backends.lock().unwrap_or_else(PoisonError::into_inner) = backends;
    }
}

async fn accept(listener: TcpListener, backends: Arc<Mutex<Vec<SocketAddr>>>) {
    let next = AtomicUsize::new(0);
    while let Ok((mut client, _)) = listener.accept().await {
        let backend = {
            let list = backends.lock().unwrap_or_else(PoisonError::into_inner);
            if list.is_empty() {
                continue;
            }
            list[next.fetch_add(1, Ordering::Relaxed) % list.len()]
        };
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            if let Ok(mut upstream) = TcpStream::connect(backend).await {
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}
