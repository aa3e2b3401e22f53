//! `fairway-capture`: the sidecar's init step. Parses the command line and installs,
//! removes or prints the pod's capture rules ([`fairway_proxy::capture`]). Runs once
//! per pod start, as root with `NET_ADMIN`, before the proxy and the app.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fairway_proxy::capture::{self, CaptureConfig, rules};

/// Install the pod's outbound capture rules (nftables) for the Fairway sidecar.
#[derive(Debug, Parser)]
#[command(name = "fairway-capture", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// The nft program that applies the rules.
    #[arg(
        long,
        env = "FAIRWAY_CAPTURE_NFT",
        default_value = "nft",
        global = true
    )]
    nft: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the capture rules, replacing any installed before (one transaction).
    Install(capture::Args),
    /// Remove the capture rules; nothing happens when none are installed.
    Remove,
    /// Print the rules `install` would apply, and change nothing.
    Print(capture::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (ruleset, apply) = match cli.command {
        Command::Remove => (rules::remove(), true),
        Command::Install(args) => match CaptureConfig::from_args(args) {
            Ok(config) => (rules::install(&config), true),
            Err(error) => return fail("invalid configuration", &error),
        },
        Command::Print(args) => match CaptureConfig::from_args(args) {
            Ok(config) => (rules::install(&config), false),
            Err(error) => return fail("invalid configuration", &error),
        },
    };
    if !apply {
        print!("{ruleset}");
        return ExitCode::SUCCESS;
    }
    match capture::apply(&cli.nft, &ruleset) {
        // The rules in the init container's log: what this pod's traffic goes through.
        Ok(()) => {
            eprintln!("fairway-capture: applied:\n{ruleset}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(
            "applying the capture rules failed; nothing was changed",
            &error,
        ),
    }
}

/// Prints `error` with its causes, for the init container's log, and fails.
fn fail(what: &str, error: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("fairway-capture: {what}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}
