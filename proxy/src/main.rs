//! `fairway-proxy`: parse the command line, start logging, run until SIGTERM or Ctrl-C.
//! Everything else lives in the library ([`fairway_proxy::run`]).

use anyhow::Context;
use clap::Parser;
use fairway_proxy::{Args, Config, logs, process};

/// Requests allocate many small, short-lived buffers (header maps, frames): mimalloc's
/// per-thread free lists serve them faster than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fair, request-level load balancing to Kubernetes pods: the data plane.
#[derive(Debug, Parser)]
#[command(name = "fairway-proxy", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_args(Cli::parse().args).context("invalid configuration")?;
    logs::init(config.log_format)?;
    fairway_proxy::run(config, process::shutdown_signal())
        .await
        .context("fairway-proxy failed")
}
