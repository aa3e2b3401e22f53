use prost::Message;

use super::*;
use crate::testing::{route, set, table};

const V: Version = Version {
    epoch: 3,
    sequence: 9,
};

/// Feeds all messages; the table from the last one, asserting nothing came earlier.
fn assemble(messages: Vec<pb::ControllerMessage>) -> Result<RouteTable, SnapshotError> {
    let mut assembler = SnapshotAssembler::new();
    let last = messages.len() - 1;
    for (i, msg) in messages.into_iter().enumerate() {
        let out = assembler.feed(msg)?;
        if i < last {
            assert!(
                out.is_none(),
                "message {i} of {last} produced a table early"
            );
        } else {
            assert!(!assembler.is_assembling(), "done after end");
            return Ok(out.expect("end must produce the table"));
        }
    }
    unreachable!("snapshot_messages always ends with end")
}

fn chunks(messages: &[pb::ControllerMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m.kind, Some(Kind::Chunk(_))))
        .count()
}

#[test]
fn a_100k_endpoint_table_splits_under_the_limit_and_reassembles() {
    let t = table([set("orders", 100_000), set("cart", 3)]);
    let messages = snapshot_messages(&t, V, DEFAULT_MAX_CHUNK_BYTES);
    assert!(
        chunks(&messages) >= 4,
        "100,000 endpoints must need several 1 MiB chunks, got {}",
        chunks(&messages)
    );
    for (i, m) in messages.iter().enumerate() {
        assert!(
            m.encoded_len() <= DEFAULT_MAX_CHUNK_BYTES,
            "message {i} is {} bytes, over the {DEFAULT_MAX_CHUNK_BYTES} limit",
            m.encoded_len()
        );
    }
    assert_eq!(assemble(messages), Ok(t));
}

#[test]
fn an_empty_table_is_begin_then_end() {
    let messages = snapshot_messages(&RouteTable::default(), V, DEFAULT_MAX_CHUNK_BYTES);
    assert_eq!(messages.len(), 2);
    assert_eq!(assemble(messages), Ok(RouteTable::default()));
}

#[test]
fn a_limit_too_small_for_anything_still_works() {
    let t = table([set("orders", 5), EndpointSet::new(set("empty", 0).key)]);
    let messages = snapshot_messages(&t, V, 1);
    assert!(chunks(&messages) >= 5, "one item per chunk");
    assert_eq!(assemble(messages), Ok(t));
}

#[test]
fn a_chunk_without_begin_is_an_error() {
    let mut messages = snapshot_messages(&table([set("orders", 2)]), V, 1024);
    messages.remove(0);
    assert_eq!(assemble(messages), Err(SnapshotError::ChunkWithoutBegin(V)));
}

#[test]
fn a_version_mismatch_discards_the_snapshot() {
    let mut messages = snapshot_messages(&table([set("orders", 2)]), V, 1024);
    let other = Version { sequence: 10, ..V };
    messages[1].version = Some(other.into());

    let mut assembler = SnapshotAssembler::new();
    assert_eq!(assembler.feed(messages[0].clone()), Ok(None));
    assert_eq!(
        assembler.feed(messages[1].clone()),
        Err(SnapshotError::VersionMismatch {
            expected: V,
            got: other
        })
    );
    assert!(
        !assembler.is_assembling(),
        "the partial snapshot is dropped"
    );
    let end = messages.last().cloned().expect("has an end");
    assert_eq!(
        assembler.feed(end),
        Err(SnapshotError::EndWithoutBegin(V)),
        "nothing partial can be completed after an error"
    );
}

#[test]
fn a_lost_chunk_is_a_count_mismatch() {
    let t = table([set("orders", 50)]);
    let mut messages = snapshot_messages(&t, V, 1024);
    assert!(chunks(&messages) >= 3, "needs several chunks to lose one");
    messages.remove(2);
    assert!(matches!(
        assemble(messages),
        Err(SnapshotError::CountMismatch { what: "chunks", .. })
    ));
}

#[test]
fn a_repeated_chunk_is_a_duplicate() {
    let mut messages = snapshot_messages(&table([set("orders", 2)]), V, 1024);
    messages.insert(1, messages[1].clone());
    assert!(matches!(
        assemble(messages),
        Err(SnapshotError::DuplicateRoute(_))
    ));
}

#[test]
fn bad_wire_data_is_a_conversion_error() {
    let mut messages = snapshot_messages(&table([set("orders", 2)]), V, 1024);
    let Some(Kind::Chunk(chunk)) = &mut messages[1].kind else {
        panic!("message 1 is a chunk");
    };
    chunk.sets[0].endpoints[0].addr = Some(pb::EndpointAddress {
        ip: vec![1, 2, 3],
        port: 80,
    });
    assert_eq!(
        assemble(messages),
        Err(SnapshotError::Convert(ConvertError::BadAddress(3)))
    );
}

#[test]
fn parts_must_agree_on_app_protocol() {
    let mut s = set("orders", 40);
    s.app_protocol = Some("grpc".into());
    let mut messages = snapshot_messages(&table([s]), V, 1024);
    let Some(Kind::Chunk(chunk)) = &mut messages[2].kind else {
        panic!("message 2 is a chunk");
    };
    chunk.sets[0].app_protocol = None;
    assert!(matches!(
        assemble(messages),
        Err(SnapshotError::AppProtocolMismatch(_))
    ));
}

#[test]
fn begin_during_a_snapshot_and_deltas_are_protocol_errors() {
    let messages = snapshot_messages(&table([set("orders", 2)]), V, 1024);
    let mut assembler = SnapshotAssembler::new();
    assert_eq!(assembler.feed(messages[0].clone()), Ok(None));
    assert!(matches!(
        assembler.feed(messages[0].clone()),
        Err(SnapshotError::BeginDuringSnapshot { .. })
    ));
    let delta = crate::diff::TableDiff::default().to_message(V, V);
    assert_eq!(assembler.feed(delta), Err(SnapshotError::UnexpectedDelta));
}

#[test]
fn split_sets_merge_back_with_their_routes() {
    let mut t = table([set("orders", 30)]);
    let extra = route("extra");
    t.routes.insert(extra.key.clone(), extra.into());
    let messages = snapshot_messages(&t, V, 600);
    let parts: usize = messages
        .iter()
        .filter_map(|m| match &m.kind {
            Some(Kind::Chunk(c)) => Some(c.sets.len()),
            _ => None,
        })
        .sum();
    assert!(
        parts >= 2,
        "30 endpoints in 600-byte chunks need several parts"
    );
    assert_eq!(assemble(messages), Ok(t));
}

#[test]
fn cluster_ips_survive_chunking_and_parts_must_agree_on_them() {
    let mut s = set("orders", 40);
    s.cluster_ips = vec!["10.96.0.10".parse().unwrap(), "fd00::10".parse().unwrap()];
    let t = table([s]);
    let messages = snapshot_messages(&t, V, 1024);
    assert!(messages.len() > 3, "the set is split into several parts");
    assert_eq!(
        assemble(messages.clone()).expect("assembles").endpoint_sets,
        t.endpoint_sets,
        "every part carries the ClusterIPs"
    );
    let mut messages = messages;
    let Some(Kind::Chunk(chunk)) = &mut messages[2].kind else {
        panic!("message 2 is a chunk");
    };
    chunk.sets[0].cluster_ips.clear();
    assert!(matches!(
        assemble(messages),
        Err(SnapshotError::ClusterIpsMismatch(_))
    ));
}
