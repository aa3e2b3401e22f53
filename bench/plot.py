#!/usr/bin/env python3
"""Draws the proxy benchmark's chart as a hand-written SVG (standard library only):
HTTP/1.1 requests/s and p99 latency per target, from bench/proxy.py's results.json.

    python3 bench/plot.py target/bench/proxy/results.json docs/img/proxy-bench.svg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

COLORS = {"fairway": "#1f77b4", "direct": "#9e9e9e"}
OTHER = "#f0a35e"
W, H = 860, 400
PANEL_W, TOP, BOTTOM = 380, 70, 330


def _panel(x0: float, title: str, names: list[str], values: list[float], fmt) -> list[str]:
    out = [f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 28}" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{escape(title)}</text>']
    top = max(values) * 1.15 or 1
    height = BOTTOM - TOP
    n = len(values)
    slot = PANEL_W / n
    bar = slot * 0.62
    out.append(f'<line x1="{x0}" y1="{BOTTOM}" x2="{x0 + PANEL_W}" y2="{BOTTOM}" stroke="#333"/>')
    for i in range(1, 5):  # light grid
        y = BOTTOM - height * i / 4
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PANEL_W}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#777">'
                   f'{escape(fmt(top * i / 4))}</text>')
    for i, (name, v) in enumerate(zip(names, values)):
        h = height * v / top
        x = x0 + i * slot + (slot - bar) / 2
        color = COLORS.get(name, OTHER)
        out.append(f'<rect x="{x:.1f}" y="{BOTTOM - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}"/>')
        out.append(f'<text x="{x + bar / 2:.1f}" y="{BOTTOM - h - 5:.1f}" text-anchor="middle" font-size="11">'
                   f'{escape(fmt(v))}</text>')
        out.append(f'<text x="{x + bar / 2:.1f}" y="{BOTTOM + 16}" text-anchor="middle" font-size="12">'
                   f'{escape(name)}</text>')
    return out


def render(results: dict, dest: Path) -> None:
    h1 = results["h1"]
    names = list(h1)
    m = results["meta"]
    load = f"wrk + 4 nginx pods on CPU {m['load_cpus']}" if m.get("load_cpus") else "wrk + 4 nginx pods unpinned"
    subtitle = (f"HTTP/1.1 keep-alive, wrk -t{m['threads']} -c{m['connections']}, median of {m.get('rounds', 1)} x "
                f"{m['duration']} s; one proxy worker on CPU {m['proxy_cpus']}; {load}")
    footer = f"{m['started']}; load average before {m['load_before']}. Method and configs: docs/benchmarks.md"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="13" fill="#333">'
        f'{escape(subtitle)}</text>',
    ]
    parts += _panel(60, "requests/s (higher is better)", names, [h1[n]["rps"] for n in names],
                    lambda v: f"{v / 1000:.1f}k")
    parts += _panel(W - PANEL_W - 30, "p99 latency, ms (lower is better)", names, [h1[n]["p99_ms"] for n in names],
                    lambda v: f"{v:.2f}")
    parts.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-size="11" fill="#555">'
                 f'{escape(footer)}</text>')
    parts.append("</svg>")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(parts) + "\n")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    render(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
