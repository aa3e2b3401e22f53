//! `fairway wait-drained`: a pod's preStop hook that asks the controller whether every
//! proxy has stopped sending the pod new requests (design.md section 10), instead of
//! `sleep N`. The pod is named by the projected ServiceAccount token it sends, so it can
//! ask about itself only.
//!
//! Exit 0 when the pod is drained, or at once when waiting cannot help (an unknown pod,
//! the last serving endpoint). Otherwise non-zero with the reason on stderr, which the
//! kubelet records in a `FailedPreStopHook` event before it sends SIGTERM anyway: on a
//! timeout at once (the hook already waited), and when the controller cannot answer
//! (unreachable, refused) after `--fallback-sleep`, the old guess, so a controller outage
//! costs what `sleep` cost and never the whole grace period.

use std::path::PathBuf;
use std::time::Duration;

use fairway_controller::crd::parse_duration;
use fairway_proto::pb::drain_client::DrainClient;
use fairway_proto::pb::wait_drained_response::Outcome;
use fairway_proto::pb::{WaitDrainedRequest, WaitDrainedResponse};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The controller's Service, as the chart names it (the proxy's default too).
pub const DEFAULT_CONTROLLER: &str = fairway_proxy::config::DEFAULT_CONTROLLER;
/// How long the controller may wait for every proxy: below the default 30 s grace
/// period with the fallback sleep added.
pub const DEFAULT_TIMEOUT: &str = "20s";
/// The old guess, slept when the controller cannot answer.
pub const DEFAULT_FALLBACK_SLEEP: &str = "5s";
/// Connecting may take this long: the controller is in the cluster, so more means it is
/// down, and the fallback should start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Beyond the asked timeout, how long the answer may take to arrive before the
/// controller counts as unreachable.
pub const ANSWER_SLACK: Duration = Duration::from_secs(2);

/// `fairway wait-drained` command line; every flag also reads `FAIRWAY_<FLAG>`.
#[derive(Clone, Debug, clap::Args)]
pub struct WaitArgs {
    /// The controller's gRPC address: https://, or http:// with --controller-plaintext.
    #[arg(long, env = "FAIRWAY_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,

    /// Allow an http:// --controller (the token travels unencrypted): tests only.
    #[arg(long, env = "FAIRWAY_CONTROLLER_PLAINTEXT")]
    pub controller_plaintext: bool,

    /// PEM CA bundle that signed the controller's certificate (required for https://).
    #[arg(long, env = "FAIRWAY_CONTROLLER_CA_FILE")]
    pub controller_ca_file: Option<PathBuf>,

    /// The name the controller's certificate must carry. Unset: the host of
    /// --controller.
    #[arg(long, env = "FAIRWAY_CONTROLLER_SERVER_NAME")]
    pub controller_server_name: Option<String>,

    /// File holding this pod's projected ServiceAccount token (audience `fairway`).
    #[arg(long, env = "FAIRWAY_CONTROLLER_TOKEN_FILE")]
    pub controller_token_file: PathBuf,

    /// How long the controller may wait for every proxy before answering which lag.
    #[arg(long, env = "FAIRWAY_TIMEOUT", default_value = DEFAULT_TIMEOUT, value_parser = duration)]
    pub timeout: Duration,

    /// Slept when the controller cannot answer, before giving up.
    #[arg(long, env = "FAIRWAY_FALLBACK_SLEEP", default_value = DEFAULT_FALLBACK_SLEEP, value_parser = duration)]
    pub fallback_sleep: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Why the controller gave no answer: the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("reading the token file {path}: {source}")]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token in {0} is not a valid header value")]
    BadToken(PathBuf),
    #[error("reading the CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--controller {0}: expected https:// with --controller-ca-file, or http:// with \
         --controller-plaintext"
    )]
    Scheme(String),
    #[error("the controller address {url}: {source}")]
    Endpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to the controller at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the controller refused the request ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the controller gave no answer within {0:?}")]
    NoAnswer(Duration),
}

/// What the hook reports: `Ok` for exit 0, `Err` for non-zero; either way a sentence.
pub fn verdict(answer: &WaitDrainedResponse) -> Result<String, String> {
    let waited = Duration::from_millis(answer.waited_ms);
    match answer.outcome() {
        Outcome::Drained => Ok(format!("drained after {waited:?}: {}", answer.reason)),
        Outcome::UnknownPod | Outcome::LastServing => Ok(format!("not waiting: {}", answer.reason)),
        Outcome::TimedOut => Err(format!("gave up after {waited:?}: {}", answer.reason)),
        Outcome::Unspecified => Err(format!(
            "the controller's answer has no outcome (a newer controller?): {}",
            answer.reason
        )),
    }
}

/// Asks the controller once: connects, sends the token, waits for the answer.
pub async fn ask(args: &WaitArgs) -> Result<WaitDrainedResponse, AskError> {
    let token = std::fs::read_to_string(&args.controller_token_file).map_err(|source| {
        AskError::ReadToken {
            path: args.controller_token_file.clone(),
            source,
        }
    })?;
    let mut bearer = AsciiMetadataValue::try_from(format!("Bearer {}", token.trim()))
        .map_err(|_| AskError::BadToken(args.controller_token_file.clone()))?;
    bearer.set_sensitive(true);
    let url = args.controller.clone();
    let endpoint_error = |source| AskError::Endpoint {
        url: url.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(endpoint_error)?;
    match (
        url.split_once("://").map(|(s, _)| s),
        &args.controller_ca_file,
    ) {
        (Some("https"), Some(ca)) => {
            let pem = std::fs::read(ca).map_err(|source| AskError::ReadCa {
                path: ca.clone(),
                source,
            })?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(name) = &args.controller_server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(endpoint_error)?;
        }
        (Some("http"), None) if args.controller_plaintext => {}
        _ => return Err(AskError::Scheme(url)),
    }
    let patience = args.timeout + ANSWER_SLACK;
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(patience)
        .connect()
        .await
        .map_err(|source| AskError::Connect {
            url: url.clone(),
            source,
        })?;
    let mut request = tonic::Request::new(WaitDrainedRequest {
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
    });
    request.metadata_mut().insert("authorization", bearer);
    let mut client = DrainClient::new(channel);
    match tokio::time::timeout(patience, client.wait_drained(request)).await {
        Ok(Ok(answer)) => Ok(answer.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::Cancelled => {
            Err(AskError::NoAnswer(patience))
        }
        Ok(Err(status)) => Err(AskError::Refused {
            code: status.code(),
            message: status.message().to_owned(),
        }),
        Err(_) => Err(AskError::NoAnswer(patience)),
    }
}

/// The whole hook: ask, and on no answer sleep the fallback. `Ok` is exit 0.
pub async fn run(args: &WaitArgs) -> Result<String, String> {
    match ask(args).await {
        Ok(answer) => verdict(&answer),
        Err(e) => {
            tokio::time::sleep(args.fallback_sleep).await;
            Err(format!(
                "no answer from the controller ({e}); slept the fallback {:?} instead",
                args.fallback_sleep
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(outcome: Outcome, reason: &str) -> WaitDrainedResponse {
        WaitDrainedResponse {
            outcome: outcome as i32,
            waited_ms: 12,
            reason: reason.into(),
            lagging: Vec::new(),
        }
    }

    #[test]
    fn drained_unknown_and_last_serving_exit_zero_the_rest_do_not() {
        assert!(verdict(&answer(Outcome::Drained, "ok")).is_ok());
        assert!(verdict(&answer(Outcome::UnknownPod, "no endpoint")).is_ok());
        assert!(verdict(&answer(Outcome::LastServing, "last")).is_ok());
        let timed_out = verdict(&answer(Outcome::TimedOut, "proxy-a lags"));
        assert_eq!(
            timed_out,
            Err("gave up after 12ms: proxy-a lags".to_owned()),
            "the reason reaches stderr"
        );
        assert!(verdict(&answer(Outcome::Unspecified, "?")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn no_controller_means_the_fallback_sleep_then_a_reason() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t").expect("token");
        let args = WaitArgs {
            controller: "https://fairway-controller.fairway.svc:18000".into(),
            controller_plaintext: false,
            controller_ca_file: None,
            controller_server_name: None,
            controller_token_file: token,
            timeout: Duration::from_secs(20),
            fallback_sleep: Duration::from_secs(5),
        };
        let start = tokio::time::Instant::now();
        let outcome = run(&args).await;
        let error = outcome.expect_err("no CA for https: no answer");
        assert!(error.contains("--controller-ca-file"), "{error}");
        assert!(
            start.elapsed() >= Duration::from_secs(5),
            "the fallback sleep ran first (paused clock, so exact)"
        );
    }
}
