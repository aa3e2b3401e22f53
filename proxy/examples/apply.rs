//! What one endpoint change costs a proxy: a table of 10,000 Routes, each over its own
//! endpoint set of 3 pods, then one pod added to one set, as a delta, many times. Times
//! the two steps a delta takes: the discovery state machine (`Applier::step`: decode,
//! apply to a copy of the table) and building the request path's table (`Table::build`:
//! router, targets, balancers).
//!
//!   cargo run --release -p fairway-proxy --example apply [-- SETS [ROUNDS]]

use std::time::{Duration, Instant};

use fairway_proto::diff;
use fairway_proto::model::{Endpoint, Version};
use fairway_proto::snapshot::{DEFAULT_MAX_CHUNK_BYTES, snapshot_messages};
use fairway_proto::testing::{addr, set, table};
use fairway_proxy::discovery::{Applier, Step};
use fairway_proxy::table::Table;

fn main() {
    let mut args = std::env::args().skip(1);
    let sets: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let mut current = table((0..sets).map(|i| set(&format!("svc-{i}"), 3)));
    let version = |sequence| Version { epoch: 1, sequence };
    let mut applier = Applier::new();
    let mut built = Table::default();
    for msg in snapshot_messages(&current, version(1), DEFAULT_MAX_CHUNK_BYTES) {
        if let Step::Applied(source, v) = applier.step(msg) {
            built = Table::build(source, v, &Table::default(), (None, None), Instant::now());
        }
    }
    println!(
        "table: {sets} routes and sets, {} endpoints",
        current.endpoint_count()
    );

    let (mut step_times, mut build_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Add a pod to one set, or take it away again: a one-endpoint delta.
        let mut next = current.clone();
        let key = next
            .endpoint_sets
            .keys()
            .nth((round as usize * 7919) % sets as usize);
        let key = key.cloned().unwrap_or_else(|| unreachable!("sets > 0"));
        let pod = Endpoint::ready(addr(1_000_000));
        let set = next
            .endpoint_sets
            .get_mut(&key)
            .map(std::sync::Arc::make_mut)
            .unwrap_or_else(|| unreachable!());
        if set.endpoints.remove(&pod.addr).is_none() {
            set.endpoints.insert(pod.addr, pod);
        }
        let message =
            diff::diff(&current, &next).to_message(version(round + 1), version(round + 2));
        current = next;

        let started = Instant::now();
        let Step::Applied(source, v) = applier.step(message) else {
            panic!("the delta was not applied");
        };
        step_times.push(started.elapsed());
        let started = Instant::now();
        built = Table::build(source, v, &built, (None, None), Instant::now());
        build_times.push(started.elapsed());
    }
    report("Applier::step (decode, apply to a copy)", &mut step_times);
    report(
        "Table::build (router, targets, balancers)",
        &mut build_times,
    );
    drop(built);
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{what}: median {:.2} ms, p90 {:.2} ms over {} deltas",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        times.len()
    );
}
