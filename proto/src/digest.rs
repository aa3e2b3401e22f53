//! Table digests and rebases: how a proxy that served another epoch (the controller
//! restarted, or the proxy moved to another replica) comes back without a snapshot.
//!
//! Versions are not comparable across epochs, but content is. The proxy sends a
//! [`TableDigest`] of its table in its hello; the controller compares it with the digest
//! of its own table and answers with a `Rebase` that replaces only the buckets that
//! differ. After a restart in which nothing changed that is one tiny message per proxy
//! instead of the whole table, which is what makes a reconnect storm of thousands of
//! proxies cheap (design.md section 4).
//!
//! Both sides must compute the same numbers from the same content, so the digest is
//! part of the wire contract: xxh3-64 (a specified hash, unlike `std`'s) of each item's
//! protobuf encoding, seeded by the item's kind, summed per bucket. Unknown future
//! fields only make a bucket differ, which resends it: never a wrong table.

use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::convert::ConvertError;
use crate::model::{EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable};
use crate::pb;

/// The largest `bucket_bits` accepted: 4,096 buckets, a 32 KiB hello. The hello must
/// stay under the 64 KiB that controllers (this release's and the previous one's)
/// accept from a proxy, or a big table's proxy could not connect at all.
pub const MAX_BUCKET_BITS: u32 = 12;
/// The bucket count a proxy picks aims at this many items per bucket: a changed item
/// resends its bucket, so few items per bucket keep a rebase close to the change, and
/// more buckets cost 8 bytes each in every hello.
const ITEMS_PER_BUCKET: usize = 4;
/// A lower bound that keeps small tables' hellos meaningful: 64 buckets is 512 bytes.
const MIN_BUCKET_BITS: u32 = 6;
/// Seeds that keep a route and a set with the same bytes apart.
const ROUTE_SEED: u64 = 1;
const SET_SEED: u64 = 2;

/// One digest per bucket of a table's routes and endpoint sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDigest {
    bits: u32,
    buckets: Vec<u64>,
}

/// Why a digest or rebase from the wire was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RebaseError {
    #[error("bucket_bits {0} is above {MAX_BUCKET_BITS}")]
    BucketBits(u32),
    #[error("a digest of bucket_bits {bits} has {buckets} buckets, not 2^{bits}")]
    BucketCount { bits: u32, buckets: usize },
    #[error("bucket {bucket} is out of range, or not ascending, for bucket_bits {bits}")]
    Bucket { bucket: u32, bits: u32 },
    #[error("{item} is not in a bucket the rebase lists")]
    Outside { item: String },
    #[error("{item} appears twice in the rebase")]
    Duplicate { item: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

impl TableDigest {
    /// The digest a proxy sends: bucket count picked from the table's size.
    pub fn of(table: &RouteTable) -> Self {
        let items = table.routes.len() + table.endpoint_sets.len();
        let wanted = (items / ITEMS_PER_BUCKET).max(1).next_power_of_two();
        let bits = wanted
            .trailing_zeros()
            .clamp(MIN_BUCKET_BITS, MAX_BUCKET_BITS);
        Self::with_bits(table, bits)
    }

    /// The digest of `table` in `2^bits` buckets (`bits` at most [`MAX_BUCKET_BITS`]).
    pub fn with_bits(table: &RouteTable, bits: u32) -> Self {
        let bits = bits.min(MAX_BUCKET_BITS);
        let mut buckets = vec![0u64; 1 << bits];
        for (key, route) in &table.routes {
            let bucket = &mut buckets[route_bucket(key, bits) as usize];
            *bucket = bucket.wrapping_add(route_digest(route));
        }
        for (key, set) in &table.endpoint_sets {
            let bucket = &mut buckets[set_bucket(key, bits) as usize];
            *bucket = bucket.wrapping_add(set_digest(set));
        }
        TableDigest { bits, buckets }
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The buckets whose digests differ, ascending; `None` when the two digests are not
    /// in the same number of buckets.
    pub fn differing(&self, other: &TableDigest) -> Option<Vec<u32>> {
        (self.bits == other.bits).then(|| {
            let pairs = self.buckets.iter().zip(&other.buckets);
            (0u32..)
                .zip(pairs)
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i)
                .collect()
        })
    }
}

impl From<&TableDigest> for pb::TableDigest {
    fn from(d: &TableDigest) -> Self {
        pb::TableDigest {
            bucket_bits: d.bits,
            buckets: d.buckets.clone(),
        }
    }
}

impl TryFrom<pb::TableDigest> for TableDigest {
    type Error = RebaseError;

    fn try_from(d: pb::TableDigest) -> Result<Self, RebaseError> {
        let bits = d.bucket_bits;
        if bits > MAX_BUCKET_BITS {
            return Err(RebaseError::BucketBits(bits));
        }
        if d.buckets.len() != 1 << bits {
            return Err(RebaseError::BucketCount {
                bits,
                buckets: d.buckets.len(),
            });
        }
        Ok(TableDigest {
            bits,
            buckets: d.buckets,
        })
    }
}

/// The top `bits` bits of a hash (0 for no bits).
fn top_bits(hash: u64, bits: u32) -> u32 {
    if bits == 0 {
        0
    } else {
        // At most 16 bits remain: the cast cannot truncate.
        (hash >> (64 - bits)) as u32
    }
}

/// The bucket of a route, from `namespace/name`.
pub fn route_bucket(key: &RouteKey, bits: u32) -> u32 {
    let text = format!("route\0{}\0{}", key.namespace, key.name);
    top_bits(xxh3_64(text.as_bytes()), bits)
}

/// The bucket of an endpoint set, from `namespace/service:port`.
pub fn set_bucket(key: &EndpointSetKey, bits: u32) -> u32 {
    let text = format!("set\0{}\0{}\0{}", key.namespace, key.service, key.port);
    top_bits(xxh3_64(text.as_bytes()), bits)
}

fn route_digest(route: &Route) -> u64 {
    xxh3_64_with_seed(&pb::Route::from(route).encode_to_vec(), ROUTE_SEED)
}

fn set_digest(set: &EndpointSet) -> u64 {
    xxh3_64_with_seed(&pb::EndpointSetPart::from(set).encode_to_vec(), SET_SEED)
}

/// The rebase that replaces `buckets` (ascending, numbered in `2^bits`) with `table`'s
/// content.
pub fn rebase(table: &RouteTable, bits: u32, buckets: &[u32]) -> pb::Rebase {
    let listed: BTreeSet<u32> = buckets.iter().copied().collect();
    pb::Rebase {
        bucket_bits: bits,
        buckets: listed.iter().copied().collect(),
        routes: (table.routes.iter())
            .filter(|(key, _)| listed.contains(&route_bucket(key, bits)))
            .map(|(_, route)| pb::Route::from(&**route))
            .collect(),
        sets: (table.endpoint_sets.iter())
            .filter(|(key, _)| listed.contains(&set_bucket(key, bits)))
            .map(|(_, set)| pb::EndpointSetPart::from(&**set))
            .collect(),
    }
}

/// The table a rebase makes of `current`: every route and set of the listed buckets
/// dropped, then the rebase's own added. Anything inconsistent is an error and
/// `current` is untouched.
pub fn apply_rebase(current: &RouteTable, rebase: pb::Rebase) -> Result<RouteTable, RebaseError> {
    let bits = rebase.bucket_bits;
    if bits > MAX_BUCKET_BITS {
        return Err(RebaseError::BucketBits(bits));
    }
    let mut listed = vec![false; 1 << bits];
    let mut previous = None;
    for bucket in rebase.buckets {
        if bucket as usize >= listed.len() || previous.is_some_and(|p| p >= bucket) {
            return Err(RebaseError::Bucket { bucket, bits });
        }
        listed[bucket as usize] = true;
        previous = Some(bucket);
    }
    let mut table = current.clone();
    table
        .routes
        .retain(|key, _| !listed[route_bucket(key, bits) as usize]);
    (table.endpoint_sets).retain(|key, _| !listed[set_bucket(key, bits) as usize]);
    for route in rebase.routes {
        let route = Route::try_from(route)?;
        let item = format!("route {}", route.key);
        if !listed[route_bucket(&route.key, bits) as usize] {
            return Err(RebaseError::Outside { item });
        }
        if table
            .routes
            .insert(route.key.clone(), Arc::new(route))
            .is_some()
        {
            return Err(RebaseError::Duplicate { item });
        }
    }
    for part in rebase.sets {
        let set = EndpointSet::try_from(part)?;
        let item = format!("endpoint set {}", set.key);
        if !listed[set_bucket(&set.key, bits) as usize] {
            return Err(RebaseError::Outside { item });
        }
        if table
            .endpoint_sets
            .insert(set.key.clone(), Arc::new(set))
            .is_some()
        {
            return Err(RebaseError::Duplicate { item });
        }
    }
    Ok(table)
}

#[cfg(test)]
#[path = "digest/tests.rs"]
mod tests;
