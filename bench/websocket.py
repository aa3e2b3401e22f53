#!/usr/bin/env python3
"""The WebSocket benchmark (issue 25): fairway-proxy beside Envoy, nginx and HAProxy.

Same machine, same pods (bench/wsload's echo server on 127.0.0.11-14), same client
(bench/wsload), one worker each and the same CPU pinning for every proxy: the proxy
on --proxy-cpus, the client and the pods on --load-cpus. Per round and target, each
on a freshly started proxy:

  load: --connections WebSockets, each sending a --size byte message and waiting for
        its echo (closed loop), --warmup then --duration seconds: messages/s, p50/p90/p99
        latency, the proxy's CPU time per message.
  idle: --idle WebSockets opened and held idle: the proxy's VmRSS before and with them
        open, then an echo on every one to show they were all still tunnelled.

Rounds rotate the targets' order; the table gives each figure's median over rounds.
Standard library only, plus bench/proxy.py's process helpers. Start it through
bench/websocket.sh, which builds everything. Every process it starts is stopped by its
own id; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
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
HOST = common.HOST  # the fairway Route's host; the other proxies ignore it
PEERS = ["envoy", "nginx", "haproxy"]

# Ports on loopback, apart from bench/proxy.py's (282xx there is 280xx/281xx) so the two
# benchmarks never collide.
PORTS = {
    "PORT": 28280,  # echo pods
    "FAIRWAY_PORT": 28240,
    "FAIRWAY_ADMIN_PORT": 28290,
    "CONTROLLER_GRPC_PORT": 28200,
    "CONTROLLER_ADMIN_PORT": 28201,
    "ENVOY_PORT": 28241,
    "ENVOY_ADMIN_PORT": 28291,
    "NGINX_PORT": 28242,
    "HAPROXY_PORT": 28243,
}
WSLOAD = ROOT / "target" / "wsload"
# Descriptors a process needs besides its sockets (logs, epoll, pipes, ...).
FD_SLACK = 200


def fill(template: Path, dest: Path, run: Path) -> Path:
    text = template.read_text()
    for key, value in {**PORTS, "RUN": run}.items():
        text = text.replace(f"@@{key}@@", str(value))
    if leftover := re.findall(r"@@\w+@@", text):
        raise RuntimeError(f"{template}: unfilled {leftover}")
    dest.write_text(text)
    return dest


def wsload(*argv: str, cpus: str | None, timeout: float) -> dict:
    """Runs one wsload client command to completion; its last JSON line."""
    pin = ["taskset", "-c", cpus] if cpus else []
    p = subprocess.run([*pin, str(WSLOAD), *argv], capture_output=True, text=True, timeout=timeout, check=False)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"wsload {' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


# --- targets ---------------------------------------------------------------------


def start_fairway_controller(run: Path, profile: str) -> None:
    """The controller on a static directory: bench/conf/fairway's Route (WebSocket
    upgrades are allowed by default) over the four echo pods."""
    static = run / "fairway-static"
    static.mkdir()
    (static / "route.yaml").write_text((CONF / "fairway" / "route.yaml").read_text())
    fill(CONF / "fairway" / "orders.yaml.in", static / "orders.yaml", run)
    common.start(
        [str(ROOT / "target" / profile / "fairway-controller"), "--static-dir", str(static),
         "--grpc-addr", f"127.0.0.1:{PORTS['CONTROLLER_GRPC_PORT']}",
         "--admin-addr", f"127.0.0.1:{PORTS['CONTROLLER_ADMIN_PORT']}",
         "--no-auth"],  # loopback only, one machine (docs/security.md)
        run / "controller.log", env={"RUST_LOG": "warn"},
    )
    common.wait_port("127.0.0.1", PORTS["CONTROLLER_GRPC_PORT"])


def start_target(name: str, run: Path, cpus: str | None, profile: str, tag: str) -> tuple[subprocess.Popen | None, str]:
    """Starts `name`; returns its process (None for `direct`) and its ws:// URL."""
    P = PORTS
    if name == "direct":
        return None, f"ws://{PODS[0]}:{P['PORT']}/"
    log = run / f"{name}-{tag}.log"
    if name == "fairway":
        proc = common.start(
            [str(ROOT / "target" / profile / "fairway-proxy"),
             "--controller", f"http://127.0.0.1:{P['CONTROLLER_GRPC_PORT']}", "--controller-plaintext",
             "--workers", "1",  # tokio's current-thread scheduler, like one worker elsewhere
             "--listen", f"127.0.0.1:{P['FAIRWAY_PORT']}",
             "--admin-addr", f"127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}",
             "--id", f"wsbench-{tag}", "--node", "bench"],
            log, env={"RUST_LOG": "warn"}, cpus=cpus,
        )
        common.wait_http(f"http://127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}/ready")
        port = P["FAIRWAY_PORT"]
    elif name == "envoy":
        conf = fill(CONF / "envoy-ws.yaml", run / "envoy-ws.yaml", run)
        proc = common.start([common.envoy_bin(), "-c", str(conf), "--concurrency", "1", "--log-level", "warn",
                             "--disable-hot-restart"], log, cpus=cpus)
        port = P["ENVOY_PORT"]
    elif name == "nginx":
        for d in ("nginx-body", "nginx-proxy-temp"):
            (run / d).mkdir(exist_ok=True)
        conf = fill(CONF / "nginx-ws.conf", run / "nginx-ws.conf", run)
        proc = common.start([common.find_bin("nginx"), "-p", str(run), "-e", str(run / "nginx-ws-error.log"),
                             "-c", str(conf)], log, cpus=cpus)
        port = P["NGINX_PORT"]
    elif name == "haproxy":
        conf = fill(CONF / "haproxy-ws.cfg", run / "haproxy-ws.cfg", run)
        proc = common.start([common.find_bin("haproxy"), "-db", "-f", str(conf)], log, cpus=cpus)
        port = P["HAPROXY_PORT"]
    else:
        raise ValueError(name)
    common.wait_port("127.0.0.1", port)
    return proc, f"ws://127.0.0.1:{port}/"


def rss_kib(proc: subprocess.Popen | None) -> int | None:
    # One process per proxy here (nginx runs without a master), so this is the worker.
    return common.status_kib(common.process_tree(proc.pid), "VmRSS") if proc else None


# --- measurements ----------------------------------------------------------------


def measure_load(name: str, run: Path, args, tag: str) -> dict:
    proc, url = start_target(name, run, args.proxy_cpus, args.profile, tag)
    try:
        # The handshake works end to end before anything is timed.
        wsload("load", "-c", "1", "-d", "200ms", "-warmup", "0s", "-host", HOST, url,
               cpus=args.load_cpus, timeout=30)
        pids = common.process_tree(proc.pid) if proc else []
        cpu0 = common.cpu_seconds(pids)
        wall0 = time.monotonic()
        res = wsload("load", "-c", str(args.connections), "-d", f"{args.duration}s", "-warmup", f"{args.warmup}s",
                     "-size", str(args.size), "-host", HOST, url,
                     cpus=args.load_cpus, timeout=args.warmup + args.duration + 60)
        wall = time.monotonic() - wall0
        cpu = common.cpu_seconds(pids) - cpu0
        # CPU over warm-up + run, messages over the run only: scale by the rate.
        sent = res["messages_per_s"] * (args.warmup + args.duration)
        res.update(
            proxy_cpu_pct=100 * cpu / wall if proc else None,
            proxy_cpu_us_per_msg=1e6 * cpu / sent if proc and sent else None,
            rss_after_kib=rss_kib(proc),
            load=common.loadavg(),
        )
        return res
    finally:
        if proc:
            common.stop(proc)


def measure_idle(name: str, run: Path, args, tag: str, count: int) -> dict:
    proc, url = start_target(name, run, args.proxy_cpus, args.profile, tag)
    client = None
    try:
        wsload("load", "-c", "1", "-d", "200ms", "-warmup", "0s", "-host", HOST, url,
               cpus=args.load_cpus, timeout=30)
        time.sleep(0.5)
        base = rss_kib(proc)
        pin = ["taskset", "-c", args.load_cpus] if args.load_cpus else []
        client = subprocess.Popen(
            [*pin, str(WSLOAD), "idle", "-n", str(count), "-host", HOST, "-hold", "120s", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        opened = json.loads(client.stdout.readline() or "{}")  # bounded by wsload's -open-timeout
        time.sleep(1.0)  # let the proxy settle (buffers freed after the handshakes)
        held = rss_kib(proc)
        client.stdin.write("\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=90)
        alive = json.loads(out.splitlines()[-1]) if out.strip() else {}
        res = {
            "requested": count,
            "open": opened.get("open", 0),
            "failed": opened.get("failed"),
            "first_error": opened.get("first_error"),
            "open_seconds": opened.get("seconds"),
            "alive_after_hold": alive.get("alive"),
            "rss_base_kib": base,
            "rss_idle_kib": held,
        }
        if base is not None and held is not None and res["open"]:
            res["kib_per_ws"] = (held - base) / res["open"]
        if err.strip():
            res["client_stderr"] = err.strip()[-300:]
        return res
    finally:
        if client and client.poll() is None:
            os.killpg(client.pid, signal.SIGTERM)
            client.wait(timeout=10)
        if proc:
            common.stop(proc)


def idle_count(requested: int) -> tuple[int, str]:
    """Raises the soft open-file limit to the hard one (children inherit it) and caps the
    idle WebSockets at what fits: the proxy holds two descriptors per WebSocket (client
    and pod side), the client and the pods one each, every process under the same limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fits = (limit - FD_SLACK) // 2 if limit != resource.RLIM_INFINITY else requested
    if requested <= fits:
        return requested, f"open-file limit {limit} (was {soft}): {requested} fit"
    return fits, f"open-file limit {limit}: {requested} do not fit, measured {fits}"


# --- report ----------------------------------------------------------------------


def median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rounds: dict) -> dict:
    """Per target: each figure's median over rounds, and the rounds' values."""
    out = {}
    for name, rs in rounds.items():
        loads = [r["load"] for r in rs if "load" in r]
        idles = [r["idle"] for r in rs if "idle" in r]
        errors = [f"{k}: {r[k + '_error']}" for r in rs for k in ("load", "idle") if k + "_error" in r]
        s = {"errors": errors}
        for key in ("messages_per_s", "p50_ms", "p90_ms", "p99_ms", "proxy_cpu_us_per_msg", "proxy_cpu_pct"):
            s[key] = median([l.get(key) for l in loads])
        s["rounds_messages_per_s"] = [l["messages_per_s"] for l in loads]
        s["rounds_p99_ms"] = [l["p99_ms"] for l in loads]
        for key in ("rss_base_kib", "rss_idle_kib", "kib_per_ws", "open", "alive_after_hold"):
            s[key] = median([i.get(key) for i in idles])
        out[name] = s
    return out


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def report(results: dict) -> str:
    m, s = results["meta"], results["summary"]
    n = m["idle_count"]
    lines = [
        f"{m['started']}, {m['versions']['commit']}, {m['cpus']} CPUs ({m['cpu_model']}), "
        f"proxy on CPU {m['proxy_cpus']}, client and pods on CPU {m['load_cpus']}; "
        f"{m['rounds']} rounds, medians; load average {m['load_before']} before, {m['load_after']} after.",
        "",
        f"Echo at {m['connections']} connections, {m['size']}-byte messages, closed loop, "
        f"{m['duration']} s after {m['warmup']} s warm-up; memory with {n:,} idle WebSockets "
        f"({m['fd_note']}).",
        "",
        "| target | messages/s | rounds' range | p50 ms | p90 ms | p99 ms (rounds' range) | proxy CPU µs/msg "
        f"| proxy CPU % | RSS MiB at start | RSS MiB with {n:,} idle | KiB per idle WebSocket | open / still echoing |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in s.items():
        rng = "–".join(f"{x / 1000:.1f}k" for x in (min(r["rounds_messages_per_s"]), max(r["rounds_messages_per_s"]))) \
            if r["rounds_messages_per_s"] else "-"
        p99r = "–".join(f"{x:.2f}" for x in (min(r["rounds_p99_ms"]), max(r["rounds_p99_ms"]))) \
            if r["rounds_p99_ms"] else "-"
        mib = lambda k: fmt(r[k] / 1024 if r[k] is not None else None, ".1f")  # noqa: E731
        opened = f"{fmt(r['open'], ',.0f')} / {fmt(r['alive_after_hold'], ',.0f')}"
        lines.append(
            f"| {name} | {fmt(r['messages_per_s'], ',.0f')} | {rng} | {fmt(r['p50_ms'], '.2f')} | "
            f"{fmt(r['p90_ms'], '.2f')} | {fmt(r['p99_ms'], '.2f')} ({p99r}) | {fmt(r['proxy_cpu_us_per_msg'], '.1f')} | "
            f"{fmt(r['proxy_cpu_pct'], '.0f')} | {mib('rss_base_kib')} | {mib('rss_idle_kib')} | "
            f"{fmt(r['kib_per_ws'], '.1f')} | {opened} |"
        )
    f = s.get("fairway")
    peers = [p for p in PEERS if p in s]
    if f and peers:
        lines += [
            "",
            "fairway ÷ each peer (messages/s: above 1 favours fairway; p99, CPU per message and RSS: "
            "below 1 favours fairway):",
            "",
            f"| fairway / peer | messages/s | p99 | proxy CPU per message | RSS with {n:,} idle WebSockets |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for p in peers:
            r = s[p]
            lines.append(
                f"| {p} | {ratio(f['messages_per_s'], r['messages_per_s'])} | {ratio(f['p99_ms'], r['p99_ms'])} | "
                f"{ratio(f['proxy_cpu_us_per_msg'], r['proxy_cpu_us_per_msg'])} | "
                f"{ratio(f['rss_idle_kib'], r['rss_idle_kib'])} |"
            )
    errs = [f"- {name}: {e}" for name, r in s.items() for e in r["errors"]]
    if errs:
        lines += ["", "Failures:", "", *errs]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="direct,fairway,envoy,nginx,haproxy")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds measured per load run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per load run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="message size, bytes")
    ap.add_argument("--idle", type=int, default=4000, help="idle WebSockets for the memory figure (0 skips)")
    ap.add_argument("--proxy-cpus", default="0", help="taskset CPU list for every proxy ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="taskset CPU list for the client and the pods ('' = free)")
    ap.add_argument("--profile", default="release", help="cargo profile fairway-proxy and fairway-controller were built with")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "websocket"), help="results directory")
    args = ap.parse_args()
    args.proxy_cpus = args.proxy_cpus or None
    args.load_cpus = args.load_cpus or None

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    targets = [t for t in args.targets.split(",") if t]
    count, fd_note = idle_count(args.idle)
    print(f"[{time.strftime('%H:%M:%S')}] {fd_note}", file=sys.stderr)
    versions = common.versions()
    versions.pop("wrk", None)
    versions.pop("h2load", None)
    versions["go"] = subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout.strip()
    versions["client"] = next((l.strip() for l in (ROOT / "bench" / "wsload" / "go.mod").read_text().splitlines()
                               if "gorilla/websocket" in l), "?")
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "?")
    results: dict = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(), "cpu_model": model,
            "load_before": common.loadavg(), "proxy_cpus": args.proxy_cpus, "load_cpus": args.load_cpus,
            "connections": args.connections, "size": args.size, "duration": args.duration, "warmup": args.warmup,
            "rounds": args.rounds, "idle_requested": args.idle, "idle_count": count, "fd_note": fd_note,
            "profile": args.profile, "run_dir": str(run), "versions": versions,
        },
        "rounds": {t: [] for t in targets},
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        pods = common.start([str(WSLOAD), "echo-server", *(f"{p}:{PORTS['PORT']}" for p in PODS)],
                            run / "pods.log", cpus=args.load_cpus)
        for p in PODS:
            common.wait_port(p, PORTS["PORT"])
        if "fairway" in targets:
            start_fairway_controller(run, args.profile)
        for i in range(args.rounds):
            # Rotate the order so no target always runs first (or right after a heavy one).
            order = targets[i % len(targets):] + targets[:i % len(targets)]
            for name in order:
                rec: dict = {}
                tag = f"r{i + 1}"
                print(f"[{time.strftime('%H:%M:%S')}] round {i + 1}: {name} load", file=sys.stderr)
                try:
                    rec["load"] = measure_load(name, run, args, tag + "-load")
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                    rec["load_error"] = str(e)
                if count and name != "direct":
                    print(f"[{time.strftime('%H:%M:%S')}] round {i + 1}: {name} {count} idle", file=sys.stderr)
                    try:
                        rec["idle"] = measure_idle(name, run, args, tag + "-idle", count)
                    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                        rec["idle_error"] = str(e)
                print(f"    {json.dumps(rec)}", file=sys.stderr)
                results["rounds"][name].append(rec)
        if pods.poll() is not None:
            raise RuntimeError(f"the echo pods exited: {run / 'pods.log'}")
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
