//! Drives one proxy stream: follows the store's `watch`, asks the [`Session`] what to
//! send, feeds the bounded per-stream queue, and reads acks and nacks.
//!
//! Memory per stream is bounded: the queue holds at most `STREAM_BUFFER` messages, and
//! the outbox holds one plan (a shared, pre-encoded snapshot, rebase, or the deltas from
//! the store's bounded history). At most `SNAPSHOT_SENDS` streams queue a snapshot, or
//! wait for the answer to a large rebase, at once. A slow proxy never blocks the
//! publisher or other streams: the `watch` keeps only the latest version, and the
//! session computes its catch-up from history when the queue has room.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use fairway_proto::Version;
use fairway_proto::pb::{self, controller_message, proxy_message};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use fairway_proto::RouteTable;
use fairway_proto::digest::{TableDigest, rebase};
use fairway_proto::scope::MAX_SUBSCRIPTIONS;
use fairway_proto::snapshot::{DEFAULT_MAX_CHUNK_BYTES, snapshot_messages};
use prost::Message;

use super::proxies::Registration;
use super::session::{Answer, Plan, Session};
use super::shared::{SNAPSHOT_CHUNK_BYTES, Shared};
use super::view::{Subscribed, Subscriptions};
use super::wire::{Encoded, Shape};
use crate::metrics::MessageKind;
use crate::store::{Deltas, Published};

/// How the stream ended, for the log.
#[derive(Debug)]
enum End {
    Shutdown,
    ProxyClosed,
    ProxyGone,
    Transport(Status),
    Protocol(&'static str),
}

/// Runs one stream until the proxy goes, the transport fails, or the controller shuts
/// down (then the stream ends with status OK).
pub(super) async fn drive(
    shared: Arc<Shared>,
    proxy: String,
    mut session: Session,
    mut scoped: Option<Subscriptions>,
    registration: Registration,
    mut inbound: Streaming<pb::ProxyMessage>,
    tx: mpsc::Sender<Result<Encoded, Status>>,
) {
    let connected_at = Instant::now();
    let mut published = shared.store.subscribe();
    let mut shutdown = shared.shutdown.clone();
    // Shared, pre-encoded messages: queueing one is a reference count, sending it a copy.
    let mut outbox: VecDeque<Encoded> = VecDeque::new();

    // Held while this stream's snapshot is being queued (see `SNAPSHOT_SENDS`).
    let mut snapshot_turn = None;
    // Held from a large rebase until the proxy answers it.
    let mut rebase_turn = None;

    let end = loop {
        if outbox.is_empty() {
            // The whole snapshot is handed to tonic: another stream may start its own.
            drop(snapshot_turn.take());
            let latest = published.borrow_and_update().clone();
            let (plan, mut view) = match &mut scoped {
                None => {
                    let deltas = |from| shared.store.deltas_since(from);
                    // Built before planning (it may compute the table's digest, which
                    // waits for other streams doing the same); used only if the
                    // session wants it.
                    let rebase = match session.digest() {
                        Some(theirs) if !latest.is_initial() => {
                            shared.rebase(&latest, theirs).await
                        }
                        _ => None,
                    };
                    // Every proxy of the whole table sends the same bytes: encoded once.
                    let encode = |_, deltas: &_| {
                        Some(Session::each_delta(deltas, |base, version, diff| {
                            shared.delta(base, version, diff)
                        }))
                    };
                    (session.plan(&latest, deltas, encode, |_| rebase), None)
                }
                Some(subscriptions) => plan_scoped(&shared, &mut session, subscriptions, &latest),
            };
            match plan {
                Plan::Idle => {}
                Plan::Rebase(message) => {
                    // A large rebase (many changes while the controller was away) waits
                    // for a snapshot turn and keeps it until the proxy answers: in a
                    // storm, proxies come back group after group, each at full speed,
                    // rather than all sharing the link and finishing near the end. A
                    // small one (nothing changed) goes at once.
                    if message.len() > SNAPSHOT_CHUNK_BYTES {
                        rebase_turn = tokio::select! {
                            biased;
                            () = stopped(&mut shutdown) => break End::Shutdown,
                            () = tx.closed() => break End::ProxyGone,
                            turn = shared.snapshot_turn() => turn,
                        };
                    }
                    outbox.push_back(message);
                }
                Plan::Snapshot(published) => {
                    // Wait for a turn; a shutdown or a proxy gone still ends the stream.
                    snapshot_turn = tokio::select! {
                        biased;
                        () = stopped(&mut shutdown) => break End::Shutdown,
                        () = tx.closed() => break End::ProxyGone,
                        turn = shared.snapshot_turn() => turn,
                    };
                    let messages: Arc<[Encoded]> = match view.take() {
                        // A sidecar's scoped table: its own bytes.
                        Some(view) => {
                            snapshot_messages(&view, published.version, SNAPSHOT_CHUNK_BYTES)
                                .iter()
                                .map(Encoded::new)
                                .collect()
                        }
                        None => shared.snapshot(&published).await,
                    };
                    outbox.extend(with_zone(&messages, registration.zone()));
                }
                Plan::Deltas(messages) => outbox.extend(messages),
            }
        }
        tokio::select! {
            // Shutdown first: a stream that always has something to send still ends.
            biased;
            () = stopped(&mut shutdown) => break End::Shutdown,
            message = inbound.next() => match message {
                None => break End::ProxyClosed,
                Some(Err(status)) => break End::Transport(status),
                Some(Ok(pb::ProxyMessage { kind: Some(proxy_message::Kind::Report(report)) })) => {
                    // A proxy that accepts figures gets the others' load in answer.
                    if take_report(&shared, &registration, &proxy, report)
                        && let Some(figures) = registration.figures()
                    {
                        outbox.push_back(Encoded::new(&pb::ControllerMessage {
                            version: None,
                            kind: Some(controller_message::Kind::Figures((&figures).into())),
                        }));
                    }
                }
                Some(Ok(pb::ProxyMessage { kind: Some(proxy_message::Kind::Subscribe(subscribe)) })) => {
                    take_subscription(&shared, &mut session, scoped.as_mut(), &registration, &proxy, subscribe);
                }
                Some(Ok(pb::ProxyMessage { kind: None })) => {
                    // A kind from a newer proxy, or none at all: tolerated, so that a
                    // proxy may add messages a controller ignores.
                    tracing::debug!(%proxy, "ignored a proxy message of an unknown kind");
                }
                Some(Ok(message)) => {
                    // A rebase is the stream's first message: any answer answers it.
                    drop(rebase_turn.take());
                    match answer(&shared, &mut session, &registration, &proxy, connected_at, message) {
                        // The next message must be the snapshot: deltas still queued
                        // build on the version the proxy failed on.
                        Ok(Answer::Resnapshot { .. }) => {
                            outbox.retain(|m| m.shape() != Shape::Delta);
                        }
                        Ok(_) => {}
                        Err(why) => break End::Protocol(why),
                    }
                }
            },
            permit = tx.reserve(), if !outbox.is_empty() => {
                let Ok(permit) = permit else { break End::ProxyGone };
                if let Some(message) = outbox.pop_front() {
                    sent(&shared, &registration, &message);
                    permit.send(Ok(message));
                }
            }
            changed = published.changed(), if outbox.is_empty() => {
                // The store never goes away while the server runs; if it does, stop.
                if changed.is_err() {
                    break End::Shutdown;
                }
            }
            // With nothing to send, `reserve` is not polled: notice a proxy gone here.
            () = tx.closed(), if outbox.is_empty() => break End::ProxyGone,
        }
    };
    if matches!(end, End::ProxyClosed) {
        // Ended by the proxy itself (it is stopping): the drain handshake need not wait
        // for it as for a proxy cut off while serving its last table.
        registration.closed_by_proxy();
    }
    match end {
        End::Shutdown | End::ProxyClosed | End::ProxyGone => {
            tracing::info!(%proxy, reason = ?end, "proxy stream ended");
        }
        End::Transport(status) => {
            tracing::warn!(%proxy, code = ?status.code(), message = status.message(), "proxy stream failed");
        }
        End::Protocol(why) => {
            tracing::warn!(%proxy, reason = ?end, "proxy broke the protocol");
            // Best effort: the proxy may be gone already.
            let _ = tx.send(Err(Status::invalid_argument(why))).await;
        }
    }
    // Dropping `tx` ends the response stream: tonic then sends status OK (or the
    // error queued above); dropping `registration` unlists the proxy.
}

/// Resolves when the controller shuts down (or the signal's sender is gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // Err: the sender is gone, which also means "stop". The guard is dropped here so
    // the future stays `Send`.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Records a message handed to the stream; a delta or a snapshot's end completes a
/// version.
fn sent(shared: &Shared, registration: &Registration, message: &Encoded) {
    let kind = match message.shape() {
        Shape::Delta => MessageKind::Delta,
        Shape::Rebase => MessageKind::Rebase,
        Shape::End => MessageKind::Snapshot,
        Shape::Begin | Shape::Chunk | Shape::Figures | Shape::Empty => return,
    };
    if let Some(version) = message.version() {
        registration.sent(version);
        shared.metrics.version_sent(kind);
    }
}

/// Plans for a sidecar: deltas, rebases and snapshots of its scoped table, filtered
/// against the shared scope at `latest`'s version. The scoped table comes back with a
/// snapshot plan (built here, under the scope's lock, and encoded by the caller).
fn plan_scoped(
    shared: &Shared,
    session: &mut Session,
    subscriptions: &mut Subscriptions,
    latest: &Arc<Published>,
) -> (Plan, Option<RouteTable>) {
    if latest.is_initial() {
        return (Plan::Idle, None);
    }
    let Some(scope) = shared.scope_at(latest) else {
        return (Plan::Idle, None);
    };
    let rebase = session.digest().and_then(|theirs| {
        let view = subscriptions.view(&scope, &latest.table);
        scoped_rebase(&view, theirs, latest.version)
    });
    let version = latest.version;
    let encode = |from: Version, deltas: &Deltas| {
        // The history may already hold versions past `latest`: they come next time.
        let diffs: Vec<_> = (deltas.iter())
            .take_while(|(_, v, _)| *v <= version)
            .map(|(_, _, diff)| Arc::clone(diff))
            .collect();
        let diff = subscriptions.delta(&scope, from, &diffs, &latest.table)?;
        Some(vec![Encoded::new(&diff.to_message(from, version))])
    };
    let plan = session.plan(
        latest,
        |from| shared.store.deltas_since(from),
        encode,
        |_| rebase,
    );
    let view = matches!(plan, Plan::Snapshot(_)).then(|| subscriptions.view(&scope, &latest.table));
    (plan, view)
}

/// The rebase that takes a sidecar whose scoped table has digest `theirs` to `view`;
/// `None` when it would be larger than a delta may be (a snapshot goes instead).
fn scoped_rebase(view: &RouteTable, theirs: &TableDigest, version: Version) -> Option<Encoded> {
    let bits = theirs.bits();
    let differing = TableDigest::with_bits(view, bits).differing(theirs)?;
    let message = pb::ControllerMessage {
        version: Some(version.into()),
        kind: Some(controller_message::Kind::Rebase(rebase(
            view, bits, &differing,
        ))),
    };
    (message.encoded_len() <= DEFAULT_MAX_CHUNK_BYTES).then(|| Encoded::new(&message))
}

/// Adds a sidecar's subscription to its scope; the next plan sends what it brings. An
/// explicit proxy's, or an invalid one, is ignored: it changes nothing for the stream.
fn take_subscription(
    shared: &Shared,
    session: &mut Session,
    scoped: Option<&mut Subscriptions>,
    registration: &Registration,
    proxy: &str,
    subscribe: pb::Subscribe,
) {
    let Some(subscriptions) = scoped else {
        tracing::debug!(%proxy, "ignored a subscription from a proxy of the whole table");
        return;
    };
    let destination = match subscribe.destination() {
        Ok(destination) => destination,
        Err(error) => {
            tracing::debug!(%proxy, %error, "ignored an invalid subscription");
            return;
        }
    };
    match subscriptions.subscribe(destination) {
        Subscribed::Added => {
            tracing::debug!(%proxy, %destination, "sidecar subscribed");
            registration.subscriptions(subscriptions.len());
            session.rescope();
        }
        Subscribed::Known => {}
        Subscribed::Full => {
            shared.metrics.subscription_ignored();
            tracing::info!(%proxy, %destination, limit = MAX_SUBSCRIPTIONS, "ignored a subscription past the limit; the sidecar passes that Service through");
        }
    }
}

/// Keeps a load report as the proxy's latest, outside the versioned sequence: no
/// version, ack or lag changes. Dropped when it is invalid or comes faster than asked.
fn take_report(
    shared: &Shared,
    registration: &Registration,
    proxy: &str,
    report: pb::LoadReport,
) -> bool {
    let accepted = match fairway_proto::load::LoadReport::try_from(report) {
        Ok(report) => registration.report(report, Instant::now(), super::server::REPORT_MIN_GAP),
        Err(error) => {
            tracing::debug!(%proxy, %error, "dropped an invalid load report");
            false
        }
    };
    shared.metrics.load_report(accepted);
    accepted
}

/// Handles an ack or nack. `Err` is a protocol violation that ends the stream.
fn answer(
    shared: &Shared,
    session: &mut Session,
    registration: &Registration,
    proxy: &str,
    connected_at: Instant,
    message: pb::ProxyMessage,
) -> Result<Answer, &'static str> {
    let (version, nack) = match message.kind {
        Some(proxy_message::Kind::Ack(ack)) => (ack.version, None),
        Some(proxy_message::Kind::Nack(nack)) => (nack.version, Some(nack.error)),
        Some(proxy_message::Kind::Hello(_)) => {
            return Err("Hello is only valid as the first message");
        }
        Some(proxy_message::Kind::Report(_) | proxy_message::Kind::Subscribe(_)) | None => {
            return Err("not an Ack or Nack");
        }
    };
    let Some(version) = version.map(Version::from) else {
        return Err("Ack/Nack without a version");
    };
    let outcome = match nack {
        None => session.on_ack(version),
        Some(error) => {
            shared.metrics.nack();
            tracing::warn!(%proxy, %version, %error, "proxy nacked a version");
            registration.nacked(version, error);
            session.on_nack(version)
        }
    };
    match outcome {
        Answer::Applied { version, .. } => {
            registration.acked(version);
            // Only versions published while this stream was open measure the push
            // path; a snapshot of an older version at connect would not.
            if let Some(at) = shared.store.published_at(version)
                && at >= connected_at
            {
                shared.metrics.observe_push(at.elapsed());
            }
        }
        Answer::Unexpected { .. } | Answer::Superseded { .. } | Answer::Resnapshot { .. } => {
            tracing::debug!(%proxy, ?outcome, "answer handled");
        }
    }
    Ok(outcome)
}

/// A shared snapshot with this proxy's zone in its `SnapshotBegin`: only that first,
/// tiny message is decoded and encoded again for this stream; the chunks stay shared.
fn with_zone(messages: &[Encoded], zone: Option<String>) -> impl Iterator<Item = Encoded> + '_ {
    messages
        .iter()
        .enumerate()
        .map(move |(i, message)| match (message.shape(), &zone) {
            (Shape::Begin, Some(zone)) if i == 0 => match message.decode() {
                Ok(mut begin) => {
                    begin.kind = Some(controller_message::Kind::Begin(pb::SnapshotBegin {
                        zone: Some(zone.clone()),
                    }));
                    Encoded::new(&begin)
                }
                // Our own bytes always decode; if they did not, the proxy's own zone
                // setting (or none) is the safe fallback.
                Err(_) => message.clone(),
            },
            _ => message.clone(),
        })
}

#[cfg(test)]
mod tests {
    use fairway_proto::model::RouteTable;
    use fairway_proto::snapshot::snapshot_messages;

    use super::*;

    #[test]
    fn the_zone_goes_into_a_copy_of_the_first_message_only() {
        let shared: Vec<Encoded> = snapshot_messages(
            &RouteTable::default(),
            Version {
                epoch: 1,
                sequence: 1,
            },
            1024,
        )
        .iter()
        .map(Encoded::new)
        .collect();
        let sent: Vec<_> = with_zone(&shared, Some("z-1".into())).collect();
        let first = sent[0].decode().expect("decodes");
        let Some(controller_message::Kind::Begin(begin)) = &first.kind else {
            panic!("a snapshot starts with SnapshotBegin: {first:?}");
        };
        assert_eq!(begin.zone.as_deref(), Some("z-1"));
        assert_eq!(first.table_version().ok(), shared[0].version());
        assert!(
            matches!(&shared[0].decode().expect("decodes").kind, Some(controller_message::Kind::Begin(b)) if b.zone.is_none()),
            "the shared snapshot is untouched"
        );
        assert_eq!(sent[1..], shared[1..], "the rest is the shared bytes");
        let unknown: Vec<_> = with_zone(&shared, None).collect();
        assert_eq!(unknown, shared);
    }

    /// A sidecar back after a restart sends the digest of its scoped table: one that
    /// holds it already gets a rebase listing no bucket; one whose table differs (a
    /// Service it held is gone, one it subscribed to is new) gets exactly the scoped
    /// table back.
    #[test]
    fn a_scoped_rebase_brings_the_sidecars_table_to_its_scoped_view() {
        use fairway_proto::digest::apply_rebase;
        use fairway_proto::testing::{route, set};

        let version = Version {
            epoch: 2,
            sequence: 9,
        };
        let mut view = RouteTable::default();
        let declared = route("orders");
        view.routes.insert(declared.key.clone(), declared.into());
        let orders = set("orders", 3);
        view.endpoint_sets.insert(orders.key.clone(), orders.into());

        let same = TableDigest::of(&view);
        let rebase = scoped_rebase(&view, &same, version).expect("a small rebase");
        let Some(controller_message::Kind::Rebase(r)) = rebase.decode().expect("decodes").kind
        else {
            panic!("a rebase");
        };
        assert!(r.buckets.is_empty(), "nothing differs: {r:?}");

        let mut held = view.clone();
        let gone = set("gone", 2);
        held.endpoint_sets.insert(gone.key.clone(), gone.into());
        held.endpoint_sets
            .remove(&fairway_proto::testing::set_key("orders", 8080));
        let theirs = TableDigest::with_bits(&held, same.bits());
        let rebase = scoped_rebase(&view, &theirs, version).expect("a small rebase");
        let Some(controller_message::Kind::Rebase(r)) = rebase.decode().expect("decodes").kind
        else {
            panic!("a rebase");
        };
        assert_eq!(apply_rebase(&held, r).expect("applies"), view);
        assert_eq!(rebase.version(), Some(version));
    }
}
