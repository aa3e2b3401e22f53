//! Sidecar capture with real nftables rules (issue 17): the init step's rules
//! (`fairway-capture install`) and the proxy's outbound listener, in a network namespace
//! each test makes for itself. Non-HTTP protocols (a line-echo protocol, a
//! server-speaks-first one) must work unchanged through capture, and the proxy's own
//! connections must not be captured (no loop).
//!
//! Each test re-runs this binary, filtered to itself, under `unshare --net`: the
//! namespace, its routes and its nftables table exist only while that child runs, so a
//! failing or killed test leaves none of them behind; the proxy it starts gets SIGKILL
//! when the test's thread ends (`process::die_with_parent`) and is killed by a guard.
//! Inside, `10.96.0.0/16` stands for the cluster's Service range and is local on `lo`:
//! a "Service" is a server bound to a ClusterIP such as `10.96.0.10:7000`, which the
//! proxy's passed-through connection reaches, as kube-proxy would send it to a pod.
//!
//! Needs root (network namespaces, nftables, a proxy run as its own UID) and `nft`
//! (`./tests/run.sh` installs it), and `cargo build --workspace --bins` first. `balance`
//! also runs the seed's gateway (Go fasthttp, `tests/node/images`), built with `go`.

mod balance;
mod h2;
mod known;
mod subscribe;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fairway_tests::bins;

/// Set in the re-run child, inside its namespace.
const NETNS_ENV: &str = "FAIRWAY_SIDECAR_NETNS";
/// The stand-in Service range, local on `lo` inside the namespace.
const SERVICE_RANGE: &str = "10.96.0.0/16";
/// The proxy's UID, as the injector runs it (`fairway-capture`'s default).
pub(crate) const PROXY_UID: u32 = fairway_proxy::capture::DEFAULT_PROXY_UID;
/// The proxy's outbound addresses (`--outbound-listen`), as the injector sets them.
const OUTBOUND: &str = "127.0.0.1:4143,[::1]:4143";
/// The stand-in IPv6 Service range, captured too.
const SERVICE_RANGE_V6: &str = "fd00:96::/112";
/// Bound on every blocking read and on waiting for the proxy: a failure, never a hang.
pub(crate) const IO_LIMIT: Duration = Duration::from_secs(10);

/// Runs `body` inside a fresh network namespace: the test named `name` re-runs itself
/// there and this side asserts that it passed.
pub(crate) fn in_netns(name: &str, body: impl FnOnce()) {
    if std::env::var(NETNS_ENV).as_deref() == Ok("1") {
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "route", "add", "local", SERVICE_RANGE, "dev", "lo"]);
        body();
        return;
    }
    prerequisites();
    let exe = std::env::current_exe().expect("the test binary's path");
    // Output captured: the child's own libtest summary would otherwise count twice in
    // ./tests/run.sh's total. Shown in full when it failed.
    let out = Command::new("unshare")
        // A mount namespace too: a test may bind its own /etc/hosts.
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .output()
        .expect("run unshare");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{name} failed inside its network namespace ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails with how to get what is missing; nothing here is skipped.
fn prerequisites() {
    let ok = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    assert!(
        ok("unshare", &["--net", "true"]),
        "these tests need root to make a network namespace (`unshare --net`): run them as \
         root (./tests/run.sh in CI is)"
    );
    assert!(
        ok("nft", &["--version"]),
        "`nft` is missing: ./tests/run.sh installs it (Debian: apt-get install -y nftables)"
    );
    for bin in ["fairway-capture", "fairway-proxy", "fairway-controller"] {
        bins::binary(bin);
    }
}

/// Runs a command that must succeed; returns its output.
pub(crate) fn run(argv: &[&str]) -> Output {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `fairway-capture ARGS` with the Service range and the proxy's port and UID.
pub(crate) fn capture(subcommand: &str) -> Output {
    let bin = bins::binary("fairway-capture");
    let mut argv = vec![bin.to_str().expect("utf-8 path"), subcommand];
    if subcommand == "install" {
        argv.extend([
            "--service-cidr",
            SERVICE_RANGE,
            "--service-cidr",
            SERVICE_RANGE_V6,
        ]);
        argv.extend(["--to-port", "4143"]);
    }
    run(&argv)
}

fn nft_ruleset() -> String {
    String::from_utf8(run(&["nft", "list", "ruleset"]).stdout).expect("utf-8")
}

/// The proxy process, run as [`PROXY_UID`]; killed when dropped.
pub(crate) struct Proxy {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub(crate) fn start() -> Proxy {
        Proxy::start_with(&["--controller", "http://127.0.0.1:9"])
    }

    /// The proxy with `controller` flags (`--controller URL` and its kin).
    pub(crate) fn start_with(controller: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).expect("proxy log");
        let admin = "127.0.0.1:4191";
        let mut command = Command::new(bins::binary("fairway-proxy"));
        command
            // Without a controller, every destination is unknown and passes through.
            .args(controller)
            .arg("--controller-plaintext")
            .args(["--listen", "127.0.0.1:4140", "--admin-addr", admin])
            .args(["--outbound-listen", OUTBOUND, "--log-format", "text"])
            .env("RUST_LOG", "fairway_proxy=debug")
            .uid(PROXY_UID)
            .gid(PROXY_UID)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        fairway_tests::process::die_with_parent(&mut command);
        let child = command.spawn().expect("start fairway-proxy");
        let mut proxy = Proxy {
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + IO_LIMIT;
        while TcpStream::connect(admin).is_err() {
            assert!(
                proxy.child.try_wait().expect("wait").is_none(),
                "fairway-proxy exited:\n{}",
                proxy.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "fairway-proxy did not start:\n{}",
                proxy.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "fairway-proxy ended:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on `addr` running `serve` for each connection, reporting each
/// connection's peer address on the returned channel.
pub(crate) fn server(addr: &str, serve: fn(TcpStream)) -> mpsc::Receiver<SocketAddr> {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let (peers, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(IO_LIMIT));
            if let Ok(peer) = conn.peer_addr() {
                let _ = peers.send(peer);
            }
            thread::spawn(move || serve(conn));
        }
    });
    rx
}

/// Echoes each line until the client's end of stream, then closes.
pub(crate) fn line_echo(conn: TcpStream) {
    let mut writer = conn.try_clone().expect("clone");
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if writeln!(writer, "{line}").is_err() {
            return;
        }
    }
}

/// An SMTP-like protocol: the server greets first, then answers `QUIT` and closes.
pub(crate) fn greeter(mut conn: TcpStream) {
    if conn.write_all(b"220 fairway-test ready\r\n").is_err() {
        return;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    if reader.read_line(&mut line).is_ok() && line == "QUIT\r\n" {
        let _ = conn.write_all(b"221 bye\r\n");
    }
}

pub(crate) fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(IO_LIMIT))?;
    Ok(conn)
}

/// A line-echo exchange; `Ok` when every line came back and the server's end followed
/// the client's.
pub(crate) fn echo_exchange(addr: &str) -> std::io::Result<SocketAddr> {
    let mut conn = connect(addr)?;
    let local = conn.local_addr()?;
    let mut reader = BufReader::new(conn.try_clone()?);
    for line in ["first", "second line", "third"] {
        writeln!(conn, "{line}")?;
        let mut back = String::new();
        reader.read_line(&mut back)?;
        assert_eq!(back, format!("{line}\n"), "the line comes back unchanged");
    }
    // Half-close: the server sees our end, closes its side, and we see it.
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "nothing after the echoes: {rest:?}");
    Ok(local)
}

#[test]
fn capture_rules_install_idempotently_and_remove_cleanly() {
    in_netns(
        "capture_rules_install_idempotently_and_remove_cleanly",
        || {
            capture("install");
            let first = nft_ruleset();
            assert!(
                first.contains(&format!("meta skuid {PROXY_UID} return")),
                "{first}"
            );
            assert!(
                first.contains("ip daddr 10.96.0.0/16 meta l4proto tcp redirect to :4143"),
                "{first}"
            );
            capture("install");
            assert_eq!(
                nft_ruleset(),
                first,
                "a second install replaces the first, no duplicates"
            );
            capture("remove");
            assert_eq!(nft_ruleset().trim(), "", "remove leaves no table behind");
            capture("remove");
        },
    );
}

#[test]
fn a_line_echo_protocol_works_unchanged_through_capture() {
    in_netns(
        "a_line_echo_protocol_works_unchanged_through_capture",
        || {
            let service = "10.96.0.10:7000";
            let peers = server(service, line_echo);
            capture("install");
            let refused = connect(service).map(drop);
            assert_eq!(
                refused.map_err(|e| e.kind()),
                Err(ErrorKind::ConnectionRefused),
                "with the rules and no proxy yet, the ClusterIP is captured to a closed port"
            );

            let mut proxy = Proxy::start();
            for _ in 0..3 {
                let client = echo_exchange(service)
                    .unwrap_or_else(|e| panic!("echo through capture: {e}\n{}", proxy.log_text()));
                let peer = peers
                    .recv_timeout(IO_LIMIT)
                    .expect("the server got the connection");
                assert_ne!(
                    peer, client,
                    "the server's peer is the proxy, not the client itself"
                );
            }
            assert_eq!(
                balance::outbound_connections("unknown_pass_through"),
                3,
                "each connection counted once, as going to an address the proxy does not know"
            );
            assert!(
                peers.try_recv().is_err(),
                "one upstream connection per client connection: the proxy's own were not captured again (no loop)"
            );
            proxy.assert_running();
        },
    );
}

#[test]
fn a_server_speaks_first_protocol_is_not_held_back() {
    in_netns("a_server_speaks_first_protocol_is_not_held_back", || {
        let service = "10.96.0.25:2525";
        let _peers = server(service, greeter);
        capture("install");
        let proxy = Proxy::start();
        let conn = connect(service).expect("connect through capture");
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut greeting = String::new();
        reader.read_line(&mut greeting).unwrap_or_else(|e| {
            panic!(
                "the greeting comes without any client byte: {e}\n{}",
                proxy.log_text()
            )
        });
        assert_eq!(greeting, "220 fairway-test ready\r\n");
        (&conn).write_all(b"QUIT\r\n").expect("send QUIT");
        let mut rest = String::new();
        reader
            .read_to_string(&mut rest)
            .expect("the answer, then the server's close");
        assert_eq!(rest, "221 bye\r\n");
    });
}

#[test]
fn connections_made_as_the_proxy_uid_are_not_captured() {
    in_netns("connections_made_as_the_proxy_uid_are_not_captured", || {
        let service = "10.96.0.10:7000";
        let _peers = server(service, line_echo);
        capture("install");
        // No proxy runs: a captured connection is refused, an uncaptured one is echoed.
        assert!(connect(service).is_err(), "root's connection is captured");
        let out = Command::new("bash")
            .args(["-c", "exec 3<>/dev/tcp/10.96.0.10/7000 && echo ping >&3 && read -r -t 10 line <&3 && echo \"$line\""])
            .uid(PROXY_UID)
            .gid(PROXY_UID)
            .output()
            .expect("run bash as the proxy's UID");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ping",
            "the proxy's UID reaches the ClusterIP directly: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn ipv6_service_connections_are_captured_and_passed_through() {
    in_netns(
        "ipv6_service_connections_are_captured_and_passed_through",
        || {
            // IPv6 has no AnyIP bind: the "ClusterIP" is an address of `lo` (nodad: usable
            // at once).
            run(&[
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:96::10/128",
                "dev",
                "lo",
                "nodad",
            ]);
            let service = "[fd00:96::10]:7000";
            let peers = server(service, line_echo);
            capture("install");
            assert!(
                connect(service).is_err(),
                "captured to [::1]:4143, where nothing listens yet"
            );
            let mut proxy = Proxy::start();
            let client = echo_exchange(service).unwrap_or_else(|e| {
                panic!("echo over IPv6 through capture: {e}\n{}", proxy.log_text())
            });
            let peer = peers
                .recv_timeout(IO_LIMIT)
                .expect("the server got the connection");
            assert_ne!(
                peer, client,
                "through the proxy (IP6T_SO_ORIGINAL_DST), not around it"
            );
            assert_eq!(balance::outbound_connections("unknown_pass_through"), 1);
            proxy.assert_running();
        },
    );
}
