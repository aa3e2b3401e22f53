//! slowhttptest (Debian) against the proxy: slowloris (headers that never end, a line
//! every few seconds) and slow read (a tiny receive window, a few bytes read now and
//! then, of a 1 MiB response). Its CSV report gives, per second, how many connections
//! were closed, pending and connected.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::stack::{Probes, Stack};
use crate::tools::slowhttptest;

/// Connections each attack opens.
pub const CONNECTIONS: u32 = 100;
/// Each attack's length (`-l`); slowhttptest stops sooner when no connection is left.
pub const SECONDS: u32 = 15;
/// The tool's hard limit on top of its own.
const LIMIT: Duration = Duration::from_secs(SECONDS as u64 + 30);

/// One second of slowhttptest's CSV report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    pub second: u32,
    pub closed: u32,
    pub pending: u32,
    pub connected: u32,
}

#[derive(Debug)]
pub struct SlowRun {
    pub seconds: Vec<Second>,
    pub exit_status: String,
    pub probes: Probes,
}

impl SlowRun {
    pub fn last(&self) -> Second {
        self.seconds.last().copied().unwrap_or_default()
    }

    /// One line for the log: the last report row, the peak, the probes and RSS.
    pub fn summary(&self) -> String {
        let p = &self.probes;
        format!(
            "ended at second {} ({}), last row {:?}, peak connected {}, probes {} ok {} \
             failed, RSS {} -> {} KiB",
            self.last().second,
            self.exit_status,
            self.last(),
            self.max_connected(),
            p.ok,
            p.failed,
            p.rss_before_kib,
            p.rss_max_kib
        )
    }

    pub fn max_connected(&self) -> u32 {
        self.seconds.iter().map(|s| s.connected).max().unwrap_or(0)
    }
}

/// Runs slowhttptest with `attack` flags against `path` on the proxy.
pub async fn run(stack: &mut Stack, name: &str, attack: &[&str], path: &str) -> SlowRun {
    let dir = fairway_tests::gobuild::target_dir().join("conformance");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let prefix = dir.join(format!("slowhttptest-{name}"));
    let url = format!("http://{}{path}", stack.listen);
    let mut command = Command::new(slowhttptest());
    command
        .args(attack)
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["-r", "50"]) // connections opened per second
        .args(["-p", "3"]) // its own probe's timeout
        .args(["-l", &SECONDS.to_string()])
        .args(["-u", &url])
        .arg("-g")
        .arg("-o")
        .arg(&prefix)
        .kill_on_drop(true);
    let (output, probes) = stack
        .while_probing(tokio::time::timeout(LIMIT, command.output()))
        .await;
    let output = output
        .unwrap_or_else(|_| panic!("slowhttptest {name} ran past {LIMIT:?}"))
        .unwrap_or_else(|e| panic!("run slowhttptest: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "slowhttptest {name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let exit_status = strip_ansi(&stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Exit status:"))
        .unwrap_or("(none)")
        .trim()
        .to_owned();
    SlowRun {
        seconds: read_csv(&prefix.with_extension("csv")),
        exit_status,
        probes,
    }
}

/// `Seconds,Closed,Pending,Connected,Service Available`
fn read_csv(path: &Path) -> Vec<Second> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read slowhttptest's report {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<u32> = line
                .split(',')
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            Some(Second {
                second: *f.first()?,
                closed: *f.get(1)?,
                pending: *f.get(2)?,
                connected: *f.get(3)?,
            })
        })
        .collect()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
