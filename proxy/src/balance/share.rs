//! Each endpoint's share of requests over a sliding window, against its expected share:
//! the figures behind `fairway_proxy_share_skew` and the controller's load reports.
//!
//! The window is [`SHARE_SLOTS`] slots of [`SHARE_SLOT`]. Per slot the balancer counts
//! its requests ([`Totals`]) and each endpoint counts its own and keeps the share it was
//! expected to take in that slot ([`Window`]): its slow-start weight over the eligible
//! endpoints' weights, 0 when not eligible (zone hints, ejection, terminating). The
//! expected share is written when a slot starts and again whenever eligibility changes,
//! so a scale-up in the middle of a slot counts from then on. An endpoint's expected
//! requests are then `Σ slot requests × its share in that slot`, exact under a changing
//! set, where comparing against today's shares alone would call the seconds before a
//! scale-up unfair.
//!
//! Cost on the request path: one division for the slot number and two increments; a new
//! slot costs one pass over the endpoints, once a second at most.

use std::time::{Duration, Instant};

/// One slot of the window.
pub const SHARE_SLOT: Duration = Duration::from_secs(1);
/// Slots per window: 5 s, the window design.md's fairness target is stated over. The
/// current slot is partial, so a window covers between 4 and 5 seconds.
pub const SHARE_SLOTS: usize = 5;

// Slots are whole seconds, so the slot number is a field read and a u64 division on
// the request path, not a 128-bit one.
const _: () = assert!(SHARE_SLOT.as_secs() > 0 && SHARE_SLOT.subsec_nanos() == 0);

/// The slot number of `now`, counted from `origin`.
pub fn slot_of(origin: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(origin).as_secs() / SHARE_SLOT.as_secs()
}

/// Whether slot `slot` is still inside the window that ends with slot `current`.
fn in_window(slot: u64, current: u64) -> bool {
    slot <= current && current - slot < SHARE_SLOTS as u64
}

/// A ring of per-slot values tagged with their slot number, so stale entries read as
/// empty without ever being swept.
#[derive(Clone, Copy, Debug, Default)]
struct Tagged<T> {
    slot: u64,
    value: T,
}

/// The balancer's side: requests per slot over all endpoints.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Slot 0 starts here: at the first request, so no clock is read outside `now`.
    origin: Option<Instant>,
    /// The slot the last request fell in (`None` before the first).
    current: Option<u64>,
    ring: [Tagged<u64>; SHARE_SLOTS],
    /// Whether any request was ever counted: the skew is reported from then on.
    seen: bool,
}

impl Totals {
    /// The slot `now` falls in (0 before the first request).
    pub fn slot(&self, now: Instant) -> u64 {
        self.origin.map_or(0, |origin| slot_of(origin, now))
    }

    /// Counts one request at `now`; true when it opened a new slot (the caller then
    /// writes every endpoint's expected share for it).
    pub fn count(&mut self, now: Instant) -> bool {
        self.origin.get_or_insert(now);
        let slot = self.slot(now);
        let entry = &mut self.ring[ring_index(slot)];
        if entry.slot != slot {
            *entry = Tagged { slot, value: 0 };
        }
        entry.value += 1;
        self.seen = true;
        let opened = self.current != Some(slot);
        self.current = Some(slot);
        opened
    }

    /// Requests in `slot`, if it is still in the window ending at `current`.
    fn requests(&self, slot: u64, current: u64) -> u64 {
        let entry = &self.ring[ring_index(slot)];
        if entry.slot == slot && in_window(slot, current) {
            entry.value
        } else {
            0
        }
    }

    /// Whether a request was ever counted.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

/// One endpoint's side: its requests and its expected share, per slot.
#[derive(Clone, Debug, Default)]
pub struct Window {
    requests: [Tagged<u64>; SHARE_SLOTS],
    share: [Tagged<f64>; SHARE_SLOTS],
}

impl Window {
    /// Counts one request to this endpoint in `slot`.
    pub fn count(&mut self, slot: u64) {
        let entry = &mut self.requests[ring_index(slot)];
        if entry.slot != slot {
            *entry = Tagged { slot, value: 0 };
        }
        entry.value += 1;
    }

    /// Sets the share this endpoint is expected to take in `slot` (0..=1).
    pub fn expect(&mut self, slot: u64, share: f64) {
        self.share[ring_index(slot)] = Tagged { slot, value: share };
    }

    /// Its requests and expected requests over the window ending at `current`.
    pub fn figures(&self, totals: &Totals, current: u64) -> (u64, f64) {
        let first = current.saturating_sub(SHARE_SLOTS as u64 - 1);
        let mut requests = 0;
        let mut expected = 0.0;
        for slot in first..=current {
            let i = ring_index(slot);
            let own = &self.requests[i];
            if own.slot == slot {
                requests += own.value;
            }
            let share = &self.share[i];
            if share.slot == slot {
                expected += totals.requests(slot, current) as f64 * share.value;
            }
        }
        (requests, expected)
    }
}

fn ring_index(slot: u64) -> usize {
    // SHARE_SLOTS is tiny: the remainder always fits.
    (slot % SHARE_SLOTS as u64) as usize
}

/// Expected shares from weights: each weight over their sum (all 0 when the sum is).
pub fn shares(weights: &[u32]) -> impl Iterator<Item = f64> + '_ {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    weights.iter().map(move |&w| {
        if sum == 0 {
            0.0
        } else {
            f64::from(w) / sum as f64
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: Instant, millis: u64) -> Instant {
        origin + Duration::from_millis(millis)
    }

    /// Counts `n` requests at `t` to endpoint `e` of `windows`, writing the expected
    /// `shares` when a slot opens, as the balancer does.
    fn requests(
        totals: &mut Totals,
        windows: &mut [Window],
        shares: &[f64],
        t: Instant,
        e: usize,
        n: u32,
    ) {
        for _ in 0..n {
            let slot = totals.slot(t);
            if totals.count(t) {
                for (w, &s) in windows.iter_mut().zip(shares) {
                    w.expect(slot, s);
                }
            }
            windows[e].count(slot);
        }
    }

    #[test]
    fn counts_and_expectations_add_up_over_the_window() {
        let origin = Instant::now();
        let mut totals = Totals::default();
        let mut windows = vec![Window::default(), Window::default()];
        let even = [0.5, 0.5];
        requests(&mut totals, &mut windows, &even, at(origin, 100), 0, 30);
        requests(&mut totals, &mut windows, &even, at(origin, 1_500), 1, 10);
        let now = totals.slot(at(origin, 1_600));
        assert_eq!(windows[0].figures(&totals, now), (30, 20.0));
        assert_eq!(windows[1].figures(&totals, now), (10, 20.0));
    }

    #[test]
    fn old_slots_leave_the_window() {
        let origin = Instant::now();
        let mut totals = Totals::default();
        let mut windows = vec![Window::default()];
        requests(&mut totals, &mut windows, &[1.0], at(origin, 0), 0, 7);
        let inside = totals.slot(at(origin, 4_999));
        assert_eq!(
            windows[0].figures(&totals, inside),
            (7, 7.0),
            "4.999 s later"
        );
        let outside = totals.slot(at(origin, 5_000));
        assert_eq!(windows[0].figures(&totals, outside), (0, 0.0), "5 s later");
        assert!(
            totals.seen(),
            "a request was seen once, whatever the window holds"
        );
    }

    #[test]
    fn a_scale_up_is_judged_by_the_shares_of_each_slot() {
        // One pod for two seconds, then four: the first two seconds were fair.
        let origin = Instant::now();
        let mut totals = Totals::default();
        let mut windows = vec![Window::default(); 4];
        let one = [1.0, 0.0, 0.0, 0.0];
        let four = [0.25; 4];
        requests(&mut totals, &mut windows, &one, at(origin, 0), 0, 100);
        requests(&mut totals, &mut windows, &one, at(origin, 1_000), 0, 100);
        for e in 0..4 {
            requests(&mut totals, &mut windows, &four, at(origin, 2_000), e, 25);
        }
        let now = totals.slot(at(origin, 2_000));
        let figures: Vec<(u64, f64)> = windows.iter().map(|w| w.figures(&totals, now)).collect();
        assert_eq!(
            figures[0],
            (225, 225.0),
            "old pod: 200 alone, then its quarter"
        );
        assert_eq!(
            figures[3],
            (25, 25.0),
            "new pod: only the slot it existed in"
        );
        let skew = fairway_proto::load::skew(figures.iter().copied());
        assert_eq!(skew, Some(0.0), "no skew from the set having changed");
    }

    #[test]
    fn weights_become_shares() {
        let s: Vec<f64> = shares(&[1000, 1000, 500, 0]).collect();
        assert_eq!(s, vec![0.4, 0.4, 0.2, 0.0]);
        assert!(
            shares(&[0, 0]).all(|s| s == 0.0),
            "nothing eligible: no share"
        );
    }
}
