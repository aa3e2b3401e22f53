#!/usr/bin/env python3
"""The balancing benchmark (issue 18): how each balancer's tail holds up when pods are
not alike, under open-loop load at 50%, 80% and 90% of the pods' capacity.

Four pods (bench/lbload pods, on 127.0.0.11-14): each serves 4 requests at once for
5 ms each; pod-3 is 3x slower per request; pod-4 stalls every request for 200 ms once
every 2 s. Capacity: 800 + 800 + 267 + 720 = 2,587 requests/s. The load (bench/lbload
load) starts requests on a fixed schedule and measures each from its scheduled start,
so a stalled pod cannot slow the load down and hide its own tail.

Targets, one worker each, pinned like every proxy benchmark here (the proxy on
--proxy-cpus, the pods and the load on --load-cpus): fairway-proxy with RoundRobin,
LeastRequest, PeakEwma and Prequal (four Routes of one proxy), Envoy `LEAST_REQUEST`, nginx
`least_conn`, HAProxy `leastconn`. Per target and load: p50, p99, p99.9, errors and
each pod's share. Rounds rotate the targets' order; the table gives medians over
rounds. Start it through bench/balance.sh, which builds everything. Standard library
only, plus bench/proxy.py's process helpers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy as common  # noqa: E402  (bench/proxy.py: start/stop, waits, binaries)

ROOT = common.ROOT
CONF = common.CONF
PODS = common.PODS
LBLOAD = ROOT / "target" / "lbload"
CAPACITY = 4 / 0.005 * 2 + 4 / 0.015 + 4 / 0.005 * 0.9  # requests/s, see above

# Apart from the other benchmarks' ports (280xx-283xx).
PORTS = {
    "PORT": 28480,
    "FAIRWAY_PORT": 28440,
    "FAIRWAY_ADMIN_PORT": 28490,
    "CONTROLLER_GRPC_PORT": 28400,
    "CONTROLLER_ADMIN_PORT": 28401,
    "ENVOY_PORT": 28441,
    "ENVOY_ADMIN_PORT": 28491,
    "NGINX_PORT": 28442,
    "HAPROXY_PORT": 28443,
}
FAIRWAY_POLICIES = {"fairway-rr": "rr.bench", "fairway-lr": "lr.bench", "fairway-ewma": "ewma.bench",
                    "fairway-prequal": "prequal.bench"}
PEERS = {"envoy": "Envoy LEAST_REQUEST", "nginx": "nginx least_conn", "haproxy": "HAProxy leastconn"}


def fill(template: Path, dest: Path, run: Path) -> Path:
    common.PORTS.update(PORTS)  # bench/proxy.py's fill reads its PORTS
    return common.fill(template, dest, run)


def start_pods(run: Path, cpus: str | None):
    proc = common.start(
        [str(LBLOAD), "pods", "-port", str(PORTS["PORT"]), "-ips", ",".join(PODS),
         "-slow", PODS[2], "-stall", PODS[3]],
        run / "pods.log", cpus=cpus)
    for pod in PODS:
        common.wait_port(pod, PORTS["PORT"])
    return proc


def start_fairway(run: Path, cpus: str | None):
    static = run / "fairway-static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONF / "fairway" / "route-balance.yaml", static / "route.yaml")
    fill(CONF / "fairway" / "orders.yaml.in", static / "orders.yaml", static)
    common.PORTS.update(PORTS)
    ctl, proxy = common.start_fairway(run, static, cpus, "balance")
    for host in FAIRWAY_POLICIES.values():
        common.wait_http(f"http://127.0.0.1:{PORTS['FAIRWAY_PORT']}/", host)
    return [proxy, ctl]


def start_more_proxies(run: Path, n: int, cpus: str | None) -> tuple[list, list[str]]:
    """`n` more fairway proxies on the same controller (ports FAIRWAY_PORT + 10 + i):
    many DaemonSet proxies in front of the same pods. Their URLs, for the load to
    rotate over."""
    procs, urls = [], []
    for i in range(n):
        port, admin = PORTS["FAIRWAY_PORT"] + 10 + i, PORTS["FAIRWAY_ADMIN_PORT"] + 10 + i
        procs.append(common.start(
            [common.find_bin("fairway-proxy"), "--controller", f"http://127.0.0.1:{PORTS['CONTROLLER_GRPC_PORT']}",
             "--controller-plaintext", "--workers", "1",
             "--listen", f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{admin}",
             "--id", f"herd-{i}", "--node", f"bench-{i}"],
            run / f"fairway-herd-{i}.log", env={"RUST_LOG": "warn"}, cpus=cpus))
        urls.append(f"http://127.0.0.1:{port}/")
    for url in urls:
        for host in FAIRWAY_POLICIES.values():
            common.wait_http(url, host)
    return procs, urls


def start_peer(name: str, run: Path, cpus: str | None):
    if name == "envoy":
        conf = fill(CONF / "envoy-balance.yaml", run / "envoy-balance.yaml", run)
        proc = common.start([common.envoy_bin(), "-c", str(conf), "--concurrency", "1",
                             "--log-level", "warn", "--disable-hot-restart"], run / "envoy.log", cpus=cpus)
    elif name == "nginx":
        for d in ("nginx-body", "nginx-proxy-temp"):
            (run / d).mkdir(exist_ok=True)
        conf = fill(CONF / "nginx-balance.conf", run / "nginx-balance.conf", run)
        proc = common.start([common.find_bin("nginx"), "-p", str(run), "-e", str(run / "nginx-error.log"),
                             "-c", str(conf)], run / "nginx.log", cpus=cpus)
    elif name == "haproxy":
        conf = fill(CONF / "haproxy-balance.cfg", run / "haproxy-balance.cfg", run)
        proc = common.start([common.find_bin("haproxy"), "-db", "-f", str(conf)], run / "haproxy.log", cpus=cpus)
    else:
        raise ValueError(name)
    port = PORTS[f"{name.upper()}_PORT"]
    common.wait_http(f"http://127.0.0.1:{port}/")
    return [proc], port


def load(url: str, host: str, rate: float, args, log: Path) -> dict:
    """One open-loop run on freshly started pods: no run inherits another's queues."""
    pods = start_pods(log.parent, args.load_cpus)
    try:
        return _load(url, host, rate, args, log)
    finally:
        common.stop(pods)


def _load(url: str, host: str, rate: float, args, log: Path) -> dict:
    pin = ["taskset", "-c", args.load_cpus] if args.load_cpus else []
    argv = [*pin, str(LBLOAD), "load", "-url", url, "-host", host, "-rate", f"{rate:.0f}",
            "-duration", f"{args.duration}s", "-warmup", f"{args.warmup}s"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + args.warmup + 60)
    log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"lbload failed: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--loads", default="0.5,0.8,0.9", help="fractions of the pods' capacity")
    p.add_argument("--duration", type=int, default=15, help="measured seconds per run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--targets", default="fairway-rr,fairway-lr,fairway-ewma,fairway-prequal,envoy,nginx,haproxy")
    p.add_argument("--proxy-cpus", default="0")
    p.add_argument("--load-cpus", default="1")
    p.add_argument("--herd", type=int, default=0,
                   help="also run fairway's policies through this many proxies at once, the load spread over them")
    p.add_argument("--out", default=str(ROOT / "target" / "bench" / "balance"))
    args = p.parse_args()
    loads = [float(x) for x in args.loads.split(",")]
    targets = args.targets.split(",")
    out = Path(args.out).resolve()
    run = out / time.strftime("run-%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    try:
        for r in range(args.rounds):
            order = targets[r % len(targets):] + targets[: r % len(targets)]
            fairway_done = False
            for target in order:
                if target.startswith("fairway") and fairway_done:
                    continue
                # Pods for the target's start-up checks only: each run starts its own.
                pods = start_pods(run, args.load_cpus)
                if target.startswith("fairway"):
                    fairway_done = True
                    procs = start_fairway(run, args.proxy_cpus)
                    runs = [(t, f"http://127.0.0.1:{PORTS['FAIRWAY_PORT']}/", FAIRWAY_POLICIES[t])
                            for t in targets if t.startswith("fairway")]
                    if args.herd:
                        more, urls = start_more_proxies(run, args.herd, args.proxy_cpus)
                        procs = more + procs
                        runs += [(f"{t}-x{args.herd}", ",".join(urls), FAIRWAY_POLICIES[t])
                                 for t in targets if t.startswith("fairway")]
                else:
                    procs, port = start_peer(target, run, args.proxy_cpus)
                    runs = [(target, f"http://127.0.0.1:{port}/", "orders.bench")]
                common.stop(pods)
                try:
                    for name, url, host in runs:
                        for level in loads:
                            rate = level * CAPACITY
                            print(f"round {r + 1}: {name} at {level:.0%} ({rate:.0f}/s) ...", file=sys.stderr, flush=True)
                            res = load(url, host, rate, args, run / f"{name}-{level}-{r}.json")
                            res.update(target=name, load=level, round=r, loadavg=common.loadavg())
                            results.append(res)
                            print(f"  p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, p99.9 {res['p999_ms']:.1f} ms, "
                                  f"errors {res['errors']}, shares {res['shares']}", file=sys.stderr, flush=True)
                finally:
                    for proc in procs:
                        common.stop(proc)
    finally:
        common.stop_all()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(table(results, targets, loads))
    print(table(results, targets, loads))
    return 0


def table(results: list[dict], targets: list[str], loads: list[float]) -> str:
    names = {**{t: f"fairway `{t.split('-')[1]}`" for t in FAIRWAY_POLICIES}, **PEERS}
    names.update({"fairway-rr": "fairway `RoundRobin`", "fairway-lr": "fairway `LeastRequest`",
                  "fairway-ewma": "fairway `PeakEwma`", "fairway-prequal": "fairway `Prequal`"})
    for t in list(names):
        if t.startswith("fairway"):
            for n in range(2, 65):
                names[f"{t}-x{n}"] = f"{names[t]}, {n} proxies"
    lines = ["| target | load | p50 ms | p99 ms | p99.9 ms | errors | pod-1 / pod-2 / pod-3 (slow) / pod-4 (stalls) |",
             "|---|---|---|---|---|---|---|"]
    seen = list(dict.fromkeys(r["target"] for r in results))
    targets = [t for t in targets if t in seen] + [t for t in seen if t not in targets]
    for level in loads:
        for t in targets:
            rs = [r for r in results if r["target"] == t and r["load"] == level]
            if not rs:
                continue
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            shares = {}
            for r in rs:
                for pod, n in r["shares"].items():
                    shares[pod] = shares.get(pod, 0) + n
            total = sum(shares.values()) or 1
            split = " / ".join(f"{100 * shares.get(f'pod-{i}', 0) / total:.0f}%" for i in range(1, 5))
            lines.append(f"| {names.get(t, t)} | {level:.0%} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} | "
                         f"{med('p999_ms'):.1f} | {sum(r['errors'] for r in rs)} | {split} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
