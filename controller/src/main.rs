//! `fairway-controller`: parse the command line, start logging, run until SIGTERM or
//! Ctrl-C. Everything else lives in the library ([`fairway_controller::run`]).

use anyhow::Context;
use clap::Parser;
use fairway_controller::{Args, Config, logs, process};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_args(Args::parse());
    logs::init(config.log_format)?;
    fairway_controller::run(config, process::shutdown_signal())
        .await
        .context("fairway-controller failed")
}
