//! The discovery state machine, pure: controller messages in, "applied", "nack" or
//! "wait for more" out. No I/O, no clock; the client in `client.rs` does the talking.
//!
//! A snapshot is assembled aside ([`SnapshotAssembler`]) and replaces the table only at
//! its `end`; a delta applies to a copy of the current table, and only when its `base`
//! is the version we serve; a rebase (a restarted controller's answer to our table's
//! digest) replaces the buckets it lists in a copy of the current table. Anything invalid is nacked and the last good table stays,
//! until the snapshot that the controller sends after a nack (design.md 4).

use std::sync::Arc;

use fairway_proto::convert::ConvertError;
use fairway_proto::diff::{self, TableDiff};
use fairway_proto::digest::{RebaseError, apply_rebase};
use fairway_proto::model::{RouteTable, Version};
use fairway_proto::pb::{self, controller_message::Kind};
use fairway_proto::snapshot::{SnapshotAssembler, SnapshotError};

/// Why an update was rejected. The `Display` text goes into the nack.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The message has no version, so it cannot even be nacked.
    #[error("controller message without a version: {0}")]
    Unversioned(ConvertError),
    /// The message has a version but no content.
    #[error("controller message {0} has no kind")]
    Empty(Version),
    /// A snapshot message was out of order, inconsistent, or did not decode.
    #[error("snapshot {version}: {source}")]
    Snapshot {
        version: Version,
        source: SnapshotError,
    },
    /// A delta or rebase arrived between a snapshot's `begin` and `end`.
    #[error("delta or rebase {0} arrived in the middle of a snapshot")]
    DeltaDuringSnapshot(Version),
    /// A rebase arrived before any table: there is nothing to rebase.
    #[error("rebase {0} arrived before any table")]
    RebaseWithoutTable(Version),
    /// The rebase did not decode or does not fit its own bucket list.
    #[error("rebase {version}: {source}")]
    Rebase {
        version: Version,
        source: RebaseError,
    },
    /// The delta builds on a version we do not serve.
    #[error("delta {version} is based on {base}, but this proxy serves {}", serving_text(.serving))]
    BaseMismatch {
        version: Version,
        base: Version,
        serving: Option<Version>,
    },
    /// The delta did not decode.
    #[error("delta {version}: {source}")]
    Delta {
        version: Version,
        source: ConvertError,
    },
}

fn serving_text(serving: &Option<Version>) -> String {
    match serving {
        Some(v) => v.to_string(),
        None => "no table yet".to_owned(),
    }
}

/// What the client must do after one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new table at this version: build it, publish it, then ack the version.
    Applied(Arc<RouteTable>, Version),
    /// Nack this version with the reason; the table served stays as it was.
    Nack(Version, ApplyError),
    /// Part of a snapshot (or the rest of a rejected one): nothing to answer yet.
    Pending,
    /// The message cannot be answered at all (no version): end the stream and
    /// reconnect. The table served stays as it was.
    Invalid(ApplyError),
}

/// Follows one controller's messages across streams. Keeps the last applied table and
/// version, which survive reconnects (they go into the next `Hello`).
#[derive(Debug, Default)]
pub struct Applier {
    current: Option<(Version, Arc<RouteTable>)>,
    assembler: SnapshotAssembler,
    /// The version of the snapshot being assembled, between `begin` and `end`.
    assembling: Option<Version>,
    /// A snapshot that failed before its `end` and was nacked: its remaining messages
    /// are skipped, so each version gets exactly one answer.
    discarding: Option<Version>,
}

impl Applier {
    pub fn new() -> Applier {
        Applier::default()
    }

    /// The version of the table served, `None` before the first one.
    pub fn last_applied(&self) -> Option<Version> {
        self.current.as_ref().map(|(v, _)| *v)
    }

    /// The table served, `None` before the first one.
    pub fn current(&self) -> Option<&Arc<RouteTable>> {
        self.current.as_ref().map(|(_, t)| t)
    }

    /// Forgets a partial snapshot: a new stream starts fresh, keeping the current table.
    pub fn stream_reset(&mut self) {
        self.assembler.reset();
        self.assembling = None;
        self.discarding = None;
    }

    /// Takes the next message of the stream.
    pub fn step(&mut self, msg: pb::ControllerMessage) -> Step {
        let version = match msg.table_version() {
            Ok(version) => version,
            Err(err) => {
                self.stream_reset();
                return Step::Invalid(ApplyError::Unversioned(err));
            }
        };
        match msg.kind {
            None => Step::Nack(version, ApplyError::Empty(version)),
            Some(Kind::Delta(delta)) => self.delta(version, delta),
            Some(Kind::Rebase(rebase)) => self.rebase(version, rebase),
            // Outside the versioned sequence; the client takes figures before this.
            Some(Kind::Figures(_)) => Step::Pending,
            Some(Kind::Begin(_)) => {
                self.discarding = None;
                self.snapshot(version, msg)
            }
            Some(Kind::Chunk(_) | Kind::End(_)) if self.discarding == Some(version) => {
                if matches!(msg.kind, Some(Kind::End(_))) {
                    self.discarding = None;
                }
                Step::Pending
            }
            Some(Kind::Chunk(_) | Kind::End(_)) => self.snapshot(version, msg),
        }
    }

    fn snapshot(&mut self, version: Version, msg: pb::ControllerMessage) -> Step {
        let kind = msg.kind.as_ref();
        let is_end = matches!(kind, Some(Kind::End(_)));
        // `begin` is empty: keeping a copy costs nothing and lets a superseding
        // snapshot start over (below).
        let begin = matches!(kind, Some(Kind::Begin(_))).then(|| msg.clone());
        match self.assembler.feed(msg) {
            Ok(None) => {
                if begin.is_some() {
                    self.assembling = Some(version);
                }
                Step::Pending
            }
            Ok(Some(table)) => {
                self.assembling = None;
                self.applied(table, version)
            }
            Err(source) => {
                // Answer for the snapshot that was being built, once; skip its rest.
                let failed = self.assembling.take().unwrap_or(version);
                let superseded = matches!(source, SnapshotError::BeginDuringSnapshot { .. })
                    && failed != version;
                match begin {
                    Some(begin) if superseded => {
                        // A newer snapshot replaces the unfinished one: nack that one
                        // and assemble this one.
                        self.discarding = None;
                        if let Ok(None) = self.assembler.feed(begin) {
                            self.assembling = Some(version);
                        }
                    }
                    _ => {
                        self.discarding = (!(is_end && failed == version)).then_some(failed);
                    }
                }
                Step::Nack(
                    failed,
                    ApplyError::Snapshot {
                        version: failed,
                        source,
                    },
                )
            }
        }
    }

    /// A delta or rebase in the middle of a snapshot: the unfinished snapshot is
    /// dropped too, its remaining messages are skipped, and the controller answers this
    /// nack with a fresh snapshot.
    fn interrupts_snapshot(&mut self, version: Version) -> Option<Step> {
        self.discarding = None;
        if !self.assembler.is_assembling() {
            return None;
        }
        self.assembler.reset();
        self.discarding = self.assembling.take();
        Some(Step::Nack(
            version,
            ApplyError::DeltaDuringSnapshot(version),
        ))
    }

    fn rebase(&mut self, version: Version, rebase: pb::Rebase) -> Step {
        if let Some(nack) = self.interrupts_snapshot(version) {
            return nack;
        }
        let Some(current) = self.current() else {
            return Step::Nack(version, ApplyError::RebaseWithoutTable(version));
        };
        match apply_rebase(current, rebase) {
            Ok(table) => self.applied(table, version),
            Err(source) => Step::Nack(version, ApplyError::Rebase { version, source }),
        }
    }

    fn delta(&mut self, version: Version, delta: pb::Delta) -> Step {
        if let Some(nack) = self.interrupts_snapshot(version) {
            return nack;
        }
        let (base, changes) = match TableDiff::from_proto(delta) {
            Ok(decoded) => decoded,
            Err(source) => return Step::Nack(version, ApplyError::Delta { version, source }),
        };
        let Some((_, table)) = self.current.as_ref().filter(|(v, _)| *v == base) else {
            let serving = self.last_applied();
            return Step::Nack(
                version,
                ApplyError::BaseMismatch {
                    version,
                    base,
                    serving,
                },
            );
        };
        // The served table is shared with the request path: change a copy.
        let mut next = RouteTable::clone(table);
        diff::apply(&mut next, &changes);
        self.applied(next, version)
    }

    fn applied(&mut self, table: RouteTable, version: Version) -> Step {
        let table = Arc::new(table);
        self.current = Some((version, Arc::clone(&table)));
        Step::Applied(table, version)
    }
}

#[cfg(test)]
mod tests;
