//! The reconnect storm: every simulated proxy drops its stream and opens it again at
//! once, with a version of another epoch, as after a controller restart. With digests
//! (this release's proxies) each gets a rebase; without (the previous release's) a
//! snapshot. Optionally the table changes while the proxies are away.

use std::time::{Duration, Instant};

use fairway_proto::Version;
use tokio::sync::watch;

use crate::clients::Clients;
use crate::objects::{cpu_seconds, ms, percentile, rss_mib, slice, unix_nanos};
use crate::{Opts, Replica, WAIT, since};

/// What the proxies' hellos carry in a storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Their table's digest, as this release's proxies: a rebase each.
    Digests,
    /// No digest, as the previous release's proxies: a snapshot each.
    Snapshots,
}

/// Every proxy reconnects at once (with `--storm-changes`, after the table changed
/// while they were away); measures from the reconnect until all are back on the newest
/// version, sampling the controller's RSS meanwhile.
pub async fn storm(
    opts: &Opts,
    replicas: &[Replica],
    clients: &mut Clients,
    mode: Mode,
) -> Result<(), Box<dyn std::error::Error>> {
    let word = match mode {
        Mode::Digests => "digests",
        Mode::Snapshots => "snapshots",
    };
    let changes = if mode == Mode::Digests {
        opts.storm_changes
    } else {
        0
    };
    if changes > 0 {
        clients.command("drop").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before: Vec<Version> = replicas.iter().map(|r| r.store.latest().version).collect();
        let per = opts.endpoints_per_route;
        for k in 0..changes {
            let flipped = slice((k * 7919 + 1) % opts.routes, per, Some(1));
            for r in replicas {
                r.handle.update(|idx| idx.apply_slice(&flipped));
            }
        }
        for (r, before) in replicas.iter().zip(&before) {
            let mut watch = r.store.subscribe();
            tokio::time::timeout(WAIT, watch.wait_for(|p| p.version > *before)).await??;
        }
        tokio::time::sleep(Duration::from_millis(opts.coalesce_ms * 3)).await;
    }
    let versions: Vec<Version> = replicas.iter().map(|r| r.store.latest().version).collect();
    let (cpu, clients_cpu) = (cpu_seconds(), clients.cpu().await?.0);
    let rss_before = rss_mib();
    let (stop, stopped) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while !*stopped.borrow() {
            peak = peak.max(rss_mib());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    let (t0, wall0) = (Instant::now(), unix_nanos());
    if changes > 0 {
        clients.command(&format!("reconnect {word}")).await?;
    } else {
        clients.command(&format!("storm {word}")).await?;
    }
    let mut bytes = 0;
    let arrivals = clients
        .wait_all(&versions, opts.proxies, &['s', 'b'], &mut bytes)
        .await?;
    let took = t0.elapsed();
    let _ = stop.send(true);
    let peak = sampler.await?;
    let rebases = arrivals.iter().filter(|(_, kind)| *kind == 'b').count();
    let mut back: Vec<Duration> = arrivals.iter().map(|(at, _)| since(wall0, *at)).collect();
    back.sort();
    println!(
        "| reconnect storm ({word}, {changes} endpoints changed while away): {} proxies, {rebases} rebases and {} snapshots ({:.1} MiB in all), all back on the newest version | {} (p50 {}) |",
        opts.proxies,
        arrivals.len() - rebases,
        bytes as f64 / 1048576.0,
        ms(took),
        ms(percentile(&back, 0.5))
    );
    println!(
        "| reconnect storm ({word}): controller RSS before, peak sampled every 20 ms / CPU controller, proxies | {rss_before:.0} MiB, {peak:.0} MiB / {:.1} s, {:.1} s |",
        cpu_seconds() - cpu,
        clients.cpu().await?.0 - clients_cpu
    );
    let digest = *clients
        .digest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if mode == Mode::Digests
        && let Some(seconds) = digest
    {
        println!(
            "| a proxy's table digest (once per proxy, on its own node; in the clients' process once per version) | {} |",
            ms(Duration::from_secs_f64(seconds))
        );
    }
    Ok(())
}
