//! The versioned store: turns index changes into numbered versions of the route table,
//! publishes the latest one on a `watch`, and keeps a bounded history of diffs so that
//! reconnecting or lagging subscribers get only what changed.
//!
//! Where to start: [`Store::run`] is the publisher task (one per process). It waits on
//! [`IndexHandle::changed`], waits until the index has been quiet for [`DEFAULT_COALESCE`]
//! (but no longer than [`COALESCE_CAP_WINDOWS`] windows after the first change:
//! [`publish_at`]) so that a burst of watch events becomes one version, reads the
//! entries that changed once ([`Patch`]), diffs
//! them against the last published table and, when anything changed, publishes
//! [`Published`] with the next sequence. A version costs O(changes), not O(table).
//! Readers call [`Store::subscribe`] (the latest version, never blocking the publisher)
//! and [`Store::deltas_since`] (the diffs from a version they hold to the latest).
//!
//! Nothing is published before the index's first full sync, so sequence 0 (the initial
//! value of the watch, an empty table) is never served: [`Published::is_initial`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fairway_proto::diff::{TableDiff, apply, diff};
use fairway_proto::{EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Version};
use tokio::sync::watch;

use crate::index::Changes;
use crate::state::IndexHandle;

/// Default coalescing window: a rollout or an HPA step produces a burst of
/// EndpointSlice events within a few milliseconds; 20 ms folds such a burst into one
/// version while staying far below the 100 ms p99 convergence target.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(20);

/// A burst keeps the publisher waiting (each change restarts the window) for at most
/// this many windows after its first change: a long rollout becomes a version every
/// 100 ms (at the default window) instead of every 20 ms, so each proxy gets a fifth as
/// many messages, and a small change caught in it still goes out within 100 ms.
pub const COALESCE_CAP_WINDOWS: u32 = 5;

/// When the publisher reads the index, for a burst whose first change came at `first`
/// and latest at `last`: once the index has been quiet for `window`, or
/// [`COALESCE_CAP_WINDOWS`] windows after `first`, whichever is sooner. A lone change
/// waits exactly one window, as before bursts were capped.
pub fn publish_at(
    first: tokio::time::Instant,
    last: tokio::time::Instant,
    window: Duration,
) -> tokio::time::Instant {
    (last + window).min(first + window * COALESCE_CAP_WINDOWS)
}

/// Versions kept for resumes and lagging subscribers. At one version per coalescing
/// window this covers five seconds of continuous churn, longer than a proxy reconnect
/// normally takes; anything older gets a snapshot, which is always correct.
pub const HISTORY_VERSIONS: usize = 256;

/// Upper bound on the changes (routes plus endpoints) held by the whole history, so a
/// few relists of a huge table do not pin hundreds of megabytes of diffs. Past this many
/// changes a snapshot is cheaper to send than the deltas anyway.
pub const HISTORY_MAX_CHANGES: usize = 500_000;

/// One published version of the route table.
#[derive(Clone, Debug, Default)]
pub struct Published {
    pub version: Version,
    pub table: Arc<RouteTable>,
    /// The changes from the previous published version to this one (for the first
    /// version: from the empty table).
    pub diff: Arc<TableDiff>,
}

impl Published {
    /// True for the placeholder the watch holds before the first version: sequence 0,
    /// an empty table. It must never be served.
    pub fn is_initial(&self) -> bool {
        self.version.sequence == 0
    }
}

/// One step of history: the diff that takes `base` to `version`.
#[derive(Clone, Debug)]
struct Entry {
    version: Version,
    diff: Arc<TableDiff>,
    published_at: Instant,
    /// `diff_weight(&diff)`, kept to maintain the history's total.
    weight: usize,
}

/// The diffs of the last versions, oldest first, with consecutive sequences. Pure.
#[derive(Debug)]
pub struct History {
    epoch: u64,
    entries: VecDeque<Entry>,
    max_versions: usize,
    max_changes: usize,
    changes: usize,
}

/// The deltas that take a subscriber from a version to a later one, in order:
/// `(base, version, diff)`, each base the previous version.
pub type Deltas = Vec<(Version, Version, Arc<TableDiff>)>;

fn diff_weight(d: &TableDiff) -> usize {
    // A route or a set header counts like an endpoint: each is one item on the wire.
    d.routes_upserted.len()
        + d.routes_removed.len()
        + d.sets_removed.len()
        + d.sets.len()
        + d.endpoint_changes()
}

impl History {
    pub fn new(epoch: u64, max_versions: usize, max_changes: usize) -> Self {
        History {
            epoch,
            entries: VecDeque::new(),
            max_versions: max_versions.max(1),
            max_changes,
            changes: 0,
        }
    }

    /// Records the diff that produced `version` (whose sequence must follow the last
    /// one), dropping the oldest entries beyond the bounds. The newest entry is always
    /// kept, even when it alone is over `max_changes`.
    pub fn push(&mut self, version: Version, diff: Arc<TableDiff>, published_at: Instant) {
        let weight = diff_weight(&diff);
        self.entries.push_back(Entry {
            version,
            diff,
            published_at,
            weight,
        });
        self.changes += weight;
        while self.entries.len() > 1
            && (self.entries.len() > self.max_versions || self.changes > self.max_changes)
        {
            if let Some(old) = self.entries.pop_front() {
                self.changes -= old.weight;
            }
        }
    }

    /// The latest version recorded (sequence 0 if none).
    pub fn latest(&self) -> Version {
        self.entries.back().map_or(
            Version {
                epoch: self.epoch,
                sequence: 0,
            },
            |e| e.version,
        )
    }

    /// The deltas from `from` to the latest version; empty when `from` is the latest.
    /// `None` when `from` is from another epoch, is sequence 0 (nothing applied), is
    /// ahead of the latest, or is older than the history: the subscriber needs a
    /// snapshot.
    pub fn deltas_since(&self, from: Version) -> Option<Deltas> {
        let latest = self.latest();
        if from.epoch != self.epoch || from.sequence == 0 || from.sequence > latest.sequence {
            return None;
        }
        if from == latest {
            return Some(Vec::new());
        }
        // Entries hold consecutive sequences: the one producing `from + 1` is at a
        // fixed offset from the oldest.
        let oldest = self.entries.front()?.version.sequence;
        let first = from.sequence + 1;
        if first < oldest {
            return None;
        }
        let skip = usize::try_from(first - oldest).ok()?;
        let mut base = from;
        let deltas = self.entries.iter().skip(skip).map(|e| {
            let step = (base, e.version, e.diff.clone());
            base = e.version;
            step
        });
        Some(deltas.collect())
    }

    /// When `version` was published, while it is in the history.
    pub fn published_at(&self, version: Version) -> Option<Instant> {
        let oldest = self.entries.front()?.version;
        if version.epoch != self.epoch || version.sequence < oldest.sequence {
            return None;
        }
        let at = usize::try_from(version.sequence - oldest.sequence).ok()?;
        self.entries
            .get(at)
            .filter(|e| e.version == version)
            .map(|e| e.published_at)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the publisher does with a freshly read table.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not synced yet: publish nothing, a half-built table must never go out.
    Wait,
    /// Synced and nothing changed since the last version.
    Unchanged,
    /// Publish this diff as the next version.
    Publish(TableDiff),
}

/// Decides whether `new` becomes a version. Pure. The first version after the sync is
/// published even when the table is empty (it is still the complete table).
pub fn decide(synced: bool, published_any: bool, prev: &RouteTable, new: &RouteTable) -> Decision {
    if !synced {
        return Decision::Wait;
    }
    let d = diff(prev, new);
    if d.is_empty() && published_any {
        Decision::Unchanged
    } else {
        Decision::Publish(d)
    }
}

/// A fresh, nonzero epoch: random, so two processes started in the same instant (two
/// replicas) still differ; mixed with the clock in case the RNG were ever seeded alike.
pub fn fresh_epoch() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (rand::random::<u64>() ^ nanos).max(1)
}

/// The entries of a table that changed since the last version: for each changed key,
/// its new value (`None`: gone). What the publisher reads from the index, in
/// O(changes) rather than O(table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    pub routes: BTreeMap<RouteKey, Option<Arc<Route>>>,
    pub endpoint_sets: BTreeMap<EndpointSetKey, Option<Arc<EndpointSet>>>,
}

impl Patch {
    /// The current values in `table` of the keys in `changes`.
    pub fn read(table: &RouteTable, changes: &Changes) -> Patch {
        Patch {
            routes: (changes.routes.iter())
                .map(|k| (k.clone(), table.routes.get(k).cloned()))
                .collect(),
            endpoint_sets: (changes.endpoint_sets.iter())
                .map(|k| (k.clone(), table.endpoint_sets.get(k).cloned()))
                .collect(),
        }
    }

    /// The diff that takes `prev` to `prev` with this patch applied. Pure; looks only at
    /// the patched keys.
    pub fn diff_from(&self, prev: &RouteTable) -> TableDiff {
        let (mut old, mut new) = (RouteTable::default(), RouteTable::default());
        for (key, route) in &self.routes {
            if let Some(r) = prev.routes.get(key) {
                old.routes.insert(key.clone(), r.clone());
            }
            if let Some(r) = route {
                new.routes.insert(key.clone(), r.clone());
            }
        }
        for (key, set) in &self.endpoint_sets {
            if let Some(s) = prev.endpoint_sets.get(key) {
                old.endpoint_sets.insert(key.clone(), s.clone());
            }
            if let Some(s) = set {
                new.endpoint_sets.insert(key.clone(), s.clone());
            }
        }
        diff(&old, &new)
    }
}

/// The versioned store: one publisher ([`Store::run`]), many subscribers.
#[derive(Debug)]
pub struct Store {
    epoch: u64,
    latest: watch::Sender<Arc<Published>>,
    history: Mutex<History>,
    /// The table of the version before the latest, recycled to build the next version:
    /// once no reader holds it, bringing it forward by two diffs costs O(changes)
    /// where a copy of a 100k-endpoint table costs tens of milliseconds.
    spare: Mutex<Option<Arc<RouteTable>>>,
}

impl Store {
    /// A store with a fresh epoch and nothing published.
    pub fn new() -> Arc<Self> {
        Self::with_epoch(fresh_epoch())
    }

    pub fn with_epoch(epoch: u64) -> Arc<Self> {
        let initial = Published {
            version: Version { epoch, sequence: 0 },
            ..Published::default()
        };
        Arc::new(Store {
            epoch,
            latest: watch::Sender::new(Arc::new(initial)),
            history: Mutex::new(History::new(epoch, HISTORY_VERSIONS, HISTORY_MAX_CHANGES)),
            spare: Mutex::new(None),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Follows the latest version. The receiver sees only the newest value (it never
    /// blocks the publisher); use [`Store::deltas_since`] to catch up on skipped ones.
    /// Until the first sync it holds the initial placeholder ([`Published::is_initial`]).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.latest.subscribe()
    }

    /// The latest published version (the placeholder before the first one).
    pub fn latest(&self) -> Arc<Published> {
        self.latest.borrow().clone()
    }

    /// True once a first version is published: streams may open.
    pub fn is_ready(&self) -> bool {
        !self.latest.borrow().is_initial()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // History updates cannot leave it half-changed in a way that matters: at worst
        // a subscriber gets a snapshot.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deltas from `from` to the latest version, `(base, version, diff)` in order;
    /// empty when `from` is the latest. `None` when `from` is another epoch or older than
    /// the history: send a snapshot.
    pub fn deltas_since(&self, from: Version) -> Option<Deltas> {
        self.history().deltas_since(from)
    }

    /// When `version` was published, while it is still in the history.
    pub fn published_at(&self, version: Version) -> Option<Instant> {
        self.history().published_at(version)
    }

    /// Publishes `table` as the next version if it differs from the latest (or is the
    /// first). Returns the new version, if any. Costs a full diff: [`Store::run`] uses
    /// it for the first version only; public for benchmarks and tests.
    pub fn publish(&self, table: RouteTable) -> Option<Version> {
        let prev = self.latest();
        match decide(true, !prev.is_initial(), &prev.table, &table) {
            Decision::Publish(d) => Some(self.commit(&prev, Arc::new(table), d)),
            Decision::Wait | Decision::Unchanged => None,
        }
    }

    /// Publishes the latest table with `patch` applied, if that changes anything.
    /// Costs O(patch) when no reader still holds the version before the latest.
    pub fn publish_patch(&self, patch: &Patch) -> Option<Version> {
        let prev = self.latest();
        if prev.is_initial() {
            return None;
        }
        let d = patch.diff_from(&prev.table);
        if d.is_empty() {
            return None;
        }
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut next = match spare {
            // The spare is the table before `prev`: `prev.diff` brings it to `prev`.
            // `make_mut` copies only if a reader still holds it.
            Some(mut spare) => {
                apply(Arc::make_mut(&mut spare), &prev.diff);
                spare
            }
            None => Arc::new(RouteTable::clone(&prev.table)),
        };
        apply(Arc::make_mut(&mut next), &d);
        Some(self.commit(&prev, next, d))
    }

    fn commit(&self, prev: &Published, table: Arc<RouteTable>, d: TableDiff) -> Version {
        let version = Version {
            epoch: self.epoch,
            sequence: prev.version.sequence + 1,
        };
        let diff = Arc::new(d);
        // History first: a subscriber woken by the watch must find the new entry.
        self.history().push(version, diff.clone(), Instant::now());
        self.latest.send_replace(Arc::new(Published {
            version,
            table,
            diff,
        }));
        *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = Some(prev.table.clone());
        version
    }

    /// The publisher task: runs until the process ends. Each wake-up waits until the
    /// index has been quiet for `coalesce` (at most [`COALESCE_CAP_WINDOWS`] windows:
    /// [`publish_at`]), then reads what changed in the index once; nothing is published
    /// before `index` is synced, and the first version is the whole table.
    pub async fn run(self: Arc<Self>, index: Arc<IndexHandle>, coalesce: Duration) {
        loop {
            index.changed().await;
            if !coalesce.is_zero() {
                // The runtime's clock, so paused-clock tests step it.
                let first = tokio::time::Instant::now();
                let mut last = first;
                while tokio::time::timeout_at(publish_at(first, last, coalesce), index.changed())
                    .await
                    .is_ok()
                {
                    last = tokio::time::Instant::now();
                }
            }
            if !index.is_synced() {
                continue;
            }
            // Debug builds check the incremental path against the index itself, as the
            // index was when its changes were read (under the same lock: the sources
            // go on applying events meanwhile, so a later look may differ rightly).
            let check = cfg!(debug_assertions);
            let (version, expected) = if self.is_ready() {
                // Only the changed entries are copied under the lock.
                let (patch, expected) = index.read_changes(|idx, changes| {
                    let expected = check.then(|| idx.table().clone());
                    (Patch::read(idx.table(), &changes), expected)
                });
                (self.publish_patch(&patch), expected)
            } else {
                let table = index.read_changes(|idx, _| idx.table().clone());
                let expected = check.then(|| table.clone());
                (self.publish(table), expected)
            };
            if let Some(version) = version {
                tracing::debug!(%version, "published route table");
            }
            // A change the index failed to report would show here, not in a proxy.
            if let Some(expected) = expected {
                let latest = self.latest();
                debug_assert!(
                    *latest.table == expected,
                    "published table {} differs from the index it was read from",
                    latest.version
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "store/tests.rs"]
mod tests;
