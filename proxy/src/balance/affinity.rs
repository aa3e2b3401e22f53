//! Affinity: consistent hashing with bounded loads (Mirrokni, Thorup and
//! Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018), over rendezvous
//! hashing (Thaler and Ravishankar's highest random weight).
//!
//! A key ranks every endpoint by `rank(key, endpoint)`; a keyed request goes to the
//! best-ranked endpoint whose load stays within the bound. Why rendezvous rather than a
//! ring: no ring to build or keep per endpoint set (memory stays O(endpoints)), an
//! exact 1/N of keys move when the N-th endpoint joins, and the ranking is the same on
//! every proxy because it depends on nothing but the key and the endpoints' addresses
//! (specified hashes, no per-process seed). A pick costs O(eligible endpoints): two
//! passes of a multiply-xorshift each.

use fairway_proto::model::EndpointAddr;
use xxhash_rust::xxh3::xxh3_64;

/// A request's key (a header's or cookie's value, or the client's address) as a hash.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// An endpoint's hash: its IP's octets and its port, so every proxy agrees.
pub fn endpoint_hash(addr: EndpointAddr) -> u64 {
    let mut bytes = [0u8; 18];
    let len = match addr.0.ip() {
        std::net::IpAddr::V4(ip) => {
            bytes[..4].copy_from_slice(&ip.octets());
            4
        }
        std::net::IpAddr::V6(ip) => {
            bytes[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    bytes[len..len + 2].copy_from_slice(&addr.0.port().to_be_bytes());
    xxh3_64(&bytes[..len + 2])
}

/// How high `endpoint` ranks for `key`: MurmurHash3's 64-bit finalizer over both, so
/// each endpoint's rank is an independent-looking draw per key.
pub fn rank(key: u64, endpoint: u64) -> u64 {
    let mut h = key ^ endpoint.rotate_left(29);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The load at or above which an endpoint takes no more keyed requests: the ceiling of
/// `factor_percent`% of the average load once this request is counted, so there is
/// always an endpoint below it (the least loaded is at most the average).
pub fn cap(total_load: u64, endpoints: usize, factor_percent: u32) -> u64 {
    let n = endpoints.max(1) as u64;
    (u64::from(factor_percent) * (total_load + 1)).div_ceil(100 * n)
}

/// One candidate endpoint: its position (the caller's), hash, and load.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub position: usize,
    pub hash: u64,
    pub load: u64,
}

/// The best-ranked candidate for `key` whose load is under the cap, which is the first
/// one a walk down `key`'s ranking would accept. `None` only without candidates.
pub fn choose(
    key: u64,
    candidates: impl Iterator<Item = Candidate> + Clone,
    factor_percent: u32,
) -> Option<usize> {
    let (count, total) = candidates
        .clone()
        .fold((0usize, 0u64), |(n, sum), c| (n + 1, sum + c.load));
    let cap = cap(total, count, factor_percent);
    let mut best: Option<(u64, usize)> = None;
    for c in candidates {
        if c.load >= cap {
            continue;
        }
        let r = rank(key, c.hash);
        if best.is_none_or(|(top, _)| r > top) {
            best = Some((r, c.position));
        }
    }
    best.map(|(_, position)| position)
}
