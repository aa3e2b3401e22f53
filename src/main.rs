//! `fairway`: the user's entry point. Subcommands run the controller and the proxy from
//! their libraries in this one binary, so `cargo run` (which builds only this package)
//! never depends on another binary having been built.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fairway_controller::inject::template;

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
    /// A pod's preStop hook: wait until every proxy stopped sending this pod new requests
    /// (the drain handshake; exit 0), or say why not on stderr (non-zero).
    WaitDrained(fairway::wait_drained::WaitArgs),
    /// Copy this binary with its loader and libraries into DIR (an init container's
    /// emptyDir) and print the preStop command that runs `wait-drained` from there.
    CopyHook {
        /// The directory to copy into (it must exist).
        dir: std::path::PathBuf,
    },
    /// Add the proxy (and the drain hook) to pods annotated `fairway.dev/inject: enabled`
    /// (the hook alone for `fairway.dev/drain: enabled`), as the webhook would: YAML of
    /// any objects with pod templates on stdin, the same YAML injected on stdout.
    /// Offline: no cluster, no kubeconfig. Objects that ask for nothing come back as
    /// they were.
    Inject(InjectArgs),
}

#[derive(Debug, clap::Args)]
struct InjectArgs {
    /// The proxy image.
    #[arg(long, default_value = template::DEFAULT_IMAGE)]
    image: String,
    /// The capture init container's image (docker/capture.Dockerfile).
    #[arg(long, default_value = template::DEFAULT_CAPTURE_IMAGE)]
    capture_image: String,
    /// The drain hook's image, whose `fairway copy-hook` hands `wait-drained` to the
    /// app (docker/fairway.Dockerfile).
    #[arg(long, default_value = template::DEFAULT_HOOK_IMAGE)]
    hook_image: String,
    /// The controller's Discovery address.
    #[arg(long, default_value = template::DEFAULT_CONTROLLER)]
    controller: String,
    /// The cluster's Service ranges, whose connections the capture step sends to the
    /// proxy (comma-separated; kubeadm's default unless said).
    #[arg(long, value_delimiter = ',', default_value = template::DEFAULT_SERVICE_CIDR)]
    service_cidr: Vec<String>,
    /// The injection template the chart renders (ConfigMap `<release>-inject`, key
    /// `template.yaml`), instead of the built-in one from the flags above.
    #[arg(long)]
    template: Option<std::path::PathBuf>,
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
        Command::Inject(args) => inject(args),
        Command::CopyHook { dir } => {
            let hook = fairway::copy_hook::copy(&dir).context("fairway copy-hook failed")?;
            println!("{}", hook.command().join(" "));
            Ok(())
        }
        Command::WaitDrained(args) => {
            fairway_controller::process::install_crypto_provider();
            match fairway::wait_drained::run(&args).await {
                Ok(report) => {
                    println!("fairway wait-drained: {report}");
                    Ok(())
                }
                // The kubelet puts this line in the FailedPreStopHook event.
                Err(reason) => {
                    eprintln!("fairway wait-drained: {reason}");
                    std::process::exit(1)
                }
            }
        }
    }
}

fn inject(args: InjectArgs) -> anyhow::Result<()> {
    use fairway_controller::inject::template::Defaults;
    use fairway_controller::inject::{Template, document};
    use std::io::{Read as _, Write as _};
    let template = match &args.template {
        Some(path) => Template::read(path)?,
        None => Template::default_for(&Defaults {
            image: args.image,
            capture_image: args.capture_image,
            hook_image: args.hook_image,
            controller: args.controller,
            service_cidrs: args.service_cidr,
        }),
    };
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading YAML from stdin")?;
    let (output, reports) = document::inject_yaml(&input, &template)?;
    std::io::stdout()
        .write_all(output.as_bytes())
        .context("writing YAML to stdout")?;
    for report in reports {
        eprintln!(
            "fairway inject: {}: added {}",
            report.object,
            report.injected.added.join(", ")
        );
        for warning in report.injected.warnings {
            eprintln!("fairway inject: {}: warning: {warning}", report.object);
        }
    }
    Ok(())
}
