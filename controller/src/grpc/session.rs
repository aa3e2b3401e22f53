//! One proxy stream's protocol state, as a pure state machine: what to send next
//! ([`Session::plan`]) and what an ack or nack means ([`Session::on_ack`],
//! [`Session::on_nack`]). No I/O: `stream` drives it, and the tests below step it by
//! hand.
//!
//! The rules (discovery.proto, design.md section 4):
//! - a proxy whose hello names a version of this epoch still in history resumes with
//!   deltas from it; a proxy whose hello carries a table digest gets a rebase of the
//!   buckets that differ (when it is small enough); any other proxy starts with a
//!   snapshot;
//! - then every new version goes out as the deltas since the last one planned, each
//!   based on the previous version; a subscriber that fell out of history, or a delta
//!   bigger than a snapshot chunk may be, gets a snapshot instead;
//! - a sidecar's scope that grew (a subscription, [`Session::rescope`]) is sent as a
//!   delta even at the version the proxy already serves;
//! - after a nack the next message is a snapshot; nacks for messages sent before that
//!   snapshot are already answered by it;
//! - at most [`MAX_UNACKED`] versions are outstanding: a proxy that stops acking stops
//!   receiving, and catches up from history (or a snapshot) once it answers again.

use std::collections::VecDeque;
use std::sync::Arc;

use fairway_proto::Version;
use fairway_proto::diff::TableDiff;
use fairway_proto::digest::TableDigest;
use fairway_proto::snapshot::DEFAULT_MAX_CHUNK_BYTES;

use super::wire::Encoded;
use crate::store::{Deltas, Published};

/// Versions sent but not yet acked or nacked before the session stops sending. A
/// healthy proxy acks within milliseconds; 64 outstanding versions is seconds of churn,
/// and bounds the bookkeeping for a proxy that reads but never answers.
pub const MAX_UNACKED: usize = 64;

/// What the session sends next.
#[derive(Debug)]
pub enum Plan {
    /// Nothing to send: up to date, nothing published yet, waiting for acks, or waiting
    /// for a version newer than a snapshot the proxy rejected.
    Idle,
    /// The whole table at this version.
    Snapshot(Arc<Published>),
    /// These delta messages, in order, encoded: for a proxy of the whole table one per
    /// version, the same bytes on every stream (bases are always the previous version);
    /// for a sidecar one message of its scoped table from the version planned.
    Deltas(Vec<Encoded>),
    /// This rebase: the proxy's table, told apart by its digest, made the latest one.
    Rebase(Encoded),
}

/// What a version was sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Delta,
    Snapshot,
    Rebase,
}

/// A version sent and not answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    /// Position in the session's send order.
    index: u64,
    version: Version,
    sent: Sent,
}

/// What an ack or nack meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The proxy serves this version now; `snapshot` if it replaced the whole table (a
    /// snapshot or a rebase).
    Applied { version: Version, snapshot: bool },
    /// The proxy rejected a message; a snapshot is planned next.
    Resnapshot { version: Version },
    /// The proxy rejected a message sent before the latest snapshot, which already
    /// replaces whatever it failed on.
    Superseded { version: Version },
    /// The version was never sent on this stream (or was already answered): ignored.
    Unexpected { version: Version },
}

/// The protocol state of one stream.
#[derive(Debug)]
pub struct Session {
    /// The version the proxy will serve once everything planned has applied; `None`
    /// until a snapshot is planned.
    planned: Option<Version>,
    /// A nack asked for a snapshot.
    snapshot_needed: bool,
    /// A snapshot of this version was nacked: resending the same table would fail the
    /// same way, so wait for a newer version.
    failed_snapshot: Option<Version>,
    outstanding: VecDeque<Outstanding>,
    /// Send-order index of the next version planned.
    next_index: u64,
    /// Send-order index of the latest snapshot planned.
    last_snapshot: Option<u64>,
    acked: Option<Version>,
    max_delta_bytes: usize,
    /// The hello's digest of the proxy's table, until the first message is planned.
    digest: Option<TableDigest>,
    /// A sidecar's scope grew since the last plan ([`Session::rescope`]).
    rescope: bool,
}

impl Session {
    /// A session for a proxy whose hello says it serves `resume_from`. `resumable` is
    /// whether the store can still produce deltas from it ([`crate::store::Store::deltas_since`]
    /// is `Some`); otherwise the proxy gets a snapshot.
    pub fn new(resume_from: Option<Version>, resumable: bool) -> Self {
        let resume = resume_from.filter(|_| resumable);
        Session {
            planned: resume,
            snapshot_needed: false,
            failed_snapshot: None,
            outstanding: VecDeque::new(),
            next_index: 0,
            last_snapshot: None,
            acked: resume,
            max_delta_bytes: DEFAULT_MAX_CHUNK_BYTES,
            digest: None,
            rescope: false,
        }
    }

    /// The digest of the table the proxy serves, from its hello: the first message may
    /// then be a rebase instead of a snapshot. Ignored for a proxy that resumes.
    pub fn with_digest(mut self, digest: Option<TableDigest>) -> Self {
        self.digest = digest.filter(|_| self.planned.is_none());
        self
    }

    /// The digest to build a rebase from, while the first message is still to plan.
    pub fn digest(&self) -> Option<&TableDigest> {
        self.digest.as_ref()
    }

    /// Overrides the delta size above which a snapshot goes instead (tests).
    pub fn with_max_delta_bytes(mut self, bytes: usize) -> Self {
        self.max_delta_bytes = bytes;
        self
    }

    /// The version the proxy acked last (or resumed from).
    pub fn acked(&self) -> Option<Version> {
        self.acked
    }

    /// The version the proxy will serve once everything planned applies.
    pub fn planned(&self) -> Option<Version> {
        self.planned
    }

    /// A sidecar's scope grew (a subscription) without a new version: the next plan
    /// sends a delta even when the proxy is on the latest version.
    pub fn rescope(&mut self) {
        self.rescope = true;
    }

    /// Decides what to send to bring the proxy to `latest`, and records it as sent.
    /// `deltas_since` is [`crate::store::Store::deltas_since`]; `encode` builds (or
    /// looks up) the encoded delta messages from the version planned, given the deltas
    /// from it (one message per delta for a proxy of the whole table, one for a
    /// sidecar's scope; `None`: send a snapshot); `rebase` the rebase from the proxy's
    /// digest to `latest`, `None` if it is too big.
    pub fn plan(
        &mut self,
        latest: &Arc<Published>,
        deltas_since: impl FnOnce(Version) -> Option<Deltas>,
        encode: impl FnOnce(Version, &Deltas) -> Option<Vec<Encoded>>,
        rebase: impl FnOnce(&TableDigest) -> Option<Encoded>,
    ) -> Plan {
        if latest.is_initial() || self.outstanding.len() >= MAX_UNACKED {
            return Plan::Idle;
        }
        let from = match self.planned {
            Some(from) if !self.snapshot_needed => from,
            None => return self.plan_first(latest, rebase),
            Some(_) => return self.plan_snapshot(latest),
        };
        if from == latest.version && !self.rescope {
            return Plan::Idle;
        }
        let Some(deltas) = deltas_since(from) else {
            return self.plan_snapshot(latest);
        };
        let Some(messages) = encode(from, &deltas) else {
            return self.plan_snapshot(latest);
        };
        // A huge delta (a relist that changed most of the table) could pass the proxy's
        // decode limit; a chunked snapshot cannot.
        if messages.is_empty() || messages.iter().any(|m| m.len() > self.max_delta_bytes) {
            return self.plan_snapshot(latest);
        }
        for message in &messages {
            self.record(message.version().unwrap_or(latest.version), Sent::Delta);
        }
        self.planned = messages.last().and_then(Encoded::version);
        self.rescope = false;
        Plan::Deltas(messages)
    }

    /// The encoded deltas for a proxy of the whole table: the store's, one per version,
    /// each encoded once for every stream (`encode` builds or looks one up).
    pub fn each_delta(
        deltas: &Deltas,
        mut encode: impl FnMut(Version, Version, &TableDiff) -> Encoded,
    ) -> Vec<Encoded> {
        (deltas.iter())
            .map(|(base, version, diff)| encode(*base, *version, diff))
            .collect()
    }

    /// The first message for a proxy that does not resume: a rebase if it sent a
    /// digest and the rebase is small enough, else a snapshot.
    fn plan_first(
        &mut self,
        latest: &Arc<Published>,
        rebase: impl FnOnce(&TableDigest) -> Option<Encoded>,
    ) -> Plan {
        let Some(message) = self.digest.take().and_then(|digest| rebase(&digest)) else {
            return self.plan_snapshot(latest);
        };
        self.replace(latest.version, Sent::Rebase);
        Plan::Rebase(message)
    }

    fn plan_snapshot(&mut self, latest: &Arc<Published>) -> Plan {
        if self.failed_snapshot == Some(latest.version) {
            return Plan::Idle;
        }
        self.replace(latest.version, Sent::Snapshot);
        Plan::Snapshot(latest.clone())
    }

    /// Records a message that replaces the proxy's table (a snapshot or a rebase):
    /// deltas sent before it no longer matter.
    fn replace(&mut self, version: Version, sent: Sent) {
        self.last_snapshot = Some(self.next_index);
        self.record(version, sent);
        self.snapshot_needed = false;
        self.rescope = false;
        self.planned = Some(version);
    }

    fn record(&mut self, version: Version, sent: Sent) {
        self.outstanding.push_back(Outstanding {
            index: self.next_index,
            version,
            sent,
        });
        self.next_index += 1;
    }

    /// Removes and returns the outstanding entry for `version`, with the ones before it
    /// (a proxy answers in order; an entry it skipped is answered implicitly).
    fn answer(&mut self, version: Version) -> Option<Outstanding> {
        let at = self.outstanding.iter().position(|o| o.version == version)?;
        self.outstanding.drain(..=at).next_back()
    }

    /// The proxy acked `version`.
    pub fn on_ack(&mut self, version: Version) -> Answer {
        match self.answer(version) {
            Some(o) => {
                self.acked = Some(version);
                if o.sent == Sent::Snapshot {
                    self.failed_snapshot = None;
                }
                Answer::Applied {
                    version,
                    snapshot: o.sent != Sent::Delta,
                }
            }
            None => Answer::Unexpected { version },
        }
    }

    /// The proxy nacked `version`: it still serves its previous table.
    pub fn on_nack(&mut self, version: Version) -> Answer {
        let Some(o) = self.answer(version) else {
            return Answer::Unexpected { version };
        };
        if self.last_snapshot.is_some_and(|s| o.index < s) {
            return Answer::Superseded { version };
        }
        // A nacked snapshot would fail the same way again; a nacked rebase or delta is
        // answered with a snapshot.
        if o.sent == Sent::Snapshot {
            self.failed_snapshot = Some(version);
        }
        self.snapshot_needed = true;
        Answer::Resnapshot { version }
    }
}

#[cfg(test)]
#[path = "session/tests.rs"]
mod tests;
