//! `--static-dir DIR`: the index fed from YAML files instead of the Kubernetes API.
//!
//! Every `*.yaml` / `*.yml` file in the directory (not hidden, not in subdirectories)
//! may hold several `---`-separated documents, each a Route (`fairway.dev/v1alpha1`), a
//! Service (`v1`), an EndpointSlice (`discovery.k8s.io/v1`), a ConfigMap (`v1`), or an
//! HTTPRoute or BackendTLSPolicy (`gateway.networking.k8s.io/v1`, the CRD defaults
//! applied by the index). Objects without a namespace are in `default`.
//!
//! Where to start: [`run`] reads the directory once, replaces the index's contents and
//! marks it synced, then looks again whenever a file-system event (inotify, through the
//! `notify` crate) says something in the directory changed, and every
//! [`FALLBACK_POLL`] regardless, in case an event was lost. Where no watcher can be set
//! up it polls every [`POLL_INTERVAL`] instead. Each look is a [`DirState::poll`]: a
//! file whose metadata moved is re-read; the objects of all files are merged and
//! compared with what the index holds, and only the differences are applied or deleted
//! (pure apart from reading files). An event is only a wake-up: what changed is read
//! from the directory itself, so merged or spurious events cost nothing.
//!
//! A file that does not parse is logged with its path and line and keeps its last good
//! objects; a document of an unknown kind is logged and skipped. Either way every other
//! object stays served. With no apiserver there is no Route status to read, so a Route
//! whose backend Service or port is missing is logged once, when it turns so
//! ([`UnresolvedLog`]).

mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fairway_proto::model::RouteKey;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use crate::index::{Changes, ConditionStatus, Index};
use crate::state::IndexHandle;
pub use parse::{
    Document, Kind, Object, ObjectKey, ParseError, Skipped, documents, is_empty, parse_file,
};

/// How often the directory is checked when file-system events are not available (some
/// network or FUSE mounts). Fast enough that an edit shows up well within a second (the
/// demo's feedback loop); a poll of a small directory costs a few `stat` calls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often the directory is checked even with file-system events, in case one was
/// lost (an overflowed inotify queue): rare enough to cost nothing, soon enough that a
/// lost edit does not stay unnoticed.
pub const FALLBACK_POLL: Duration = Duration::from_secs(5);

/// How [`run`] learns that the directory changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// File-system events, plus a poll at this interval in case one is lost. Where no
    /// watcher can be set up, polls every [`POLL_INTERVAL`] instead.
    Events { fallback: Duration },
    /// Only a poll at this interval.
    Poll(Duration),
}

impl Default for Follow {
    fn default() -> Self {
        Follow::Events {
            fallback: FALLBACK_POLL,
        }
    }
}

/// Why the static source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StaticDirError {
    #[error("cannot read the static directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the static directory reader stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What identifies one version of a file's content without reading it. The inode and
/// change time catch atomic replacements (`mv`, ConfigMap symlink swaps) that keep the
/// length and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    changed_ns: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            changed_ns: meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec(),
        }
    }
}

#[derive(Debug)]
struct FileEntry {
    stamp: Stamp,
    /// The objects of the last successful parse (empty if it never parsed).
    objects: Vec<Object>,
}

/// One change for the index.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Apply(Object),
    Delete(Object),
}

/// The files seen and the objects the index holds from them.
#[derive(Debug)]
pub struct DirState {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileEntry>,
    applied: BTreeMap<ObjectKey, Object>,
}

/// Whether `path` is a file this source reads.
fn is_yaml(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(ext, Some("yaml" | "yml"))
}

impl DirState {
    pub fn new(dir: PathBuf) -> Self {
        DirState {
            dir,
            files: BTreeMap::new(),
            applied: BTreeMap::new(),
        }
    }

    /// The YAML files now in the directory, with their stamps. Entries that vanish
    /// between listing and `stat` are skipped (the next poll sees them gone).
    fn list(&self) -> std::io::Result<BTreeMap<PathBuf, Stamp>> {
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if !is_yaml(&path) {
                continue;
            }
            // `metadata` follows symlinks: a ConfigMap mount's files are links.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    found.insert(path, Stamp::of(&meta));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "skipping"),
            }
        }
        Ok(found)
    }

    /// Re-reads the files that changed and returns what the index must do to hold
    /// exactly the objects of all files. Blocking (file I/O): call it off the runtime.
    pub fn poll(&mut self) -> std::io::Result<Vec<Op>> {
        let listed = self.list()?;
        let before = self.files.len();
        self.files.retain(|path, _| listed.contains_key(path));
        let mut dirty = self.files.len() != before;
        for (path, stamp) in listed {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            dirty = true;
            let previous = self.files.remove(&path).map(|f| f.objects);
            let objects = match read_objects(&path) {
                Some(objects) => objects,
                None => previous.unwrap_or_default(),
            };
            self.files.insert(path, FileEntry { stamp, objects });
        }
        if !dirty {
            return Ok(Vec::new());
        }
        let desired = self.desired();
        let ops = reconcile(&self.applied, &desired);
        self.applied = desired;
        Ok(ops)
    }

    /// Every file's objects by key. The same object in two files: the first file (by
    /// path) wins, and the duplicate is logged.
    fn desired(&self) -> BTreeMap<ObjectKey, Object> {
        let mut desired = BTreeMap::new();
        for (path, file) in &self.files {
            for object in &file.objects {
                let key = object.key();
                if desired.contains_key(&key) {
                    tracing::warn!(path = %path.display(), object = %key, "object defined in two files; the first file (by name) wins");
                    continue;
                }
                desired.insert(key, object.clone());
            }
        }
        desired
    }

    /// How many objects the index holds from this directory.
    pub fn len(&self) -> usize {
        self.applied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
    }
}

/// Reads and parses one file; `None` (after logging why) when it cannot be used.
fn read_objects(path: &Path) -> Option<Vec<Object>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read file; keeping its last good objects");
            return None;
        }
    };
    match parse_file(path, &text) {
        Ok((objects, skipped)) => {
            for skip in skipped {
                tracing::warn!(path = %path.display(), line = skip.line, reason = %skip.reason, "skipping YAML document");
            }
            Some(objects)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), line = e.line, error = %e, "bad YAML; keeping the file's last good objects");
            None
        }
    }
}

/// The operations that turn `applied` into `desired`: deletes first, then applies of
/// new or changed objects. Pure.
pub fn reconcile(
    applied: &BTreeMap<ObjectKey, Object>,
    desired: &BTreeMap<ObjectKey, Object>,
) -> Vec<Op> {
    let deletes = applied
        .iter()
        .filter(|(key, _)| !desired.contains_key(key))
        .map(|(_, object)| Op::Delete(object.clone()));
    let applies = desired
        .iter()
        .filter(|&(key, object)| applied.get(key) != Some(object))
        .map(|(_, object)| Op::Apply(object.clone()));
    deletes.chain(applies).collect()
}

/// Applies one operation to the index.
pub fn apply_op(index: &mut Index, op: &Op) -> Changes {
    match op {
        Op::Apply(Object::Route(r)) => index.apply_route(r),
        Op::Apply(Object::Service(s)) => index.apply_service(s),
        Op::Apply(Object::Slice(s)) => index.apply_slice(s),
        Op::Delete(Object::Route(r)) => index.delete_route(r),
        Op::Delete(Object::Service(s)) => index.delete_service(s),
        Op::Delete(Object::Slice(s)) => index.delete_slice(s),
        Op::Apply(Object::HttpRoute(r)) => index.apply_http_route(r),
        Op::Delete(Object::HttpRoute(r)) => index.delete_http_route(r),
        Op::Apply(Object::ConfigMap(c)) => index.apply_config_map(c),
        Op::Delete(Object::ConfigMap(c)) => index.delete_config_map(c),
        Op::Apply(Object::BackendTlsPolicy(p)) => index.apply_backend_tls_policy(p),
        Op::Delete(Object::BackendTlsPolicy(p)) => index.delete_backend_tls_policy(p),
    }
}

/// Loads everything into the index in one relist per kind (cheaper than one apply per
/// object for a big directory).
fn load_all(index: &IndexHandle, ops: Vec<Op>) {
    let (mut routes, mut services, mut slices) = (Vec::new(), Vec::new(), Vec::new());
    let (mut http_routes, mut config_maps, mut policies) = (Vec::new(), Vec::new(), Vec::new());
    for op in ops {
        match op {
            Op::Apply(Object::Route(r)) => routes.push(r),
            Op::Apply(Object::HttpRoute(r)) => http_routes.push(r),
            Op::Apply(Object::Service(s)) => services.push(s),
            Op::Apply(Object::Slice(s)) => slices.push(s),
            Op::Apply(Object::ConfigMap(c)) => config_maps.push(c),
            Op::Apply(Object::BackendTlsPolicy(p)) => policies.push(p),
            // The first read starts from nothing: there is nothing to delete.
            Op::Delete(_) => {}
        }
    }
    index.update(|idx| {
        let mut changes = idx.replace_config_maps(config_maps);
        merge(&mut changes, idx.replace_backend_tls_policies(policies));
        merge(&mut changes, idx.replace_services(services));
        merge(&mut changes, idx.replace_slices(slices));
        merge(&mut changes, idx.replace_routes(routes));
        merge(&mut changes, idx.replace_http_routes(http_routes));
        changes
    });
}

fn merge(into: &mut Changes, more: Changes) {
    into.routes.extend(more.routes);
    into.endpoint_sets.extend(more.endpoint_sets);
}

async fn poll_blocking(
    mut state: DirState,
) -> Result<(DirState, std::io::Result<Vec<Op>>), StaticDirError> {
    let polled = tokio::task::spawn_blocking(move || {
        let ops = state.poll();
        (state, ops)
    });
    Ok(polled.await?)
}

/// Watches `dir` (not its subdirectories) and wakes `wake` on every event that may be
/// a change ([`may_change`]). Errors wake it too: an overflowed queue means events were
/// lost, so look.
pub fn watch_dir(dir: &Path, wake: Arc<Notify>) -> Result<RecommendedWatcher, notify::Error> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if may_change(&event) {
            wake.notify_one();
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether a watcher event may mean the directory changed. Opening and reading do not:
/// inotify reports them, and every poll opens the directory to list it, so waking on
/// them made each poll wake the next, a loop that kept a core busy for as long as the
/// controller ran. Closing a file written to does (an editor's save).
pub fn may_change(event: &notify::Result<notify::Event>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(_) => true,
    }
}

/// Feeds `index` from `dir`: a first full read (then the index is marked synced), then
/// the changes, as `follow` learns of them, forever. Fails only if the first read cannot
/// list the directory; later I/O errors are logged and retried.
pub async fn run(
    dir: PathBuf,
    index: Arc<IndexHandle>,
    follow: Follow,
) -> Result<(), StaticDirError> {
    // Set up before the first read, so an edit made during it still wakes a look.
    let wake = Arc::new(Notify::new());
    let (watcher, interval) = match follow {
        Follow::Events { fallback } => match watch_dir(&dir, wake.clone()) {
            Ok(watcher) => (Some(watcher), fallback),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, interval = ?POLL_INTERVAL, "cannot watch the static directory for changes; polling instead");
                (None, POLL_INTERVAL)
            }
        },
        Follow::Poll(interval) => (None, interval),
    };
    let (mut state, first) = poll_blocking(DirState::new(dir.clone())).await?;
    let ops = first.map_err(|source| StaticDirError::ReadDir {
        dir: dir.clone(),
        source,
    })?;
    load_all(&index, ops);
    index.mark_synced();
    let mut unresolved = UnresolvedLog::default();
    index.read(|idx| unresolved.log(idx));
    let events = watcher.is_some();
    tracing::info!(dir = %dir.display(), objects = state.len(), events, poll = ?interval, "static directory loaded");

    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = wake.notified() => {}
        }
        let (next, polled) = poll_blocking(state).await?;
        state = next;
        match polled {
            Ok(ops) => {
                // One update per poll: the publisher never sees half of an edit (a
                // Route moved to another Service, say).
                index.update(|idx| {
                    let mut changes = Changes::default();
                    for op in &ops {
                        merge(&mut changes, apply_op(idx, op));
                    }
                    changes
                });
                if !ops.is_empty() {
                    tracing::info!(dir = %dir.display(), changes = ops.len(), objects = state.len(), "static directory changed");
                    index.read(|idx| unresolved.log(idx));
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list the static directory; retrying")
            }
        }
    }
}

/// Routes whose backends do not resolve, as last logged. In `--static-dir` mode there
/// is no Route status, so this log line is the only place a missing Service shows
/// (requests to it get an error with no endpoint behind it): once per Route and
/// message, not on every look. HTTPRoutes the same, for any parent condition that is
/// not `True` (an unsupported field, a missing backend), and BackendTLSPolicies for any
/// ancestor condition that is not (a missing CA, a conflict).
#[derive(Debug, Default)]
pub struct UnresolvedLog(
    BTreeMap<RouteKey, String>,
    BTreeMap<RouteKey, String>,
    BTreeMap<RouteKey, String>,
);

impl UnresolvedLog {
    /// Logs each Route whose `ResolvedRefs` turned `False` or changed its message since
    /// the last call, and forgets Routes that resolve again. Returns what it logged, as
    /// `(route, reason, message)`.
    pub fn log(&mut self, index: &Index) -> Vec<(RouteKey, &'static str, String)> {
        let mut logged = Vec::new();
        let mut now = BTreeMap::new();
        for (key, status) in index.statuses() {
            let refs = status.resolved_refs;
            if refs.status != ConditionStatus::False {
                continue;
            }
            if self.0.get(&key) != Some(&refs.message) {
                tracing::warn!(route = %key, reason = refs.reason.as_str(), message = %refs.message, "a backend of the route does not resolve");
                logged.push((key.clone(), refs.reason.as_str(), refs.message.clone()));
            }
            now.insert(key, refs.message);
        }
        self.0 = now;
        let mut now = BTreeMap::new();
        for (key, status) in index.http_route_statuses() {
            let conditions = status
                .parents
                .iter()
                .flat_map(|p| [&p.accepted, &p.resolved_refs]);
            let Some(bad) = conditions
                .filter(|c| c.status != ConditionStatus::True)
                .min_by_key(|c| c.status == ConditionStatus::Unknown)
            else {
                continue;
            };
            if self.1.get(&key) != Some(&bad.message) {
                tracing::warn!(httproute = %key, reason = bad.reason.as_str(), message = %bad.message, "the HTTPRoute is not fully served");
                logged.push((key.clone(), bad.reason.as_str(), bad.message.clone()));
            }
            now.insert(key, bad.message.clone());
        }
        self.1 = now;
        let mut now = BTreeMap::new();
        for (key, status) in index.backend_tls_policy_statuses() {
            let conditions =
                (status.ancestors.iter()).flat_map(|a| [&a.accepted, &a.resolved_refs]);
            let Some(bad) = conditions
                .filter(|c| c.status != ConditionStatus::True)
                .min_by_key(|c| c.status == ConditionStatus::Unknown)
            else {
                continue;
            };
            if self.2.get(&key) != Some(&bad.message) {
                tracing::warn!(backendtlspolicy = %key, reason = bad.reason.as_str(), message = %bad.message, "the BackendTLSPolicy is not fully served");
                logged.push((key.clone(), bad.reason.as_str(), bad.message.clone()));
            }
            now.insert(key, bad.message.clone());
        }
        self.2 = now;
        logged
    }
}

#[cfg(test)]
#[path = "static_dir/tests.rs"]
mod tests;
