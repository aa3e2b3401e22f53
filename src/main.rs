//! `fairway`: the user's entry point. Subcommands run the controller and the proxy from
//! their libraries in this one binary, so `cargo run` (which builds only this package)
//! never depends on another binary having been built.

use clap::{Parser, Subcommand};

/// Fair, fast, request-level load balancing to Kubernetes pods.
#[derive(Debug, Parser)]
#[command(name = "fairway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Route CustomResourceDefinition as YAML (`fairway crd | kubectl apply -f -`).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", fairway_controller::crd::crd_yaml()?);
            Ok(())
        }
    }
}
