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

    /// Runtime worker threads. 1 runs the proxy on one thread with tokio's
    /// current-thread scheduler (no work-stealing: the cheapest per request, for a
    /// proxy given one core); 0 means one worker per CPU.
    #[arg(long, env = "FAIRWAY_WORKERS", default_value_t = 0)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_args(cli.args).context("invalid configuration")?;
    let mut runtime = match cli.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                builder.worker_threads(n);
            }
            builder
        }
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        logs::init(config.log_format)?;
        fairway_proxy::run(config, process::shutdown_signal())
            .await
            .context("fairway-proxy failed")
    })
}
