//! A whole route table as a chunked snapshot: `begin`, chunks, `end`, all with one
//! version, applied atomically at `end`.
//!
//! The controller calls [`snapshot_messages`] and sends the result in order. The proxy
//! feeds every snapshot message to a [`SnapshotAssembler`], which hands back the whole
//! table at `end`, or an error; a partial table never escapes, so the proxy keeps
//! serving its last good one until a snapshot is complete and valid.

use std::collections::btree_map::Entry;
use std::sync::Arc;

use prost::Message;
use prost::encoding::{encoded_len_varint, key_len};

use crate::convert::{ConvertError, required};
use crate::model::{
    Endpoint, EndpointAddr, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Version,
};
use crate::pb::{self, controller_message::Kind};

/// Default upper bound on one encoded snapshot message. 1 MiB keeps every message at a
/// quarter of tonic's default 4 MiB decode limit, so a proxy never rejects a chunk, and
/// about 11,000 typical endpoints (~90 bytes each) per chunk keep per-message overhead negligible.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Field numbers in `ControllerMessage`, for size accounting.
const VERSION_TAG: u32 = 1;
const CHUNK_TAG: u32 = 3;
/// Field numbers in `SnapshotChunk` and `EndpointSetPart`.
const ROUTES_TAG: u32 = 1;
const SETS_TAG: u32 = 2;
const ENDPOINTS_TAG: u32 = 3;

/// The whole `table` at `version` as controller messages: one `begin`, zero or more
/// chunks, one `end` carrying the counts.
///
/// Each message encodes to at most `max_chunk_bytes` ([`DEFAULT_MAX_CHUNK_BYTES`] in
/// production). Big endpoint sets are split into several parts, across chunks; every set
/// appears in at least one part, even when empty. The only exception to the bound is a
/// single route or endpoint bigger than the limit on its own, which is sent alone.
pub fn snapshot_messages(
    table: &RouteTable,
    version: Version,
    max_chunk_bytes: usize,
) -> Vec<pb::ControllerMessage> {
    let pb_version = pb::Version::from(version);
    // What a chunk message costs besides the chunk body: the version field and the
    // chunk's tag and length (the length's varint is at most that of the limit).
    let overhead = prost::encoding::message::encoded_len(VERSION_TAG, &pb_version)
        + key_len(CHUNK_TAG)
        + encoded_len_varint(max_chunk_bytes as u64);
    let mut chunker = Chunker {
        budget: max_chunk_bytes.saturating_sub(overhead),
        chunks: Vec::new(),
        current: pb::SnapshotChunk::default(),
        current_len: 0,
    };
    for route in table.routes.values() {
        chunker.add_route(route.as_ref().into());
    }
    for set in table.endpoint_sets.values() {
        chunker.add_set(set);
    }
    chunker.flush();

    let end = pb::SnapshotEnd {
        chunks: chunker.chunks.len() as u64,
        routes: table.routes.len() as u64,
        endpoint_sets: table.endpoint_sets.len() as u64,
        endpoints: table.endpoint_count() as u64,
    };
    let message = |kind| pb::ControllerMessage {
        version: Some(pb_version),
        kind: Some(kind),
    };
    let mut messages = Vec::with_capacity(chunker.chunks.len() + 2);
    messages.push(message(Kind::Begin(pb::SnapshotBegin { zone: None })));
    messages.extend(chunker.chunks.into_iter().map(|c| message(Kind::Chunk(c))));
    messages.push(message(Kind::End(end)));
    messages
}

/// Bytes a length-delimited field of `len` bytes takes, tag included.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Packs routes and endpoint-set parts greedily into chunks whose body stays within
/// `budget` bytes.
struct Chunker {
    budget: usize,
    chunks: Vec<pb::SnapshotChunk>,
    current: pb::SnapshotChunk,
    /// `current.encoded_len()`, kept incrementally rather than re-encoded per item.
    current_len: usize,
}

impl Chunker {
    fn is_empty(&self) -> bool {
        self.current.routes.is_empty() && self.current.sets.is_empty()
    }

    /// Whether `bytes` more would overflow the current chunk.
    fn over(&self, bytes: usize) -> bool {
        self.current_len + bytes > self.budget
    }

    fn flush(&mut self) {
        if !self.is_empty() {
            self.chunks.push(std::mem::take(&mut self.current));
            self.current_len = 0;
        }
    }

    fn add_route(&mut self, route: pb::Route) {
        let cost = field_len(ROUTES_TAG, route.encoded_len());
        // An item too big for an empty chunk goes alone rather than nowhere.
        if self.over(cost) {
            self.flush();
        }
        self.current_len += cost;
        self.current.routes.push(route);
    }

    fn push_part(&mut self, part: pb::EndpointSetPart, part_len: usize) {
        self.current_len += field_len(SETS_TAG, part_len);
        self.current.sets.push(part);
    }

    /// Adds `set` as one or more parts. The open part is not in the chunk yet: it is
    /// pushed when the next endpoint would overflow the chunk (then the chunk is
    /// flushed and a new part for the same set opened) or when the set is done.
    fn add_set(&mut self, set: &EndpointSet) {
        let empty_part = pb::EndpointSetPart {
            key: Some((&set.key).into()),
            app_protocol: set.app_protocol.clone(),
            endpoints: Vec::new(),
            cluster_ips: crate::convert::ips_to_proto(&set.cluster_ips),
        };
        let header_len = empty_part.encoded_len();
        if self.over(field_len(SETS_TAG, header_len)) {
            self.flush();
        }
        let mut part = empty_part.clone();
        let mut part_len = header_len;
        for ep in set.endpoints.values() {
            let ep = pb::Endpoint::from(ep);
            let ep_cost = field_len(ENDPOINTS_TAG, ep.encoded_len());
            if self.over(field_len(SETS_TAG, part_len + ep_cost)) {
                if !part.endpoints.is_empty() {
                    let full = std::mem::replace(&mut part, empty_part.clone());
                    self.push_part(full, part_len);
                    part_len = header_len;
                }
                // With the part empty and the chunk empty too, the endpoint is too big
                // for any chunk: it goes alone.
                self.flush();
            }
            part_len += ep_cost;
            part.endpoints.push(ep);
        }
        self.push_part(part, part_len);
    }
}

/// Why a snapshot was rejected. After any error the assembler has dropped the partial
/// snapshot; the proxy nacks and keeps serving its last good table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot chunk for {0} without a begin")]
    ChunkWithoutBegin(Version),
    #[error("snapshot end for {0} without a begin")]
    EndWithoutBegin(Version),
    #[error("snapshot begin for {new} while {current} is still being assembled")]
    BeginDuringSnapshot { current: Version, new: Version },
    #[error("a delta or rebase arrived where only snapshot messages belong")]
    UnexpectedDelta,
    #[error("snapshot {expected} got a message for {got}")]
    VersionMismatch { expected: Version, got: Version },
    #[error("snapshot end counts {expected} {what}, received {received}")]
    CountMismatch {
        what: &'static str,
        expected: u64,
        received: u64,
    },
    #[error("route {0} appears twice in the snapshot")]
    DuplicateRoute(RouteKey),
    #[error("endpoint {addr} appears twice in set {key}")]
    DuplicateEndpoint {
        key: EndpointSetKey,
        addr: EndpointAddr,
    },
    #[error("parts of endpoint set {0} disagree on appProtocol")]
    AppProtocolMismatch(EndpointSetKey),
    #[error("parts of endpoint set {0} disagree on the Service's ClusterIPs")]
    ClusterIpsMismatch(EndpointSetKey),
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// Rebuilds a [`RouteTable`] from snapshot messages, on the proxy side.
///
/// Feed it every `begin`, chunk and `end` in stream order. Deltas do not belong here;
/// check [`SnapshotAssembler::is_assembling`] to tell a delta in the middle of a
/// snapshot (a protocol error) from an ordinary one.
#[derive(Debug, Default)]
pub struct SnapshotAssembler {
    pending: Option<Pending>,
}

/// A snapshot between `begin` and `end`: private, so it can never be served.
#[derive(Debug)]
struct Pending {
    version: Version,
    table: RouteTable,
    chunks: u64,
}

impl SnapshotAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between a `begin` and its `end` (or an error).
    pub fn is_assembling(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops any partial snapshot, e.g. when the stream breaks.
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// Takes the next message. Returns `Ok(None)` while a snapshot is incomplete, and
    /// `Ok(Some(table))` at a valid `end`: the whole table at that message's version,
    /// which the proxy swaps in and acks. On `Err` the partial snapshot is gone and the
    /// assembler waits for a new `begin`.
    pub fn feed(
        &mut self,
        msg: pb::ControllerMessage,
    ) -> Result<Option<RouteTable>, SnapshotError> {
        let result = self.step(msg);
        if result.is_err() {
            self.pending = None;
        }
        result
    }

    fn step(&mut self, msg: pb::ControllerMessage) -> Result<Option<RouteTable>, SnapshotError> {
        let version = msg.table_version()?;
        match required(msg.kind, "ControllerMessage.kind")? {
            Kind::Begin(_) => {
                if let Some(pending) = &self.pending {
                    return Err(SnapshotError::BeginDuringSnapshot {
                        current: pending.version,
                        new: version,
                    });
                }
                self.pending = Some(Pending {
                    version,
                    table: RouteTable::default(),
                    chunks: 0,
                });
                Ok(None)
            }
            Kind::Chunk(chunk) => {
                let pending = self
                    .pending
                    .as_mut()
                    .ok_or(SnapshotError::ChunkWithoutBegin(version))?;
                pending.check_version(version)?;
                pending.add_chunk(chunk)?;
                Ok(None)
            }
            Kind::End(end) => {
                let pending = self
                    .pending
                    .take()
                    .ok_or(SnapshotError::EndWithoutBegin(version))?;
                pending.check_version(version)?;
                pending.finish(&end).map(Some)
            }
            Kind::Delta(_) | Kind::Rebase(_) => Err(SnapshotError::UnexpectedDelta),
            // Outside the versioned sequence: the client takes figures before the
            // applier, so one here changes nothing.
            Kind::Figures(_) => Ok(None),
        }
    }
}

impl Pending {
    fn check_version(&self, got: Version) -> Result<(), SnapshotError> {
        if got == self.version {
            Ok(())
        } else {
            Err(SnapshotError::VersionMismatch {
                expected: self.version,
                got,
            })
        }
    }

    fn add_chunk(&mut self, chunk: pb::SnapshotChunk) -> Result<(), SnapshotError> {
        self.chunks += 1;
        for route in chunk.routes {
            let route = Route::try_from(route)?;
            if let Some(old) = self.table.routes.insert(route.key.clone(), Arc::new(route)) {
                return Err(SnapshotError::DuplicateRoute(old.key.clone()));
            }
        }
        for part in chunk.sets {
            let key = EndpointSetKey::try_from(required(part.key, "EndpointSetPart.key")?)?;
            let set = match self.table.endpoint_sets.entry(key) {
                Entry::Vacant(v) => {
                    let mut set = EndpointSet::new(v.key().clone());
                    set.app_protocol = part.app_protocol;
                    set.cluster_ips = crate::convert::ips_from_proto(part.cluster_ips)?;
                    Arc::make_mut(v.insert(Arc::new(set)))
                }
                Entry::Occupied(o) => {
                    let set = Arc::make_mut(o.into_mut());
                    if set.app_protocol != part.app_protocol {
                        return Err(SnapshotError::AppProtocolMismatch(set.key.clone()));
                    }
                    if set.cluster_ips != crate::convert::ips_from_proto(part.cluster_ips)? {
                        return Err(SnapshotError::ClusterIpsMismatch(set.key.clone()));
                    }
                    set
                }
            };
            for ep in part.endpoints {
                let ep = Endpoint::try_from(ep)?;
                let addr = ep.addr;
                if set.endpoints.insert(addr, ep).is_some() {
                    return Err(SnapshotError::DuplicateEndpoint {
                        key: set.key.clone(),
                        addr,
                    });
                }
            }
        }
        Ok(())
    }

    /// The table, if `end`'s counts match what arrived: a lost or repeated chunk shows
    /// here rather than as a silently smaller table.
    fn finish(self, end: &pb::SnapshotEnd) -> Result<RouteTable, SnapshotError> {
        let counts = [
            ("chunks", end.chunks, self.chunks),
            ("routes", end.routes, self.table.routes.len() as u64),
            (
                "endpoint sets",
                end.endpoint_sets,
                self.table.endpoint_sets.len() as u64,
            ),
            (
                "endpoints",
                end.endpoints,
                self.table.endpoint_count() as u64,
            ),
        ];
        for (what, expected, received) in counts {
            if expected != received {
                return Err(SnapshotError::CountMismatch {
                    what,
                    expected,
                    received,
                });
            }
        }
        Ok(self.table)
    }
}

#[cfg(test)]
mod tests;
