//! The simulated proxies' table, kept once for all of them. The simulated proxies decode
//! only versions ([`crate::clients::Skinny`]), but a hello after a restart carries the
//! digest of the table a proxy serves. Every simulated proxy of a replica serves the same
//! table at the same version, so one follower per replica (a real stream, decoded and
//! applied in full as a proxy does) keeps the last tables by version, and a simulated
//! proxy reconnecting takes the digest of the version it applied. A real proxy computes
//! its own digest on its own node; the time one digest takes is reported apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::digest::{TableDigest, apply_rebase};
use fairway_proto::pb::controller_message::Kind;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::snapshot::SnapshotAssembler;
use fairway_proto::{RouteTable, Version, diff, pb};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// Tables kept: the proxies applied one of the last few versions.
const KEPT: usize = 8;

#[derive(Default)]
struct Kept {
    tables: BTreeMap<Version, Arc<RouteTable>>,
    digests: BTreeMap<Version, pb::TableDigest>,
}

/// One replica's follower.
#[derive(Clone)]
pub struct Shadow {
    kept: Arc<Mutex<Kept>>,
    /// The clients' output: a line `digest SECONDS` for each digest computed.
    out: mpsc::UnboundedSender<String>,
}

impl Shadow {
    /// Follows `endpoint` until the process ends.
    pub fn follow(endpoint: String, out: mpsc::UnboundedSender<String>) -> Shadow {
        let shadow = Shadow {
            kept: Arc::default(),
            out,
        };
        let kept = shadow.kept.clone();
        tokio::spawn(async move {
            if let Err(e) = follow(&endpoint, &kept).await {
                eprintln!("shadow of {endpoint}: {e}");
            }
        });
        shadow
    }

    /// The digest of the table at `version`, waiting up to 10 s for the follower to
    /// see it; `None` if it never does (the proxy then gets a snapshot, as it would
    /// without a table).
    pub async fn digest(&self, version: Version) -> Option<pb::TableDigest> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut kept = self.kept.lock().await;
            if let Some(digest) = kept.digests.get(&version) {
                return Some(digest.clone());
            }
            if let Some(table) = kept.tables.get(&version).cloned() {
                let t = Instant::now();
                let digest = pb::TableDigest::from(&TableDigest::of(&table));
                let _ = self
                    .out
                    .send(format!("digest {}", t.elapsed().as_secs_f64()));
                kept.digests.insert(version, digest.clone());
                return Some(digest);
            }
            drop(kept);
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn follow(endpoint: &str, kept: &Mutex<Kept>) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = DiscoveryClient::connect(endpoint.to_owned())
        .await?
        .max_decoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ProxyMessage::hello("shadow", "node", None, None))
        .await?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    let mut assembler = SnapshotAssembler::new();
    let mut current: Option<(Version, Arc<RouteTable>)> = None;
    while let Some(message) = inbound.message().await? {
        let version = message.table_version()?;
        let pb::ControllerMessage {
            version: wire,
            kind,
        } = message;
        let table = match kind {
            Some(Kind::Delta(delta)) => {
                let (_, changes) = diff::TableDiff::from_proto(delta)?;
                let mut table = RouteTable::clone(&current.as_ref().ok_or("delta first")?.1);
                diff::apply(&mut table, &changes);
                Some(table)
            }
            Some(Kind::Rebase(rebase)) => Some(apply_rebase(
                &current.as_ref().ok_or("rebase first")?.1,
                rebase,
            )?),
            kind => assembler.feed(pb::ControllerMessage {
                version: wire,
                kind,
            })?,
        };
        if let Some(table) = table {
            let table = Arc::new(table);
            current = Some((version, table.clone()));
            let mut kept = kept.lock().await;
            kept.tables.insert(version, table);
            while kept.tables.len() > KEPT {
                kept.tables.pop_first();
            }
            tx.send(pb::ProxyMessage::ack(version)).await?;
        }
    }
    Ok(())
}
