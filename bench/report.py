"""Markdown tables for bench/proxy.py's results (see docs/benchmarks.md, section Proxy)."""

from __future__ import annotations


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _common(r: dict) -> tuple[str, str, str, str, str]:
    cpu = f"{r['cpu_us_per_req']:.1f}" if r["cpu_us_per_req"] is not None else "-"
    pct = f"{r['cpu_pct']:.0f}" if r["cpu_pct"] is not None else "-"
    rss = f"{r['rss_kib'] / 1024:.1f} ({r['hwm_kib'] / 1024:.1f})" if r["rss_kib"] else "-"
    spread = "–".join(f"{x / 1000:.1f}k" for x in (min(r["rounds_rps"]), max(r["rounds_rps"])))
    conns = f"{r['upstream_conns']:,} / {r['upstream_requests']:,}"
    if r["established"] is not None:
        conns += f" ({r['established']})"
    return cpu, pct, rss, spread, conns


def table_h1(results: dict) -> str:
    rows = [
        "| target | req/s | rounds' range | p50 ms | p90 ms | p99 ms (rounds' range) | proxy CPU µs/req | proxy CPU % | "
        "RSS MiB (peak) | upstream conns opened / requests (open at end) | errors |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, r in results["h1"].items():
        cpu, pct, rss, spread, conns = _common(r)
        errors = f"{r['non2xx']}{' ' + r['socket_errors'] if r['socket_errors'] else ''}"
        p99s = r.get("rounds_p99_ms") or [r["p99_ms"]]
        p99 = f"{r['p99_ms']:.3f} ({min(p99s):.2f}–{max(p99s):.2f})"
        rows.append(
            f"| {name} | {r['rps']:,.0f} | {spread} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {p99} "
            f"| {cpu} | {pct} | {rss} | {conns} | {errors} |"
        )
    out = "\n".join(rows)
    if "fairway" in results["h1"]:
        out += "\n\n" + ratios(results, "h1")
    return out


def ratios(results: dict, proto: str) -> str:
    f = results[proto]["fairway"]
    lat = "p99_ms" if proto == "h1" else "mean_ms"
    rows = [
        f"| fairway ÷ | req/s | {lat.split('_')[0]} latency | CPU/req | RSS |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results[proto].items():
        if name == "fairway":
            continue
        rows.append(
            f"| {name} | {ratio(f['rps'], r['rps'])} | {ratio(f[lat], r[lat])} "
            f"| {ratio(f['cpu_us_per_req'], r['cpu_us_per_req'])} | {ratio(f['rss_kib'] or None, r['rss_kib'] or None)} |"
        )
    return "\n".join(rows)


def table_h2(results: dict) -> str:
    rows = [
        "| target | req/s | rounds' range | mean ms | max ms | proxy CPU µs/req | proxy CPU % | RSS MiB (peak) | "
        "upstream conns opened / requests (open at end) | failed / non-2xx |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name, r in results["h2"].items():
        cpu, pct, rss, spread, conns = _common(r)
        rows.append(
            f"| {name} | {r['rps']:,.0f} | {spread} | {r['mean_ms']:.3f} | {r['max_ms']:.3f} | {cpu} | {pct} | {rss} "
            f"| {conns} | {r['failed']} / {r['non2xx']} |"
        )
    out = "\n".join(rows)
    if "fairway" in results["h2"]:
        out += "\n\n" + ratios(results, "h2")
    return out


def report(results: dict) -> str:
    m = results["meta"]
    parts = [
        f"Run {m['started']} on {m['cpus']} CPUs ({m['cpu_model']}); load average before: {m['load_before']}, "
        f"after: {m['load_after']}. Proxies pinned to CPU {m['proxy_cpus'] or 'none'}"
        f"{', sharing it with ' + str(m['contend']) + ' CPU hog(s) (contended)' if m.get('contend') else ' (quiet)'}; load generator and pods "
        f"{'pinned to CPU ' + m['load_cpus'] if m.get('load_cpus') else 'unpinned'}; pods: nginx with "
        f"{m['backend_workers']} worker(s); wrk -t{m['threads']} -c{m['connections']}; {m['rounds']} rounds of "
        f"{m['warmup']} s warm-up + {m['duration']} s per target and protocol, req/s of the median round, each latency and CPU figure the median of the rounds "
        "(upstream connections: summed over all rounds, counted at the pods).",
        "Versions: " + "; ".join(m.get("versions", {}).values()) + ".",
    ]
    if results.get("h1"):
        parts += ["### HTTP/1.1 keep-alive (wrk)", table_h1(results)]
    if results.get("h2"):
        parts += [f"### h2c (h2load, {m['h2_connections']} connections × {m['streams']} streams; upstream HTTP/1.1)",
                  table_h2(results)]
    if results.get("profiles"):
        rows = ["| target | system calls / request | context switches / request |", "| --- | ---: | ---: |"]
        for name, p in results["profiles"].items():
            if p:
                rows.append(f"| {name} | {p['syscalls_per_req']:.2f} | {p['context_switches_per_req']:.3f} |")
        parts += ["### System calls per request (perf stat, a separate unmeasured HTTP/1.1 run)", "\n".join(rows)]
    if results.get("fairway_memory"):
        fm = results["fairway_memory"]
        parts += [
            "### fairway-proxy memory",
            "| state | RSS MiB | peak RSS MiB |\n| --- | ---: | ---: |\n"
            f"| idle, 4 endpoints, table applied | {fm['idle']['rss_kib'] / 1024:.1f} | {fm['idle']['hwm_kib'] / 1024:.1f} |\n"
            + (f"| after the HTTP/1.1 run | {fm['after_load']['rss_kib'] / 1024:.1f} | "
               f"{fm['after_load']['hwm_kib'] / 1024:.1f} |\n" if fm.get("after_load") else "")
            + (f"| idle, {fm['10k']['endpoints']:,} endpoints (10 slices) | {fm['10k']['rss_kib'] / 1024:.1f} | "
               f"{fm['10k']['hwm_kib'] / 1024:.1f} |\n"
               f"| the same, after one GET /debug/routes ({fm['10k']['debug_routes_bytes'] / 1e6:.1f} MB of JSON) | "
               f"{fm['10k']['rss_kib_after_debug_routes'] / 1024:.1f} | - |" if fm.get("10k") else ""),
        ]
    return "\n\n".join(parts) + "\n"
