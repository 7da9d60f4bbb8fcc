"""Result JSON -> Markdown table + PNG chart.

    python -m benchmarks.report benchmarks/results/ws-echo.json [...]

regenerates the .md and .png next to each JSON file.  ``benchmarks.run`` and
``benchmarks.c10k`` call :func:`write` themselves.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _num(v: Any, fmt: str = ",.0f") -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, (int, float)):
        return format(v, fmt)
    return str(v)


def per_cpu_second(r: dict[str, Any]) -> float | None:
    """Messages per second of server CPU: the number contention on a shared
    machine does not distort (a server that got half a core still did N
    messages per CPU-second)."""
    done = r.get("messages_total", r.get("received"))
    cpu = r.get("server_cpu_s")
    if not isinstance(done, (int, float)) or not isinstance(cpu, (int, float)) or cpu <= 0:
        return None
    return float(done) / float(cpu)


def summarise(runs: dict[str, list[dict[str, Any]]], baseline: str) -> dict[str, dict[str, Any]]:
    """Medians over the rounds of each server, and ratios to the baseline."""
    def med(rs: list[dict[str, Any]], key: str) -> float:
        vals = [float(r[key]) for r in rs if isinstance(r.get(key), (int, float))]
        return statistics.median(vals) if vals else 0.0

    summary: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        for r in ok:
            if r.get("msgs_per_cpu_s") is None:
                r["msgs_per_cpu_s"] = per_cpu_second(r)
        summary[name] = {
            "rounds": len(ok),
            "failed_rounds": len(rs) - len(ok),
            "msgs_per_s": med(ok, "msgs_per_s"),
            "msgs_per_s_all": [r.get("msgs_per_s") for r in ok],
            "msgs_per_cpu_s": med(ok, "msgs_per_cpu_s"),
            "mb_per_s": med(ok, "mb_per_s"),
            "p50_us": med(ok, "p50_us"),
            "p99_us": med(ok, "p99_us"),
            "p999_us": med(ok, "p999_us"),
            "server_cpu_pct": med(ok, "server_cpu_pct"),
            "server_peak_rss_mib": med(ok, "server_peak_rss_mib"),
            "loadgen_cpu_pct": med(ok, "loadgen_cpu_pct"),
            "errors": sum(int(r.get("errors", 0)) for r in ok),
        }
    base = summary.get(baseline, {})
    for s in summary.values():
        s["ratio"] = round(s["msgs_per_s"] / base["msgs_per_s"], 3) if base.get("msgs_per_s") else None
        s["cpu_ratio"] = (round(s["msgs_per_cpu_s"] / base["msgs_per_cpu_s"], 3)
                          if base.get("msgs_per_cpu_s") else None)
    return summary


def _header(result: dict[str, Any]) -> list[str]:
    m = result.get("machine", {})
    v = m.get("versions", {})
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val != "not installed")
    lines = [
        f"Measured {result.get('started', '?')} at commit `{m.get('commit', '?')}` on {m.get('cpu', '?')} "
        f"({m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB), Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}; {vers}. Load average at start "
        f"{'/'.join(str(x) for x in m.get('loadavg_at_start', [])) or '?'} (the machine is shared).",
        "",
        f"Command: `{result.get('command', '?')}`",
    ]
    if result.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{k} ({why})" for k, why in result["skipped"].items()) + "."]
    if result.get("incomplete"):
        lines += ["", "**Incomplete:** the run hit its time limit; missing rounds are not shown."]
    return lines


def _echo_markdown(result: dict[str, Any]) -> str:
    base = result.get("baseline", "")
    p = result.get("params", {})
    out = [f"## {result['scenario']}", "", *_header(result), ""]
    out.append(f"Server on core {p.get('server_core')}, `{p.get('loadgen')}` on core {p.get('client_core')}; "
               f"{p.get('rounds')} interleaved round(s) of {p.get('duration')} s (+{p.get('warmup')} s warm-up); "
               f"medians; message type {p.get('message_type')}.")
    for case in result.get("cases", []):
        out += ["", f"### {case['connections']} connections, {case['size']} B, {case['inflight']} in flight", "",
                f"| server | msgs/s | × {base} | msgs per server CPU-s | × {base} | MB/s | p50 µs | p99 µs "
                f"| p99.9 µs | server CPU % | loadgen CPU % | peak RSS MiB | errors | rounds |",
                "|---|" + "---:|" * 13]
        for name, s in case.get("summary", {}).items():
            rounds = f"{s['rounds']}" + (f" ({s['failed_rounds']} failed)" if s.get("failed_rounds") else "")
            out.append(f"| {name} | {_num(s['msgs_per_s'])} | {_num(s.get('ratio'), '.2f')} | "
                       f"{_num(s.get('msgs_per_cpu_s'))} | {_num(s.get('cpu_ratio'), '.2f')} | "
                       f"{_num(s['mb_per_s'], ',.1f')} | {_num(s['p50_us'], '.0f')} | {_num(s['p99_us'], '.0f')} | "
                       f"{_num(s['p999_us'], '.0f')} | {_num(s['server_cpu_pct'], '.0f')} | "
                       f"{_num(s.get('loadgen_cpu_pct'), '.0f')} | "
                       f"{_num(s['server_peak_rss_mib'], '.1f')} | {s['errors']} | {rounds} |")
        pairs = case.get("pairs") or []
        if pairs:
            out += ["", "Same-run ratios (msgs/s): ratio of the medians, and each round's own ratio "
                    "(the two servers measured back to back):", "",
                    "| A / B | ratio of medians | median of per-round ratios | lowest–highest round | "
                    "per server CPU-s |", "|---|---:|---:|---:|---:|"]
            for pr in pairs:
                spread = (f"{_num(pr.get('min_per_round'), '.2f')}–{_num(pr.get('max_per_round'), '.2f')}"
                          if pr.get("per_round") else "–")
                out.append(f"| {pr['a']} / {pr['b']} | {_num(pr.get('ratio_of_medians'), '.2f')} | "
                           f"{_num(pr.get('median_per_round'), '.2f')} | {spread} | "
                           f"{_num(pr.get('cpu_ratio_of_medians'), '.2f')} |")
        failures = [(n, r["error"]) for n, rs in case.get("runs", {}).items() for r in rs if "error" in r]
        for name, err in failures[:5]:
            out.append(f"\n{name} failed: `{err[:300]}`")
    return "\n".join(out) + "\n"


C10K_COLUMNS = [
    ("connected", "connected", "{:,}"),
    ("failed", "failed", "{:,}"),
    ("connect_s", "connect s", "{:.2f}"),
    ("connect_vs_c", "× C", "{:.2f}"),
    ("rss_per_conn_kib", "RSS KiB/conn", "{:.1f}"),
    ("kernel_slab_kib_per_conn_pair", "kernel slab KiB/conn (both ends)", "{:.1f}"),
    ("idle_cpu_pct", "idle CPU %", "{:.1f}"),
    ("echo_success_pct", "echo ok %", "{:.2f}"),
    ("bc_last_p50_ms", "bcast last p50 ms", "{:.1f}"),
    ("bc_vs_c", "× C", "{:.2f}"),
    ("bc_last_p99_ms", "bcast last p99 ms", "{:.1f}"),
    ("bc_cpu_us_per_delivery", "CPU µs/delivery", "{:.2f}"),
    ("flood_undelivered", "flood undelivered", "{:,}"),
    ("flood_gaps", "flood gaps", "{:,}"),
    ("flood_lag_max_ms", "flood max lag ms", "{:.0f}"),
    ("server_fds", "server fds", "{:,}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.1f}"),
]


def _fmt(fmt: str, v: Any) -> str:
    if v is None:
        return "–"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


HOLD_COLUMNS = [
    ("connected", "connected", "{:,}"),
    ("replies", "echoed", "{:,}"),
    ("deflate_accepted", "extension accepted", "{}"),
    ("connect_s", "connect s", "{:.2f}"),
    ("rss_per_conn_kib", "RSS KiB/conn", "{:.2f}"),
    ("kernel_slab_kib_per_conn_pair", "kernel slab KiB/conn (both ends)", "{:.1f}"),
    ("idle_cpu_pct", "idle CPU %", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.1f}"),
]


def _c10k_markdown(result: dict[str, Any]) -> str:
    p = result.get("params", {})
    hold = p.get("mode") == "hold"
    columns = HOLD_COLUMNS if hold else C10K_COLUMNS
    deflate = (f" JSON-like payload; permessage-deflate offered to the `-deflate` servers"
               f"{' (' + p['deflate_params'] + ')' if p.get('deflate_params') else ''}." if p.get("deflate") else "")
    if hold:
        what = (f"{p.get('connections', '?'):,} WebSocket connections from one `wsload --mode hold` process "
                f"(core {p.get('client_core')}) to an echo server (core {p.get('server_core')}); each sends "
                f"one {p.get('size')} B message and gets it back, then all stay idle for {p.get('idle_s')} s; "
                f"RSS per connection = (RSS at the end of idle − RSS before connecting) ÷ connections.")
    else:
        what = (f"{p.get('connections', '?'):,} WebSocket connections from one `wsload --mode c10k` process "
                f"(core {p.get('client_core')}) to a broadcast server (core {p.get('server_core')}); "
                f"{p.get('broadcasts')} single broadcasts of {p.get('size')} B, then a flood of "
                f"{p.get('flood')} broadcasts every {p.get('flood_interval_ms')} ms.")
    out = ["## C10k" + (" (hold: memory per used idle connection)" if hold else ""), "", *_header(result), "",
           what + deflate, "",
           "| server | " + " | ".join(h for _, h, _ in columns) + " |",
           "|---|" + "---:|" * len(columns)]
    for name, r in result.get("results", {}).items():
        if "error" in r and "connected" not in r:
            out.append(f"| {name} | failed: {r['error'][:200]} |" + " |" * (len(columns) - 1))
            continue
        out.append(f"| {name} | " + " | ".join(_fmt(f, r.get(k)) for k, _, f in columns) + " |")
    lim = result.get("limits", {})
    fds = {n: r.get("server_fds") for n, r in result.get("results", {}).items() if r.get("server_fds")}
    if lim.get("server_connections") and fds:
        binding = (lim.get("binding") or {}).get("name", "unknown")
        out += ["", f"Descriptors: with {p.get('connections', 0):,} connections the servers held "
                f"{min(fds.values()):,}–{max(fds.values()):,} descriptors; `fastsock.limits.limits()` allows "
                f"{lim['server_connections']:,} server connections per process here (soft RLIMIT_NOFILE "
                f"{lim.get('nofile_soft')}, hard {lim.get('nofile_hard')}, fs.nr_open {lim.get('nr_open')}; "
                f"{binding} binds first) and {lim.get('client_connections_per_destination') or 0:,} client "
                f"connections per destination and source address (ip_local_port_range)."]
    rounds = result.get("rounds", {})
    if any(len(rs) > 1 for rs in rounds.values()):
        out += ["", "Every round (the table above shows the median of each column over the rounds):", "",
                "| server | connect s | RSS KiB/conn | broadcast last p50 ms | flood max lag ms |",
                "|---|---|---|---|---|"]
        for name, rs in rounds.items():
            cols = [", ".join(_fmt(f, r.get(k)) for r in rs if "error" not in r)
                    for k, f in (("connect_s", "{:.2f}"), ("rss_per_conn_kib", "{:.2f}"),
                                 ("bc_last_p50_ms", "{:.1f}"), ("flood_lag_max_ms", "{:.0f}"))]
            failed = sum(1 for r in rs if "error" in r)
            out.append(f"| {name}{f' ({failed} failed)' if failed else ''} | " + " | ".join(cols) + " |")
    goals = result.get("goals")
    if goals:
        out += ["", "Goals for fastsock (measured, not asserted):", "",
                "| goal | target | measured | met |", "|---|---|---|---|"]
        for g in goals:
            out.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |")
    return "\n".join(out) + "\n"


def markdown(result: dict[str, Any]) -> str:
    if result.get("scenario") == "c10k":
        return _c10k_markdown(result)
    return _echo_markdown(result)


def render_chart(result: dict[str, Any], path: Path) -> Path | None:
    """A bar chart: msgs/s per server per case (echo) or the C10k key numbers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if result.get("scenario") == "c10k":
        rows = {n: r for n, r in result.get("results", {}).items() if "connected" in r}
        if not rows:
            return None
        metrics = [("connect_s", "time to connect all (s)"), ("rss_per_conn_kib", "server RSS per conn (KiB)"),
                   ("bc_last_p50_ms", "broadcast to last, p50 (ms)"), ("flood_lag_max_ms", "flood: max lag (ms)")]
        if result.get("params", {}).get("mode") == "hold":
            metrics = metrics[:2]
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6))
        for ax, (key, title) in zip(axes, metrics):
            names = list(rows)
            vals = [float(rows[n].get(key) or 0) for n in names]
            ax.bar(names, vals, color=["#d62728" if n.startswith("fastsock") else "#7f7f7f" for n in names])
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        hold = result.get("params", {}).get("mode") == "hold"
        fig.suptitle(f"{'Hold' if hold else 'C10k'}: {result.get('params', {}).get('connections', '?')} WebSocket "
                     f"connections", fontsize=10)
    else:
        cases = result.get("cases", [])
        servers = result.get("servers", [])
        if not cases or not servers:
            return None
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases) * len(servers) / 3), 4))
        width = 0.8 / len(servers)
        for i, name in enumerate(servers):
            vals = [c["summary"].get(name, {}).get("msgs_per_s", 0) / 1e3 for c in cases]
            xs = [j + i * width for j in range(len(cases))]
            ax.bar(xs, vals, width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
        ax.set_xticklabels([f"{c['connections']}c {c['size']}B x{c['inflight']}" for c in cases], fontsize=8)
        ax.set_ylabel("thousand messages/s (median)")
        ax.set_title(f"{result['scenario']} (commit {result.get('machine', {}).get('commit', '?')})", fontsize=10)
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict[str, Any], out_dir: Path, stem: str, *, chart: bool = True) -> list[Path]:
    """Writes STEM.json, STEM.md and (unless disabled) STEM.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(result))
    paths = [js, md]
    if chart:
        png = render_chart(result, out_dir / f"{stem}.png")
        if png:
            paths.append(png)
    return paths


def main(argv: list[str] | None = None) -> int:
    files = argv if argv is not None else sys.argv[1:]
    if not files:
        print(__doc__)
        return 2
    for name in files:
        path = Path(name)
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            return 1
        for case in result.get("cases", []):
            if case.get("runs"):
                case["summary"] = summarise(case["runs"], result.get("baseline", ""))
        for p in write(result, path.parent, path.stem):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
