//! Arbitrary sequences of table changes, as the controller computes and the proxy
//! applies them: `diff(old, new)` through its wire form (`to_message` -> `Applier`,
//! which decodes and applies it) and directly (`apply`), plus raw, possibly
//! inconsistent diffs. After every step the proxy's request-path table is rebuilt on
//! the previous one (balancer state carried over) and routes a few requests.
//!
//! Properties: `apply(old, diff(old, new)) == new`; the wire round trip is lossless;
//! the proxy's applied table equals the controller's; `apply` never fails on a diff
//! that does not fit; every endpoint is keyed by its own address (no duplicates).
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use fairway_fuzz::{RawDiffSpec, TableSpec, build_and_resolve};
use fairway_proto::diff::{TableDiff, apply, diff};
use fairway_proto::model::{RouteTable, Version};
use fairway_proto::snapshot::snapshot_messages;
use fairway_proxy::discovery::{Applier, Step};
use fairway_proxy::table::Table;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    /// The controller's next table: sent as a delta from the current one.
    Next(TableSpec),
    /// A raw diff applied directly; followed by a snapshot, as after a nack.
    Raw(RawDiffSpec),
}

fn v(sequence: u64) -> Version {
    Version { epoch: 1, sequence }
}

fn check_keys(table: &RouteTable) {
    for (key, route) in &table.routes {
        assert_eq!(key, &route.key, "route stored under another key");
    }
    for (key, set) in &table.endpoint_sets {
        assert_eq!(key, &set.key, "endpoint set stored under another key");
        for (addr, ep) in &set.endpoints {
            assert_eq!(addr, &ep.addr, "endpoint stored under another address");
        }
    }
}

fuzz_target!(|input: (TableSpec, Vec<Op>)| {
    let (first, ops) = input;
    let mut current = first.build();
    let mut sequence = 1;
    let mut applier = Applier::new();
    for m in snapshot_messages(&current, v(sequence), 1024) {
        applier.step(m);
    }
    assert_eq!(applier.current().map(Arc::as_ref), Some(&current));
    let mut table = build_and_resolve(Arc::new(current.clone()), v(sequence), &Table::default());

    for op in ops.into_iter().take(16) {
        let base = v(sequence);
        sequence += 1;
        let next = match op {
            Op::Next(spec) => {
                let next = spec.build();
                let d = diff(&current, &next);
                let mut direct = current.clone();
                apply(&mut direct, &d);
                assert_eq!(direct, next, "apply(old, diff(old, new)) == new");

                let message = d.to_message(base, v(sequence));
                let Some(fairway_proto::pb::controller_message::Kind::Delta(wire)) =
                    message.kind.clone()
                else {
                    panic!("a diff encodes as a delta");
                };
                let (decoded_base, decoded) =
                    TableDiff::from_proto(wire).unwrap_or_else(|e| panic!("own delta: {e}"));
                assert_eq!(
                    (decoded_base, &decoded),
                    (base, &d),
                    "delta wire round trip"
                );

                match applier.step(message) {
                    Step::Applied(applied, _) => assert_eq!(*applied, next, "proxy == controller"),
                    other => panic!("a delta on the served version must apply, got {other:?}"),
                }
                next
            }
            Op::Raw(spec) => {
                let mut next = current.clone();
                apply(&mut next, &spec.build());
                // The controller resyncs the proxy with a snapshot.
                let mut applied = None;
                for m in snapshot_messages(&next, v(sequence), 1024) {
                    if let Step::Applied(t, _) = applier.step(m) {
                        applied = Some(t);
                    }
                }
                assert_eq!(applied.as_deref(), Some(&next), "snapshot after a raw diff");
                next
            }
        };
        check_keys(&next);
        table = build_and_resolve(Arc::new(next.clone()), v(sequence), &table);
        current = next;
    }
});
