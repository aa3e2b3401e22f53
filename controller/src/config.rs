//! Configuration enters once, typed: clap [`Args`] (every flag with an environment
//! fallback `FAIRWAY_<FLAG>`, design.md section 5) become one [`Config`] with parsed
//! addresses and `Duration`s, passed down to the store, the gRPC and admin servers and
//! the source.
//!
//! [`Args`] derives `clap::Args` (through `clap::Parser`), so the root `fairway` binary
//! can flatten it into its own `controller` subcommand and build the same [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthConfig, DEFAULT_AUDIENCE, Policy, ServiceAccount};
use crate::crd::parse_duration;
use crate::index::DEFAULT_CLUSTER_DOMAIN;
use crate::tls::TlsConfig;

/// The Discovery gRPC address (design.md section 5).
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:18000";
/// Probes, metrics and debug (design.md section 5).
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9090";
/// [`crate::store::DEFAULT_COALESCE`] as flag text (a test keeps them equal).
pub const DEFAULT_COALESCE: &str = "20ms";
/// A coalescing window longer than this would defeat the 100 ms convergence target;
/// larger values are almost certainly a unit mistake (`20s` for `20ms`).
pub const MAX_COALESCE: Duration = Duration::from_secs(5);

/// How logs are written (the same in both binaries).
pub use fairway_process::LogFormat;

/// `fairway-controller` command line. Every flag also reads `FAIRWAY_<FLAG>`.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "fairway-controller",
    version,
    about = "Fairway's control plane: streams versioned endpoint sets to proxies"
)]
pub struct Args {
    /// Address of the Discovery gRPC server that proxies connect to.
    #[arg(long, env = "FAIRWAY_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: SocketAddr,

    /// Address of /live, /ready, /metrics and /debug/routes.
    #[arg(long, env = "FAIRWAY_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Read Route, Service and EndpointSlice YAML from this directory (and follow its
    /// changes) instead of the Kubernetes API.
    #[arg(long, env = "FAIRWAY_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// How long changes are gathered into one table version (`20ms`, `100ms`).
    #[arg(long, env = "FAIRWAY_COALESCE", default_value = DEFAULT_COALESCE, value_parser = parse_coalesce)]
    pub coalesce: Duration,

    /// Namespaces to watch (repeat the flag, or comma-separate in the variable);
    /// none: all namespaces. Ignored with --static-dir.
    #[arg(long = "namespace", env = "FAIRWAY_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Label selector limiting the Routes watched (`team=shop`). Ignored with
    /// --static-dir.
    #[arg(long, env = "FAIRWAY_SELECTOR")]
    pub selector: Option<String>,

    /// The cluster's DNS domain: `*.NS.svc.<domain>` names belong to namespace NS
    /// (only Routes there may claim them).
    #[arg(long, env = "FAIRWAY_CLUSTER_DOMAIN", default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,

    /// Serve every Service without a Route, with default settings, under its names and
    /// ClusterIPs with the port (for sidecars). Off: only Services labelled
    /// `fairway.dev/implicit: enabled` are. An explicit Route for a name overrides.
    #[arg(long, env = "FAIRWAY_IMPLICIT_SERVICES")]
    pub implicit_services: bool,

    /// Log format.
    #[arg(long, env = "FAIRWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// ServiceAccounts (`namespace/name`) whose tokens may open a Discovery stream
    /// (repeat the flag, or comma-separate in the variable).
    #[arg(
        long = "allowed-service-account",
        env = "FAIRWAY_ALLOWED_SERVICE_ACCOUNT",
        value_delimiter = ','
    )]
    pub allowed_service_accounts: Vec<ServiceAccount>,

    /// Also admit the proxy the injection webhook added to a pod, whatever the pod's
    /// ServiceAccount: its token must be bound to a pod that asks for injection and has
    /// the proxy container (needs `get` on pods; docs/security.md).
    #[arg(
        long,
        env = "FAIRWAY_ADMIT_INJECTED_SIDECARS",
        conflicts_with = "no_auth"
    )]
    pub admit_injected_sidecars: bool,

    /// The audience proxies' tokens, and the drain hooks' tokens, must be minted for.
    #[arg(long, env = "FAIRWAY_TOKEN_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Admit every Discovery stream without a token: anyone who reaches the port reads
    /// every route and pod address. For the demo, --static-dir and local tests only.
    #[arg(
        long,
        env = "FAIRWAY_NO_AUTH",
        conflicts_with = "allowed_service_accounts"
    )]
    pub no_auth: bool,

    /// PEM certificate chain for the Discovery server (re-read when the file changes).
    /// Unset: plaintext gRPC.
    #[arg(long, env = "FAIRWAY_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file (re-read with it).
    #[arg(long, env = "FAIRWAY_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA bundle: proxies must present a client certificate signed by it.
    #[arg(long, env = "FAIRWAY_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// The controller replicas, as `host:port` (a headless Service's name resolves to
    /// every replica; repeat the flag, or comma-separate): a drain hook's question is
    /// asked of each address, this replica's included, and each answers for the
    /// proxies it serves. Unset: this replica answers alone.
    #[arg(long = "drain-peer", env = "FAIRWAY_DRAIN_PEER", value_delimiter = ',')]
    pub drain_peers: Vec<String>,

    /// PEM CA that signed the replicas' certificates (needed with --drain-peer and
    /// --tls-cert-file; each certificate must carry the host of --drain-peer).
    #[arg(long, env = "FAIRWAY_DRAIN_PEER_CA_FILE", requires = "tls_cert_file")]
    pub drain_peer_ca_file: Option<PathBuf>,
    /// Serve the injection webhook (HTTPS, `POST /mutate`) on this address. Unset: off.
    #[arg(
        long,
        env = "FAIRWAY_WEBHOOK_ADDR",
        requires_all = ["webhook_cert_file", "webhook_key_file", "inject_template"]
    )]
    pub webhook_addr: Option<SocketAddr>,

    /// PEM certificate chain of the webhook (re-read when the file changes).
    #[arg(long, env = "FAIRWAY_WEBHOOK_CERT_FILE", requires = "webhook_addr")]
    pub webhook_cert_file: Option<PathBuf>,

    /// PEM private key of --webhook-cert-file.
    #[arg(long, env = "FAIRWAY_WEBHOOK_KEY_FILE", requires = "webhook_addr")]
    pub webhook_key_file: Option<PathBuf>,

    /// What the webhook adds to a pod: the template the chart renders (docs/install.md).
    #[arg(long, env = "FAIRWAY_INJECT_TEMPLATE", requires = "webhook_addr")]
    pub inject_template: Option<PathBuf>,

    /// PEM CA of the Discovery certificate, published by the webhook as ConfigMap
    /// `fairway-controller-ca` in the namespace of every pod it injects (needs a
    /// kubeconfig or in-cluster config, and `create`/`patch` on ConfigMaps).
    #[arg(long, env = "FAIRWAY_PUBLISH_CA_FILE", requires = "webhook_addr")]
    pub publish_ca_file: Option<PathBuf>,

    /// Record Warning Events on pods that ask for injection and were created without it
    /// (`NotInjected`), or whose capture step failed (`CaptureFailed`). Watches pods
    /// (needs `list`/`watch` on pods; docs/security.md) from the status writer's leader.
    #[arg(long, env = "FAIRWAY_POD_EVENTS", requires = "webhook_addr")]
    pub pod_events: bool,

    /// Namespaces the webhook's registration leaves out (repeat the flag, or
    /// comma-separate): their pods are reported as excluded, not as missed.
    #[arg(
        long = "webhook-excluded-namespace",
        env = "FAIRWAY_WEBHOOK_EXCLUDED_NAMESPACE",
        value_delimiter = ',',
        requires = "webhook_addr"
    )]
    pub webhook_excluded_namespaces: Vec<String>,
}

/// The injection webhook: where it listens, its certificate, what it adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub tls: TlsConfig,
    pub template: PathBuf,
    /// The CA to publish where pods are injected; unset: none (the user provides it).
    pub publish_ca_file: Option<PathBuf>,
    /// Record Warning Events on pods the webhook missed or whose capture failed.
    pub pod_events: bool,
    /// Namespaces the registration leaves out.
    pub excluded_namespaces: Vec<String>,
}

fn parse_coalesce(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_COALESCE {
        return Err(format!("{s:?} is longer than {MAX_COALESCE:?}"));
    }
    Ok(d)
}

/// Where the index is fed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// YAML files in a directory (`--static-dir`).
    StaticDir(PathBuf),
    /// The Kubernetes API, found by kubeconfig or in-cluster inference.
    Kubernetes {
        /// Empty: all namespaces.
        namespaces: Vec<String>,
        selector: Option<String>,
    },
}

/// Why a configuration cannot run; checked by [`Config::check`] before anything starts.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no --allowed-service-account: no proxy could subscribe. Name the proxies' \
         ServiceAccount (e.g. fairway/fairway-proxy), or pass --no-auth to admit everyone"
    )]
    NoAllowedServiceAccounts,
    #[error(
        "--static-dir has no Kubernetes API to review tokens with: pass --no-auth \
         (or run against the API)"
    )]
    TokenReviewWithoutApi,
    #[error("--token-audience is empty")]
    EmptyAudience,
    #[error(
        "--drain-peer with --tls-cert-file needs --drain-peer-ca-file: the replicas \
         speak TLS to each other"
    )]
    DrainPeersWithoutCa,
    #[error("--pod-events watches pods through the Kubernetes API: not with --static-dir")]
    PodEventsWithoutApi,
}

/// The controller's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub source: Source,
    pub coalesce: Duration,
    /// Lowercase, without a trailing dot.
    pub cluster_domain: String,
    /// Every Service served without a Route (`--implicit-services`).
    pub implicit_services: bool,
    pub log_format: LogFormat,
    /// Who may open a Discovery stream.
    pub auth: AuthConfig,
    /// The audience tokens are reviewed for: Discovery's (with [`AuthConfig::TokenReview`])
    /// and, whatever `auth` says, the drain handshake's.
    pub token_audience: String,
    /// Unset: the Discovery server speaks plaintext.
    pub tls: Option<TlsConfig>,
    /// Unset: no injection webhook.
    pub webhook: Option<WebhookConfig>,
    /// The replicas the drain handshake asks (`host:port`); empty: this one alone.
    pub drain_peers: Vec<String>,
    /// The CA of the replicas' certificates (with TLS).
    pub drain_peer_ca_file: Option<PathBuf>,
}

impl Config {
    /// `args`, typed. Empty `--namespace` / `--selector` values count as unset
    /// (templates often render empty environment variables).
    pub fn from_args(args: Args) -> Config {
        let source = match args.static_dir.filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => Source::StaticDir(dir),
            None => Source::Kubernetes {
                namespaces: args
                    .namespaces
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect(),
                selector: args.selector.filter(|s| !s.is_empty()),
            },
        };
        let token_audience = args.token_audience.clone();
        let auth = if args.no_auth {
            AuthConfig::Disabled
        } else {
            AuthConfig::TokenReview(Policy {
                audience: args.token_audience,
                allowed: args.allowed_service_accounts.into_iter().collect(),
                admit_injected: args.admit_injected_sidecars,
            })
        };
        let tls = match (args.tls_cert_file, args.tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file,
                key_file,
                client_ca_file: args.tls_client_ca_file,
            }),
            // clap requires both or neither.
            _ => None,
        };
        let webhook = match (
            args.webhook_addr,
            args.webhook_cert_file,
            args.webhook_key_file,
            args.inject_template,
        ) {
            (Some(addr), Some(cert_file), Some(key_file), Some(template)) => Some(WebhookConfig {
                addr,
                tls: TlsConfig {
                    cert_file,
                    key_file,
                    client_ca_file: None,
                },
                template,
                publish_ca_file: args.publish_ca_file.filter(|f| !f.as_os_str().is_empty()),
                pod_events: args.pod_events,
                excluded_namespaces: (args.webhook_excluded_namespaces.into_iter())
                    .filter(|n| !n.is_empty())
                    .collect(),
            }),
            // clap requires all or none.
            _ => None,
        };
        Config {
            webhook,
            grpc_addr: args.grpc_addr,
            admin_addr: args.admin_addr,
            source,
            coalesce: args.coalesce,
            cluster_domain: args
                .cluster_domain
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            implicit_services: args.implicit_services,
            log_format: args.log_format,
            auth,
            token_audience,
            tls,
            drain_peers: (args.drain_peers.into_iter())
                .filter(|p| !p.is_empty())
                .collect(),
            drain_peer_ca_file: args.drain_peer_ca_file,
        }
    }

    /// Refuses configurations that would start but serve nobody, or nobody safely.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tls.is_some() && !self.drain_peers.is_empty() && self.drain_peer_ca_file.is_none() {
            return Err(ConfigError::DrainPeersWithoutCa);
        }
        let pod_events = self.webhook.as_ref().is_some_and(|w| w.pod_events);
        if pod_events && matches!(self.source, Source::StaticDir(_)) {
            return Err(ConfigError::PodEventsWithoutApi);
        }
        let AuthConfig::TokenReview(policy) = &self.auth else {
            return Ok(());
        };
        if matches!(self.source, Source::StaticDir(_)) {
            return Err(ConfigError::TokenReviewWithoutApi);
        }
        if policy.audience.is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        if policy.allowed.is_empty() {
            return Err(ConfigError::NoAllowedServiceAccounts);
        }
        Ok(())
    }

    /// A configuration for `--static-dir dir` on the given addresses (tests, the demo).
    pub fn static_dir(
        dir: impl Into<PathBuf>,
        grpc_addr: SocketAddr,
        admin_addr: SocketAddr,
    ) -> Config {
        Config {
            webhook: None,
            grpc_addr,
            admin_addr,
            source: Source::StaticDir(dir.into()),
            coalesce: crate::store::DEFAULT_COALESCE,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            implicit_services: false,
            log_format: LogFormat::default(),
            auth: AuthConfig::Disabled,
            token_audience: DEFAULT_AUDIENCE.to_owned(),
            tls: None,
            drain_peers: Vec::new(),
            drain_peer_ca_file: None,
        }
    }
}

impl From<Args> for Config {
    fn from(args: Args) -> Config {
        Config::from_args(args)
    }
}

#[cfg(test)]
mod tests;
