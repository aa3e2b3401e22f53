//! Configuration enters once, typed: clap [`Args`] (every flag with an environment
//! fallback `FAIRWAY_<FLAG>`, design.md 5) become one [`Config`] with `Duration`s and
//! parsed addresses, passed down to discovery, admin and the server.
//!
//! [`Args`] derives `clap::Args`, so the root `fairway` binary can flatten it into its
//! own subcommand and build the same [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use crate::accept::ServerConfig;
use crate::accept::captured::{self, OutboundConfig};
use crate::trace::TraceConfig;

/// The controller's in-cluster gRPC address (the chart always passes `--controller`).
/// TLS by default: the stream carries every route and pod address, and our token.
pub const DEFAULT_CONTROLLER: &str = "https://fairway-controller.fairway.svc:18000";
/// One port for HTTP/1.1 and HTTP/2 with prior knowledge.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4140";
/// Loopback by default: admin exposes table internals; the chart opens it for probes.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:4191";
/// The server's limits ([`crate::accept`] names and explains them); durations are
/// spelled as flag text here, checked against the server's values in a test.
pub use crate::accept::{DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS};
/// [`crate::accept::DEFAULT_HEADER_READ_TIMEOUT`] as flag text.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// [`crate::accept::DEFAULT_SHUTDOWN_GRACE`] as flag text: under Kubernetes' default
/// 30 s `terminationGracePeriodSeconds`, so the drain ends before SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "25s";
/// One request in a hundred starts a trace: enough to see every Route at a few requests
/// a second, little enough to cost nothing at thousands.
pub const DEFAULT_TRACE_SAMPLE_RATIO: f64 = 0.01;

/// How logs are written (the same in both binaries).
pub use fairway_process::LogFormat;

/// `fairway-proxy` command line. Every flag also reads `FAIRWAY_<FLAG>`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The controller's Discovery gRPC address: https://, or http:// with
    /// --controller-plaintext.
    #[arg(long, env = "FAIRWAY_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,

    /// Allow an http:// --controller: routes, pod addresses and the token travel
    /// unencrypted. For local runs and tests only.
    #[arg(long, env = "FAIRWAY_CONTROLLER_PLAINTEXT")]
    pub controller_plaintext: bool,

    /// PEM CA bundle that signed the controller's certificate (required for https://).
    /// Re-read on every reconnect.
    #[arg(long, env = "FAIRWAY_CONTROLLER_CA_FILE")]
    pub controller_ca_file: Option<PathBuf>,

    /// PEM client certificate for the controller, if it requires one (with
    /// --controller-key-file). Re-read on every reconnect.
    #[arg(long, env = "FAIRWAY_CONTROLLER_CERT_FILE")]
    pub controller_cert_file: Option<PathBuf>,

    /// PEM private key of --controller-cert-file.
    #[arg(long, env = "FAIRWAY_CONTROLLER_KEY_FILE")]
    pub controller_key_file: Option<PathBuf>,

    /// The name the controller's certificate must carry. Unset: the host of
    /// --controller.
    #[arg(long, env = "FAIRWAY_CONTROLLER_SERVER_NAME")]
    pub controller_server_name: Option<String>,

    /// File holding this proxy's ServiceAccount token (a projected volume, audience
    /// `fairway`), sent as `authorization: Bearer`. Re-read on every reconnect, so
    /// rotation needs no restart. Unset: no token (a controller with --no-auth).
    #[arg(long, env = "FAIRWAY_CONTROLLER_TOKEN_FILE")]
    pub controller_token_file: Option<PathBuf>,

    /// Address serving proxied traffic (HTTP/1.1 and h2c prior knowledge). Repeat it (or
    /// separate with commas) to serve on several, e.g. `127.0.0.1:4140` and `[::1]:4140`
    /// for a sidecar that only its own pod may use.
    #[arg(
        long,
        env = "FAIRWAY_LISTEN",
        default_value = DEFAULT_LISTEN,
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,

    /// Sidecar capture: address(es) the pod's capture rules redirect outbound TCP to
    /// (`fairway-capture --to-port`), e.g. `127.0.0.1:4143` and `[::1]:4143` (IPv6
    /// connections are redirected to `::1`; skipped with a warning in a pod without
    /// IPv6). Repeat it or separate with commas. Each connection goes on to the address
    /// its client dialled. Unset: no outbound listener (the DaemonSet, explicit
    /// sidecars).
    #[arg(long, env = "FAIRWAY_OUTBOUND_LISTEN", value_delimiter = ',')]
    pub outbound_listen: Vec<SocketAddr>,

    /// Address of /live, /ready, /metrics and /debug/routes.
    #[arg(long, env = "FAIRWAY_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// This proxy's zone, for topology hints. Unset: the controller looks it up from
    /// the Node.
    #[arg(long, env = "FAIRWAY_ZONE")]
    pub zone: Option<String>,

    /// A sidecar's own namespace (the downward API's `metadata.namespace`): a bare host
    /// such as `orders` resolves to `orders.NAMESPACE` first, as cluster DNS resolves it
    /// from the pod. Unset (the DaemonSet): bare hosts only as Routes list them.
    #[arg(long, env = "FAIRWAY_NAMESPACE")]
    pub namespace: Option<String>,

    /// The Kubernetes Node this proxy runs on.
    #[arg(long, env = "FAIRWAY_NODE")]
    pub node: Option<String>,

    /// A unique id for this proxy (the pod name). Unset: a random id.
    #[arg(long, env = "FAIRWAY_ID")]
    pub id: Option<String>,

    /// Log format.
    #[arg(long, env = "FAIRWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Label metrics per endpoint (pod ip:port). `false` keeps cardinality per route.
    #[arg(
        long,
        env = "FAIRWAY_ENDPOINT_LABELS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 1,
    )]
    pub endpoint_labels: bool,

    /// Downstream connections held at once.
    #[arg(long, env = "FAIRWAY_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Time allowed to receive a request's headers (`250ms`, `10s`, `1m`).
    #[arg(long, env = "FAIRWAY_HEADER_READ_TIMEOUT", default_value = DEFAULT_HEADER_READ_TIMEOUT, value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest request header block, in bytes (`431` beyond).
    #[arg(long, env = "FAIRWAY_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,

    /// Most request header fields (`431` beyond).
    #[arg(long, env = "FAIRWAY_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,

    /// How long in-flight requests may finish after SIGTERM (`30s`).
    #[arg(long, env = "FAIRWAY_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// After SIGTERM, keep accepting and serving for this long first, closing each
    /// client connection after its next response (HTTP/1.1 `Connection: close`, HTTP/2
    /// `GOAWAY`), so keep-alive clients move to the proxy that replaces this one while
    /// the node's Service catches up. Part of `--shutdown-grace`. `0s`: stop at once.
    #[arg(long, env = "FAIRWAY_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// OTLP/gRPC collector to export request traces to, e.g.
    /// `http://otel-collector.monitoring:4317`. Unset: no tracing (the default).
    #[arg(long, env = "FAIRWAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Share of requests that start a trace when the client sent no sampled
    /// `traceparent` (0 to 1). A client's sampled trace is always followed.
    #[arg(long, env = "FAIRWAY_TRACE_SAMPLE_RATIO", default_value_t = DEFAULT_TRACE_SAMPLE_RATIO)]
    pub trace_sample_ratio: f64,
}

/// Why the command line could not become a [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--controller {value:?} is not a URI: {source}")]
    ControllerUri {
        value: String,
        source: http::uri::InvalidUri,
    },
    #[error("--controller {0:?} needs a scheme and host, e.g. https://fairway-controller:18000")]
    ControllerIncomplete(String),
    #[error(
        "--controller {0:?} is plaintext: every route, pod address and the token would \
         travel unencrypted. Use https:// with --controller-ca-file, or pass \
         --controller-plaintext to accept that"
    )]
    Plaintext(String),
    #[error("--controller-plaintext contradicts the https:// URL {0:?}")]
    PlaintextHttps(String),
    #[error(
        "--controller {0:?}: the scheme must be https:// (or http:// with --controller-plaintext)"
    )]
    ControllerScheme(String),
    #[error(
        "--controller {0:?} is https:// but --controller-ca-file is unset: nothing to verify the controller with"
    )]
    NoControllerCa(String),
    #[error("--{0} is for https:// controllers; --controller is plaintext")]
    TlsFlagWithPlaintext(&'static str),
    #[error("--controller-cert-file and --controller-key-file go together")]
    HalfIdentity,
    #[error("--{0} must be greater than 0")]
    Zero(&'static str),
    #[error("--listen needs at least one address")]
    NoListen,
    #[error("--listen {0} is given twice")]
    ListenTwice(SocketAddr),
    #[error("--outbound-listen {0} is also a --listen or --admin-addr address, or given twice")]
    OutboundTaken(SocketAddr),
    #[error("--otlp-endpoint {0:?} is not an http:// or https:// URL with a host")]
    OtlpEndpoint(String),
    #[error("--trace-sample-ratio {0} is not between 0 and 1")]
    SampleRatio(f64),
}

/// How the proxy verifies the controller, and proves itself to it. Files, not their
/// contents: they are re-read on every reconnect (rotated Secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerTls {
    pub ca_file: PathBuf,
    /// Client certificate and key, for a controller that requires them.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Overrides the URL's host as the name to verify.
    pub server_name: Option<String>,
}

/// The proxy's whole configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub controller: Uri,
    /// `None`: plaintext (only with `--controller-plaintext`).
    pub controller_tls: Option<ControllerTls>,
    pub controller_token_file: Option<PathBuf>,
    /// At least one, none twice.
    pub listen: Vec<SocketAddr>,
    /// `None`: no outbound (captured) listener.
    pub outbound: Option<OutboundConfig>,
    pub admin_addr: SocketAddr,
    pub zone: Option<String>,
    /// A sidecar's namespace; `None`: not a sidecar, or not told.
    pub namespace: Option<String>,
    pub node: String,
    /// Unique per proxy: `--id`, or generated once at start.
    pub id: String,
    pub log_format: LogFormat,
    pub endpoint_labels: bool,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    /// `None`: no tracing.
    pub trace: Option<TraceConfig>,
}

impl Config {
    /// Validates `args`. Empty `--zone`/`--node`/`--id` count as unset (env vars set to
    /// "" by templates are common).
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let controller: Uri =
            args.controller
                .parse()
                .map_err(|source| ConfigError::ControllerUri {
                    value: args.controller.clone(),
                    source,
                })?;
        if controller.scheme().is_none() || controller.authority().is_none() {
            return Err(ConfigError::ControllerIncomplete(args.controller));
        }
        let path = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let controller_tls = controller_tls(
            &args.controller,
            controller.scheme_str(),
            args.controller_plaintext,
            path(args.controller_ca_file),
            path(args.controller_cert_file),
            path(args.controller_key_file),
            args.controller_server_name.filter(|s| !s.is_empty()),
        )?;
        for (flag, value) in [
            ("max-connections", args.max_connections),
            ("max-header-bytes", args.max_header_bytes),
            ("max-headers", args.max_headers),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        check_listen(&args.listen)?;
        let outbound = outbound_config(
            &args.outbound_listen,
            &args.listen,
            args.admin_addr,
            args.max_connections,
        )?;
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let id = non_empty(args.id).unwrap_or_else(generated_id);
        let trace = trace_config(non_empty(args.otlp_endpoint), args.trace_sample_ratio, &id)?;
        Ok(Config {
            controller,
            controller_tls,
            controller_token_file: path(args.controller_token_file),
            listen: args.listen,
            outbound,
            admin_addr: args.admin_addr,
            zone: non_empty(args.zone),
            namespace: non_empty(args.namespace).map(|ns| ns.to_ascii_lowercase()),
            node: non_empty(args.node).unwrap_or_default(),
            id,
            log_format: args.log_format,
            endpoint_labels: args.endpoint_labels,
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            max_header_bytes: args.max_header_bytes,
            max_headers: args.max_headers,
            shutdown_grace: args.shutdown_grace,
            drain_delay: args.drain_delay,
            trace,
        })
    }
}

/// Tracing settings when `--otlp-endpoint` is set; the ratio is checked either way.
fn trace_config(
    endpoint: Option<String>,
    ratio: f64,
    id: &str,
) -> Result<Option<TraceConfig>, ConfigError> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ConfigError::SampleRatio(ratio));
    }
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| ConfigError::OtlpEndpoint(endpoint.clone()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(ConfigError::OtlpEndpoint(endpoint));
    }
    Ok(Some(TraceConfig {
        endpoint: uri,
        // Whole parts per million: 0.01 is 10,000.
        sample_per_million: (ratio * 1e6).round() as u32,
        service: "fairway-proxy".to_owned(),
        id: id.to_owned(),
    }))
}

/// The captured listener's settings when `--outbound-listen` is set, on addresses of
/// their own.
fn outbound_config(
    outbound_listen: &[SocketAddr],
    listen: &[SocketAddr],
    admin_addr: SocketAddr,
    max_connections: usize,
) -> Result<Option<OutboundConfig>, ConfigError> {
    if outbound_listen.is_empty() {
        return Ok(None);
    }
    for (i, &addr) in outbound_listen.iter().enumerate() {
        if listen.contains(&addr) || admin_addr == addr || outbound_listen[..i].contains(&addr) {
            return Err(ConfigError::OutboundTaken(addr));
        }
    }
    Ok(Some(OutboundConfig {
        listen: outbound_listen.to_vec(),
        detect_timeout: captured::DEFAULT_DETECT_TIMEOUT,
        connect_timeout: captured::DEFAULT_CONNECT_TIMEOUT,
        max_connections,
    }))
}

/// One address or more, none twice (the second bind would fail less clearly).
fn check_listen(listen: &[SocketAddr]) -> Result<(), ConfigError> {
    if listen.is_empty() {
        return Err(ConfigError::NoListen);
    }
    for (i, addr) in listen.iter().enumerate() {
        if listen[..i].contains(addr) {
            return Err(ConfigError::ListenTwice(*addr));
        }
    }
    Ok(())
}

/// TLS settings for the controller URL, or why they do not fit it.
fn controller_tls(
    url: &str,
    scheme: Option<&str>,
    plaintext: bool,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
) -> Result<Option<ControllerTls>, ConfigError> {
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(ConfigError::HalfIdentity),
    };
    match scheme {
        Some("https") if plaintext => Err(ConfigError::PlaintextHttps(url.to_owned())),
        Some("https") => Ok(Some(ControllerTls {
            ca_file: ca_file.ok_or_else(|| ConfigError::NoControllerCa(url.to_owned()))?,
            identity,
            server_name,
        })),
        Some("http") if !plaintext => Err(ConfigError::Plaintext(url.to_owned())),
        Some("http") => {
            let stray = [
                ("controller-ca-file", ca_file.is_some()),
                ("controller-cert-file", identity.is_some()),
                ("controller-server-name", server_name.is_some()),
            ];
            match stray.into_iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(ConfigError::TlsFlagWithPlaintext(flag)),
                None => Ok(None),
            }
        }
        _ => Err(ConfigError::ControllerScheme(url.to_owned())),
    }
}

/// The listener's part of the configuration.
impl From<&Config> for ServerConfig {
    fn from(config: &Config) -> Self {
        ServerConfig {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            shutdown_grace: config.shutdown_grace,
            drain_delay: config.drain_delay,
            trace: config.trace.clone(),
        }
    }
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Config, ConfigError> {
        Config::from_args(args)
    }
}

/// `fairway-proxy-` and 64 random bits: unique enough to key the controller's
/// per-proxy state for a proxy that has no pod name.
fn generated_id() -> String {
    format!("fairway-proxy-{:016x}", rand::random::<u64>())
}

/// Parses `250ms`, `10s`, `5m`, `1h` (one integer and one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m or h)"))?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a whole number before the unit"))?;
    let seconds = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?}: too large"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests;
