//! Spillover: when topology hints keep a proxy's requests on its node's or zone's
//! endpoints, let them spread over the whole tier while the local ones are busy (a
//! Route's `loadBalancer.spillover`). Busy is this proxy's own view: requests in flight
//! per local endpoint. Hysteresis keeps it from flapping: the spill starts at the limit
//! and ends below half of it.

/// The endpoints a request may go to, as positions in the balancer's list: the local
/// ones (after topology hints), and the whole tier the hints narrowed them from.
#[derive(Clone, Debug, Default)]
pub struct Locality {
    pub local: Vec<usize>,
    /// Empty when there is nothing to spill to (no spillover, or no hints in use).
    pub wide: Vec<usize>,
    pub spilling: bool,
}

impl Locality {
    /// Where requests go now.
    pub fn current(&self) -> &[usize] {
        if self.spilling && !self.wide.is_empty() {
            &self.wide
        } else {
            &self.local
        }
    }

    /// Whether requests should spill, given each local endpoint's requests in flight
    /// (`load`) and the limit per endpoint.
    pub fn should_spill(&self, limit: u32, load: impl Fn(usize) -> u32) -> bool {
        if self.wide.len() <= self.local.len() {
            return false;
        }
        let total: u64 = self.local.iter().map(|&i| u64::from(load(i))).sum();
        let at_limit = u64::from(limit) * self.local.len() as u64;
        if self.spilling {
            total * 2 >= at_limit
        } else {
            total >= at_limit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_at_the_limit_and_returns_below_half_of_it() {
        let mut l = Locality {
            local: vec![0, 1],
            wide: vec![0, 1, 2, 3],
            spilling: false,
        };
        let loads = |a: u32, b: u32| move |i: usize| [a, b, 0, 0][i];
        assert!(!l.should_spill(4, loads(3, 4)), "7 < 8: stay local");
        assert!(l.should_spill(4, loads(4, 4)), "8 in flight on two: spill");
        l.spilling = true;
        assert_eq!(l.current(), [0, 1, 2, 3]);
        assert!(
            l.should_spill(4, loads(2, 2)),
            "4 is half of 8: still spilling"
        );
        assert!(!l.should_spill(4, loads(2, 1)), "below half: back");
    }

    #[test]
    fn nothing_to_spill_to_means_local() {
        let l = Locality {
            local: vec![0, 1],
            wide: Vec::new(),
            spilling: true,
        };
        assert!(!l.should_spill(1, |_| 100));
        assert_eq!(l.current(), [0, 1]);
    }
}
