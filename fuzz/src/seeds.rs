//! The committed seed corpus (`fuzz/corpus/<target>/`): a few valid inputs per target,
//! so each run starts from real messages instead of rediscovering the wire format.
//! Regenerate with `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

use fairway_proto::diff::diff;
use fairway_proto::model::Version;
use fairway_proto::snapshot::snapshot_messages;

use crate::{encode_messages, routing_table};

/// `(target, file name, bytes)` for every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let (table, _) = routing_table();
    let v = |sequence| Version { epoch: 3, sequence };

    // discovery_decode: a snapshot (small chunks, so several), then deltas on it.
    let snapshot = snapshot_messages(&table, v(1), 256);
    let mut smaller = (*table).clone();
    let first_set = smaller.endpoint_sets.keys().next().cloned();
    if let Some(key) = first_set {
        smaller.endpoint_sets.remove(&key);
    }
    let last_route = smaller.routes.keys().last().cloned();
    if let Some(key) = last_route {
        smaller.routes.remove(&key);
    }
    let shrink = diff(&table, &smaller).to_message(v(1), v(2));
    let grow = diff(&smaller, &table).to_message(v(2), v(3));
    let stale = diff(&smaller, &table).to_message(v(9), v(10));
    seeds.push((
        "discovery_decode",
        "snapshot".into(),
        encode_messages(&snapshot),
    ));
    let mut stream = snapshot.clone();
    stream.extend([shrink.clone(), grow]);
    seeds.push((
        "discovery_decode",
        "snapshot-deltas".into(),
        encode_messages(&stream),
    ));
    let mut stale_stream = snapshot.clone();
    stale_stream.push(stale);
    seeds.push((
        "discovery_decode",
        "stale-delta".into(),
        encode_messages(&stale_stream),
    ));
    let mut interleaved = snapshot_messages(&table, v(4), 256);
    interleaved.insert(1, shrink);
    seeds.push((
        "discovery_decode",
        "delta-mid-snapshot".into(),
        encode_messages(&interleaved),
    ));

    // table_deltas: `arbitrary` input has no encoder; a few fixed byte patterns give
    // it tables with routes, sets and some operations to start from.
    let patterns: [(&str, Vec<u8>); 3] = [
        ("counting", (0..=255u8).collect()),
        ("ones", vec![1; 512]),
        (
            "mixed",
            (0..1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ];
    for (name, bytes) in patterns {
        seeds.push(("table_deltas", name.into(), bytes));
    }

    // route_request: request target, then header lines.
    let requests: [(&str, &str); 8] = [
        ("origin", "/api/v1/orders?x=1\nhost: Orders.Shop:4140"),
        ("absolute", "http://orders.shop.svc:8080/api\nhost: other"),
        ("ipv6", "/\nhost: [::1]:80"),
        ("trailing-dot", "/apix\nhost: orders.shop."),
        ("no-host", "/\nx-forwarded-for: 10.0.0.1"),
        ("authority-form", "orders.shop:443\nhost: orders.shop"),
        ("userinfo", "http://user@a/api/\nhost: a"),
        ("weighted", "/api\nhost: a\nhost: b"),
    ];
    for (name, text) in requests {
        seeds.push(("route_request", name.into(), text.as_bytes().to_vec()));
    }
    seeds
}

/// Writes every seed under `corpus/<target>/<name>`.
pub fn write(corpus: &Path) -> std::io::Result<()> {
    for (target, name, bytes) in all() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
