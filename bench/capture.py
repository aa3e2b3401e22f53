#!/usr/bin/env python3
"""The sidecar's captured path against the explicit one and against going direct.

Issue 17's benchmark: the same wrk load (HTTP/1.1 keep-alive, 32 connections) to

- **direct**: one pod, no proxy;
- **explicit**: fairway-proxy's `--listen` port, dialled by the client (the DaemonSet's
  or a configured sidecar's way);
- **captured**: the Service's ClusterIP, which the client dials as it would without
  Fairway; the real nftables rules of `fairway-capture install` redirect it to the
  proxy's `--outbound-listen` port, where the original destination is recovered, the
  first request detected and every request balanced.

One fairway-proxy (one worker, pinned, running as the proxy's own UID so its own
connections are not captured) serves both proxied targets, over the same Route and the
same four nginx "pods" as bench/proxy.py. Everything runs in a network namespace of
its own (`unshare --net`), so the rules touch nothing outside it. Rounds rotate the
order; medians are reported, with the captured path's cost over the explicit one.

Run through bench/capture.sh (root: network namespace and nftables).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy as pb  # noqa: E402  (bench/proxy.py: processes, wrk, the pods)

CLUSTER_IP = "10.96.0.50"
SERVICE_PORT = 8080
SERVICE_RANGE = "10.96.0.0/16"
PROXY_UID = 2140
OUTBOUND_PORT = 4143
NETNS_ENV = "FAIRWAY_BENCH_NETNS"


def static_dir(dest: Path) -> Path:
    """bench/proxy.py's Route and pods, the Service with a ClusterIP (what capture and
    the proxy's ClusterIP map need)."""
    pb.fairway_static_dir(dest)
    orders = dest / "orders.yaml"
    text = orders.read_text().replace(
        "spec:\n  ports:",
        f"spec:\n  clusterIP: {CLUSTER_IP}\n  clusterIPs: [{CLUSTER_IP}]\n  ports:",
        1,
    )
    orders.write_text(text)
    return dest


def run_cmd(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def start_proxy(run: Path, cpus: str | None) -> tuple[object, object]:
    P = pb.PORTS
    ctl = pb.start(
        [pb.find_bin("fairway-controller"), "--static-dir", str(static_dir(run / "static")),
         "--grpc-addr", f"127.0.0.1:{P['CONTROLLER_GRPC_PORT']}",
         "--admin-addr", f"127.0.0.1:{P['CONTROLLER_ADMIN_PORT']}", "--no-auth"],
        run / "controller.log", env={"RUST_LOG": "warn"},
    )
    pb.wait_port("127.0.0.1", P["CONTROLLER_GRPC_PORT"])
    proxy = pb.start(
        ["setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups",
         pb.find_bin("fairway-proxy"), "--controller", f"http://127.0.0.1:{P['CONTROLLER_GRPC_PORT']}",
         "--controller-plaintext", "--workers", "1",
         "--listen", f"127.0.0.1:{P['FAIRWAY_PORT']}",
         "--outbound-listen", f"127.0.0.1:{OUTBOUND_PORT}",
         "--admin-addr", f"127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}",
         "--id", "bench-capture", "--node", "bench"],
        run / "fairway-proxy.log", env={"RUST_LOG": "warn"}, cpus=cpus,
    )
    pb.wait_http(f"http://127.0.0.1:{P['FAIRWAY_ADMIN_PORT']}/ready")
    return ctl, proxy


def capture_bin() -> str:
    for profile in ("dist", "release", "debug"):
        path = pb.ROOT / "target" / profile / "fairway-capture"
        if path.is_file():
            return str(path)
    raise RuntimeError("fairway-capture not built (bench/capture.sh builds it)")


def outbound_balanced() -> int:
    _, body = pb.http_get(f"http://127.0.0.1:{pb.PORTS['FAIRWAY_ADMIN_PORT']}/metrics")
    for line in body.decode().splitlines():
        if line.startswith('fairway_proxy_outbound_connections_total{outcome="balanced"}'):
            return int(float(line.split()[-1]))
    return 0


def inside(args) -> int:
    run_cmd(["ip", "link", "set", "lo", "up"])
    run_cmd(["ip", "route", "add", "local", SERVICE_RANGE, "dev", "lo"])
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    os.chmod(run, 0o755)
    cpus = args.proxy_cpus or None
    if args.load_cpus:
        pb.LOAD_PIN[:] = ["taskset", "-c", args.load_cpus]
    P = pb.PORTS
    targets = {
        "direct": (f"http://{pb.PODS[0]}:{P['PORT']}/", None),
        "explicit": (f"http://127.0.0.1:{P['FAIRWAY_PORT']}/", "proxy"),
        "captured": (f"http://{CLUSTER_IP}:{SERVICE_PORT}/", "proxy"),
    }
    results: dict = {"meta": {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": pb.loadavg(),
        "rounds": args.rounds, "duration": args.duration, "connections": args.connections,
        "proxy_cpus": cpus, "load_cpus": args.load_cpus or None, "run_dir": str(run),
    }}
    try:
        backends = pb.start_backends(run, 1, args.load_cpus or None)
        _, proxy = start_proxy(run, cpus)
        run_cmd([capture_bin(), "install", "--service-cidr", SERVICE_RANGE,
                 "--proxy-uid", str(PROXY_UID), "--to-port", str(OUTBOUND_PORT)])
        body = pb.wait_http(targets["captured"][0], pb.HOST)
        if not body.startswith(b"pod-") or outbound_balanced() < 1:
            raise RuntimeError(f"the captured path is not balanced: {body[:80]!r}")
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        pids = pb.process_tree(proxy.pid)
        names = list(targets)
        for rnd in range(args.rounds):
            for name in names[rnd % 3:] + names[:rnd % 3]:
                url, through = targets[name]
                pb.wrk(url, args.warmup, args, run / f"{name}-r{rnd + 1}-warmup.txt")
                cpu0, wall0 = pb.cpu_seconds(pids), time.monotonic()
                res = pb.wrk(url, args.duration, args, run / f"{name}-r{rnd + 1}.txt")
                cpu, wall = pb.cpu_seconds(pids) - cpu0, time.monotonic() - wall0
                if through:
                    res["cpu_us_per_req"] = 1e6 * cpu / max(res["requests"], 1)
                    res["cpu_pct"] = 100 * cpu / wall
                res["load"] = pb.loadavg()
                runs[name].append(res)
                print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} {name}: {res['rps']:,.0f} req/s, "
                      f"p99 {res['p99_ms']:.2f} ms, load {res['load']}", file=sys.stderr, flush=True)
        for name, rs in runs.items():
            med = dict(sorted(rs, key=lambda r: r["rps"])[len(rs) // 2])
            for key in ("p50_ms", "p99_ms", "cpu_us_per_req"):
                values = sorted(r[key] for r in rs if r.get(key) is not None)
                if values:
                    med[key] = values[len(values) // 2]
            med["rounds_rps"] = [r["rps"] for r in rs]
            results[name] = med
        results["captured_connections_balanced"] = outbound_balanced()
        pb.stop(backends)
    finally:
        subprocess.run([capture_bin(), "remove"], capture_output=True, timeout=30)
        pb.stop_all()
    results["meta"]["load_after"] = pb.loadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (out / "results.md").write_text(text)
    print(text)
    print(f"results: {out / 'results.json'}, logs: {run}", file=sys.stderr)
    return 0


def report(results: dict) -> str:
    m = results["meta"]
    lines = [
        f"Captured vs explicit vs direct, {m['started']}, {m['rounds']} rounds of {m['duration']} s, "
        f"wrk -c{m['connections']}, load average {m['load_before']} before, {m['load_after']} after.",
        "",
        "| target | req/s | rounds | p50 ms | p99 ms | proxy CPU µs/req |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name in ("direct", "explicit", "captured"):
        r = results[name]
        rounds = ", ".join(f"{x / 1000:.1f}k" for x in r["rounds_rps"])
        cpu = f"{r['cpu_us_per_req']:.1f}" if r.get("cpu_us_per_req") else "-"
        lines.append(f"| {name} | {r['rps']:,.0f} | {rounds} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu} |")
    e, c = results["explicit"], results["captured"]
    lines += [
        "",
        f"captured / explicit: req/s {c['rps'] / e['rps']:.3f}x, p99 {c['p99_ms'] / e['p99_ms']:.3f}x, "
        f"CPU per request {c['cpu_us_per_req'] / e['cpu_us_per_req']:.3f}x "
        f"({results['captured_connections_balanced']} captured connections balanced).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--proxy-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--out", default=str(pb.ROOT / "target" / "bench" / "capture"))
    args = ap.parse_args()
    if os.environ.get(NETNS_ENV) == "1":
        return inside(args)
    if os.geteuid() != 0:
        print("bench/capture.py needs root (a network namespace and nftables)", file=sys.stderr)
        return 1
    env = {**os.environ, NETNS_ENV: "1"}
    return subprocess.run(["unshare", "--net", "--", sys.executable, __file__, *sys.argv[1:]],
                          env=env, timeout=3600).returncode


if __name__ == "__main__":
    sys.exit(main())
