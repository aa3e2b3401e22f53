use prost::Message;
use std::sync::Arc;

use super::*;
use crate::snapshot::{DEFAULT_MAX_CHUNK_BYTES, snapshot_messages};
use crate::testing::{addr, endpoint, route, set, set_key, table};

const V1: Version = Version {
    epoch: 1,
    sequence: 1,
};
const V2: Version = Version {
    epoch: 1,
    sequence: 2,
};

#[test]
fn equal_tables_have_an_empty_diff() {
    let t = table([set("orders", 3), set("cart", 2)]);
    assert!(diff(&t, &t).is_empty());
    assert!(diff(&RouteTable::default(), &RouteTable::default()).is_empty());
}

#[test]
fn one_endpoint_change_in_5000_is_one_endpoint_under_1_kib() {
    let old = table([set("orders", 5_000)]);
    let mut new = old.clone();
    let key = set_key("orders", 8080);
    let ep = new
        .endpoint_sets
        .get_mut(&key)
        .and_then(|s| {
            Arc::make_mut(s)
                .endpoints
                .get_mut(&EndpointAddr(addr(1234)))
        })
        .expect("endpoint 1234 exists");
    ep.ready = false;
    ep.terminating = true;

    let d = diff(&old, &new);
    assert_eq!(d.endpoint_changes(), 1, "only the changed endpoint: {d:?}");
    assert!(d.routes_upserted.is_empty(), "routes did not change");

    let delta = d.to_message(V1, V2).encoded_len();
    assert!(
        delta < 1024,
        "one endpoint change must cost under 1 KiB on the wire, got {delta} bytes"
    );
    // The same table sent whole: proves the bound above is not trivially met.
    let full: usize = snapshot_messages(&new, V2, DEFAULT_MAX_CHUNK_BYTES)
        .iter()
        .map(Message::encoded_len)
        .sum();
    assert!(
        full > 100 * delta,
        "the full 5,000-endpoint set ({full} bytes) must dwarf the delta ({delta} bytes)"
    );

    let mut applied = old.clone();
    apply(&mut applied, &d);
    assert_eq!(applied, new);
}

#[test]
fn a_new_empty_set_is_still_created() {
    let old = RouteTable::default();
    let mut new = RouteTable::default();
    let mut empty = EndpointSet::new(set_key("orders", 8080));
    empty.app_protocol = Some("kubernetes.io/h2c".into());
    new.endpoint_sets.insert(empty.key.clone(), empty.into());

    let d = diff(&old, &new);
    assert_eq!(d.sets.len(), 1, "the new set must appear in the diff");
    assert_eq!(
        d.sets[0].app_protocol,
        Some(Some("kubernetes.io/h2c".into()))
    );
    let mut applied = old;
    apply(&mut applied, &d);
    assert_eq!(applied, new);
}

#[test]
fn app_protocol_can_change_to_none() {
    let mut old = table([set("orders", 2)]);
    let key = set_key("orders", 8080);
    Arc::make_mut(old.endpoint_sets.get_mut(&key).expect("set exists")).app_protocol =
        Some("grpc".into());
    let new = table([set("orders", 2)]);

    let d = diff(&old, &new);
    assert_eq!(d.sets[0].app_protocol, Some(None), "changed to none: {d:?}");
    assert_eq!(d.endpoint_changes(), 0);

    let (base, decoded) = TableDiff::from_proto(d.to_proto(V1)).expect("valid delta");
    assert_eq!((base, &decoded), (V1, &d), "Some(None) survives the wire");
    let mut applied = old;
    apply(&mut applied, &decoded);
    assert_eq!(applied, new);
}

#[test]
fn removals_and_route_changes() {
    let old = table([set("orders", 3), set("cart", 1)]);
    let mut new = table([set("orders", 2)]);
    let mut changed = route("orders");
    changed.hosts.push("orders.example.com".into());
    new.routes
        .insert(changed.key.clone(), changed.clone().into());

    let d = diff(&old, &new);
    assert_eq!(d.routes_upserted, vec![changed]);
    assert_eq!(d.routes_removed, vec![route("cart").key]);
    assert_eq!(d.sets_removed, vec![set_key("cart", 8080)]);
    assert_eq!(d.sets[0].remove, vec![EndpointAddr(addr(2))]);
    assert!(
        d.sets[0].upsert.is_empty(),
        "endpoints 0 and 1 are unchanged"
    );

    let mut applied = old;
    apply(&mut applied, &d);
    assert_eq!(applied, new);
}

#[test]
fn an_upsert_replaces_and_removing_the_absent_is_a_no_op() {
    let mut t = table([set("orders", 2)]);
    let key = set_key("orders", 8080);
    let mut change = EndpointSetChange::new(key.clone());
    let mut draining = endpoint(0);
    draining.ready = false;
    change.upsert.push(draining.clone());
    change.remove.push(EndpointAddr(addr(99)));
    apply(
        &mut t,
        &TableDiff {
            sets: vec![change],
            ..TableDiff::default()
        },
    );
    let set = &t.endpoint_sets[&key];
    assert_eq!(set.endpoints.len(), 2, "no duplicate, nothing removed");
    assert_eq!(set.endpoints[&draining.addr], draining);
}

#[test]
fn a_delta_without_base_is_rejected() {
    let mut wire = TableDiff::default().to_proto(V1);
    wire.base = None;
    assert_eq!(
        TableDiff::from_proto(wire),
        Err(ConvertError::MissingField("Delta.base"))
    );
}
