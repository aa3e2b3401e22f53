//! `kubectl fairway` (the `kubectl-fairway` binary): what the controller sees, from the
//! user's own kubeconfig, through the apiserver's service proxy (no port-forward):
//! `status` (proxies, applied versions, lag), `routes` (hosts, conditions, endpoints),
//! `top ROUTE` (per-pod share, live), `check` (what is wrong and what to do).
//!
//! Where to start: [`run`]. `view` is the `/api/v1/status` document as read here,
//! `render` turns it into each command's text (pure, tested with a document); fetching
//! is this module's only I/O: a GET on
//! `/api/v1/namespaces/NS/services/SERVICE:PORT/proxy/api/v1/status`, which needs `get`
//! on `services/proxy` in the controller's namespace.

pub mod render;
pub mod view;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The chart's defaults: release `fairway` in namespace `fairway`, admin port `metrics`.
pub const DEFAULT_NAMESPACE: &str = "fairway";
pub const DEFAULT_SERVICE: &str = "fairway-controller";
pub const DEFAULT_PORT: &str = "metrics";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-fairway",
    about = "Fairway from kubectl: proxies, Routes, live shares, diagnosis"
)]
pub struct Args {
    /// The controller's namespace.
    #[arg(short = 'n', long, env = "FAIRWAY_NAMESPACE", default_value = DEFAULT_NAMESPACE, global = true)]
    pub namespace: String,
    /// The controller's Service.
    #[arg(long, env = "FAIRWAY_SERVICE", default_value = DEFAULT_SERVICE, global = true)]
    pub service: String,
    /// The Service's admin port, by name or number.
    #[arg(long, env = "FAIRWAY_PORT", default_value = DEFAULT_PORT, global = true)]
    pub port: String,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every proxy: node, applied version, lag, connected since.
    Status,
    /// Every Route: hosts, conditions, endpoints ready, request rate, skew.
    Routes,
    /// Per-pod share of ROUTE (namespace/name) against its fair share, refreshed live.
    Top {
        route: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Stop after this many refreshes (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// What is wrong and what to do; exits 1 when it finds anything.
    Check,
}

/// Why a command failed, by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("reading the kubeconfig failed")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("no usable Kubernetes configuration (kubeconfig or in-cluster)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client failed")]
    Client(#[source] kube::Error),
    #[error("asking the controller through the apiserver ({path}) failed")]
    Fetch {
        path: String,
        #[source]
        source: kube::Error,
    },
    #[error("the controller's answer is not a status document")]
    Decode(#[source] serde_json::Error),
    #[error("no Route {0} (namespace/name); `kubectl fairway routes` lists them")]
    UnknownRoute(String),
    #[error("writing the output failed")]
    Write(#[source] std::io::Error),
}

async fn client(args: &Args) -> Result<kube::Client, PluginError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(PluginError::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(PluginError::Kubeconfig)?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(PluginError::Kubeconfig)?,
        None => kube::Config::infer().await.map_err(PluginError::Infer)?,
    };
    kube::Client::try_from(config).map_err(PluginError::Client)
}

async fn fetch(client: &kube::Client, args: &Args) -> Result<view::Status, PluginError> {
    let path = format!(
        "/api/v1/namespaces/{}/services/{}:{}/proxy/api/v1/status",
        args.namespace, args.service, args.port
    );
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| PluginError::Fetch {
            path: path.clone(),
            source: kube::Error::HttpError(e),
        })?;
    let text = client
        .request_text(request)
        .await
        .map_err(|source| PluginError::Fetch { path, source })?;
    serde_json::from_str(&text).map_err(PluginError::Decode)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn print(text: &str) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(PluginError::Write)
}

/// Runs one command; the exit code is `check`'s verdict (1 when it found problems).
pub async fn run(args: Args) -> Result<ExitCode, PluginError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&args).await?;
    match &args.command {
        Command::Status => print(&render::status(&fetch(&client, &args).await?, now_ms()))?,
        Command::Routes => print(&render::routes(&fetch(&client, &args).await?))?,
        Command::Check => {
            let found = render::check(&fetch(&client, &args).await?);
            print(&render::findings(&found))?;
            if !found.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Top {
            route,
            interval,
            count,
        } => {
            let mut shown = 0;
            loop {
                let doc = fetch(&client, &args).await?;
                let text = render::top(&doc, route)
                    .ok_or_else(|| PluginError::UnknownRoute(route.clone()))?;
                // Clear and redraw when on a terminal; plain frames when piped.
                let clear = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    "\x1b[H\x1b[2J"
                } else {
                    ""
                };
                print(&format!("{clear}{text}\n"))?;
                shown += 1;
                if *count != 0 && shown >= *count {
                    break;
                }
                tokio::time::sleep(Duration::from_secs((*interval).max(1))).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
