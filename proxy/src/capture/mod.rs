//! The sidecar's init step (`fairway-capture`): installs the pod's outbound capture
//! rules, which send its TCP to the cluster's Services to the proxy's
//! `--outbound-listen` port, and removes them.
//!
//! Data flows: the command line's [`Args`] become one [`CaptureConfig`]; `rules` turns it
//! into nftables text (pure, tested line by line); [`apply`] hands that text to `nft -f -`,
//! which applies it as one transaction.
//!
//! Why `nft` and not our own netlink code: nftables' netlink encoding is what `nft` (the
//! reference user space, released with the kernel's nftables) exists to get right, its
//! file mode gives an atomic, all-or-nothing install for free, and the rules stay
//! readable text that `fairway-capture print` shows and a user can check with
//! `nft list table inet fairway_capture`. The Rust netlink crates for nftables are
//! either bindings to libnftnl (C libraries in the image all the same) or thinly
//! maintained. The cost is an init image with `nft` in it (docker/capture.Dockerfile),
//! used only while the pod starts.

pub mod rules;

use std::io::Write;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use rules::{Capture, CaptureConfig, Cidr};

/// The injected proxy's UID. Not 65532, distroless' `nonroot` that the app's own image
/// may use too: an app sharing the proxy's UID would silently escape capture.
pub const DEFAULT_PROXY_UID: u32 = 2140;
/// The proxy's outbound port, next to its `--listen` default (4140).
pub const DEFAULT_OUTBOUND_PORT: u16 = 4143;
/// UIDs refused for the proxy: root (every root process would escape capture) and
/// distroless' `nonroot` (module docs of [`DEFAULT_PROXY_UID`]).
const SHARED_UIDS: [u32; 2] = [0, 65532];

/// `fairway-capture install|print` flags. Every flag also reads `FAIRWAY_CAPTURE_<FLAG>`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The cluster's Service range(s), captured (repeat, or separate with commas), e.g.
    /// `10.96.0.0/12`.
    #[arg(long, env = "FAIRWAY_CAPTURE_SERVICE_CIDR", value_delimiter = ',')]
    pub service_cidr: Vec<Cidr>,

    /// Capture all outbound TCP instead of the Service ranges (what is not excluded).
    #[arg(long, env = "FAIRWAY_CAPTURE_ALL_OUTBOUND")]
    pub all_outbound: bool,

    /// The proxy's UID: its own connections are never captured.
    #[arg(long, env = "FAIRWAY_CAPTURE_PROXY_UID", default_value_t = DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,

    /// The proxy's `--outbound-listen` port.
    #[arg(long, env = "FAIRWAY_CAPTURE_TO_PORT", default_value_t = NonZeroU16::new(DEFAULT_OUTBOUND_PORT).expect("non-zero"))]
    pub to_port: NonZeroU16,

    /// Destination ports never captured (repeat, or separate with commas).
    #[arg(long, env = "FAIRWAY_CAPTURE_EXCLUDE_PORT", value_delimiter = ',')]
    pub exclude_port: Vec<NonZeroU16>,

    /// Destination ranges never captured (repeat, or separate with commas).
    #[arg(long, env = "FAIRWAY_CAPTURE_EXCLUDE_CIDR", value_delimiter = ',')]
    pub exclude_cidr: Vec<Cidr>,
}

/// Why the flags could not become a [`CaptureConfig`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("nothing to capture: give the cluster's --service-cidr, or --all-outbound")]
    NothingCaptured,
    #[error("--all-outbound and --service-cidr contradict each other: choose one")]
    Both,
    #[error(
        "--proxy-uid {0} is shared with other processes (root, or distroless' nonroot \
         65532): an app running as it would escape capture. Use a UID of its own, e.g. \
         the default {DEFAULT_PROXY_UID}"
    )]
    SharedUid(u32),
}

impl CaptureConfig {
    pub fn from_args(args: Args) -> Result<CaptureConfig, ConfigError> {
        let capture = match (args.all_outbound, args.service_cidr.is_empty()) {
            (true, false) => return Err(ConfigError::Both),
            (true, true) => Capture::All,
            (false, false) => Capture::Cidrs(args.service_cidr),
            (false, true) => return Err(ConfigError::NothingCaptured),
        };
        if SHARED_UIDS.contains(&args.proxy_uid) {
            return Err(ConfigError::SharedUid(args.proxy_uid));
        }
        Ok(CaptureConfig {
            capture,
            proxy_uid: args.proxy_uid,
            to_port: args.to_port,
            exclude_ports: args.exclude_port,
            exclude_cidrs: args.exclude_cidr,
        })
    }
}

/// Why `nft` did not apply a rule set. Nothing was changed in either case: `nft -f`
/// applies the whole file or none of it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("running {nft}: {source} (the init image ships nft: docker/capture.Dockerfile)")]
    Spawn {
        nft: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nft refused the rules ({status}): {stderr}{hint}",
        hint = if stderr.contains("Operation not permitted") {
            "\nThe init container needs the NET_ADMIN capability to change the pod's \
             netfilter rules (docs/security.md)."
        } else {
            ""
        }
    )]
    Nft { status: String, stderr: String },
}

/// Applies `ruleset` with `nft -f -`, one transaction.
pub fn apply(nft: &Path, ruleset: &str) -> Result<(), ApplyError> {
    let spawn_error = |source| ApplyError::Spawn {
        nft: nft.to_owned(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means nft exited early; its status and stderr say why.
        let _ = stdin.write_all(ruleset.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_error)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ApplyError::Nft {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("fairway-capture").chain(argv.iter().copied()))
            .expect("valid flags")
            .args
    }

    fn config(argv: &[&str]) -> Result<CaptureConfig, ConfigError> {
        CaptureConfig::from_args(args(argv))
    }

    #[test]
    fn flags_become_the_config_with_the_dedicated_uid_by_default() {
        let c = config(&[
            "--service-cidr=10.96.0.0/12,fd00::/108",
            "--exclude-port=5432",
        ])
        .unwrap();
        assert_eq!(
            c.capture,
            Capture::Cidrs(vec![
                "10.96.0.0/12".parse().unwrap(),
                "fd00::/108".parse().unwrap()
            ])
        );
        assert_eq!(c.proxy_uid, DEFAULT_PROXY_UID);
        assert_eq!(c.to_port.get(), DEFAULT_OUTBOUND_PORT);
        assert_eq!(c.exclude_ports, [NonZeroU16::new(5432).unwrap()]);
        assert_eq!(config(&["--all-outbound"]).unwrap().capture, Capture::All);
    }

    #[test]
    fn what_to_capture_must_be_said_once() {
        assert_eq!(config(&[]), Err(ConfigError::NothingCaptured));
        assert_eq!(
            config(&["--all-outbound", "--service-cidr=10.96.0.0/12"]),
            Err(ConfigError::Both)
        );
    }

    #[test]
    fn uids_other_processes_use_are_refused() {
        for uid in ["0", "65532"] {
            let error = config(&["--all-outbound", "--proxy-uid", uid]).unwrap_err();
            assert!(matches!(error, ConfigError::SharedUid(_)), "{uid}: {error}");
        }
    }

    #[test]
    fn a_missing_nft_says_where_it_should_come_from() {
        let error = apply(Path::new("/nonexistent/nft"), "").unwrap_err();
        assert!(matches!(error, ApplyError::Spawn { .. }));
        assert!(error.to_string().contains("capture.Dockerfile"), "{error}");
    }
}
