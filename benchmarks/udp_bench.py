"""Side-by-side UDP echo: fastsock vs asyncio vs uvloop vs C.

    flock /tmp/fastsock-bench.lock python -m benchmarks.udp_bench [--rounds 3] [--duration 2]

The three Python servers are one program, ``python -m fastsock serve udp-echo``,
running the same ``EchoProtocol`` class on each loop (``--loop fastsock``:
batched recvmmsg/sendmmsg; ``asyncio``: one datagram per wake-up; ``uvloop``:
libuv). ``c`` is ``udpecho_c`` (blocking recvfrom/sendto, the lean classic),
``c-mmsg`` the same with recvmmsg/sendmmsg (the ceiling of batching).

Every server runs pinned to one core (``--server-core``), the load generator
``udpload`` to the other; each round starts every server in turn (rotating
the order) and runs every case against it, so drift on a shared machine hits
all alike. Reported: medians over rounds of echoed datagrams/s, loss, RTT
p50/p99, server CPU, and the ratio to uvloop.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.procs import (PYTHON, RESULTS_DIR, HarnessError, ServerProcess, build_loadgen, command_line,
                              machine_info, run_loadgen, tool)

SERVERS: dict[str, list[str]] = {
    "fastsock": [PYTHON, "-m", "fastsock", "serve", "udp-echo", "--quiet", "--loop", "fastsock"],
    "uvloop": [PYTHON, "-m", "fastsock", "serve", "udp-echo", "--quiet", "--loop", "uvloop"],
    "asyncio": [PYTHON, "-m", "fastsock", "serve", "udp-echo", "--quiet", "--loop", "asyncio"],
    "c": [str(tool("udpecho_c"))],
    "c-mmsg": [str(tool("udpecho_c")), "--batch", "64"],
}
BASELINE = "uvloop"


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _servers(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.udp_bench",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--servers", type=_servers, default=list(SERVERS),
                   help="comma-separated, from: " + ",".join(SERVERS))
    p.add_argument("--sizes", type=_csv_ints, default=[64, 1200], help="datagram sizes (bytes)")
    p.add_argument("--senders", type=_csv_ints, default=[1, 50], help="sender sockets")
    p.add_argument("--inflight", type=int, default=4, help="datagrams in flight per sender")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=2.0, help="seconds measured per case")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--loadgen-core", type=int, default=1)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                   help="do not run: print the table for samples saved by earlier runs")
    p.add_argument("--json", type=Path, default=None,
                   help="write every sample here (default: benchmarks/results/raw/udp-bench-<time>.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or not 1 <= args.inflight <= 64:
        p.error("--rounds >= 1, --duration > 0, --inflight in 1..64")
    return args


def run_round(args: argparse.Namespace, order: list[str], samples: list[dict[str, Any]],
              round_no: int) -> None:
    cases = [(size, senders) for size in args.sizes for senders in args.senders]
    for name in order:
        argv = SERVERS[name] + ["--host", args.host, "--port", "0"]
        with ServerProcess(name, argv, core=args.server_core) as server:
            port = int(server.ready_line.rsplit(":", 1)[1])
            for size, senders in cases:
                lg = [str(tool("udpload")), "--host", args.host, "--port", str(port),
                      "--senders", str(senders), "--size", str(size),
                      "--inflight", str(args.inflight), "--duration", str(args.duration),
                      "--warmup", str(args.warmup)]
                before = server.sample()
                out = run_loadgen(lg, core=args.loadgen_core,
                                  timeout=args.warmup + args.duration + 30)
                after = server.sample()
                if not server.alive():
                    raise HarnessError(f"{name} died: {server.stderr_tail()}")
                out.update(server=name, round=round_no,
                           server_cpu_pct=round(100 * (after.cpu_s - before.cpu_s)
                                                / max(after.t - before.t, 1e-9), 1))
                samples.append(out)
                print(f"  round {round_no} {name:9s} {size:5d} B {senders:3d} senders: "
                      f"{out['datagrams_per_s']:10.0f} dgram/s  loss {out['loss_pct']:.3f}%  "
                      f"p99 {out['p99_us']:.0f} us  server cpu {out['server_cpu_pct']}%  "
                      f"loadgen cpu {out.get('loadgen_cpu_pct')}%", flush=True)


def summarise(args: argparse.Namespace, samples: list[dict[str, Any]]) -> str:
    lines = [
        "| size | senders | server | datagrams/s (median) | vs uvloop | loss % | RTT p50 µs "
        "| RTT p99 µs | server CPU % | datagrams per server CPU-s | load gen CPU % |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in args.sizes:
        for senders in args.senders:
            rows = {}
            for name in args.servers:
                mine = [s for s in samples if s["server"] == name and s["size"] == size
                        and s["senders"] == senders]
                if not mine:
                    continue
                rows[name] = {k: statistics.median(float(s.get(k) or 0) for s in mine) for k in
                              ("datagrams_per_s", "loss_pct", "p50_us", "p99_us", "server_cpu_pct",
                               "loadgen_cpu_pct")}
                # cost per datagram: robust when another process steals the server's core
                rows[name]["per_cpu_s"] = statistics.median(
                    100 * float(s["datagrams_per_s"]) / max(float(s["server_cpu_pct"]), 1.0)
                    for s in mine)
            base = rows.get(BASELINE, {}).get("datagrams_per_s")
            for name, r in rows.items():
                ratio = f"{r['datagrams_per_s'] / base:.2f}×" if base else "–"
                lines.append(f"| {size} | {senders} | {name} | {r['datagrams_per_s']:,.0f} | {ratio} | "
                             f"{r['loss_pct']:.3f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
                             f"{r['server_cpu_pct']:.0f} | {r['per_cpu_s']:,.0f} | "
                             f"{r['loadgen_cpu_pct']:.0f} |")
    # Paired ratios: each round ran every server back to back, so the ratio
    # within a round cancels most of the drift of a shared machine.
    if "fastsock" in args.servers and BASELINE in args.servers:
        lines += ["", f"fastsock ÷ {BASELINE} within each round (median, min–max over rounds):", ""]
        for size in args.sizes:
            for senders in args.senders:
                ratios = []
                for r in sorted({s["round"] for s in samples}):
                    pick = {s["server"]: s for s in samples if s["round"] == r
                            and s["size"] == size and s["senders"] == senders}
                    if "fastsock" in pick and BASELINE in pick and pick[BASELINE]["datagrams_per_s"]:
                        ratios.append(pick["fastsock"]["datagrams_per_s"]
                                      / pick[BASELINE]["datagrams_per_s"])
                if ratios:
                    lines.append(f"- {size} B, {senders} sender(s): {statistics.median(ratios):.2f}× "
                                 f"({min(ratios):.2f}–{max(ratios):.2f}, {len(ratios)} rounds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        saved = [x for f in args.report for x in json.loads(f.read_text())["samples"]]
        args.servers = [n for n in SERVERS if any(x["server"] == n for x in saved)]
        args.sizes = sorted({int(x["size"]) for x in saved})
        args.senders = sorted({int(x["senders"]) for x in saved})
        print(summarise(args, saved))
        return 0
    try:
        build_loadgen()
        for need in ("udpload", "udpecho_c"):
            if not tool(need).exists():
                raise HarnessError(f"benchmarks/loadgen/bin/{need} was not built")
        samples: list[dict[str, Any]] = []
        started = time.time()
        for r in range(args.rounds):
            shift = r % len(args.servers)
            order = args.servers[shift:] + args.servers[:shift]
            print(f"round {r + 1}/{args.rounds}: {' '.join(order)}", flush=True)
            run_round(args, order, samples, r + 1)
    except HarnessError as exc:
        print(f"udp_bench: error: {exc}", file=sys.stderr)
        return 1
    table = summarise(args, samples)
    print()
    print(table)
    path = args.json or RESULTS_DIR / "raw" / f"udp-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": command_line("benchmarks.udp_bench", sys.argv[1:]), "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(), "elapsed_s": round(time.time() - started, 1),
        "samples": samples, "table": table}, indent=1))
    print(f"\nsamples: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
