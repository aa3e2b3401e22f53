//! The registry of connected proxies: who is connected, what each was sent and what it
//! acked. Sessions write it; `/metrics` (lag, connected) and `/debug/routes` read it, so
//! convergence is observable from the controller. Each entry also keeps the proxy's
//! latest load report (outside the versioned sequence: it never touches versions), and
//! the registry sums the reports' requests in flight per endpoint, so a proxy that
//! accepts figures learns what the others have in flight at the cost of its own report.
//!
//! For the drain handshake it also remembers proxies whose stream broke (for
//! [`GONE_TTL`]: a partitioned proxy keeps serving the table it acked last) and keeps a
//! low watermark of what every proxy acked, which waiters follow as a `watch`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fairway_proto::Version;
use fairway_proto::load::{LoadFigures, LoadReport};
use fairway_proto::model::{EndpointAddr, EndpointSetKey};
use tokio::sync::watch;

use crate::state::NodeZones;

/// One connected proxy, as last reported by its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    /// `Hello.proxy_id`.
    pub id: String,
    pub node: String,
    /// The zone from the hello or, without one, from the Node (looked up at read time,
    /// so a Node labelled later still shows).
    pub zone: Option<String>,
    pub connected_at: SystemTime,
    /// The version of the last complete message (delta or snapshot end) handed to the
    /// stream.
    pub last_sent: Option<Version>,
    /// The last version the proxy acked: the table it serves.
    pub last_acked: Option<Version>,
    /// The last nack: its version and reason.
    pub last_nack: Option<(Version, String)>,
    /// A sidecar's subscriptions (destinations, resolved or not); `None`: a proxy of
    /// the whole table.
    pub subscriptions: Option<usize>,
}

impl ProxyInfo {
    /// Versions between `latest` and what the proxy acked; the whole sequence when it
    /// acked nothing from this epoch.
    pub fn lag(&self, latest: Version) -> u64 {
        match self.last_acked {
            Some(acked) if acked.epoch == latest.epoch => {
                latest.sequence.saturating_sub(acked.sequence)
            }
            _ => latest.sequence,
        }
    }
}

#[derive(Debug)]
struct Entry {
    info: ProxyInfo,
    /// The hello's own zone; `None` means "ask NodeZones".
    hello_zone: Option<String>,
    /// The latest load report and when it arrived.
    load: Option<(Instant, Arc<LoadReport>)>,
    /// That report's requests in flight (see [`in_flight_of`]), its part of the sums.
    in_flight: Arc<InFlight>,
}

/// How long a proxy whose stream broke still counts for the drain handshake. It keeps
/// serving its last table while it reconnects (backoff capped at 10 s); past this it is
/// more likely gone for good (its node removed) than partitioned, and waiting for it
/// would hold every drain until the hook's timeout.
pub const GONE_TTL: Duration = Duration::from_secs(60);

/// What one proxy has applied, as the drain handshake sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAck {
    pub id: String,
    /// False: its stream broke less than [`GONE_TTL`] ago and it has not come back.
    pub connected: bool,
    /// The last version it acked from this controller.
    pub acked: Option<Version>,
}

/// What each proxy (by id) serves: a proxy connected twice (it reconnected before its
/// old stream was noticed dead) serves the newer table, so the higher ack counts, and a
/// connected one hides its own broken past.
pub fn by_proxy(acks: &[ProxyAck]) -> BTreeMap<&str, (bool, Option<Version>)> {
    let mut ids: BTreeMap<&str, (bool, Option<Version>)> = BTreeMap::new();
    for a in acks {
        let e = ids.entry(a.id.as_str()).or_insert((a.connected, a.acked));
        if a.connected && !e.0 {
            *e = (true, a.acked);
        } else if a.connected == e.0 {
            e.1 = e.1.max(a.acked);
        }
    }
    ids
}

/// A proxy whose stream broke.
#[derive(Debug)]
struct Gone {
    acked: Option<Version>,
    at: Instant,
}

/// Connected proxies, keyed by connection (a proxy that reconnects before its old
/// stream is noticed dead appears twice, briefly).
#[derive(Debug)]
pub struct Proxies {
    zones: Arc<NodeZones>,
    next: AtomicU64,
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// Every latest report's requests in flight, summed (see [`in_flight_of`]).
    in_flight: Mutex<InFlight>,
    /// Proxies whose stream broke, by id, until they come back or [`GONE_TTL`] passes.
    gone: Mutex<BTreeMap<String, Gone>>,
    /// The lowest sequence every proxy (connected or gone) acked; `u64::MAX` with none.
    /// Updated only while someone watches it.
    watermark: watch::Sender<u64>,
}

/// Requests in flight per endpoint set and endpoint, summed over the proxies' latest
/// reports (a set two Routes share counts both Routes' requests).
type InFlight = BTreeMap<(EndpointSetKey, EndpointAddr), u64>;

/// One report's requests in flight per endpoint set and endpoint.
fn in_flight_of(report: &LoadReport) -> InFlight {
    let mut sums = InFlight::new();
    for backend in &report.backends {
        for e in &backend.endpoints {
            *sums.entry((backend.set.clone(), e.addr)).or_default() += u64::from(e.in_flight);
        }
    }
    sums
}

impl Proxies {
    pub fn new(zones: Arc<NodeZones>) -> Arc<Self> {
        Arc::new(Proxies {
            zones,
            next: AtomicU64::new(0),
            entries: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(InFlight::new()),
            gone: Mutex::new(BTreeMap::new()),
            watermark: watch::Sender::new(u64::MAX),
        })
    }

    fn gone(&self) -> MutexGuard<'_, BTreeMap<String, Gone>> {
        self.gone.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What every proxy applied: the connected ones and those gone less than
    /// [`GONE_TTL`] before `now` (older ones are forgotten here).
    pub fn acks(&self, now: Instant) -> Vec<ProxyAck> {
        let mut acks: Vec<ProxyAck> = (self.entries().values())
            .map(|e| ProxyAck {
                id: e.info.id.clone(),
                connected: true,
                acked: e.info.last_acked,
            })
            .collect();
        let mut gone = self.gone();
        gone.retain(|_, g| now.saturating_duration_since(g.at) < GONE_TTL);
        acks.extend(gone.iter().map(|(id, g)| ProxyAck {
            id: id.clone(),
            connected: false,
            acked: g.acked,
        }));
        acks
    }

    /// When the next gone proxy is forgotten (the watermark may rise then).
    pub fn next_forget(&self) -> Option<Instant> {
        self.gone().values().map(|g| g.at + GONE_TTL).min()
    }

    /// Follows the low watermark: the lowest sequence every proxy, connected or gone,
    /// acked (`u64::MAX` with no proxy). It moves on acks, connections and streams
    /// ending; a forgotten proxy only counts after [`Proxies::refresh`] past
    /// [`Proxies::next_forget`].
    pub fn watermark(&self) -> watch::Receiver<u64> {
        let rx = self.watermark.subscribe();
        self.refresh(Instant::now());
        rx
    }

    /// Recomputes the watermark, if anyone follows it: O(proxies), so not per ack of a
    /// fleet nobody waits on.
    pub fn refresh(&self, now: Instant) {
        if self.watermark.receiver_count() == 0 {
            return;
        }
        let acks = self.acks(now);
        let low = (by_proxy(&acks).values())
            .map(|(_, acked)| acked.map_or(0, |v| v.sequence))
            .min()
            .unwrap_or(u64::MAX);
        self.watermark.send_if_modified(|w| {
            let moved = *w != low;
            *w = low;
            moved
        });
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Entries are plain data replaced field by field: still valid after a panic.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a proxy; it stays listed until the returned [`Registration`] is dropped.
    pub fn register(
        self: &Arc<Self>,
        id: String,
        node: String,
        zone: Option<String>,
    ) -> Registration {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        // Back: no longer a proxy that may serve an old table unseen.
        self.gone().remove(&id);
        let info = ProxyInfo {
            id,
            node,
            zone: None,
            connected_at: SystemTime::now(),
            last_sent: None,
            last_acked: None,
            last_nack: None,
            subscriptions: None,
        };
        let entry = Entry {
            info,
            hello_zone: zone,
            load: None,
            in_flight: Arc::default(),
        };
        self.entries().insert(conn, entry);
        self.refresh(Instant::now());
        Registration {
            proxies: self.clone(),
            conn,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Every connected proxy, in connection order.
    pub fn list(&self) -> Vec<ProxyInfo> {
        let entries = self.entries();
        entries
            .values()
            .map(|e| ProxyInfo {
                zone: (e.hello_zone.clone()).or_else(|| self.zones.get(&e.info.node)),
                ..e.info.clone()
            })
            .collect()
    }

    /// The latest load report of every connected proxy that sent one within
    /// `max_age` of `now`: older ones describe traffic that may have stopped.
    pub fn loads(&self, now: Instant, max_age: Duration) -> Vec<Arc<LoadReport>> {
        self.entries()
            .values()
            .filter_map(|e| e.load.as_ref())
            .filter(|(at, _)| now.saturating_duration_since(*at) <= max_age)
            .map(|(_, report)| Arc::clone(report))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// A session's entry in [`Proxies`]; dropping it unlists the proxy.
#[derive(Debug)]
pub struct Registration {
    proxies: Arc<Proxies>,
    conn: u64,
    /// The proxy ended its stream itself: it is not left serving an old table.
    closed: std::sync::atomic::AtomicBool,
}

impl Registration {
    /// The proxy's zone: its hello's, else its Node's (looked up now, so a Node label
    /// that arrived after the proxy connected counts).
    pub fn zone(&self) -> Option<String> {
        let entries = self.proxies.entries();
        let entry = entries.get(&self.conn)?;
        (entry.hello_zone.clone()).or_else(|| self.proxies.zones.get(&entry.info.node))
    }

    fn update(&self, f: impl FnOnce(&mut ProxyInfo)) {
        if let Some(entry) = self.proxies.entries().get_mut(&self.conn) {
            f(&mut entry.info);
        }
    }

    pub fn sent(&self, version: Version) {
        self.update(|p| p.last_sent = Some(version));
    }

    /// A sidecar's subscriptions now number `count`.
    pub fn subscriptions(&self, count: usize) {
        self.update(|info| info.subscriptions = Some(count));
    }

    pub fn acked(&self, version: Version) {
        self.update(|p| p.last_acked = Some(version));
        self.proxies.refresh(Instant::now());
    }

    /// The proxy closed its stream: once dropped, it is forgotten at once rather than
    /// counted as a proxy that may still serve its last table.
    pub fn closed_by_proxy(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub fn nacked(&self, version: Version, error: String) {
        self.update(|p| p.last_nack = Some((version, error)));
    }

    /// Keeps `report` as the proxy's latest, unless the previous one arrived less than
    /// `min_gap` before `now` (a proxy reporting faster than asked): false when dropped.
    pub fn report(&self, report: LoadReport, now: Instant, min_gap: Duration) -> bool {
        let mut entries = self.proxies.entries();
        let Some(entry) = entries.get_mut(&self.conn) else {
            return false;
        };
        if let Some((at, _)) = &entry.load
            && now.saturating_duration_since(*at) < min_gap
        {
            return false;
        }
        let new = Arc::new(in_flight_of(&report));
        entry.load = Some((now, Arc::new(report)));
        let old = std::mem::replace(&mut entry.in_flight, Arc::clone(&new));
        drop(entries);
        self.proxies.count(&old, &new);
        true
    }

    /// For the latest report, if it accepts figures: per endpoint it named, the other
    /// proxies' requests in flight (the sum less its own).
    pub fn figures(&self) -> Option<LoadFigures> {
        let own = {
            let entries = self.proxies.entries();
            let entry = entries.get(&self.conn)?;
            let (_, report) = entry.load.as_ref()?;
            if !report.accepts_figures {
                return None;
            }
            Arc::clone(&entry.in_flight)
        };
        let totals = self.proxies.in_flight();
        let mut sets: Vec<(EndpointSetKey, Vec<(EndpointAddr, u32)>)> = Vec::new();
        for ((set, addr), &mine) in own.iter() {
            let (set, addr) = (set.clone(), *addr);
            let others = totals.get(&(set.clone(), addr)).copied().unwrap_or(0);
            let others = u32::try_from(others.saturating_sub(mine)).unwrap_or(u32::MAX);
            match sets.last_mut() {
                Some((last, endpoints)) if *last == set => endpoints.push((addr, others)),
                _ => sets.push((set, vec![(addr, others)])),
            }
        }
        Some(LoadFigures { sets })
    }
}

impl Proxies {
    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces one proxy's part of the sums: `old` out, `new` in.
    fn count(&self, old: &InFlight, new: &InFlight) {
        let mut totals = self.in_flight();
        for (key, &n) in old {
            if let Some(total) = totals.get_mut(key) {
                *total = total.saturating_sub(n);
                if *total == 0 {
                    totals.remove(key);
                }
            }
        }
        for (key, &n) in new {
            if n > 0 {
                *totals.entry(key.clone()).or_default() += n;
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = self.proxies.entries();
        let gone = entries.remove(&self.conn);
        let id = gone.as_ref().map(|e| e.info.id.clone());
        let still_connected = id
            .as_ref()
            .is_some_and(|id| entries.values().any(|e| &e.info.id == id));
        drop(entries);
        if let Some(entry) = gone {
            self.proxies.count(&entry.in_flight, &InFlight::new());
            if !self.closed.load(Ordering::Relaxed) && !still_connected {
                let at = Instant::now();
                let acked = entry.info.last_acked;
                (self.proxies.gone()).insert(entry.info.id, Gone { acked, at });
            }
        }
        self.proxies.refresh(Instant::now());
    }
}

#[cfg(test)]
mod tests;
