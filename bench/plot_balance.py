#!/usr/bin/env python3
"""Draws the balancing benchmark's chart as a hand-written SVG (standard library only):
p99 and p99.9 latency per target at each load, log scale, from bench/balance.py's
results.json (medians over rounds).

    python3 bench/plot_balance.py target/bench/balance/results.json docs/img/balance-bench.svg
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from xml.sax.saxutils import escape

NAMES = {
    "fairway-rr": "fairway RoundRobin",
    "fairway-lr": "fairway LeastRequest",
    "fairway-ewma": "fairway PeakEwma",
    "fairway-prequal": "fairway Prequal",
    "envoy": "Envoy LEAST_REQUEST",
    "nginx": "nginx least_conn",
    "haproxy": "HAProxy leastconn",
}
COLORS = {
    "fairway-rr": "#9ecae1",
    "fairway-lr": "#4292c6",
    "fairway-ewma": "#08519c",
    "fairway-prequal": "#31a354",
    "envoy": "#fdae6b",
    "nginx": "#e6550d",
    "haproxy": "#a63603",
}
W, PANEL_W, TOP, BOTTOM = 960, 400, 60, 330


def panel(x0, title, key, results, targets, loads):
    values = {}
    for t in targets:
        for level in loads:
            rs = [r[key] for r in results if r["target"] == t and r["load"] == level]
            if rs:
                values[(t, level)] = statistics.median(rs)
    lo = 1.0
    hi = max(values.values(), default=10) * 1.5
    y = lambda v: BOTTOM - (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (BOTTOM - TOP)  # noqa: E731
    out = [f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 25}" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{escape(title)}</text>',
           f'<line x1="{x0}" y1="{BOTTOM}" x2="{x0 + PANEL_W}" y2="{BOTTOM}" stroke="#333"/>']
    tick = 1.0
    while tick <= hi:
        out.append(f'<line x1="{x0}" y1="{y(tick):.1f}" x2="{x0 + PANEL_W}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:g} ms</text>')
        tick *= 10
    group = PANEL_W / len(loads)
    bar = group * 0.8 / len(targets)
    for g, level in enumerate(loads):
        gx = x0 + g * group + group * 0.1
        for i, t in enumerate(targets):
            v = values.get((t, level))
            if v is None:
                continue
            bx = gx + i * bar
            out.append(f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{bar * 0.9:.1f}" '
                       f'height="{BOTTOM - y(v):.1f}" fill="{COLORS.get(t, "#888")}">'
                       f'<title>{escape(NAMES.get(t, t))}: {v:.1f} ms</title></rect>')
        out.append(f'<text x="{gx + group * 0.4:.1f}" y="{BOTTOM + 18}" text-anchor="middle" '
                   f'font-size="12">{level:.0%} load</text>')
    return out


def main() -> int:
    results = json.loads(Path(sys.argv[1]).read_text())
    targets = [t for t in NAMES if any(r["target"] == t for r in results)]
    loads = sorted({r["load"] for r in results})
    legend_y = BOTTOM + 45
    h = legend_y + 20 * ((len(targets) + 2) // 3) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif">',
           f'<rect width="{W}" height="{h}" fill="white"/>']
    out += panel(70, "p99 latency (log scale)", "p99_ms", results, targets, loads)
    out += panel(70 + PANEL_W + 60, "p99.9 latency (log scale)", "p999_ms", results, targets, loads)
    for i, t in enumerate(targets):
        lx, ly = 70 + (i % 3) * 280, legend_y + (i // 3) * 20
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{COLORS[t]}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly}" font-size="12">{escape(NAMES[t])}</text>')
    out.append("</svg>")
    Path(sys.argv[2]).write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
