"""Side-by-side echo benchmarks: ``python -m benchmarks.run``.

Every server runs as its own process pinned to one core; the compiled load
generator runs pinned to the other.  Rounds are interleaved (A B C A B C ...)
so drift on a shared machine hits everyone alike; the report gives medians
and ratios against a baseline server.  Examples::

    python -m benchmarks.run --scenario tcp-echo --connections 50 --size 64
    python -m benchmarks.run --scenario ws-echo --size 64,1024 --inflight 1,8 --rounds 3
    python -m benchmarks.run --scenario all --quick
    python -m benchmarks.run --scenario tls-echo --loops asyncio,uvloop,fastsock --rounds 5
    python -m benchmarks.run --scenario ws-echo --servers fastsock-async,fastsock,websockets \
        --pairs fastsock-async/websockets,fastsock-async/fastsock
    python -m benchmarks.run --scenario wss-echo --size 64,1024        # wss: fastsock, picows, websockets, C
    python -m benchmarks.run --scenario deflate-echo --size 1024,65536 # permessage-deflate, JSON-like text

wss-echo runs every server over TLS with a certificate made at run time
(trustme) and ``wsload --tls``; deflate-echo has ``wsload --deflate
--payload json`` offer permessage-deflate and send JSON-like text, each
server negotiating it with its own defaults.  ``--pairs A/B,...`` adds the
same-run ratio of two servers to the report: the ratio of their medians and
the median of the per-round ratios (A and B measured back to back).

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
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import aio_loops, report
from benchmarks.report import summarise
from benchmarks.procs import (PYTHON, RESULTS_DIR, HarnessError, ServerProcess, build_loadgen, command_line, free_port,
                              machine_info, run_loadgen, tool)

SCENARIOS = ("ws-echo", "wss-echo", "deflate-echo", "tcp-echo", "udp-echo", "aio-echo", "aio-streams", "tls-echo")
# scenarios whose servers get the run's certificate as {cert}/{key}
TLS_SCENARIOS = ("wss-echo", "tls-echo")
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
    needs_option: str | None = None   # option `python -m fastsock serve APP --help` must list

    def command(self, host: str, port: int, **extra: str) -> list[str]:
        """The argv with {host}, {port} and any {cert}/{key} filled in."""
        return [a.format(host=host, port=port, **extra) for a in self.argv]


def _fastsock(app: str, loop: str | None = None, *extra: str) -> tuple[str, ...]:
    argv = (PYTHON, "-m", "fastsock", "serve", app, "--host", "{host}", "--port", "{port}")
    return argv + (("--loop", loop) if loop else ()) + extra


TLS_ARGS = ("--certfile", "{cert}", "--keyfile", "{key}")
ASYNC_API = ("--api", "async")


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
        Adapter("fastsock-async", _fastsock("echo", None, *ASYNC_API), needs_app="echo", needs_option="--api"),
        Adapter("websockets", _peer("ws_websockets", "--mode", "echo"), needs_module="websockets"),
        Adapter("aiohttp", _peer("ws_aiohttp", "--mode", "echo"), needs_module="aiohttp"),
        Adapter("picows", _peer("ws_picows", "--mode", "echo"), needs_module="picows"),
        Adapter("c", (str(tool("wsecho_c")), "--host", "{host}", "--port", "{port}", "--mode", "echo"),
                needs_tool="wsecho_c"),
    ],
    # wss://: every server with the run's certificate; peers on uvloop
    "wss-echo": [
        Adapter("fastsock", _fastsock("echo", None, *TLS_ARGS), needs_app="echo", needs_option="--certfile"),
        Adapter("fastsock-async", _fastsock("echo", None, *ASYNC_API, *TLS_ARGS), needs_app="echo",
                needs_option="--api"),
        Adapter("picows", _peer("ws_picows", "--mode", "echo", "--tls", "{cert}", "{key}"), needs_module="picows"),
        Adapter("websockets", _peer("ws_websockets", "--mode", "echo", "--tls", "{cert}", "{key}"),
                needs_module="websockets"),
        Adapter("c", (str(tool("wsecho_c")), "--host", "{host}", "--port", "{port}", "--mode", "echo",
                      "--certfile", "{cert}", "--keyfile", "{key}"), needs_tool="wsecho_c"),
    ],
    # permessage-deflate offered by the client, each server with its own
    # defaults (fastsock's serve accepts it by default, as websockets does; a
    # server that declines makes the run fail, see run_once)
    "deflate-echo": [
        Adapter("fastsock", _fastsock("echo"), needs_app="echo"),
        Adapter("fastsock-async", _fastsock("echo", None, *ASYNC_API), needs_app="echo", needs_option="--api"),
        Adapter("websockets", _peer("ws_websockets", "--mode", "echo", "--compression", "deflate"),
                needs_module="websockets"),
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
BASELINE = {"ws-echo": "picows", "wss-echo": "picows", "deflate-echo": "websockets",
            "tcp-echo": "uvloop", "udp-echo": "uvloop",
            "aio-echo": "uvloop", "aio-streams": "uvloop", "tls-echo": "uvloop"}
LOADGEN = {"ws-echo": "wsload", "wss-echo": "wsload", "deflate-echo": "wsload", "tcp-echo": "tcpload", "udp-echo": "udpload",
           "aio-echo": "tcpload", "aio-streams": "tcpload", "tls-echo": "tcpload"}
DEFAULTS = {"ws-echo": (100, "64,1024", "1,8"), "wss-echo": (100, "64,1024", "1"), "deflate-echo": (100, "1024", "1"),
            "tcp-echo": (50, "64", "1"), "udp-echo": (50, "64", "1"),
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


_SERVE_HELP: dict[str, str] = {}


def serve_help(app: str) -> str:
    """`python -m fastsock serve APP --help` of this checkout (cached)."""
    if app not in _SERVE_HELP:
        import subprocess

        proc = subprocess.run([PYTHON, "-m", "fastsock", "serve", app, "--help"], capture_output=True, text=True,
                              timeout=60)
        _SERVE_HELP[app] = proc.stdout if proc.returncode == 0 else ""
    return _SERVE_HELP[app]


def unavailable(adapter: Adapter, apps: set[str]) -> str | None:
    """Why this adapter cannot run here, or None."""
    if adapter.needs_app and adapter.needs_app not in apps:
        return f"`python -m fastsock serve {adapter.needs_app}` is not available in this checkout"
    if adapter.needs_app and adapter.needs_option and adapter.needs_option not in serve_help(adapter.needs_app):
        return f"`python -m fastsock serve {adapter.needs_app}` has no {adapter.needs_option} in this checkout"
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
                 warmup: float, binary: bool, deflate_params: str | None = None,
                 deflate_level: int | None = None) -> list[str]:
    argv = [str(tool(LOADGEN[scenario])), "--host", host, "--port", str(port),
            "--size", str(case["size"]), "--inflight", str(case["inflight"]),
            "--duration", str(duration), "--warmup", str(warmup)]
    if scenario == "udp-echo":   # the UDP tool counts sockets as senders
        argv += ["--senders", str(case["connections"])]
    else:
        argv += ["--connections", str(case["connections"])]
    if scenario in ("ws-echo", "wss-echo"):
        argv.append("--binary" if binary else "--text")
    if scenario in TLS_SCENARIOS:
        argv.append("--tls")
    if scenario == "deflate-echo":   # JSON-like text, compressed as applications send it
        argv += ["--text", "--payload", "json", "--deflate"]
        if deflate_params is not None:
            argv += ["--deflate-params", deflate_params]
        if deflate_level is not None:
            argv += ["--deflate-level", str(deflate_level)]
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
    if scenario in TLS_SCENARIOS:
        files = cert_files(args)
        extra = {"cert": str(files.cert), "key": str(files.key)}
    with ServerProcess(adapter.name, adapter.command(args.host, port, **extra), core=args.server_core) as server:
        before = server.sample()
        t0 = time.monotonic()
        budget = args.duration + args.warmup + 30
        result = run_loadgen(loadgen_argv(scenario, args.host, port, case, args.duration, args.warmup,
                                          args.binary, args.deflate_params, args.deflate_level),
                             core=args.client_core, timeout=budget)
        after = server.sample()
        wall = time.monotonic() - t0
        result = normalise(result, case["size"])
        declined = (result.get("deflate") or {}).get("declined", 0)
        if scenario == "deflate-echo" and declined:
            raise HarnessError(f"{adapter.name} declined permessage-deflate on {declined} connection(s)")
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


def parse_pairs(text: str | None) -> list[tuple[str, str]]:
    """``A/B,C/D`` -> [(A, B), (C, D)]."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        a, sep, b = item.partition("/")
        if not sep or not a.strip() or not b.strip():
            raise SystemExit(f"error: --pairs takes A/B[,C/D...], got {item!r}")
        pairs.append((a.strip(), b.strip()))
    return pairs


def pair_ratios(runs: dict[str, list[dict[str, Any]]], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Same-run ratios of msgs/s for each (A, B): the ratio of the medians, and
    every round's own A/B (the two measured back to back), with their median,
    lowest and highest, so the noise of the shared machine shows."""
    out = []
    for a, b in pairs:
        ra, rb = runs.get(a, []), runs.get(b, [])
        by_round = {r.get("round"): r for r in rb if "error" not in r and r.get("msgs_per_s")}
        per_round = [round(r["msgs_per_s"] / by_round[r.get("round")]["msgs_per_s"], 3)
                     for r in ra if "error" not in r and r.get("round") in by_round]
        med_a = statistics.median([r["msgs_per_s"] for r in ra if "error" not in r] or [0.0])
        med_b = statistics.median([r["msgs_per_s"] for r in rb if "error" not in r] or [0.0])
        cpu_a = [float(r["msgs_per_cpu_s"]) for r in ra if isinstance(r.get("msgs_per_cpu_s"), (int, float))]
        cpu_b = [float(r["msgs_per_cpu_s"]) for r in rb if isinstance(r.get("msgs_per_cpu_s"), (int, float))]
        out.append({
            "a": a, "b": b,
            "ratio_of_medians": round(med_a / med_b, 3) if med_b else None,
            "per_round": per_round,
            "median_per_round": round(statistics.median(per_round), 3) if per_round else None,
            "min_per_round": min(per_round) if per_round else None,
            "max_per_round": max(per_round) if per_round else None,
            "cpu_ratio_of_medians": (round(statistics.median(cpu_a) / statistics.median(cpu_b), 3)
                                     if cpu_a and cpu_b and statistics.median(cpu_b) else None),
        })
    return out


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
    message_type = (("binary" if args.binary else "text") if scenario in ("ws-echo", "wss-echo")
                    else "JSON-like text, permessage-deflate" if scenario == "deflate-echo" else "raw")
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
                    result["params"]["message_type"] = f"{message_type} over TLS ({r['tls']})"
                if r.get("deflate"):   # what each server accepted of the client's offer
                    result["params"].setdefault("deflate", {})[adapter.name] = r["deflate"].get("accepted")
                    result["params"]["deflate_offer"] = r["deflate"].get("offer")
                print(f"[{step}/{total} {time.monotonic() - t_start:5.0f}s] {label} round {rnd + 1} "
                      f"{adapter.name:<16} {line}", flush=True)
            if result["incomplete"]:
                break
        summary = summarise(runs, baseline)   # also fills msgs_per_cpu_s into each run
        result["cases"].append({**case, "runs": runs, "summary": summary,
                                "pairs": pair_ratios(runs, parse_pairs(args.pairs))})
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
    p.add_argument("--pairs", metavar="A/B,...", help="same-run msgs/s ratios of server A to server B to report")
    p.add_argument("--deflate-params", metavar="PARAMS",
                   help="deflate-echo: the parameters wsload offers (default: client_max_window_bits)")
    p.add_argument("--deflate-level", type=int, choices=range(10), metavar="0-9",
                   help="deflate-echo: zlib level of wsload's own compressor (default 6); 1 keeps the load "
                        "generator's share small at large sizes (the server's work does not depend on it)")
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
