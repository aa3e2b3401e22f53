//! The registry of connected proxies: who is connected, what each was sent and what it
//! acked. Sessions write it; `/metrics` (lag, connected) and `/debug/routes` read it, so
//! convergence is observable from the controller. Each entry also keeps the proxy's
//! latest load report (outside the versioned sequence: it never touches versions), and
//! the registry sums the reports' requests in flight per endpoint, so a proxy that
//! accepts figures learns what the others have in flight at the cost of its own report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use fairway_proto::Version;
use fairway_proto::load::{LoadFigures, LoadReport};
use fairway_proto::model::{EndpointAddr, EndpointSetKey};

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

/// Connected proxies, keyed by connection (a proxy that reconnects before its old
/// stream is noticed dead appears twice, briefly).
#[derive(Debug)]
pub struct Proxies {
    zones: Arc<NodeZones>,
    next: AtomicU64,
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// Every latest report's requests in flight, summed (see [`in_flight_of`]).
    in_flight: Mutex<InFlight>,
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
        })
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
        let info = ProxyInfo {
            id,
            node,
            zone: None,
            connected_at: SystemTime::now(),
            last_sent: None,
            last_acked: None,
            last_nack: None,
        };
        let entry = Entry {
            info,
            hello_zone: zone,
            load: None,
            in_flight: Arc::default(),
        };
        self.entries().insert(conn, entry);
        Registration {
            proxies: self.clone(),
            conn,
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

    pub fn acked(&self, version: Version) {
        self.update(|p| p.last_acked = Some(version));
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
        let gone = self.proxies.entries().remove(&self.conn);
        if let Some(entry) = gone {
            self.proxies.count(&entry.in_flight, &InFlight::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(sequence: u64) -> Version {
        Version { epoch: 1, sequence }
    }

    #[test]
    fn registration_tracks_versions_and_unlists_on_drop() {
        let zones = Arc::new(NodeZones::default());
        let proxies = Proxies::new(zones.clone());
        let a = proxies.register("a".into(), "node-1".into(), None);
        let b = proxies.register("b".into(), "node-2".into(), Some("z-b".into()));
        zones.set("node-1", Some("z-1".into()));
        a.sent(v(3));
        a.acked(v(2));
        b.nacked(v(3), "bad base".into());

        let list = proxies.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].zone.as_deref(), Some("z-1"), "zone from the Node");
        assert_eq!(
            list[1].zone.as_deref(),
            Some("z-b"),
            "the hello's zone wins"
        );
        assert_eq!(
            (list[0].last_sent, list[0].last_acked),
            (Some(v(3)), Some(v(2)))
        );
        assert_eq!(list[0].lag(v(5)), 3);
        assert_eq!(list[1].lag(v(5)), 5, "nothing acked: the whole sequence");
        assert_eq!(list[1].last_nack, Some((v(3), "bad base".into())));

        drop(a);
        assert_eq!(proxies.list().len(), 1, "a dropped session is unlisted");
    }

    #[test]
    fn reports_are_kept_per_proxy_rate_bounded_and_aged_out() {
        let proxies = Proxies::new(Arc::new(NodeZones::default()));
        let a = proxies.register("a".into(), "node-1".into(), None);
        let t0 = Instant::now();
        let gap = Duration::from_secs(1);
        let report = |ms| LoadReport {
            window: Duration::from_millis(ms),
            ..LoadReport::default()
        };
        assert!(a.report(report(1), t0, gap));
        assert!(
            !a.report(report(2), t0 + gap / 2, gap),
            "faster than asked: dropped"
        );
        assert!(a.report(report(3), t0 + gap, gap));
        let kept = proxies.loads(t0 + gap, gap);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].window,
            Duration::from_millis(3),
            "the latest replaces"
        );
        assert!(
            proxies.loads(t0 + gap * 3, gap).is_empty(),
            "a report older than max_age no longer counts"
        );
        assert_eq!(
            proxies.list()[0].last_acked,
            None,
            "reports acknowledge nothing"
        );
        drop(a);
        assert!(
            proxies.loads(t0 + gap, gap).is_empty(),
            "gone with its proxy"
        );
    }

    #[test]
    fn figures_are_the_other_proxies_in_flight_and_follow_reports_and_drops() {
        use fairway_proto::load::{BackendLoad, EndpointLoad};
        use fairway_proto::testing::{route, set_key};
        let proxies = Proxies::new(Arc::new(NodeZones::default()));
        let addr = |i: u8| EndpointAddr(std::net::SocketAddr::from(([10, 0, 0, i], 8080)));
        let report = |in_flight: [u32; 2], accepts_figures| LoadReport {
            backends: vec![BackendLoad {
                route: route("orders").key,
                set: set_key("orders", 8080),
                endpoints: (0..2)
                    .map(|i| EndpointLoad {
                        addr: addr(i + 1),
                        requests: 0,
                        in_flight: in_flight[usize::from(i)],
                        expected: 0.0,
                    })
                    .collect(),
            }],
            accepts_figures,
            ..LoadReport::default()
        };
        let (t0, gap) = (Instant::now(), Duration::from_secs(1));
        let a = proxies.register("a".into(), "node-1".into(), None);
        let b = proxies.register("b".into(), "node-2".into(), None);
        let c = proxies.register("c".into(), "node-3".into(), None);
        assert!(a.report(report([1, 0], true), t0, gap));
        assert!(b.report(report([7, 2], false), t0, gap));
        assert!(c.report(report([3, 0], true), t0, gap));
        let figures = |r: &Registration| r.figures().map(|f| f.sets[0].1.clone());
        assert_eq!(figures(&a), Some(vec![(addr(1), 10), (addr(2), 2)]));
        assert_eq!(figures(&c), Some(vec![(addr(1), 8), (addr(2), 2)]));
        assert_eq!(figures(&b), None, "b does not accept figures");
        // b's next report replaces its part; then b goes.
        assert!(b.report(report([0, 5], false), t0 + gap, gap));
        assert_eq!(figures(&a), Some(vec![(addr(1), 3), (addr(2), 5)]));
        drop(b);
        assert_eq!(figures(&a), Some(vec![(addr(1), 3), (addr(2), 0)]));
    }
}
