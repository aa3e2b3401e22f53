//! `fairway-controller`: parse the command line, start logging, run until SIGTERM or
//! Ctrl-C. Everything else lives in the library ([`fairway_controller::run`]).

use anyhow::Context;
use clap::Parser;
use fairway_controller::{Args, Config, logs, process};

/// Watch events and versions allocate many small, short-lived values (slices' strings,
/// endpoint maps, protobuf messages): mimalloc's per-thread free lists serve them
/// faster than glibc's arenas, as in the proxy.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_args(Args::parse());
    logs::init(config.log_format)?;
    fairway_controller::run(config, process::shutdown_signal())
        .await
        .context("fairway-controller failed")
}
