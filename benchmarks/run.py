"""Side-by-side echo benchmarks: ``python -m benchmarks.run``.

Every server runs as its own process pinned to one core; the compiled load
generator runs pinned to the other.  Rounds are interleaved (A B C A B C ...)
so drift on a shared machine hits everyone alike; the report gives medians
and ratios against a baseline server.  Examples::

    python -m benchmarks.run --scenario tcp-echo --connections 50 --size 64
    python -m benchmarks.run --scenario ws-echo --size 64,1024 --inflight 1,8 --rounds 3
    python -m benchmarks.run --scenario all --quick
    python -m benchmarks.run --scenario tls-echo --loops asyncio,uvloop,fastsock --rounds 5

The aio-* and tls-echo scenarios run one asyncio program
(benchmarks/servers/aio_echo.py) on each event loop: asyncio's, uvloop's and
fastsock's (``fastsock.new_event_loop()``); ``--loops`` picks them.

Results go to benchmarks/results/<scenario>.json, .md and .png.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import aio_loops, report
from benchmarks.report import summarise
from benchmarks.procs import (PYTHON, RESULTS_DIR, HarnessError, ServerProcess, build_loadgen, command_line, free_port,
                              machine_info, run_loadgen, tool)

SCENARIOS = ("ws-echo", "tcp-echo", "udp-echo", "aio-echo", "aio-streams", "tls-echo")
# the same asyncio code on each event loop (benchmarks/servers/aio_echo.py)
LOOP_SCENARIOS = ("aio-echo", "aio-streams", "tls-echo")


@dataclass(frozen=True)
class Adapter:
    """How to start one server for one scenario."""
    name: str
    argv: tuple[str, ...]        # {host} and {port} are filled in
    needs_module: str | None = None   # Python module that must be importable
    needs_app: str | None = None      # fastsock app that must be registered
    needs_tool: str | None = None     # compiled binary in benchmarks/loadgen/bin
    needs_loop: str | None = None     # asyncio event loop (benchmarks.aio_loops) that must exist

    def command(self, host: str, port: int, **extra: str) -> list[str]:
        """The argv with {host}, {port} and any {cert}/{key} filled in."""
        return [a.format(host=host, port=port, **extra) for a in self.argv]


def _fastsock(app: str, loop: str | None = None) -> tuple[str, ...]:
    argv = (PYTHON, "-m", "fastsock", "serve", app, "--host", "{host}", "--port", "{port}")
    return argv + (("--loop", loop) if loop else ())


def _peer(module: str, *extra: str) -> tuple[str, ...]:
    return (PYTHON, "-m", f"benchmarks.servers.{module}", "--host", "{host}", "--port", "{port}", *extra)


def _aio(loop: str, mode: str, tls: bool = False) -> Adapter:
    """The one asyncio echo program on event loop ``loop``."""
    extra = ("--tls", "{cert}", "{key}") if tls else ()
    return Adapter(loop, _peer("aio_echo", "--loop", loop, "--mode", mode, *extra), needs_loop=loop,
                   needs_module="trustme" if tls else None)   # the run's certificate is made with trustme


ADAPTERS: dict[str, list[Adapter]] = {
    "ws-echo": [
        Adapter("fastsock", _fastsock("echo"), needs_app="echo"),
        Adapter("fastsock-uvloop", _fastsock("echo", "uvloop"), needs_app="echo", needs_module="uvloop"),
        Adapter("websockets", _peer("ws_websockets", "--mode", "echo"), needs_module="websockets"),
        Adapter("aiohttp", _peer("ws_aiohttp", "--mode", "echo"), needs_module="aiohttp"),
        Adapter("picows", _peer("ws_picows", "--mode", "echo"), needs_module="picows"),
        Adapter("c", (str(tool("wsecho_c")), "--host", "{host}", "--port", "{port}", "--mode", "echo"),
                needs_tool="wsecho_c"),
    ],
    "tcp-echo": [
        Adapter("fastsock", _fastsock("tcp-echo"), needs_app="tcp-echo"),
        Adapter("fastsock-uvloop", _fastsock("tcp-echo", "uvloop"), needs_app="tcp-echo", needs_module="uvloop"),
        Adapter("asyncio", _peer("tcp_echo", "--loop", "asyncio")),
        Adapter("uvloop", _peer("tcp_echo", "--loop", "uvloop"), needs_module="uvloop"),
        Adapter("c", (str(tool("tcpecho_c")), "--host", "{host}", "--port", "{port}"), needs_tool="tcpecho_c"),
    ],
    "udp-echo": [
        Adapter("fastsock", _fastsock("udp-echo"), needs_app="udp-echo"),
        Adapter("fastsock-uvloop", _fastsock("udp-echo", "uvloop"), needs_app="udp-echo", needs_module="uvloop"),
        Adapter("asyncio", _peer("udp_echo", "--loop", "asyncio")),
        Adapter("uvloop", _peer("udp_echo", "--loop", "uvloop"), needs_module="uvloop"),
        Adapter("c", (str(tool("udpecho_c")), "--host", "{host}", "--port", "{port}"), needs_tool="udpecho_c"),
    ],
    "aio-echo": [_aio(loop, "protocol") for loop in aio_loops.LOOPS],
    "aio-streams": [_aio(loop, "streams") for loop in aio_loops.LOOPS],
    "tls-echo": [_aio(loop, "protocol", tls=True) for loop in aio_loops.LOOPS],
}
BASELINE = {"ws-echo": "picows", "tcp-echo": "uvloop", "udp-echo": "uvloop",
            "aio-echo": "uvloop", "aio-streams": "uvloop", "tls-echo": "uvloop"}
LOADGEN = {"ws-echo": "wsload", "tcp-echo": "tcpload", "udp-echo": "udpload",
           "aio-echo": "tcpload", "aio-streams": "tcpload", "tls-echo": "tcpload"}
DEFAULTS = {"ws-echo": (100, "64,1024", "1,8"), "tcp-echo": (50, "64", "1"), "udp-echo": (50, "64", "1"),
            "aio-echo": (50, "64", "1"), "aio-streams": (50, "64", "1"), "tls-echo": (100, "64,16384", "1")}


def custom_adapters(specs: list[str] | None) -> list[Adapter]:
    """``--add-server 'NAME=COMMAND'``: any server that takes its address as
    ``{host}``/``{port}`` in COMMAND and prints a ``listening on`` line."""
    out = []
    for spec in specs or []:
        name, sep, cmd = spec.partition("=")
        name = name.strip()
        if not sep or not name or not cmd.strip():
            raise SystemExit(f"error: --add-server takes NAME=COMMAND, got {spec!r}")
        argv = tuple(shlex.split(cmd))
        if not any("{port}" in a for a in argv):
            raise SystemExit(f"error: --add-server {name}: the command must contain {{port}}")
        out.append(Adapter(name, argv))
    return out


def fastsock_apps() -> set[str]:
    try:
        from fastsock.apps import APPS
    except Exception:  # noqa: BLE001 - any breakage means "not available yet"
        return set()
    return set(APPS)


def unavailable(adapter: Adapter, apps: set[str]) -> str | None:
    """Why this adapter cannot run here, or None."""
    if adapter.needs_app and adapter.needs_app not in apps:
        return f"`python -m fastsock serve {adapter.needs_app}` is not available in this checkout"
    if adapter.needs_module and importlib.util.find_spec(adapter.needs_module) is None:
        return f"Python package {adapter.needs_module} is not installed"
    if adapter.needs_tool and not tool(adapter.needs_tool).exists():
        return f"benchmarks/loadgen/bin/{adapter.needs_tool} is not built"
    if adapter.needs_loop:
        return aio_loops.unavailable(adapter.needs_loop)
    return None


def cert_files(args: argparse.Namespace) -> aio_loops.CertFiles:
    """The TLS certificate of this invocation: made once at run time (trustme),
    shared by every server of the run."""
    files: aio_loops.CertFiles | None = getattr(args, "cert_files", None)
    if files is None:
        files = aio_loops.make_cert()
        args.cert_files = files
    return files


def loadgen_argv(scenario: str, host: str, port: int, case: dict[str, int], duration: float,
                 warmup: float, binary: bool) -> list[str]:
    argv = [str(tool(LOADGEN[scenario])), "--host", host, "--port", str(port),
            "--size", str(case["size"]), "--inflight", str(case["inflight"]),
            "--duration", str(duration), "--warmup", str(warmup)]
    if scenario == "udp-echo":   # the UDP tool counts sockets as senders
        argv += ["--senders", str(case["connections"])]
    else:
        argv += ["--connections", str(case["connections"])]
    if scenario == "ws-echo":
        argv.append("--binary" if binary else "--text")
    if scenario == "tls-echo":
        argv.append("--tls")
    return argv


def normalise(raw: dict[str, Any], size: int) -> dict[str, Any]:
    """One shape for every load generator's JSON."""
    out = dict(raw)
    if "msgs_per_s" not in out and "datagrams_per_s" in out:
        out["msgs_per_s"] = out["datagrams_per_s"]
    out.setdefault("mb_per_s", out.get("msgs_per_s", 0.0) * size / 1e6)
    out.setdefault("errors", 0)
    return out


def run_once(scenario: str, adapter: Adapter, case: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Starts the server, drives it once, stops it; returns the measurements."""
    port = free_port("udp" if scenario == "udp-echo" else "tcp")
    extra: dict[str, str] = {}
    if scenario == "tls-echo":
        files = cert_files(args)
        extra = {"cert": str(files.cert), "key": str(files.key)}
    with ServerProcess(adapter.name, adapter.command(args.host, port, **extra), core=args.server_core) as server:
        before = server.sample()
        t0 = time.monotonic()
        budget = args.duration + args.warmup + 30
        result = run_loadgen(loadgen_argv(scenario, args.host, port, case, args.duration, args.warmup,
                                          args.binary), core=args.client_core, timeout=budget)
        after = server.sample()
        wall = time.monotonic() - t0
        result = normalise(result, case["size"])
        result["server_cpu_s"] = round(after.cpu_s - before.cpu_s, 4)
        result["server_cpu_pct"] = round(100 * (after.cpu_s - before.cpu_s) / wall, 1) if wall > 0 else 0.0
        result["server_peak_rss_mib"] = round((server.peak_rss() or after.rss) / 2**20, 2)
        result["server_alive"] = server.alive()
        result["loadavg_1m"] = round(os.getloadavg()[0], 2)   # other work on this shared machine
        if not server.alive():
            result["server_stderr"] = server.stderr_tail()
    return result


def parse_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: --{name} takes integers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise SystemExit(f"error: --{name} needs positive integers, got {text!r}")
    return values


def run_scenario(scenario: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    apps = fastsock_apps()
    extra = custom_adapters(args.add_server)
    known = {a.name: a for a in [*ADAPTERS[scenario], *extra]}
    chosen = args.servers or (args.loops if scenario in LOOP_SCENARIOS else None)
    wanted = chosen.split(",") if chosen else [a.name for a in ADAPTERS[scenario]]
    wanted += [a.name for a in extra if a.name not in wanted]
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit(f"error: unknown server(s) for {scenario}: {', '.join(bad)} "
                         f"(choose from {', '.join(known)})")
    adapters, skipped = [], {}
    for name in wanted:
        reason = unavailable(known[name], apps)
        if reason:
            skipped[name] = reason
            print(f"  skip {name}: {reason}", flush=True)
        else:
            adapters.append(known[name])
    conns_d, sizes_d, inflight_d = DEFAULTS[scenario]
    conns = parse_list(str(args.connections or conns_d), "connections")
    sizes = parse_list(args.size or sizes_d, "size")
    inflights = parse_list(args.inflight or inflight_d, "inflight")
    cases = [{"connections": c, "size": s, "inflight": k} for c in conns for s in sizes for k in inflights]
    baseline = args.baseline or BASELINE[scenario]
    message_type = ("binary" if args.binary else "text") if scenario == "ws-echo" else "raw"
    result: dict[str, Any] = {
        "scenario": scenario,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "params": {"duration": args.duration, "warmup": args.warmup, "rounds": args.rounds,
                   "host": args.host, "server_core": args.server_core, "client_core": args.client_core,
                   "message_type": message_type,
                   "loadgen": LOADGEN[scenario]},
        "command": command_line("benchmarks.run", sys.argv[1:]),
        "baseline": baseline,
        "servers": [a.name for a in adapters],
        "skipped": skipped,
        "cases": [],
        "incomplete": False,
    }
    total = len(cases) * args.rounds * len(adapters)
    step = 0
    t_start = time.monotonic()
    for case in cases:
        label = f"{scenario} {case['connections']}c {case['size']}B x{case['inflight']}"
        runs: dict[str, list[dict[str, Any]]] = {a.name: [] for a in adapters}
        for rnd in range(args.rounds):
            for adapter in adapters:
                step += 1
                if time.monotonic() + args.duration + args.warmup + 5 > deadline:
                    result["incomplete"] = True
                    print(f"[{step}/{total}] time limit reached, stopping", flush=True)
                    break
                try:
                    r = run_once(scenario, adapter, case, args)
                    line = (f"{r['msgs_per_s']:>12,.0f} msg/s  p99 {r.get('p99_us', 0):>8.1f} us  "
                            f"cpu {r['server_cpu_pct']:5.1f}%  rss {r['server_peak_rss_mib']:.1f} MiB"
                            f"{'  errors ' + str(r['errors']) if r['errors'] else ''}")
                except HarnessError as exc:
                    r = {"error": str(exc)}
                    line = f"FAILED: {exc}"
                r["round"] = rnd + 1
                runs[adapter.name].append(r)
                if r.get("tls") and "tls" not in result["params"]:   # what the client negotiated
                    result["params"]["tls"] = r["tls"]
                    result["params"]["message_type"] = f"raw over TLS ({r['tls']})"
                print(f"[{step}/{total} {time.monotonic() - t_start:5.0f}s] {label} round {rnd + 1} "
                      f"{adapter.name:<16} {line}", flush=True)
            if result["incomplete"]:
                break
        result["cases"].append({**case, "runs": runs, "summary": summarise(runs, baseline)})
        if result["incomplete"]:
            break
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    p.add_argument("--servers", help="comma-separated adapters (default: every one available)")
    p.add_argument("--loops", help="for aio-echo, aio-streams and tls-echo: comma-separated event loops "
                                   f"({','.join(aio_loops.LOOPS)}; default: every one available)")
    p.add_argument("--add-server", action="append", metavar="NAME=COMMAND",
                   help="also run your own server: COMMAND with {host} and {port}, which prints a "
                        "'listening on SCHEME://H:P' line when ready (repeatable)")
    p.add_argument("--baseline", help="server the ratios are relative to (default: picows for ws-echo, "
                                      "uvloop for tcp/udp)")
    p.add_argument("--connections", help="connections (or UDP senders); a comma list runs each")
    p.add_argument("--size", help="message size in bytes; a comma list runs each")
    p.add_argument("--inflight", help="messages in flight per connection; a comma list runs each")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per run (default 3)")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first (default 0.5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--binary", action="store_true", help="WebSocket binary messages (default text)")
    p.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke run")
    p.add_argument("--time-limit", type=float, default=230.0, help="stop starting runs after this many seconds")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-core", type=int, default=0, help="core for the server (-1: no pinning)")
    p.add_argument("--client-core", type=int, default=1, help="core for the load generator (-1: no pinning)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for JSON/MD/PNG")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 1.0, 0.3, 1
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1 or args.time_limit <= 0:
        raise SystemExit("error: --duration and --time-limit must be > 0, --warmup >= 0, --rounds >= 1")
    if args.host not in ("127.0.0.1", "localhost"):
        raise SystemExit("error: benchmarks run on loopback only (--host 127.0.0.1)")
    args.host = "127.0.0.1"
    try:
        build_loadgen()
    except HarnessError as exc:
        raise SystemExit(f"error: {exc}") from None
    deadline = time.monotonic() + args.time_limit
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if len(scenarios) > 1 and (args.servers or args.add_server):
        raise SystemExit("error: --servers and --add-server name servers of one scenario; pick --scenario too")
    if args.loops and args.servers:
        raise SystemExit("error: --loops and --servers both pick servers; give one of them")
    if args.loops:
        bad = [name for name in args.loops.split(",") if name not in aio_loops.LOOPS]
        if bad:
            raise SystemExit(f"error: unknown loop(s): {', '.join(bad)} (choose from {', '.join(aio_loops.LOOPS)})")
        if args.scenario != "all" and args.scenario not in LOOP_SCENARIOS:
            raise SystemExit(f"error: --loops applies to {', '.join(LOOP_SCENARIOS)}, not {args.scenario}")
    status = 0
    for scenario in scenarios:
        if scenario == "udp-echo" and not tool("udpload").exists():
            print("skip udp-echo: benchmarks/loadgen/bin/udpload is not built (no udpload.c)", flush=True)
            continue
        print(f"== {scenario}", flush=True)
        result = run_scenario(scenario, args, deadline)
        stem = scenario + (f"-{args.tag}" if args.tag else "")
        paths = report.write(result, args.out, stem, chart=not args.no_chart)
        print(report.markdown(result))
        print("wrote " + ", ".join(str(p) for p in paths), flush=True)
        if any("error" in r for c in result["cases"] for rs in c["runs"].values() for r in rs):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
