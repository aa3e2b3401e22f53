//! The real `fairway-proxy` binary with `--log-format text` and stdout piped (as
//! in a container or a log file): its lines carry no ANSI colour escapes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The proxy logs that it starts at once; far more than that is a hang.
const FIRST_LINE: Duration = Duration::from_secs(30);

#[test]
fn text_logs_to_a_pipe_have_no_colour_escapes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fairway-proxy"))
        .args([
            // Nothing listens on port 1: the proxy starts, logs, and keeps retrying.
            "--controller=http://127.0.0.1:1",
            "--controller-plaintext",
            "--listen=127.0.0.1:0",
            "--admin-addr=127.0.0.1:0",
            "--log-format=text",
        ])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fairway-proxy");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(FIRST_LINE);
    let _ = child.kill();
    let _ = child.wait();
    let line = first.expect("the proxy logs a line at start");
    assert!(
        line.contains("fairway_proxy"),
        "a text line naming its target: {line:?}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour escapes when stdout is not a terminal: {line:?}"
    );
}
