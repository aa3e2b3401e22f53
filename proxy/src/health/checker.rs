//! The I/O half of health checking: follows the table, keeps one probe task per
//! [`ProbeKey`] (an endpoint and the check asked of it), and hands each verdict to the
//! balancers of every Route that asked for it.
//!
//! Bounded by construction: a probe task runs one probe at a time (probe, then wait),
//! so at most one probe per endpoint and check is in flight, and each waits its
//! jittered interval after the last one ended, however slow the endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fairway_proto::model::EndpointAddr;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::probe;
use super::verdict::{self, Change, Health};
use crate::metrics::Metrics;
use crate::table::{BackendState, ProbeKey, Table, TableHandle};

/// The balancers a probe's verdict goes to.
type Subscribers = Vec<Arc<BackendState>>;

/// One running probe task; dropping it stops the task.
struct Running {
    subscribers: watch::Sender<Subscribers>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the checker: it follows `table` until the table's sender is gone (the
/// process is stopping), and needs no stop of its own.
pub fn spawn(table: &TableHandle, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(follow(table.subscribe(), metrics))
}

async fn follow(mut tables: watch::Receiver<Arc<Table>>, metrics: Arc<Metrics>) {
    let mut running: HashMap<ProbeKey, Running> = HashMap::new();
    loop {
        let table = Arc::clone(&tables.borrow_and_update());
        let mut wanted = table.health_targets();
        running.retain(|key, probe| match wanted.remove(key) {
            Some(subscribers) => {
                update(key.addr, &probe.subscribers, subscribers);
                true
            }
            None => {
                // The check is gone (Route changed, endpoint left): it no longer
                // holds anyone out of rotation.
                release(key.addr, &probe.subscribers.borrow());
                false
            }
        });
        for (key, subscribers) in wanted {
            let (sender, receiver) = watch::channel(subscribers);
            let task = tokio::spawn(run(key.clone(), receiver, Arc::clone(&metrics)));
            running.insert(
                key,
                Running {
                    subscribers: sender,
                    task,
                },
            );
        }
        if tables.changed().await.is_err() {
            return;
        }
    }
}

/// New subscribers for a running probe; balancers that left it are released.
fn update(addr: EndpointAddr, sender: &watch::Sender<Subscribers>, new: Subscribers) {
    let same = |a: &Subscribers, b: &Subscribers| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
    };
    sender.send_if_modified(|current| {
        if same(current, &new) {
            return false;
        }
        let gone: Subscribers = current
            .iter()
            .filter(|old| !new.iter().any(|n| Arc::ptr_eq(n, old)))
            .cloned()
            .collect();
        release(addr, &gone);
        *current = new;
        true
    });
}

fn release(addr: EndpointAddr, subscribers: &[Arc<BackendState>]) {
    apply(addr, subscribers, true);
}

fn apply(addr: EndpointAddr, subscribers: &[Arc<BackendState>], healthy: bool) {
    let now = Instant::now();
    for backend in subscribers {
        backend.set_health(addr, healthy, now);
    }
}

/// Probes `key` until aborted: wait, probe, decide, tell the balancers.
async fn run(key: ProbeKey, mut subscribers: watch::Receiver<Subscribers>, metrics: Arc<Metrics>) {
    let ProbeKey { addr, check } = key;
    let endpoint = metrics.endpoint_label(&addr.to_string());
    let mut health = Health::default();
    let mut connection = None;
    let mut wait = verdict::first_delay(check.interval, rand::rng().random());
    loop {
        let wake = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                changed = subscribers.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A balancer that joined learns the verdict now, not next probe.
                    apply(addr, &subscribers.borrow_and_update(), health.is_healthy());
                }
            }
        }
        let answer = probe::check(&mut connection, addr, &check).await;
        let change = health.record(answer, &check);
        // Every time, not only on a change: idempotent, and it covers balancers that
        // replaced their state meanwhile. Before the metrics, so whoever reads a
        // change there finds the balancers already following it.
        apply(addr, &subscribers.borrow_and_update(), health.is_healthy());
        metrics.health.record_check(&endpoint, answer.label());
        if let Some(change) = change {
            let healthy = change == Change::Recovered;
            tracing::info!(%addr, service = %check.service, answer = answer.label(), healthy, "health check changed an endpoint");
            metrics.health.record_change(&endpoint, healthy);
        }
        wait = verdict::next_delay(check.interval, rand::rng().random());
    }
}
