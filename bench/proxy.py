#!/usr/bin/env python3
"""The proxy benchmark: fairway-proxy beside Envoy, nginx and HAProxy, one run.

Same machine, same backends (bench/conf/backend-nginx.conf: one nginx answering as four
"pods" on 127.0.0.11-14), same load generator (wrk for HTTP/1.1 keep-alive, h2load for
h2c), same worker count (one) and the same CPU pinning for every proxy. For each target
it records requests/s, latency, proxy CPU time per request, proxy RSS, and the pods'
accepted connections against the requests they served (keep-alive really on).

Then fairway-proxy's RSS idle and with 10,000 endpoints.

Standard library only. Start it through bench/proxy.sh, which checks the tools.
Every run is bounded in time; every process it starts is stopped by its own id.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import plot  # noqa: E402  (bench/plot.py)
from report import report  # noqa: E402  (bench/report.py)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "bench" / "conf"
CLK_TCK = os.sysconf("SC_CLK_TCK")

PODS = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
HOST = "orders.bench"  # the fairway Route's host; the other proxies ignore it

# Ports, all on loopback. Away from the defaults (8080, 4140, 18000, ...) so a test
# suite running on the same machine does not collide with the benchmark.
PORTS = {
    "PORT": 28080,  # pods, HTTP/1.1
    "H2PORT": 28081,  # pods, h2c
    "STATUS_PORT": 28099,  # pods' stub_status, on 127.0.0.10
    "FAIRWAY_PORT": 28140,
    "FAIRWAY_ADMIN_PORT": 28190,
    "CONTROLLER_GRPC_PORT": 28100,
    "CONTROLLER_ADMIN_PORT": 28101,
    "ENVOY_PORT": 28141,
    "ENVOY_ADMIN_PORT": 28191,
    "NGINX_PORT": 28142,
    "NGINX_H2PORT": 28152,
    "HAPROXY_PORT": 28143,
    "HAPROXY_H2PORT": 28153,
}

STARTED: list[subprocess.Popen] = []
# `taskset -c CPUS` for the load generator and the pods, from --load-cpus.
LOAD_PIN: list[str] = []


# --- processes -------------------------------------------------------------------


def start(argv: list[str], log: Path, env: dict | None = None, cpus: str | None = None) -> subprocess.Popen:
    """Starts `argv` in its own process group, optionally pinned to `cpus`."""
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    out = open(log, "wb")
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Stops a process group this script started (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    if proc in STARTED:
        STARTED.remove(proc)


def stop_all() -> None:
    for proc in list(reversed(STARTED)):
        stop(proc)


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def http_get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url: str, host: str | None = None, want: int = 200, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, body = http_get(url, host)
            if status == want:
                return body
            last = f"status {status}: {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered {want}: {last}")


# --- /proc -----------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx's workers, taskset's exec'd child is `pid`)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of `pids` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def status_kib(pids: list[int], key: str) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pod_counters() -> tuple[int, int]:
    """(accepted connections, requests) the pods have served, from stub_status."""
    _, body = http_get(f"http://127.0.0.10:{PORTS['STATUS_PORT']}/")
    lines = body.decode().splitlines()
    accepts, handled, requests = (int(x) for x in lines[2].split())
    return accepts, requests


def established_to_pods(pids: list[int]) -> int | None:
    """Established TCP connections from `pids` to the pods' HTTP/1.1 port right now."""
    if not pids:
        return None
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{PORTS['PORT']} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    mine = {str(p) for p in pids}
    return sum(1 for line in out.splitlines() if set(re.findall(r"pid=(\d+)", line)) & mine)


# --- load generators -------------------------------------------------------------

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsed latency {text!r}")
    return float(m.group(1)) * UNIT[m.group(2)]


def wrk(url: str, seconds: int, args, log: Path) -> dict:
    argv = [
        *LOAD_PIN, "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s",
        "--latency", "-H", f"Host: {HOST}", url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    log.write_text(" ".join(argv) + "\n" + out)
    res = {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "socket_errors": re.search(r"Socket errors: (.*)", out).group(1) if "Socket errors" in out else "",
    }
    for pct in ("50", "90", "99"):
        res[f"p{pct}_ms"] = to_ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    return res


def h2load(url: str, seconds: int, args, log: Path) -> dict:
    argv = [
        *LOAD_PIN, "h2load", "-t1", f"-c{args.h2_connections}", f"-m{args.streams}", f"-D{seconds}",
        "-H", f":authority: {HOST}", url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    log.write_text(" ".join(argv) + "\n" + out)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    secs = float(re.search(r"finished in ([\d.]+)s", out).group(1))
    done = int(m.group(2))
    return {
        "requests": done,
        "rps": float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1)),
        "non2xx": done - int(codes.group(1)),
        "failed": int(m.group(4)) + int(m.group(5)),
        "mean_ms": to_ms(lat.group(3)),
        "max_ms": to_ms(lat.group(2)),
        "seconds": secs,
    }


# --- targets ---------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str  # HTTP/1.1
    h2url: str | None
    procs: list[subprocess.Popen] = field(default_factory=list)
    root_pid: int | None = None  # whose process tree is "the proxy" (None: direct)


def fill(template: Path, dest: Path, run: Path, extra: dict | None = None) -> Path:
    text = template.read_text()
    values = {**{k: str(v) for k, v in PORTS.items()}, "RUN": str(run), **(extra or {})}
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    leftover = re.findall(r"@@\w+@@", text)
    if leftover:
        raise RuntimeError(f"{template}: unfilled {leftover}")
    dest.write_text(text)
    return dest


def find_bin(name: str) -> str:
    # The proxy as it ships (`--profile dist`, built by bench/proxy.sh), else release.
    for candidate in (ROOT / "target" / "dist" / name, ROOT / "target" / "release" / name,
                      shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(f"{name} not found (run bench/install.sh, then bench/proxy.sh builds it)")


def envoy_bin() -> str:
    return subprocess.run(
        [str(ROOT / "bench" / "envoy-path.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()


def start_backends(run: Path, workers: int, cpus: str | None) -> subprocess.Popen:
    (run / "backend-body").mkdir(exist_ok=True)
    conf = fill(CONF / "backend-nginx.conf", run / "backend-nginx.conf", run, {"BACKEND_WORKERS": workers})
    proc = start([find_bin("nginx"), "-p", str(run), "-e", str(run / "backend-error.log"), "-c", str(conf)],
                 run / "backend.log", cpus=cpus)
    for pod in PODS:
        wait_port(pod, PORTS["PORT"])
    wait_port("127.0.0.10", PORTS["STATUS_PORT"])
    return proc


def fairway_static_dir(dest: Path, endpoints: int | None = None) -> Path:
    """The static directory: the benchmark Route over the four pods, or (with
    `endpoints`) over that many unreachable loopback endpoints in 1,000-endpoint slices
    (Kubernetes' own limit per slice)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONF / "fairway" / "route.yaml", dest / "route.yaml")
    if endpoints is None:
        fill(CONF / "fairway" / "orders.yaml.in", dest / "orders.yaml", dest)
        return dest
    text = (CONF / "fairway" / "orders.yaml.in").read_text().replace("@@PORT@@", str(PORTS["PORT"]))
    service = text.split("---")[0]
    (dest / "orders.yaml").write_text(service)
    per_slice = 1000
    for s in range(0, endpoints, per_slice):
        lines = [
            "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
            f"metadata: {{name: orders-{s // per_slice:03d}, namespace: bench, "
            "labels: {kubernetes.io/service-name: orders}}",
            "addressType: IPv4", f"ports: [{{name: http, port: {PORTS['PORT']}, protocol: TCP}}]", "endpoints:",
        ]
        for i in range(s, min(s + per_slice, endpoints)):
            # 127.1.x.y: loopback, nothing listens there; a connect is refused at once.
            ip = f"127.1.{i // 250}.{i % 250 + 1}"
            lines.append(f"- {{addresses: [\"{ip}\"], conditions: {{ready: true, serving: true, terminating: false}}}}")
        (dest / f"slice-{s // per_slice:03d}.yaml").write_text("\n".join(lines) + "\n")
    return dest


def start_fairway(run: Path, static: Path, cpus: str | None, tag: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    ctl = start(
        [find_bin("fairway-controller"), "--static-dir", str(static),
         "--grpc-addr", f"127.0.0.1:{PORTS['CONTROLLER_GRPC_PORT']}",
         "--admin-addr", f"127.0.0.1:{PORTS['CONTROLLER_ADMIN_PORT']}",
         # Loopback only, one machine: no token, no TLS (docs/security.md).
         "--no-auth"],
        run / f"controller-{tag}.log",
        env={"RUST_LOG": "warn"},
    )
    wait_port("127.0.0.1", PORTS["CONTROLLER_GRPC_PORT"])
    proxy = start(
        [find_bin("fairway-proxy"), "--controller", f"http://127.0.0.1:{PORTS['CONTROLLER_GRPC_PORT']}",
         "--controller-plaintext",
         # One worker, like every other proxy here: tokio's current-thread scheduler.
         "--workers", "1",
         "--listen", f"127.0.0.1:{PORTS['FAIRWAY_PORT']}",
         "--admin-addr", f"127.0.0.1:{PORTS['FAIRWAY_ADMIN_PORT']}",
         "--id", f"bench-{tag}", "--node", "bench"],
        run / f"fairway-proxy-{tag}.log",
        env={"RUST_LOG": "warn"},
        cpus=cpus,
    )
    wait_http(f"http://127.0.0.1:{PORTS['FAIRWAY_ADMIN_PORT']}/ready")
    return ctl, proxy


def start_target(name: str, run: Path, cpus: str | None) -> Target:
    P = PORTS
    if name == "direct":
        return Target("direct", f"http://{PODS[0]}:{P['PORT']}/", f"http://{PODS[0]}:{P['H2PORT']}/")
    if name == "fairway":
        ctl, proxy = start_fairway(run, fairway_static_dir(run / "fairway-static"), cpus, "bench")
        t = Target("fairway", f"http://127.0.0.1:{P['FAIRWAY_PORT']}/", f"http://127.0.0.1:{P['FAIRWAY_PORT']}/",
                   [proxy, ctl], proxy.pid)
    elif name == "envoy":
        conf = fill(CONF / "envoy.yaml", run / "envoy.yaml", run)
        proc = start([envoy_bin(), "-c", str(conf), "--concurrency", "1", "--log-level", "warn",
                      "--disable-hot-restart"], run / "envoy.log", cpus=cpus)
        t = Target("envoy", f"http://127.0.0.1:{P['ENVOY_PORT']}/", f"http://127.0.0.1:{P['ENVOY_PORT']}/",
                   [proc], proc.pid)
    elif name == "nginx":
        for d in ("nginx-body", "nginx-proxy-temp"):
            (run / d).mkdir(exist_ok=True)
        conf = fill(CONF / "nginx-proxy.conf", run / "nginx-proxy.conf", run)
        proc = start([find_bin("nginx"), "-p", str(run), "-e", str(run / "nginx-proxy-error.log"), "-c", str(conf)],
                     run / "nginx-proxy.log", cpus=cpus)
        t = Target("nginx", f"http://127.0.0.1:{P['NGINX_PORT']}/", f"http://127.0.0.1:{P['NGINX_H2PORT']}/",
                   [proc], proc.pid)
    elif name == "haproxy":
        conf = fill(CONF / "haproxy.cfg", run / "haproxy.cfg", run)
        proc = start([find_bin("haproxy"), "-db", "-f", str(conf)], run / "haproxy.log", cpus=cpus)
        t = Target("haproxy", f"http://127.0.0.1:{P['HAPROXY_PORT']}/", f"http://127.0.0.1:{P['HAPROXY_H2PORT']}/",
                   [proc], proc.pid)
    else:
        raise ValueError(name)
    body = wait_http(t.url, HOST)
    if not body.startswith(b"pod-"):
        raise RuntimeError(f"{name}: unexpected body {body[:100]!r}")
    return t


# --- one measurement -------------------------------------------------------------


def measure(t: Target, proto: str, args, run: Path, tag: str) -> dict:
    pids = process_tree(t.root_pid) if t.root_pid else []
    load = wrk if proto == "h1" else h2load
    url = t.url if proto == "h1" else t.h2url
    accepts0, requests0 = pod_counters()
    if args.warmup:
        load(url, args.warmup, args, run / f"{t.name}-{proto}-{tag}-warmup.txt")
    cpu0 = cpu_seconds(pids)
    wall0 = time.monotonic()
    res = load(url, args.duration, args, run / f"{t.name}-{proto}-{tag}.txt")
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(pids) - cpu0
    accepts1, requests1 = pod_counters()
    res.update(
        proto=proto,
        load=loadavg(),
        # Whole-tree figures: for nginx, master + worker.
        rss_kib=status_kib(pids, "VmRSS"),
        hwm_kib=status_kib(pids, "VmHWM"),
        threads=sum(threads(p) for p in pids),
        cpu_s=cpu,
        cpu_pct=100 * cpu / wall if pids else None,
        cpu_us_per_req=1e6 * cpu / res["requests"] if pids and res["requests"] else None,
        # Counted at the pods, over warm-up + run (one proxy runs at a time). The two
        # stub_status reads themselves add one connection and two requests.
        upstream_conns=accepts1 - accepts0 - 1,
        upstream_requests=requests1 - requests0 - 2,
        established=established_to_pods(pids),
    )
    return res


def fairway_rss_10k(run: Path, cpus: str | None, endpoints: int) -> dict:
    """RSS once the large table is applied (`/ready` turns true only after the whole,
    atomically applied snapshot) and the allocations settled; then the endpoint count
    as /debug/routes reports it, and RSS again after that one admin request (its JSON
    for 10k endpoints is large, see docs/benchmarks.md)."""
    static = fairway_static_dir(run / "fairway-10k", endpoints)
    ctl, proxy = start_fairway(run, static, cpus, "10k")
    pids = process_tree(proxy.pid)
    last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        rss = status_kib(pids, "VmRSS")
        if rss != last:
            last, stable_since = rss, time.monotonic()
        elif time.monotonic() - stable_since >= 3:
            break
        time.sleep(0.25)
    out = {"endpoints": endpoints, "rss_kib": status_kib(pids, "VmRSS"), "hwm_kib": status_kib(pids, "VmHWM")}
    c0 = cpu_seconds(pids)
    time.sleep(3)
    out["cpu_s_idle_3s"] = cpu_seconds(pids) - c0
    body = wait_http(f"http://127.0.0.1:{PORTS['FAIRWAY_ADMIN_PORT']}/debug/routes").decode()
    out["debug_routes_bytes"] = len(body)
    out["endpoints_in_debug_routes"] = body.count('"addr": "127.1.')
    time.sleep(1)
    out["rss_kib_after_debug_routes"] = status_kib(pids, "VmRSS")
    stop(proxy)
    stop(ctl)
    return out


def profile(t: Target, seconds: int, args, run: Path) -> dict | None:
    """An extra, unmeasured wrk run on `t`: first `perf stat` counts the proxy's system
    calls and context switches per request (requests counted at the pods), then
    `perf record` samples where its CPU goes (flat profile in perf-NAME.txt)."""
    if not shutil.which("perf") or not t.root_pid:
        return None
    pids = ",".join(str(p) for p in process_tree(t.root_pid))
    load = subprocess.Popen(
        [*LOAD_PIN, "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{2 * seconds + 3}s", "-H", f"Host: {HOST}", t.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    STARTED.append(load)
    time.sleep(1)
    _, req0 = pod_counters()
    stat = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "-p", pids,
                           "--", "sleep", str(seconds)], capture_output=True, text=True, timeout=seconds + 30,
                          check=False).stderr
    _, req1 = pod_counters()
    counts = {}
    for line in stat.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2]] = int(f[0])
    data = run / f"perf-{t.name}.data"
    subprocess.run(["perf", "record", "-F", "999", "-g", "-o", str(data), "-p", pids, "--",
                    "sleep", str(seconds)], capture_output=True, timeout=seconds + 30, check=False)
    load.wait(timeout=2 * seconds + 30)
    STARTED.remove(load)
    report = run / f"perf-{t.name}.txt"
    with open(report, "w") as f:
        for sort in ("dso", "dso,symbol"):
            subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", sort,
                            "--percent-limit", "0.7", "-g", "none"], stdout=f, stderr=subprocess.DEVNULL,
                           timeout=300, check=False)
    requests = max(req1 - req0, 1)
    return {
        "report": str(report),
        "requests": requests,
        "syscalls_per_req": counts.get("raw_syscalls:sys_enter", 0) / requests,
        "context_switches_per_req": counts.get("context-switches", 0) / requests,
    }


def versions() -> dict:
    """What was measured: the commit (and whether proxy/ or controller/ differ from it)
    and each tool's version line."""
    def first(argv: list[str], pattern: str = "") -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except OSError:
            return "?"
        lines = (p.stdout + p.stderr).splitlines()
        hit = [l for l in lines if pattern in l] if pattern else lines
        return hit[0].strip() if hit else "?"

    git = ["git", "-C", str(ROOT)]
    dirty = subprocess.run([*git, "status", "--porcelain", "proxy", "controller", "proto"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {
        "commit": "commit " + first([*git, "rev-parse", "--short", "HEAD"]) + (" (+ local changes)" if dirty else ""),
        "wrk": first(["wrk", "-v"], "wrk").split(" Copyright")[0],
        "h2load": first(["h2load", "--version"]),
        "nginx": first([find_bin("nginx"), "-v"]),
        "haproxy": first([find_bin("haproxy"), "-v"], "version").split(" - ")[0],
        "envoy": "envoy " + first([envoy_bin(), "--version"], "version").split("version: ")[-1],
    }


# --- main ------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="direct,fairway,envoy,nginx,haproxy")
    ap.add_argument("--protocols", default="h1,h2", help="h1 (wrk), h2 (h2load), or both")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measurements per target; the median round's req/s, each latency and CPU figure's median")
    ap.add_argument("--duration", type=int, default=10, help="seconds measured per target")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--h2-connections", type=int, default=4, help="h2load connections")
    ap.add_argument("--streams", type=int, default=8,
                    help="h2load concurrent streams per connection (4 x 8 = the 32 requests in flight of the wrk run)")
    ap.add_argument("--proxy-cpus", default="0", help="taskset CPU list for every proxy ('' = no pinning)")
    ap.add_argument("--load-cpus", default="1", help="taskset CPU list for wrk/h2load and the pods ('' = free)")
    ap.add_argument("--contend", type=int, default=0,
                    help="CPU hogs pinned to the proxy CPUs for the whole run, the same for every target: "
                         "a proxy on a busy node shares its core with applications (0 = quiet)")
    ap.add_argument("--backend-workers", type=int, default=1)
    ap.add_argument("--endpoints-10k", type=int, default=10000, help="0 skips the large-table RSS")
    ap.add_argument("--perf", default="", help="targets to profile with perf after their h1 run, e.g. fairway")
    ap.add_argument("--svg", default=str(ROOT / "docs" / "img" / "proxy-bench.svg"),
                    help="chart of the HTTP/1.1 run ('' = none)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "proxy"), help="results directory")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    cpus = args.proxy_cpus or None
    if args.load_cpus:
        LOAD_PIN[:] = ["taskset", "-c", args.load_cpus]
    protocols = [p for p in args.protocols.split(",") if p]
    targets = [t for t in args.targets.split(",") if t]
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), "?")
    results: dict = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpus": os.cpu_count(), "cpu_model": model,
            "load_before": loadavg(), "proxy_cpus": cpus, "load_cpus": args.load_cpus or None, "backend_workers": args.backend_workers,
            "threads": args.threads, "connections": args.connections, "streams": args.streams,
            "h2_connections": args.h2_connections, "contend": args.contend,
            "duration": args.duration, "warmup": args.warmup, "rounds": args.rounds, "run_dir": str(run),
            "versions": versions(),
        },
        "h1": {}, "h2": {}, "fairway_memory": {},
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        backends = start_backends(run, args.backend_workers, args.load_cpus or None)
        # Busy loops at the proxies' own priority: the kernel shares the core between a
        # proxy and its hogs, so every target gets the same slice and the same wake-up
        # delays (stopped with everything else by stop_all).
        for i in range(args.contend):
            start([sys.executable, "-c", "while True: pass"], run / f"hog-{i}.log", cpus=cpus)
        running: dict[str, Target] = {}
        for name in targets:
            running[name] = t = start_target(name, run, cpus)
            if name == "fairway" and t.root_pid:
                time.sleep(1)
                pids = process_tree(t.root_pid)
                results["fairway_memory"]["idle"] = {
                    "rss_kib": status_kib(pids, "VmRSS"), "hwm_kib": status_kib(pids, "VmHWM"),
                    "threads": threads(t.root_pid),
                }
        # All targets stay up (idle ones cost nothing); each round measures them one
        # at a time, in an order rotated per round so none always runs first or last.
        runs: dict[str, dict[str, list[dict]]] = {p: {n: [] for n in targets} for p in protocols}
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for name in order:
                t = running[name]
                for proto in protocols:
                    if proto == "h2" and not t.h2url:
                        continue
                    r = measure(t, proto, args, run, f"r{rnd + 1}")
                    runs[proto][name].append(r)
                    print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} {name} {proto}: {r['rps']:,.0f} req/s, "
                          f"upstream conns {r['upstream_conns']} for {r['upstream_requests']} requests, "
                          f"load {r['load']}", file=sys.stderr, flush=True)
        for name in [n for n in args.perf.split(",") if n in running]:
            prof = profile(running[name], 5, args, run)
            results.setdefault("profiles", {})[name] = prof
            print(f"    profile: {prof}", file=sys.stderr, flush=True)
        for proto in protocols:
            for name, rs in runs[proto].items():
                if not rs:
                    continue
                # Requests/s, RSS and the counts: the median round by requests/s. Latency
                # and CPU: each figure's own median over the rounds. A 10 s round's tail is
                # at the mercy of a VM's stalls (every proxy here, nginx included, shows
                # single 5-20 ms stalls in some rounds and not in others), so one round's
                # p99 says more about the machine than about the proxy.
                med = dict(sorted(rs, key=lambda r: r["rps"])[len(rs) // 2])
                for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms", "cpu_us_per_req", "cpu_pct"):
                    values = sorted(r[key] for r in rs if r.get(key) is not None)
                    if values:
                        med[key] = values[len(values) // 2]
                med["rounds_rps"] = [r["rps"] for r in rs]
                med["rounds_p99_ms"] = [r["p99_ms"] for r in rs if r.get("p99_ms") is not None]
                med["upstream_conns"] = sum(r["upstream_conns"] for r in rs)
                med["upstream_requests"] = sum(r["upstream_requests"] for r in rs)
                med["hwm_kib"] = rs[-1]["hwm_kib"]
                results[proto][name] = med
        if "fairway" in running and "h1" in runs:
            last = runs["h1"]["fairway"][-1]
            results["fairway_memory"]["after_load"] = {"rss_kib": last["rss_kib"], "hwm_kib": last["hwm_kib"]}
        for t in running.values():
            for proc in t.procs:
                stop(proc)
        stop(backends)
        if args.endpoints_10k and "fairway" in targets:
            print(f"[{time.strftime('%H:%M:%S')}] fairway with {args.endpoints_10k} endpoints", file=sys.stderr)
            results["fairway_memory"]["10k"] = fairway_rss_10k(run, cpus, args.endpoints_10k)
    finally:
        stop_all()
    results["meta"]["load_after"] = loadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (out / "results.md").write_text(text)
    print(text)
    if args.svg and results["h1"]:
        plot.render(results, Path(args.svg))
        print(f"chart: {args.svg}", file=sys.stderr)
    print(f"results: {out / 'results.json'}, logs and generated configs: {run}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
