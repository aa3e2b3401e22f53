use std::num::NonZeroU16;

use super::*;
use crate::testing::{endpoint, route, set, table};

fn two_tables() -> (RouteTable, RouteTable) {
    let old = table((0..40).map(|i| set(&format!("svc-{i}"), 3)));
    let mut new = old.clone();
    let key = set("svc-7", 3).key;
    let changed = Arc::make_mut(new.endpoint_sets.get_mut(&key).expect("svc-7"));
    changed.endpoints.insert(endpoint(99).addr, endpoint(99));
    (old, new)
}

#[test]
fn equal_tables_have_equal_digests_and_nothing_to_resend() {
    let (old, _) = two_tables();
    let copy = old.clone();
    assert_eq!(TableDigest::of(&old), TableDigest::of(&copy));
    let differing = TableDigest::of(&old).differing(&TableDigest::of(&copy));
    assert_eq!(differing, Some(vec![]));
}

#[test]
fn one_changed_set_differs_in_its_bucket_only_and_the_rebase_resends_that_bucket() {
    let (old, new) = two_tables();
    let bits = TableDigest::of(&old).bits();
    let theirs = TableDigest::with_bits(&old, bits);
    let ours = TableDigest::with_bits(&new, bits);
    let differing = ours.differing(&theirs).expect("same bucket count");
    let bucket = set_bucket(&set("svc-7", 3).key, bits);
    assert_eq!(differing, vec![bucket]);

    let message = rebase(&new, bits, &differing);
    assert!(
        message.sets.iter().any(|s| s.endpoints.len() == 4),
        "the changed set is in it"
    );
    assert!(
        message.sets.len() + message.routes.len() < 10,
        "a bucket holds a few items, not the table: {} sets, {} routes",
        message.sets.len(),
        message.routes.len()
    );
    assert_eq!(apply_rebase(&old, message), Ok(new));
}

#[test]
fn a_rebase_removes_what_the_controller_no_longer_has_and_adds_what_is_new() {
    let (old, _) = two_tables();
    let mut new = old.clone();
    new.routes.remove(&route("svc-3").key);
    new.endpoint_sets.remove(&set("svc-3", 3).key);
    let added = set("fresh", 2);
    new.routes.insert(route("fresh").key, route("fresh").into());
    new.endpoint_sets.insert(added.key.clone(), added.into());

    let bits = 6;
    let differing = (TableDigest::with_bits(&new, bits))
        .differing(&TableDigest::with_bits(&old, bits))
        .expect("same bits");
    assert_eq!(apply_rebase(&old, rebase(&new, bits, &differing)), Ok(new));
}

#[test]
fn an_empty_rebase_keeps_the_table() {
    let (old, _) = two_tables();
    assert_eq!(apply_rebase(&old, rebase(&old, 6, &[])), Ok(old));
}

#[test]
fn digests_of_different_sizes_are_not_compared() {
    let (old, _) = two_tables();
    let a = TableDigest::with_bits(&old, 6);
    let b = TableDigest::with_bits(&old, 7);
    assert_eq!(a.differing(&b), None);
}

#[test]
fn the_bucket_count_follows_the_table_size() {
    assert_eq!(
        TableDigest::of(&RouteTable::default()).bits(),
        MIN_BUCKET_BITS
    );
    let mid = table((0..2_000).map(|i| set(&format!("s{i}"), 0)));
    // 4,000 items at about 4 per bucket: 2^10 buckets.
    assert_eq!(TableDigest::of(&mid).bits(), 10);
    let big = table((0..20_000).map(|i| set(&format!("s{i}"), 0)));
    assert_eq!(TableDigest::of(&big).bits(), MAX_BUCKET_BITS, "capped");
}

#[test]
fn the_digest_survives_the_wire_and_bad_ones_are_refused() {
    let (old, _) = two_tables();
    let digest = TableDigest::of(&old);
    let wire = pb::TableDigest::decode(pb::TableDigest::from(&digest).encode_to_vec().as_slice())
        .expect("decodes");
    assert_eq!(TableDigest::try_from(wire), Ok(digest));

    let too_many = pb::TableDigest {
        bucket_bits: 17,
        buckets: vec![],
    };
    assert_eq!(
        TableDigest::try_from(too_many),
        Err(RebaseError::BucketBits(17))
    );
    let short = pb::TableDigest {
        bucket_bits: 2,
        buckets: vec![0; 3],
    };
    assert_eq!(
        TableDigest::try_from(short),
        Err(RebaseError::BucketCount {
            bits: 2,
            buckets: 3
        })
    );
}

#[test]
fn inconsistent_rebases_are_refused() {
    let (old, new) = two_tables();
    let bits = 6;
    let bucket = set_bucket(&set("svc-7", 3).key, bits);
    let other = (bucket + 1) % 64;

    let outside = rebase(&new, bits, &[bucket]);
    let outside = pb::Rebase {
        buckets: vec![other],
        ..outside
    };
    assert!(matches!(
        apply_rebase(&old, outside),
        Err(RebaseError::Outside { .. })
    ));

    let mut twice = rebase(&new, bits, &[bucket]);
    twice.sets.push(twice.sets[0].clone());
    assert!(matches!(
        apply_rebase(&old, twice),
        Err(RebaseError::Duplicate { .. })
    ));

    let unordered = pb::Rebase {
        buckets: vec![5, 3],
        ..rebase(&new, bits, &[])
    };
    assert_eq!(
        apply_rebase(&old, unordered),
        Err(RebaseError::Bucket { bucket: 3, bits })
    );
    let beyond = pb::Rebase {
        buckets: vec![64],
        ..rebase(&new, bits, &[])
    };
    assert_eq!(
        apply_rebase(&old, beyond),
        Err(RebaseError::Bucket { bucket: 64, bits })
    );
}

/// The digest is part of the wire contract: a proxy of the previous release must get the
/// same numbers for the same table, or every restart would resend everything. If this
/// changes on purpose, say so in discovery.proto. The table is spelled out here, not
/// built by the test helpers, so that only a change of the contract moves it.
#[test]
fn the_digest_of_a_known_table_is_pinned() {
    let key = EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    };
    let mut set = EndpointSet::new(key.clone());
    let pod = crate::model::Endpoint::ready(std::net::SocketAddr::from(([10, 0, 0, 1], 8080)));
    set.endpoints.insert(pod.addr, pod);
    let mut table = RouteTable::default();
    table.endpoint_sets.insert(key.clone(), set.into());

    let digest = TableDigest::with_bits(&table, 2);
    assert_eq!(set_bucket(&key, 2), PINNED_BUCKET);
    let mut expected = vec![0; 4];
    expected[PINNED_BUCKET as usize] = PINNED_DIGEST;
    assert_eq!(digest.buckets, expected, "{:#x?}", digest.buckets);
}

const PINNED_BUCKET: u32 = 0;
const PINNED_DIGEST: u64 = 0x4f50_78e9_d14b_394e;

/// The previous release's `Hello` (fields 1 to 4), as its controller decodes it.
#[derive(Clone, PartialEq, prost::Message)]
struct PreviousHello {
    #[prost(string, tag = "1")]
    proxy_id: String,
    #[prost(string, tag = "2")]
    node: String,
    #[prost(string, optional, tag = "3")]
    zone: Option<String>,
    #[prost(message, optional, tag = "4")]
    last_applied: Option<pb::Version>,
}

/// A controller one release older reads this release's hello as before (the digest is
/// an unknown field it skips) and answers with a snapshot, which this proxy applies as
/// always; a proxy one release older sends no digest and gets a snapshot (the session's
/// tests).
#[test]
fn a_hello_with_a_digest_reads_as_before_to_the_previous_release() {
    let (old, _) = two_tables();
    let version = crate::Version {
        epoch: 3,
        sequence: 9,
    };
    let message = pb::ProxyMessage::hello("proxy-a", "node-1", Some("z".into()), Some(version))
        .with_digest(&TableDigest::of(&old));
    let Some(pb::proxy_message::Kind::Hello(hello)) = message.kind else {
        panic!("a hello");
    };
    assert!(hello.digest.is_some());
    let previous = PreviousHello::decode(hello.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(
        previous,
        PreviousHello {
            proxy_id: "proxy-a".into(),
            node: "node-1".into(),
            zone: Some("z".into()),
            last_applied: Some(version.into()),
        }
    );
}
