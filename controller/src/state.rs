//! The seam between the sources (Kubernetes watchers, or `--static-dir`) and the
//! readers (snapshot publisher, status writer, admin): one [`Index`] behind a short
//! lock, a "changed" signal, and a "first full sync done" flag.
//!
//! Sources call [`IndexHandle::update`] with one pure index call; the lock is never held
//! across an `.await`. The publisher waits on [`IndexHandle::changed`], lets a
//! coalescing window pass, then reads the table once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use tokio::sync::{Notify, watch};

use crate::index::{Changes, Index};

/// The index shared by sources and readers.
#[derive(Debug)]
pub struct IndexHandle {
    index: Mutex<Index>,
    /// What changed since the publisher last took it (locked inside `index`'s lock),
    /// so a version costs O(changes), not O(table).
    pending: Mutex<Changes>,
    changed: Notify,
    synced: watch::Sender<bool>,
}

impl Default for IndexHandle {
    fn default() -> Self {
        IndexHandle::from_index(Index::new())
    }
}

impl IndexHandle {
    /// A handle around `index` (e.g. one built for another cluster domain).
    pub fn from_index(index: Index) -> Self {
        IndexHandle {
            index: Mutex::new(index),
            pending: Mutex::new(Changes::default()),
            changed: Notify::new(),
            synced: watch::Sender::new(false),
        }
    }

    pub fn new() -> Arc<Self> {
        Arc::new(IndexHandle::default())
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index is only mutated by pure calls that finish; a poisoned lock means a
        // panic in one, after which the data is still the best we have.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one change to the index and wakes the readers if anything changed.
    pub fn update(&self, f: impl FnOnce(&mut Index) -> Changes) -> Changes {
        let mut index = self.lock();
        let changes = f(&mut index);
        if !changes.is_empty() {
            // Recorded before the index lock is released: a reader taking the pending
            // changes under that lock sees them together with the index they describe.
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.routes.extend(changes.routes.iter().cloned());
            pending
                .endpoint_sets
                .extend(changes.endpoint_sets.iter().cloned());
            drop(pending);
            drop(index);
            self.changed.notify_one();
        }
        changes
    }

    /// Reads the index together with everything that changed since the last call (the
    /// publisher's incremental read; one caller). Keep `f` short.
    pub fn read_changes<R>(&self, f: impl FnOnce(&Index, Changes) -> R) -> R {
        let index = self.lock();
        let changes =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        f(&index, changes)
    }

    /// Reads the index (e.g. clones the table). Keep `f` short: sources wait meanwhile.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.lock())
    }

    /// Resolves once something changed since the last wake-up (one waiter: the
    /// publisher). A change before the call is not lost: `Notify` stores one permit.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Every source has delivered its first full listing: the table is complete and the
    /// gRPC server may open streams.
    pub fn mark_synced(&self) {
        self.synced.send_replace(true);
        self.changed.notify_one();
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Follows the synced flag (the gRPC server answers `UNAVAILABLE` until it is true).
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }
}

/// Node name -> zone (`topology.kubernetes.io/zone`), for proxies whose hello carries no
/// zone. Filled by the Node watcher in Kubernetes mode; empty in `--static-dir` mode.
#[derive(Debug, Default)]
pub struct NodeZones {
    zones: RwLock<HashMap<String, String>>,
}

impl NodeZones {
    pub fn get(&self, node: &str) -> Option<String> {
        let zones = self.zones.read().unwrap_or_else(PoisonError::into_inner);
        zones.get(node).cloned()
    }

    /// Sets or clears (`None`) one node's zone.
    pub fn set(&self, node: &str, zone: Option<String>) {
        let mut zones = self.zones.write().unwrap_or_else(PoisonError::into_inner);
        match zone {
            Some(zone) => zones.insert(node.to_owned(), zone),
            None => zones.remove(node),
        };
    }

    /// Replaces every entry (a relist).
    pub fn replace(&self, all: HashMap<String, String>) {
        *self.zones.write().unwrap_or_else(PoisonError::into_inner) = all;
    }
}
