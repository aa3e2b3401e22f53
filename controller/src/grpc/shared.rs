//! What every Discovery stream shares: the store, the proxy registry, metrics, the
//! shutdown signal, and the caches that build each version's messages once for all
//! streams. `server` creates it and `stream` reads it; it imports neither.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use fairway_proto::Version;
use fairway_proto::diff::TableDiff;
use fairway_proto::digest::{TableDigest, rebase};
use fairway_proto::pb;
use fairway_proto::snapshot::{DEFAULT_MAX_CHUNK_BYTES, snapshot_messages};
use prost::Message;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, watch};

use super::proxies::Proxies;
use super::scope::Scope;
use super::wire::Encoded;
use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::store::{HISTORY_VERSIONS, Published, Store};

/// Snapshot chunk size on this server. Smaller than the protocol's 1 MiB bound so that
/// a full per-stream queue is about 1 MiB, even with a thousand slow proxies.
pub const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

/// Streams sending a snapshot at once. In a reconnect storm thousands of proxies want
/// one; sent all at once they share the link and every proxy finishes near the end,
/// each stream holding a partly sent chunk. A few at a time, each goes at full speed:
/// proxies come back group after group (each serving its last table meanwhile), and the
/// buffers in use stay bounded by this many streams, not by the number of proxies.
pub const SNAPSHOT_SENDS: usize = 64;

/// A snapshot's messages, encoded once per version and shared by every stream that
/// needs it (a thousand proxies reconnecting at once cost one encoding).
pub type SnapshotMessages = Arc<[Encoded]>;

/// The last snapshot built, by version.
#[derive(Debug, Default)]
struct SnapshotCache {
    last: Mutex<Option<(Version, SnapshotMessages)>>,
}

impl SnapshotCache {
    async fn get(&self, published: &Published) -> SnapshotMessages {
        let mut last = self.last.lock().await;
        if let Some((version, messages)) = &*last
            && *version == published.version
        {
            return messages.clone();
        }
        let messages: SnapshotMessages =
            snapshot_messages(&published.table, published.version, SNAPSHOT_CHUNK_BYTES)
                .iter()
                .map(Encoded::new)
                .collect();
        *last = Some((published.version, messages.clone()));
        messages
    }
}

/// Delta messages by version, built and encoded once and shared by every stream (a
/// thousand streams sending one delta cost one conversion and one encoding). Bounded
/// like the store's history.
#[derive(Debug, Default)]
struct DeltaCache {
    by_version: std::sync::Mutex<BTreeMap<Version, Encoded>>,
}

impl DeltaCache {
    fn get(&self, base: Version, version: Version, diff: &TableDiff) -> Encoded {
        // A poisoned cache only holds finished entries: keep using it.
        let mut cache = (self.by_version.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = cache.get(&version) {
            return hit.clone();
        }
        let built = Encoded::new(&diff.to_message(base, version));
        cache.insert(version, built.clone());
        while cache.len() > HISTORY_VERSIONS {
            cache.pop_first();
        }
        built
    }
}

/// Rebases, built and encoded once per version and set of differing buckets: after a
/// restart every proxy sends the digest of the same table, so thousands of reconnecting
/// proxies cost one digest of ours and one rebase, and every stream sends the same
/// bytes.
#[derive(Debug, Default)]
struct RebaseCache {
    /// Our table's digest, for the last version and bucket count asked.
    ours: Mutex<Option<(Version, Arc<TableDigest>)>>,
    /// The last rebase built, by version and buckets; `None` if it was too big to send.
    last: std::sync::Mutex<Option<RebaseEntry>>,
}

#[derive(Debug)]
struct RebaseEntry {
    version: Version,
    buckets: Vec<u32>,
    rebase: Option<Encoded>,
}

impl RebaseCache {
    async fn ours(&self, published: &Published, bits: u32) -> Arc<TableDigest> {
        let mut ours = self.ours.lock().await;
        if let Some((version, digest)) = &*ours
            && *version == published.version
            && digest.bits() == bits
        {
            return digest.clone();
        }
        let digest = Arc::new(TableDigest::with_bits(&published.table, bits));
        *ours = Some((published.version, digest.clone()));
        digest
    }

    /// The rebase of `buckets` to `published`, encoded; `None` when it is larger than
    /// a delta may be (then a chunked snapshot goes instead).
    fn get(&self, published: &Published, bits: u32, buckets: Vec<u32>) -> Option<Encoded> {
        let mut last = (self.last.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = &*last
            && entry.version == published.version
            && entry.buckets == buckets
        {
            return entry.rebase.clone();
        }
        let message = pb::ControllerMessage {
            version: Some(published.version.into()),
            kind: Some(pb::controller_message::Kind::Rebase(rebase(
                &published.table,
                bits,
                &buckets,
            ))),
        };
        let built =
            (message.encoded_len() <= DEFAULT_MAX_CHUNK_BYTES).then(|| Encoded::new(&message));
        *last = Some(RebaseEntry {
            version: published.version,
            buckets,
            rebase: built.clone(),
        });
        built
    }
}

/// What every stream shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) store: Arc<Store>,
    pub(super) proxies: Arc<Proxies>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) auth: Arc<Authenticator>,
    snapshots: SnapshotCache,
    deltas: DeltaCache,
    rebases: RebaseCache,
    snapshot_sends: Arc<Semaphore>,
    /// Sidecars' scope facts, advanced once per version for all of them.
    scope: std::sync::Mutex<Scope>,
    /// Flips to `true` at shutdown: every stream ends cleanly (status OK).
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Shared state with empty caches.
    pub(super) fn new(
        store: Arc<Store>,
        proxies: Arc<Proxies>,
        metrics: Arc<Metrics>,
        auth: Arc<Authenticator>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            store,
            proxies,
            metrics,
            auth,
            snapshots: SnapshotCache::default(),
            deltas: DeltaCache::default(),
            rebases: RebaseCache::default(),
            snapshot_sends: Arc::new(Semaphore::new(SNAPSHOT_SENDS)),
            scope: std::sync::Mutex::default(),
            shutdown,
        }
    }

    pub(super) async fn snapshot(&self, published: &Published) -> SnapshotMessages {
        self.snapshots.get(published).await
    }

    /// Waits for a turn to send a snapshot (one of [`SNAPSHOT_SENDS`]); the turn ends
    /// when the permit is dropped. `None` only if the semaphore were closed, which it
    /// never is: then the stream goes without waiting.
    pub(super) async fn snapshot_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.snapshot_sends.clone().acquire_owned().await.ok()
    }

    /// The rebase that takes a proxy whose table has digest `theirs` to `published`
    /// (the same bytes for every proxy with that digest); `None` if it would be too big
    /// (send a snapshot).
    pub(super) async fn rebase(
        &self,
        published: &Published,
        theirs: &TableDigest,
    ) -> Option<Encoded> {
        let bits = theirs.bits();
        let differing = self.rebases.ours(published, bits).await.differing(theirs)?;
        self.rebases.get(published, bits, differing)
    }

    /// The sidecars' scope at exactly `published`'s version, advanced to it from the
    /// store's history (or rebuilt from its table when the history no longer reaches
    /// back). `None` when another stream already advanced it past `published`: the
    /// caller's watch is about to show that newer version (history is written first),
    /// so it plans then. Held briefly, without `.await`.
    pub(super) fn scope_at(
        &self,
        published: &Published,
    ) -> Option<std::sync::MutexGuard<'_, Scope>> {
        // The scope is plain data advanced whole: still valid after a panic elsewhere.
        let mut scope = (self.scope.lock()).unwrap_or_else(PoisonError::into_inner);
        let at = scope.version();
        if at == published.version {
            return Some(scope);
        }
        if at.epoch == published.version.epoch && at > published.version {
            return None;
        }
        let steps = self.store.deltas_since(at).filter(|steps| {
            steps
                .iter()
                .any(|(_, version, _)| *version == published.version)
        });
        match steps {
            Some(steps) => {
                for (_, version, diff) in
                    steps.iter().take_while(|(_, v, _)| *v <= published.version)
                {
                    scope.advance(*version, diff);
                }
            }
            None => *scope = Scope::of(&published.table, published.version),
        }
        Some(scope)
    }

    /// The shared message for the delta from `base` to `version`. Bases are always the
    /// previous version (the history is a chain), so the version alone identifies it.
    pub(super) fn delta(&self, base: Version, version: Version, diff: &TableDiff) -> Encoded {
        self.deltas.get(base, version, diff)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::state::NodeZones;

    fn shared() -> Shared {
        let (_stop, shutdown) = watch::channel(false);
        Shared::new(
            Store::new(),
            Proxies::new(Arc::new(NodeZones::default())),
            Arc::new(Metrics::new()),
            Arc::new(Authenticator::disabled()),
            shutdown,
        )
    }

    #[test]
    fn snapshot_turns_are_bounded_and_come_back() {
        let shared = shared();
        let turns: Vec<_> = (0..SNAPSHOT_SENDS)
            .map(|_| shared.snapshot_turn().now_or_never().flatten())
            .collect();
        assert!(
            turns.iter().all(Option::is_some),
            "{SNAPSHOT_SENDS} streams send snapshots at once without waiting"
        );
        assert!(
            shared.snapshot_turn().now_or_never().is_none(),
            "one more waits for a turn"
        );
        drop(turns);
        assert!(
            shared.snapshot_turn().now_or_never().flatten().is_some(),
            "a turn that ends goes to the next stream"
        );
    }
}
