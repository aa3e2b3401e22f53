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

    /// Publish this PEM CA (the controller's) as ConfigMap `fairway-controller-ca` in the
    /// namespace of every pod the webhook injects, for its hook and proxy to verify the
    /// controller with. Needs a Kubernetes API (kubeconfig or in-cluster).
    #[arg(long, env = "FAIRWAY_PUBLISH_CA_FILE", requires = "webhook_addr")]
    pub publish_ca_file: Option<PathBuf>,
}

/// The injection webhook: where it listens, its certificate, what it adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub tls: TlsConfig,
    pub template: PathBuf,
    /// The CA to publish in injected pods' namespaces (`inject::ca`), if any.
    pub publish_ca: Option<PathBuf>,
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
                publish_ca: args.publish_ca_file,
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
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(argv: &[&str]) -> Config {
        let args =
            Args::try_parse_from(std::iter::once("fairway-controller").chain(argv.iter().copied()))
                .expect("valid command line");
        Config::from_args(args)
    }

    #[test]
    fn defaults_match_the_design_contract() {
        let c = parse(&[]);
        assert_eq!(c.grpc_addr.to_string(), "0.0.0.0:18000");
        assert_eq!(c.admin_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(
            c.coalesce,
            crate::store::DEFAULT_COALESCE,
            "flag text and constant agree"
        );
        assert_eq!(
            c.source,
            Source::Kubernetes {
                namespaces: vec![],
                selector: None
            }
        );
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert!(
            !c.implicit_services,
            "Services need a Route unless asked otherwise"
        );
        assert_eq!(
            c.auth,
            AuthConfig::TokenReview(Policy {
                audience: "fairway".into(),
                allowed: Default::default()
            }),
            "authentication is on unless switched off"
        );
        assert_eq!(c.tls, None);
        assert_eq!(
            c.check(),
            Err(ConfigError::NoAllowedServiceAccounts),
            "with nobody allowed the controller refuses to start"
        );
    }

    #[test]
    fn auth_and_tls_flags_parse() {
        let c = parse(&[
            "--allowed-service-account=fairway/fairway-proxy",
            "--allowed-service-account=edge/gw",
            "--token-audience=mesh",
            "--tls-cert-file=/tls/tls.crt",
            "--tls-key-file=/tls/tls.key",
            "--tls-client-ca-file=/tls/ca.crt",
        ]);
        let AuthConfig::TokenReview(policy) = &c.auth else {
            panic!("token review expected: {:?}", c.auth)
        };
        assert_eq!(policy.audience, "mesh");
        let allowed: Vec<String> = policy.allowed.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["edge/gw", "fairway/fairway-proxy"]);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                cert_file: "/tls/tls.crt".into(),
                key_file: "/tls/tls.key".into(),
                client_ca_file: Some("/tls/ca.crt".into()),
            })
        );

        let c = parse(&["--no-auth", "--static-dir=/srv"]);
        assert_eq!(c.auth, AuthConfig::Disabled);
        assert_eq!(c.check(), Ok(()));
        let c = parse(&["--static-dir=/srv", "--allowed-service-account=a/b"]);
        assert_eq!(c.check(), Err(ConfigError::TokenReviewWithoutApi));

        let parse =
            |argv: &[&str]| Args::try_parse_from(std::iter::once("x").chain(argv.iter().copied()));
        assert!(
            parse(&["--tls-cert-file=/a"]).is_err(),
            "a certificate needs its key"
        );
        assert!(
            parse(&["--no-auth", "--allowed-service-account=a/b"]).is_err(),
            "contradiction"
        );
        assert!(parse(&["--allowed-service-account=nobody"]).is_err());
    }

    #[test]
    fn flags_parse_into_typed_values() {
        let c = parse(&[
            "--grpc-addr=127.0.0.1:1",
            "--static-dir=/srv/routes",
            "--coalesce=100ms",
            "--log-format=text",
            "--cluster-domain=Corp.Example.",
        ]);
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:1");
        assert_eq!(c.source, Source::StaticDir("/srv/routes".into()));
        assert_eq!(c.coalesce, Duration::from_millis(100));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.cluster_domain, "corp.example", "compared as hosts are");

        let c = parse(&["--namespace=a", "--namespace=b", "--selector=team=shop"]);
        assert_eq!(
            c.source,
            Source::Kubernetes {
                namespaces: vec!["a".into(), "b".into()],
                selector: Some("team=shop".into())
            }
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        let parse =
            |argv: &[&str]| Args::try_parse_from(std::iter::once("x").chain(argv.iter().copied()));
        assert!(
            parse(&["--coalesce=20"]).is_err(),
            "a duration needs a unit"
        );
        assert!(
            parse(&["--coalesce=20s"]).is_err(),
            "longer than the maximum"
        );
        assert!(parse(&["--grpc-addr=nowhere"]).is_err());
    }
}
