#!/usr/bin/env python3
"""The gRPC unary benchmark (issue 22, item 6): fairway-proxy beside Envoy, nginx
(grpc_pass) and HAProxy, and straight to a pod.

Same machine, same pods (bench/grpcserver: grpc-go serving grpc.health.v1 on
127.0.0.11-14), same client (ghz, built from its Go module by bench/grpc.sh), one
worker each and the same CPU pinning for every proxy: the proxy on --proxy-cpus, the
client and the pods on --load-cpus. Per round and target, on a freshly started proxy:
ghz calls grpc.health.v1.Health/Check (an empty request, a 2-byte reply) from
--concurrency workers over --connections HTTP/2 connections, --warmup then --duration
seconds: calls/s, p50/p90/p99 latency, the proxy's CPU time per call, and every
non-OK status.

Rounds rotate the targets' order; the table gives each figure's median over rounds.
Standard library only, plus bench/proxy.py's process helpers. Start it through
bench/grpc.sh, which builds everything. Every process it starts is stopped by its own
id; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy as common  # noqa: E402  (bench/proxy.py: start/stop, /proc readers, versions)

ROOT = common.ROOT
CONF = common.CONF
PODS = common.PODS
HOST = common.HOST  # the fairway Route's host, sent as :authority; the other proxies ignore it
PEERS = ["envoy", "nginx", "haproxy"]

# Ports on loopback, apart from bench/proxy.py's (280xx/281xx) and bench/websocket.py's
# (282xx) so the benchmarks never collide.
PORTS = {
    "PORT": 28380,  # grpc-go pods
    "FAIRWAY_PORT": 28340,
    "FAIRWAY_ADMIN_PORT": 28390,
    "CONTROLLER_GRPC_PORT": 28300,
    "CONTROLLER_ADMIN_PORT": 28301,
    "ENVOY_PORT": 28341,
    "ENVOY_ADMIN_PORT": 28391,
    "NGINX_PORT": 28342,
    "HAPROXY_PORT": 28343,
}
GHZ = ROOT / "target" / "ghz"
SERVER = ROOT / "target" / "grpcserver"
PROTO = ROOT / "bench" / "grpcserver" / "health.proto"
CALL = "grpc.health.v1.Health.Check"


def fill(template: Path, dest: Path, run: Path) -> Path:
    text = template.read_text()
    for key, value in {**PORTS, "RUN": run}.items():
        text = text.replace(f"@@{key}@@", str(value))
    if leftover := re.findall(r"@@\w+@@", text):
        raise RuntimeError(f"{template}: unfilled {leftover}")
    dest.write_text(text)
    return dest


def ghz(addr: str, args, log: Path, *, seconds: float | None = None, total: int | None = None) -> dict:
    """One ghz run against `addr` (host:port), to completion; its summary, parsed."""
    pin = ["taskset", "-c", args.load_cpus] if args.load_cpus else []
    argv = [*pin, str(GHZ), "--insecure", "--proto", str(PROTO), "--call", CALL, "-d", "{}",
            "--authority", HOST, "-c", str(args.concurrency), "--connections", str(args.connections),
            # ghz's own GOMAXPROCS: the CPUs it is pinned to.
            "--cpus", str(len(args.load_cpus.split(",")) if args.load_cpus else os.cpu_count())]
    if seconds is not None:
        # Calls still in flight when the time is up are left out, not counted as errors.
        argv += ["-z", f"{seconds}s", "--duration-stop", "ignore"]
    else:
        argv += ["-n", str(total)]
    argv.append(addr)
    timeout = (seconds or 10) + 60
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    log.write_text(" ".join(argv) + "\n" + p.stdout + p.stderr)
    out = p.stdout
    if p.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"ghz {addr}: exit {p.returncode}: {(p.stderr or out).strip()[-500:]}")
    statuses = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+\[(\w+)\]\s+(\d+) responses", out, re.M)}
    res = {
        "calls": int(re.search(r"Count:\s+(\d+)", out).group(1)),
        "calls_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "statuses": statuses,
        "not_ok": sum(n for s, n in statuses.items() if s != "OK"),
    }
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct} % in ([\d.]+) (\w+)", out, re.M)
        res[f"p{pct}_ms"] = common.to_ms(m.group(1) + m.group(2)) if m else None
    if m := re.search(r"Error distribution:\n((?:\s+\[.*\n?)+)", out):
        res["errors"] = m.group(1).strip()[:300]
    return res


# --- targets ---------------------------------------------------------------------


def start_fairway_controller(run: Path) -> None:
    """The controller on a static directory: the h2c Route (bench/conf/fairway/
    route-grpc.yaml) over the four grpc-go pods."""
    static = run / "fairway-static"
    static.mkdir()
    (static / "route.yaml").write_text((CONF / "fairway" / "route-grpc.yaml").read_text())
    fill(CONF / "fairway" / "orders.yaml.in", static / "orders.yaml", run)
    common.start(
        [common.find_bin("fairway-controller"), "--static-dir", str(static),
         "--grpc-addr", f"127.0.0.1:{PORTS['CONTROLLER_GRPC_PORT']}",
         "--admin-addr", f"127.0.0.1:{PORTS['CONTROLLER_ADMIN_PORT']}",
         "--no-auth"],  # loopback only, one machine (docs/security.md)
        run / "controller.log", env={"RUST_LOG": "warn"},
    )
    common.wait_port("127.0.0.1", PORTS["CONTROLLER_GRPC_PORT"])


def start_target(name: str, run: Path, cpus: str | None, tag: str) -> tuple[subprocess.Popen | None, str]:
    """Starts `name`; returns its process (None for `direct`) and the address ghz calls."""
    P = PORTS
    if name == "direct":
        return None, f"{PODS[0]}:{P['PORT']}"
    log = run / f"{name}-{tag}.log"
    if name == "fairway":
        proc = common.start(
            [common.find_bin("fairway-proxy"),
             "--controller", f"http://127.0.0.1:{P['CONTROLLER_GRPC_PORT']}", "--controller-plaintext",
             "--workers", "1",  # tokio's current-thread scheduler, like one worker elsewhere
             "--listen", f"127.0.0.1:{P['FAIRWAY_PORT']}",
             "--admin-addr", f"127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}",
             "--id", f"grpcbench-{tag}", "--node", "bench"],
            log, env={"RUST_LOG": "warn"}, cpus=cpus,
        )
        common.wait_http(f"http://127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}/ready")
        port = P["FAIRWAY_PORT"]
    elif name == "envoy":
        conf = fill(CONF / "envoy-grpc.yaml", run / "envoy-grpc.yaml", run)
        proc = common.start([common.envoy_bin(), "-c", str(conf), "--concurrency", "1", "--log-level", "warn",
                             "--disable-hot-restart"], log, cpus=cpus)
        port = P["ENVOY_PORT"]
    elif name == "nginx":
        (run / "nginx-body").mkdir(exist_ok=True)
        conf = fill(CONF / "nginx-grpc.conf", run / "nginx-grpc.conf", run)
        proc = common.start([common.find_bin("nginx"), "-p", str(run), "-e", str(run / "nginx-grpc-error.log"),
                             "-c", str(conf)], log, cpus=cpus)
        port = P["NGINX_PORT"]
    elif name == "haproxy":
        conf = fill(CONF / "haproxy-grpc.cfg", run / "haproxy-grpc.cfg", run)
        proc = common.start([common.find_bin("haproxy"), "-db", "-f", str(conf)], log, cpus=cpus)
        port = P["HAPROXY_PORT"]
    else:
        raise ValueError(name)
    common.wait_port("127.0.0.1", port)
    return proc, f"127.0.0.1:{port}"


def measure(name: str, run: Path, args, tag: str) -> dict:
    proc, addr = start_target(name, run, args.proxy_cpus, tag)
    try:
        # A few calls work end to end before anything is timed.
        probe = ghz(addr, args, run / f"ghz-{name}-{tag}-probe.txt", total=args.concurrency)
        if probe["not_ok"] or not probe["calls"]:
            raise RuntimeError(f"probe: {probe['statuses']} {probe.get('errors', '')}")
        if args.warmup:
            ghz(addr, args, run / f"ghz-{name}-{tag}-warmup.txt", seconds=args.warmup)
        pids = common.process_tree(proc.pid) if proc else []
        cpu0 = common.cpu_seconds(pids)
        wall0 = time.monotonic()
        res = ghz(addr, args, run / f"ghz-{name}-{tag}.txt", seconds=args.duration)
        wall = time.monotonic() - wall0
        cpu = common.cpu_seconds(pids) - cpu0
        res.update(
            # ghz's start-up (reading the .proto, connecting) is inside `wall`: a few ms.
            proxy_cpu_pct=100 * cpu / wall if proc else None,
            proxy_cpu_us_per_call=1e6 * cpu / res["calls"] if proc and res["calls"] else None,
            load=common.loadavg(),
        )
        return res
    finally:
        if proc:
            common.stop(proc)


def profile(name: str, run: Path, args, seconds: int = 8) -> dict | None:
    """An extra, unmeasured ghz run on a fresh `name`: `perf stat` counts the proxy's
    system calls and context switches per call, then `perf record` samples where its CPU
    goes (flat profile in perf-NAME.txt)."""
    proc, addr = start_target(name, run, args.proxy_cpus, "perf")
    if proc is None or not shutil.which("perf"):
        return None
    pin = ["taskset", "-c", args.load_cpus] if args.load_cpus else []
    try:
        pids = ",".join(str(p) for p in common.process_tree(proc.pid))
        argv = [*pin, str(GHZ), "--insecure", "--proto", str(PROTO), "--call", CALL, "-d", "{}",
                "--authority", HOST, "-c", str(args.concurrency), "--connections", str(args.connections),
                "-z", f"{2 * seconds + 4}s", "--duration-stop", "ignore", addr]
        load = common.start(argv, run / f"ghz-{name}-perf.txt")
        time.sleep(2)
        cpu0 = common.cpu_seconds(common.process_tree(proc.pid))
        stat = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "-p", pids,
                               "--", "sleep", str(seconds)], capture_output=True, text=True,
                              timeout=seconds + 30, check=False).stderr
        cpu = common.cpu_seconds(common.process_tree(proc.pid)) - cpu0
        data = run / f"perf-{name}.data"
        subprocess.run(["perf", "record", "-F", "999", "-g", "-o", str(data), "-p", pids, "--",
                        "sleep", str(seconds)], capture_output=True, timeout=seconds + 30, check=False)
        load.wait(timeout=2 * seconds + 60)
        common.STARTED.remove(load)
        out = (run / f"ghz-{name}-perf.txt").read_text()
        calls = int(m.group(1)) if (m := re.search(r"Count:\s+(\d+)", out)) else 0
        # Calls over the whole ghz run; scale to the perf stat window by the proxy's CPU.
        total_s = 2 * seconds + 4
        calls_in_window = calls * seconds / total_s if calls else 0
        counts = {}
        for line in stat.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit():
                counts[f[2]] = int(f[0])
        report = run / f"perf-{name}.txt"
        with open(report, "w") as f:
            for sort in ("dso", "dso,symbol"):
                subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", sort,
                                "--percent-limit", "0.7", "-g", "none"], stdout=f, stderr=subprocess.DEVNULL,
                               timeout=300, check=False)
        per = max(calls_in_window, 1)
        return {
            "report": str(report),
            "syscalls_per_call": counts.get("raw_syscalls:sys_enter", 0) / per,
            "context_switches_per_call": counts.get("context-switches", 0) / per,
            "cpu_us_per_call": 1e6 * cpu / per,
        }
    finally:
        common.stop(proc)


# --- report ----------------------------------------------------------------------


def median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rounds: dict) -> dict:
    out = {}
    for name, rs in rounds.items():
        ok = [r["result"] for r in rs if "result" in r]
        s = {"errors": [r["error"] for r in rs if "error" in r],
             "not_ok": sum(r["not_ok"] for r in ok)}
        for key in ("calls_per_s", "p50_ms", "p90_ms", "p99_ms", "proxy_cpu_us_per_call", "proxy_cpu_pct"):
            s[key] = median([r.get(key) for r in ok])
        s["rounds_calls_per_s"] = [r["calls_per_s"] for r in ok]
        s["rounds_p99_ms"] = [r["p99_ms"] for r in ok if r["p99_ms"] is not None]
        out[name] = s
    return out


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def span(xs: list, f) -> str:
    return "–".join(f(x) for x in (min(xs), max(xs))) if xs else "-"


def report(results: dict) -> str:
    m, s = results["meta"], results["summary"]
    lines = [
        f"{m['started']}, {m['versions']['commit']}, {m['cpus']} CPUs ({m['cpu_model']}), "
        f"proxy on CPU {m['proxy_cpus']}, ghz and pods on CPU {m['load_cpus']}; "
        f"{m['rounds']} rounds, medians; load average {m['load_before']} before, {m['load_after']} after.",
        "",
        f"ghz unary `{CALL}` at concurrency {m['concurrency']} over {m['connections']} connection(s), "
        f"{m['duration']} s after {m['warmup']} s warm-up.",
        "",
        "| target | calls/s | rounds' range | p50 ms | p90 ms | p99 ms (rounds' range) | proxy CPU µs/call "
        "| proxy CPU % | non-OK |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in s.items():
        lines.append(
            f"| {name} | {fmt(r['calls_per_s'], ',.0f')} | {span(r['rounds_calls_per_s'], lambda x: f'{x / 1000:.1f}k')} "
            f"| {fmt(r['p50_ms'], '.2f')} | {fmt(r['p90_ms'], '.2f')} "
            f"| {fmt(r['p99_ms'], '.2f')} ({span(r['rounds_p99_ms'], lambda x: f'{x:.2f}')}) "
            f"| {fmt(r['proxy_cpu_us_per_call'], '.1f')} | {fmt(r['proxy_cpu_pct'], '.0f')} | {r['not_ok']} |"
        )
    f = s.get("fairway")
    peers = [p for p in PEERS if p in s]
    if f and peers:
        lines += [
            "",
            "fairway ÷ each peer (calls/s: above 1 favours fairway; p50, p99 and CPU per call: "
            "below 1 favours fairway):",
            "",
            "| fairway / peer | calls/s | p50 | p99 | proxy CPU per call |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for p in peers:
            r = s[p]
            lines.append(
                f"| {p} | {ratio(f['calls_per_s'], r['calls_per_s'])} | {ratio(f['p50_ms'], r['p50_ms'])} "
                f"| {ratio(f['p99_ms'], r['p99_ms'])} "
                f"| {ratio(f['proxy_cpu_us_per_call'], r['proxy_cpu_us_per_call'])} |"
            )
    if perf := {k: v for k, v in results.get("perf", {}).items() if v}:
        lines += [
            "",
            "Profiling run (unmeasured, `--perf`; calls in the perf window estimated from ghz's count):",
            "",
            "| target | system calls / call | context switches / call | proxy CPU µs/call |",
            "| --- | ---: | ---: | ---: |",
            *(f"| {k} | {v['syscalls_per_call']:.2f} | {v['context_switches_per_call']:.3f} "
              f"| {v['cpu_us_per_call']:.1f} |" for k, v in perf.items()),
        ]
    errs = [f"- {name}: {e}" for name, r in s.items() for e in r["errors"]]
    if errs:
        lines += ["", "Failures:", "", *errs]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="direct,fairway,envoy,nginx,haproxy")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (0: none)")
    ap.add_argument("--concurrency", type=int, default=64, help="ghz workers (calls in flight)")
    ap.add_argument("--connections", type=int, default=1,
                    help="HTTP/2 connections ghz spreads them over (1: a gRPC channel's usual one)")
    ap.add_argument("--proxy-cpus", default="0", help="taskset CPU list for every proxy ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="taskset CPU list for ghz and the pods ('' = free)")
    ap.add_argument("--perf", default="", help="targets to profile after the rounds (perf stat + perf record)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "grpc"), help="results directory")
    args = ap.parse_args()
    args.proxy_cpus = args.proxy_cpus or None
    args.load_cpus = args.load_cpus or None

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    targets = [t for t in args.targets.split(",") if t]
    versions = common.versions()
    versions.pop("wrk", None)
    versions.pop("h2load", None)
    versions["go"] = subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout.strip()
    for mod, path in (("ghz", "bench/ghz/go.mod"), ("grpc-go", "bench/grpcserver/go.mod")):
        needle = {"ghz": "github.com/bojand/ghz ", "grpc-go": "google.golang.org/grpc "}[mod]
        versions[mod] = next((l.strip() for l in (ROOT / path).read_text().splitlines() if needle in l), "?")
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "?")
    results: dict = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(), "cpu_model": model,
            "load_before": common.loadavg(), "proxy_cpus": args.proxy_cpus, "load_cpus": args.load_cpus,
            "concurrency": args.concurrency, "connections": args.connections, "duration": args.duration,
            "warmup": args.warmup, "rounds": args.rounds, "run_dir": str(run), "versions": versions,
        },
        "rounds": {t: [] for t in targets},
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        pods = common.start([str(SERVER), *(f"{p}:{PORTS['PORT']}" for p in PODS)], run / "pods.log",
                            env={"GOMAXPROCS": str(len(args.load_cpus.split(","))) if args.load_cpus else ""},
                            cpus=args.load_cpus)
        for p in PODS:
            common.wait_port(p, PORTS["PORT"])
        if "fairway" in targets:
            start_fairway_controller(run)
        for i in range(args.rounds):
            # Rotate the order so no target always runs first (or right after a heavy one).
            order = targets[i % len(targets):] + targets[:i % len(targets)]
            for name in order:
                print(f"[{time.strftime('%H:%M:%S')}] round {i + 1}: {name}", file=sys.stderr)
                try:
                    rec = {"result": measure(name, run, args, f"r{i + 1}")}
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    rec = {"error": str(e)}
                print(f"    {json.dumps(rec)}", file=sys.stderr)
                results["rounds"][name].append(rec)
        for name in [t for t in args.perf.split(",") if t]:
            print(f"[{time.strftime('%H:%M:%S')}] perf: {name}", file=sys.stderr)
            results.setdefault("perf", {})[name] = profile(name, run, args)
            print(f"    {json.dumps(results['perf'][name])}", file=sys.stderr)
        if pods.poll() is not None:
            raise RuntimeError(f"the gRPC pods exited: {run / 'pods.log'}")
    finally:
        common.stop_all()
    results["meta"]["load_after"] = common.loadavg()
    results["summary"] = summarize(results["rounds"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (out / "results.md").write_text(text)
    print(text)
    print(f"results: {out / 'results.json'}, logs and generated configs: {run}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
