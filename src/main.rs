//! `fairway`: the user's entry point. Subcommands run the controller and the proxy from
//! their libraries in this one binary, so `cargo run` (which builds only this package)
//! never depends on another binary having been built.

use anyhow::Context;
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
    /// The whole system on this machine, no cluster: pods on 127.0.0.x, the controller
    /// on a directory of YAML, a proxy, a keep-alive load and a 1 -> N scale-up,
    /// compared with a per-connection (kube-proxy style) balancer.
    Demo(fairway::demo::DemoArgs),
    /// Run the controller (same flags as `fairway-controller`).
    Controller(fairway_controller::Args),
    /// Run the proxy (same flags as `fairway-proxy`).
    Proxy(fairway_proxy::Args),
    /// Print the Route CustomResourceDefinition as YAML (`fairway crd | kubectl apply -f -`).
    Crd,
    /// Add Fairway's sidecar (capture init container and proxy) to every pod annotated
    /// `fairway.dev/inject: enabled` in the YAML on stdin; offline, output on stdout.
    Inject(fairway::inject::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => fairway::demo::run(args)
            .await
            .map(drop)
            .context("demo failed"),
        Command::Controller(args) => {
            let config = fairway_controller::Config::from_args(args);
            fairway_controller::logs::init(config.log_format)?;
            fairway_controller::run(config, fairway_controller::process::shutdown_signal())
                .await
                .context("fairway controller failed")
        }
        Command::Proxy(args) => {
            let config = fairway_proxy::Config::from_args(args).context("invalid configuration")?;
            fairway_proxy::logs::init(config.log_format)?;
            fairway_proxy::run(config, fairway_proxy::process::shutdown_signal())
                .await
                .context("fairway proxy failed")
        }
        Command::Crd => {
            print!("{}", fairway_controller::crd::crd_yaml()?);
            Ok(())
        }
        Command::Inject(args) => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
                .context("reading YAML from stdin")?;
            let (out, warnings) = fairway::inject::inject_documents(&input, &args.into())
                .context("fairway inject")?;
            for warning in warnings {
                eprintln!("fairway inject: warning: {warning}");
            }
            print!("{out}");
            Ok(())
        }
    }
}
