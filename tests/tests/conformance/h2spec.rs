//! h2spec (github.com/summerwind/h2spec, built from `tests/h2spec`) against the proxy's
//! HTTP/2 prior-knowledge listener. The JUnit report gives one `testcase` per check;
//! this module reads which failed.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::stack::Stack;
use crate::tools::h2spec;

/// Per-check timeout h2spec waits for the proxy's answer (its default is 2 s; a debug
/// build on two busy cores needs more).
const CHECK_TIMEOUT_SECONDS: u32 = 5;
/// The whole run (146 checks, most answered at once).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// One h2spec check: its section (`http2/6.5.3`, `hpack/4.2`, `generic/1`) and title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub section: String,
    pub title: String,
    pub failure: Option<String>,
}

/// The h2spec run: every check and its stdout summary line.
#[derive(Debug)]
pub struct Run {
    pub checks: Vec<Check>,
    pub summary: String,
    pub stdout: String,
}

/// Runs every h2spec check (including `--strict` ones) against the proxy. `host` is
/// what h2spec dials and sends as `:authority`, so it picks the route: `127.0.0.1` (the
/// h2c backend) or `localhost` (the HTTP/1.1 backend).
pub async fn run(stack: &Stack, host: &str) -> Run {
    // Kept after the run (the stack's own directory is not), for reading failures.
    let dir = fairway_tests::gobuild::target_dir().join("conformance");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let report = dir.join(format!("h2spec-{host}.xml"));
    let output = Command::new(h2spec())
        .arg("--strict")
        .args(["-h", host])
        .args(["-p", &stack.listen.port().to_string()])
        .args(["-o", &CHECK_TIMEOUT_SECONDS.to_string()])
        .arg("-j")
        .arg(&report)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_LIMIT, output)
        .await
        .unwrap_or_else(|_| panic!("h2spec ran past {RUN_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("run h2spec: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" tests, "))
        .unwrap_or("(no summary line)")
        .trim()
        .to_owned();
    Run {
        checks: parse_junit(&report),
        summary,
        stdout,
    }
}

/// The `testcase` elements of h2spec's JUnit report: `package` is the section,
/// `classname` the check's title, a `failure` or `error` child how it failed.
fn parse_junit(path: &Path) -> Vec<Check> {
    let xml = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the h2spec report {}: {e}", path.display()));
    let mut checks = Vec::new();
    for case in xml.split("<testcase").skip(1) {
        let case = case.split("</testcase>").next().unwrap_or(case);
        let head = case.split('>').next().unwrap_or_default();
        // h2spec reports a wrong answer as `error`, a missing one as `failure`.
        let failure = ["failure", "error"].iter().find_map(|tag| {
            let start = case.find(&format!("<{tag}"))?;
            let body = case[start..].split_once('>').map_or("", |(_, rest)| rest);
            let body = body.split(&format!("</{tag}>")).next().unwrap_or(body);
            Some(unescape(body.trim()))
        });
        checks.push(Check {
            section: attribute(head, "package"),
            title: unescape(&attribute(head, "classname")),
            failure,
        });
    }
    checks
}

fn attribute(head: &str, name: &str) -> String {
    head.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
