//! Controller messages off the wire, as the proxy's discovery client takes them: raw
//! bytes -> prost decode (length-delimited, several per input) -> the discovery state
//! machine (`Applier`: snapshot assembly, delta conversion and apply, nacks) -> the
//! request-path table built from every applied version, with a few requests routed.
//!
//! Properties besides "no panic": an applied table survives the controller's own
//! snapshot encoding unchanged (encode -> assemble round trip), and a nack never
//! changes the table served.
#![no_main]

use std::sync::Arc;

use fairway_fuzz::{build_and_resolve, decode_messages};
use fairway_proto::snapshot::{SnapshotAssembler, snapshot_messages};
use fairway_proxy::discovery::{Applier, Step};
use fairway_proxy::table::Table;
use libfuzzer_sys::fuzz_target;

/// Small enough that a fuzzed table spans several chunks.
const CHUNK_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    let mut applier = Applier::new();
    let mut table = Table::default();
    for message in decode_messages(data) {
        let before = applier.current().cloned();
        match applier.step(message) {
            Step::Applied(source, version) => {
                let mut assembler = SnapshotAssembler::new();
                let mut rebuilt = None;
                for m in snapshot_messages(&source, version, CHUNK_BYTES) {
                    rebuilt = assembler
                        .feed(m)
                        .unwrap_or_else(|e| panic!("re-encoded snapshot rejected: {e}"));
                }
                assert_eq!(
                    rebuilt.as_ref(),
                    Some(source.as_ref()),
                    "an applied table must survive a snapshot round trip"
                );
                table = build_and_resolve(Arc::clone(&source), version, &table);
            }
            Step::Nack(..) | Step::Pending | Step::Invalid(_) => {
                assert_eq!(
                    applier.current(),
                    before.as_ref(),
                    "a rejected or partial update must leave the served table alone"
                );
            }
        }
    }
});
