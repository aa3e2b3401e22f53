//! End-to-end tests: the whole system as a user runs it. A real kube-apiserver and etcd,
//! the `fairway-controller` binary with a kubeconfig, two `fairway-proxy` processes, and
//! real HTTP "pods" whose EndpointSlices the tests write, as kube-controller-manager
//! would. Each scenario drives keep-alive traffic through the proxies and asserts on the
//! pods' own request counts and on failed requests (design.md section 6, issue 6).
//!
//! The apiserver rejects EndpointSlice addresses in 127.0.0.0/8, so the binary re-runs
//! itself in a network namespace of its own (`unshare --net`) where `10.244.0.0/16` is
//! local (AnyIP on `lo`): pods bind `10.244.S.N:8080`, everything else stays on
//! 127.0.0.1, and nothing can leave the namespace.
//!
//! A small harness (`harness = false`): `cargo test -p fairway-tests --test e2e -- seed`
//! runs the scenarios whose name contains `seed`; libtest flags are ignored. It prints
//! `test NAME ... ok|FAILED` per scenario and a last line `N passed, M failed`.

mod backend_tls;
mod echo;
mod faults;
mod filters;
mod gamma;
mod opt_in;
mod rebase;
mod retry;
mod scenarios;
mod scope;
mod tls;
mod topology;
mod world;

use std::process::{Command, ExitCode};
use std::time::Instant;

/// Set in the re-executed child, inside the network namespace.
const NETNS_ENV: &str = "FAIRWAY_E2E_NETNS";
/// The pods' range, made local on `lo` inside the namespace.
const POD_RANGE: &str = "10.244.0.0/16";

/// One scenario: a name and a body run on a fresh tokio runtime.
#[allow(missing_debug_implementations)]
pub struct Scenario {
    pub name: &'static str,
    pub run: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

/// libtest flags that take a value as the next argument.
const FLAGS_WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--format",
    "--color",
    "--logfile",
    "--shuffle-seed",
    "-Z",
];

struct Selection {
    filter: Option<String>,
    skip: Vec<String>,
    list: bool,
}

fn parse_args(args: &[String]) -> Selection {
    let mut selection = Selection {
        filter: None,
        skip: Vec::new(),
        list: false,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--list" {
            selection.list = true;
        } else if arg == "--skip" {
            if let Some(value) = args.get(i + 1) {
                selection.skip.push(value.clone());
            }
            i += 1;
        } else if FLAGS_WITH_VALUE.contains(&arg.as_str()) {
            i += 1;
        } else if arg.starts_with('-') {
            // --nocapture, --exact, --quiet, --test-threads=1, ...: not ours.
        } else if selection.filter.is_none() {
            selection.filter = Some(arg.clone());
        }
        i += 1;
    }
    selection
}

fn selected(all: &[Scenario], selection: &Selection) -> Vec<&'static str> {
    all.iter()
        .map(|s| s.name)
        .filter(|name| {
            selection
                .filter
                .as_ref()
                .is_none_or(|f| name.contains(f.as_str()))
        })
        .filter(|name| !selection.skip.iter().any(|s| name.contains(s.as_str())))
        .collect()
}

fn main() -> ExitCode {
    // A re-executed copy serving as a pod of the fault run.
    if let Some(code) = faults::backend_main() {
        return code;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selection = parse_args(&args);
    let all = scenarios::all();
    let chosen = selected(&all, &selection);
    if selection.list {
        for name in &chosen {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    if chosen.is_empty() {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    if std::env::var(NETNS_ENV).as_deref() == Ok("1") {
        inside(&all, &chosen)
    } else {
        outside(&args)
    }
}

/// Outside the namespace: build what needs the network, then re-run inside one.
fn outside(args: &[String]) -> ExitCode {
    if let Err(e) = fairway_tests::gobuild::ensure_binaries() {
        eprintln!("e2e: building kube-apiserver and etcd failed: {e}");
        return ExitCode::FAILURE;
    }
    // Inside the network namespace there is no module proxy: cache the CRDs' module now.
    if let Err(e) = fairway_tests::gateway_api::httproute_crd() {
        eprintln!("e2e: the Gateway API CRDs: {e}");
        return ExitCode::FAILURE;
    }
    for bin in [world::controller_bin(), world::proxy_bin()] {
        if !bin.exists() {
            eprintln!(
                "e2e: {} is missing: run ./tests/run.sh or cargo test --workspace \
                 (or cargo build -p fairway-controller -p fairway-proxy)",
                bin.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("e2e: cannot find the test binary to re-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Root: a plain network namespace. Otherwise a user namespace maps us to root in it.
    let variants: [&[&str]; 2] = [&["--net"], &["--net", "--map-root-user"]];
    let Some(unshare) = variants.into_iter().find(|flags| {
        Command::new("unshare")
            .args(*flags)
            .arg("true")
            .output()
            .is_ok_and(|out| out.status.success())
    }) else {
        eprintln!(
            "e2e: cannot create a network namespace: both `unshare --net` and \
             `unshare --net --map-root-user` failed (needs root, or unprivileged user \
             namespaces enabled). The end-to-end tests need one: the apiserver rejects \
             EndpointSlice addresses on loopback."
        );
        return ExitCode::FAILURE;
    };
    let status = Command::new("unshare")
        .args(unshare)
        .arg("--")
        .arg(&exe)
        .args(args)
        .env(NETNS_ENV, "1")
        .status();
    match status {
        Ok(status) => match status.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!("e2e: the test run ended by a signal: {status}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("e2e: running unshare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Inside the namespace: `lo` up, the pod range local, then every chosen scenario.
fn inside(all: &[Scenario], chosen: &[&'static str]) -> ExitCode {
    let setup = ip(&["link", "set", "lo", "up"])
        .and_then(|()| ip(&["route", "add", "local", POD_RANGE, "dev", "lo"]));
    if let Err(e) = setup {
        eprintln!("e2e: configuring the network namespace failed: {e}");
        println!("0 passed, {} failed", chosen.len());
        return ExitCode::FAILURE;
    }
    world::init_spawner();
    let (mut passed, mut failed) = (0, 0);
    for scenario in all.iter().filter(|s| chosen.contains(&s.name)) {
        let started = Instant::now();
        eprintln!("--- {} ---", scenario.name);
        let result = std::panic::catch_unwind(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("build a tokio runtime: {e}"));
            runtime.block_on((scenario.run)());
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok ({secs:.1}s)", scenario.name);
            }
            Err(payload) => {
                failed += 1;
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "(non-string panic)".to_owned());
                println!(
                    "test {} ... FAILED ({secs:.1}s)\n    {message}",
                    scenario.name
                );
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
