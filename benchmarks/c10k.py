"""The C10k run: ``python -m benchmarks.c10k`` (what ``make c10k`` runs).

For each broadcast server (fastsock, websockets, aiohttp, picows, the C
reference) in one run: start it pinned to core 0, open 10,000 WebSocket
connections from one ``wsload --mode c10k`` process pinned to core 1, hold
them idle, have every connection exchange a ping/pong, broadcast one message
to all of them several times, then flood broadcasts every 50 ms and check
that nothing is lost.  The harness samples the server's CPU time, RSS and
descriptors at every phase boundary the load generator announces.

    python -m benchmarks.c10k                       # 10,000 connections, every server
    python -m benchmarks.c10k --servers fastsock,c --connections 2000
    python -m benchmarks.c10k --quick               # 1,000 connections, short phases

permessage-deflate (issue 13): with ``--deflate`` every server sends
JSON-like text (``--payload json``), and wsload offers permessage-deflate
(with ``--deflate-params``) to the servers whose name ends in ``-deflate``
only: ``fastsock-deflate`` is the same ``serve broadcast`` as ``fastsock``
(which accepts deflate by default), so one run compares the same broadcast
compressed and uncompressed::

    python -m benchmarks.c10k --servers fastsock,fastsock-deflate --size 1024 --deflate \
        --deflate-params "server_no_context_takeover; client_max_window_bits"

``--mode hold`` measures what a used idle connection costs instead: N
connections to an echo server each send one message and get it back (so a
negotiated compressor and decompressor have been used), then stay idle; the
server's RSS delta per connection is the result::

    python -m benchmarks.c10k --mode hold --servers fastsock-deflate,websockets-deflate \
        --connections 2000 --size 1024 --deflate
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.procs import (PYTHON, RESULTS_DIR, HarnessError, Sample, ServerProcess, build_loadgen, command_line, free_port,
                              kernel_slab_bytes, machine_info, pinned, tool)
from benchmarks.run import Adapter, custom_adapters, fastsock_apps, unavailable

ADAPTERS = [
    Adapter("fastsock", (PYTHON, "-m", "fastsock", "serve", "broadcast", "--host", "{host}", "--port", "{port}"),
            needs_app="broadcast"),
    Adapter("websockets", (PYTHON, "-m", "benchmarks.servers.ws_websockets", "--host", "{host}", "--port", "{port}",
                           "--mode", "broadcast"), needs_module="websockets"),
    Adapter("aiohttp", (PYTHON, "-m", "benchmarks.servers.ws_aiohttp", "--host", "{host}", "--port", "{port}",
                        "--mode", "broadcast"), needs_module="aiohttp"),
    Adapter("picows", (PYTHON, "-m", "benchmarks.servers.ws_picows", "--host", "{host}", "--port", "{port}",
                       "--mode", "broadcast"), needs_module="picows"),
    Adapter("c", (str(tool("wsecho_c")), "--host", "{host}", "--port", "{port}", "--mode", "broadcast"),
            needs_tool="wsecho_c"),
]
FAST_SERVE = (PYTHON, "-m", "fastsock", "serve")
ADDR = ("--host", "{host}", "--port", "{port}")
# With --deflate, wsload offers permessage-deflate to the servers whose name
# ends in this, and not to the others.
DEFLATE_SUFFIX = "-deflate"
# fastsock's serve accepts permessage-deflate when offered (its default)
ADAPTERS.append(Adapter("fastsock-deflate", (*FAST_SERVE, "broadcast", *ADDR), needs_app="broadcast"))
# --mode hold: echo servers (each connection's one message comes back)
HOLD_ADAPTERS = [
    Adapter("fastsock", (*FAST_SERVE, "echo", *ADDR), needs_app="echo"),
    Adapter("fastsock-deflate", (*FAST_SERVE, "echo", *ADDR), needs_app="echo"),
    Adapter("websockets", (PYTHON, "-m", "benchmarks.servers.ws_websockets", *ADDR, "--mode", "echo"),
            needs_module="websockets"),
    Adapter("websockets-deflate", (PYTHON, "-m", "benchmarks.servers.ws_websockets", *ADDR, "--mode", "echo",
                                   "--compression", "deflate"), needs_module="websockets"),
    Adapter("c", (str(tool("wsecho_c")), *ADDR, "--mode", "echo"), needs_tool="wsecho_c"),
]
FD_MARGIN = 64   # descriptors each process needs besides its connections
EVENTS = ("connecting", "established", "idle_begin", "idle_end", "echo_begin", "echo_end",
          "broadcast_begin", "broadcast_end", "flood_begin", "flood_end")


def raise_nofile(needed: int) -> tuple[int, str | None]:
    """Raises the soft RLIMIT_NOFILE to the hard one (children inherit it).
    Returns the soft limit and, when it is still too low, what to raise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft >= needed:
        return soft, None
    return soft, (f"RLIMIT_NOFILE hard limit is {hard}, but {needed} descriptors are needed by the server and by "
                  f"the load generator each: raise the hard limit to at least {needed} (as root: "
                  f"`prlimit --pid $$ --nofile={needed}:{needed}` for this shell, or `* hard nofile {needed}` "
                  f"in /etc/security/limits.conf, or LimitNOFILE= in a systemd unit); fs.nr_open must be >= it")


def port_range() -> tuple[int, int] | None:
    try:
        lo, hi = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return None


def sources_needed(connections: int) -> tuple[int, str]:
    """Source addresses 127.0.0.1..N the client spreads over so that the
    ephemeral port range is never exhausted (each address has its own)."""
    pr = port_range()
    if pr is None:
        return 1, "ip_local_port_range unknown: one source address"
    ports = pr[1] - pr[0] + 1
    usable = int(ports * 0.9)
    n = max(1, math.ceil(connections / usable))
    return n, (f"ip_local_port_range {pr[0]}-{pr[1]} gives {ports} ports per source address; "
               f"{n} source address(es) for {connections} connections")


def limits_report() -> dict[str, Any]:
    try:
        from fastsock.limits import limits
    except Exception as exc:  # noqa: BLE001 - the harness must run while fastsock is in flux
        return {"error": f"fastsock.limits unavailable: {exc}"}
    r = limits()
    d = dict(r.as_dict())
    d["server_connections"] = r.server_connections
    d["client_connections_per_destination"] = r.client_connections_per_destination
    return d


def on_line(line: bytes, name: str, server: ServerProcess, samples: dict[str, Sample],
            events: dict[str, dict[str, Any]], slab: dict[str, int | None]) -> dict[str, Any] | None:
    """Handles one line of wsload: samples the server at each phase boundary;
    returns the final result when this is it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    ev = obj.get("event")
    if ev == "result":
        return dict(obj)
    if ev in EVENTS:
        samples[ev] = server.sample()
        events[ev] = obj
        if ev == "idle_end":
            slab["idle_end"] = kernel_slab_bytes()
        extra = {k: v for k, v in obj.items() if k not in ("event", "t")}
        print(f"    {name:<11} {obj.get('t', 0):7.2f}s {ev:<16} rss {samples[ev].rss / 2**20:7.1f} MiB "
              f"{json.dumps(extra) if extra else ''}", flush=True)
    return None


def wsload_argv(args: argparse.Namespace, port: int, offer_deflate: bool = True) -> list[str]:
    """The load generator's command line for this run's mode (permessage-deflate
    offered only with --deflate and ``offer_deflate``)."""
    common = ["--host", args.host, "--port", str(port), "--connections", str(args.connections),
              "--concurrency", str(args.concurrency), "--sources", str(args.sources), "--idle", str(args.idle),
              "--size", str(args.size), "--phase-timeout", str(args.phase_timeout),
              "--connect-timeout", str(args.connect_timeout)]
    if getattr(args, "deflate", False):
        common += ["--payload", "json"]
        if offer_deflate:
            common.append("--deflate")
            if args.deflate_params is not None:
                common += ["--deflate-params", args.deflate_params]
    if getattr(args, "mode", "c10k") == "hold":
        return [str(tool("wsload")), "--mode", "hold", *common]
    return [str(tool("wsload")), "--mode", "c10k", *common, "--ping-rounds", str(args.ping_rounds),
            "--ping-spread", str(args.ping_spread), "--broadcasts", str(args.broadcasts),
            "--broadcast-gap", str(args.broadcast_gap), "--flood", str(args.flood),
            "--flood-interval", str(args.flood_interval)]


def drive(adapter: Adapter, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    port = free_port()
    argv = wsload_argv(args, port, offer_deflate=adapter.name.endswith(DEFLATE_SUFFIX))
    budget = (args.connect_timeout + args.idle + args.ping_rounds * args.ping_spread
              + (2 + args.broadcasts) * args.phase_timeout + args.flood * args.flood_interval + 15)
    run_deadline = min(deadline, time.monotonic() + budget)
    samples: dict[str, Sample] = {}
    events: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] | None = None
    with ServerProcess(adapter.name, adapter.command(args.host, port), core=args.server_core) as server:
        time.sleep(0.3)              # let start-up allocations settle before the baseline
        base = server.sample()
        slab: dict[str, int | None] = {"base": kernel_slab_bytes()}
        client = subprocess.Popen(pinned(args.client_core, argv), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert client.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(client.stdout, selectors.EVENT_READ)
        try:
            pending = b""
            fd = client.stdout.fileno()
            while time.monotonic() < run_deadline and result is None:
                # raw reads: a buffered readline() could swallow several event
                # lines at once and leave select() silent, so every phase
                # boundary would be sampled late
                if not sel.select(timeout=0.5):
                    if client.poll() is not None:
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    result = on_line(line, adapter.name, server, samples, events, slab) or result
        finally:
            sel.close()
            if client.poll() is None and result is None:
                client.kill()
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait(5)
        stderr = client.stderr.read().decode(errors="replace") if client.stderr else ""
        peak = server.peak_rss()
        alive = server.alive()
        soft_limit = None
        try:
            soft_limit = server.ps.rlimit(resource.RLIMIT_NOFILE)[0]
        except Exception:  # noqa: BLE001 - psutil raises several kinds here
            pass
        server_err = "" if alive else server.stderr_tail()
    if result is None:
        raise HarnessError(f"wsload gave no result against {adapter.name} within its time bound "
                           f"(last event {list(events)[-1] if events else 'none'}): {stderr.strip()[-300:]}"
                           + (f"; server stderr: {server_err}" if server_err else ""))
    out = summarise(result, samples, base, peak, soft_limit, alive, stderr)
    before, after = slab.get("base"), slab.get("idle_end")
    if before is not None and after is not None and out["connected"]:
        # both ends of every connection live in this kernel (loopback)
        out["kernel_slab_kib_per_conn_pair"] = round((after - before) / out["connected"] / 1024, 2)
    return out


def summarise(res: dict[str, Any], s: dict[str, Sample], base: Sample, peak: int | None,
              fd_limit: int | None, alive: bool, stderr: str) -> dict[str, Any]:
    connected = int(res.get("connected", 0))
    bc, fl, echo = res.get("broadcast", {}), res.get("flood", {}), res.get("echo", {})
    out: dict[str, Any] = {
        "connections": res.get("connections"),
        "connected": connected,
        "failed": int(res.get("failed", 0)) + int(res.get("timed_out", 0)),
        "connect_s": res.get("connect_s"),
        "echo_success_pct": round(100 * float(echo.get("success", 0)), 3),
        "pings": echo.get("pings"),
        "pongs": echo.get("pongs"),
        "bc_count": bc.get("broadcasts"),
        "bc_last_p50_ms": bc.get("last_p50_ms"),
        "bc_last_p99_ms": bc.get("last_p99_ms"),
        "bc_last_max_ms": bc.get("last_max_ms"),
        "bc_delivery_p50_us": bc.get("p50_us"),
        "bc_delivered": bc.get("delivered"),
        "bc_expected": bc.get("expected"),
        "flood_messages": fl.get("messages"),
        "flood_delivered": fl.get("delivered"),
        "flood_expected": fl.get("expected"),
        "flood_undelivered": fl.get("undelivered"),
        "flood_gaps": fl.get("gaps"),
        "flood_out_of_order": fl.get("out_of_order"),
        "flood_lag_p50_ms": fl.get("lag_p50_ms"),
        "flood_lag_max_ms": fl.get("lag_max_ms"),
        "open_at_end": res.get("open_at_end"),
        "replies": res.get("replies"),
        "deflate_accepted": (res.get("deflate") or {}).get("accepted"),
        "compressed_received": res.get("compressed_received"),
        "loadgen_errors": res.get("errors"),
        "loadgen_last_error": res.get("last_error"),
        "rss_before_mib": round(base.rss / 2**20, 2),
        "peak_rss_mib": round(peak / 2**20, 2) if peak else None,
        "fd_limit": fd_limit,
        "server_alive": alive,
    }
    if stderr.strip():
        out["loadgen_stderr"] = stderr.strip()[-400:]
    if "established" in s:
        out["server_fds"] = s["established"].fds
    idle_rss = s.get("idle_end") or s.get("established")
    if idle_rss and connected:
        out["rss_per_conn_kib"] = round((idle_rss.rss - base.rss) / connected / 1024, 2)
    if "idle_begin" in s and "idle_end" in s:
        a, b = s["idle_begin"], s["idle_end"]
        out["idle_cpu_pct"] = round(100 * (b.cpu_s - a.cpu_s) / max(b.t - a.t, 1e-9), 2)
    if "broadcast_begin" in s and "broadcast_end" in s and bc.get("delivered"):
        cpu = s["broadcast_end"].cpu_s - s["broadcast_begin"].cpu_s
        out["bc_cpu_us_per_delivery"] = round(cpu / float(bc["delivered"]) * 1e6, 3)
    if "flood_begin" in s and "flood_end" in s and fl.get("delivered"):
        cpu = s["flood_end"].cpu_s - s["flood_begin"].cpu_s
        out["flood_cpu_us_per_delivery"] = round(cpu / float(fl["delivered"]) * 1e6, 3)
    return out


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per server: the median of every number over its good rounds."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1] if rounds else {"error": "not run"}
    out = dict(ok[0])
    for key, first in ok[0].items():
        if isinstance(first, bool) or not isinstance(first, (int, float)):
            continue
        vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        if len(vals) == len(ok):
            out[key] = statistics.median(vals)
    out["server_alive"] = all(r.get("server_alive", False) for r in ok)
    out["rounds"] = len(ok)
    out["failed_rounds"] = len(rounds) - len(ok)
    return out


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    c = results.get("c", {})
    for r in results.values():
        if c.get("connect_s") and r.get("connect_s") is not None:
            r["connect_vs_c"] = round(r["connect_s"] / c["connect_s"], 3)
        if c.get("bc_last_p50_ms") and r.get("bc_last_p50_ms") is not None:
            r["bc_vs_c"] = round(r["bc_last_p50_ms"] / c["bc_last_p50_ms"], 3)


def hold_goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 13: RSS per used idle connection with deflate, fastsock vs
    websockets at its defaults (both negotiating permessage-deflate)."""
    f, w = results.get("fastsock-deflate", {}), results.get("websockets-deflate", {})
    fk, wk = f.get("rss_per_conn_kib"), w.get("rss_per_conn_kib")
    if fk is None or not wk:
        return []
    ratio = fk / wk
    return [{"goal": "RSS per idle connection with deflate negotiated, after one message each, vs websockets",
             "target": "≤ 0.25×", "measured": f"{fk:.2f} KiB vs {wk:.2f} KiB = {ratio:.3f}×", "met": ratio <= 0.25}]


def deflate_goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 13: a compressed broadcast to no-takeover connections vs the same
    broadcast uncompressed (time to the last receiver, p50)."""
    d, u = results.get("fastsock-deflate", {}), results.get("fastsock", {})
    dm, um = d.get("bc_last_p50_ms"), u.get("bc_last_p50_ms")
    if dm is None or not um:
        return []
    ratio = dm / um
    return [{"goal": "compressed broadcast to the last receiver (p50) vs the same uncompressed",
             "target": "≤ 1.5×", "measured": f"{dm:.1f} ms vs {um:.1f} ms = {ratio:.2f}×", "met": ratio <= 1.5}]


def goals(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's C10k goals, evaluated for fastsock against this run."""
    f = results.get("fastsock")
    if not f or "connected" not in f:
        return []
    out = []

    def add(goal: str, target: str, measured: str, met: bool) -> None:
        out.append({"goal": goal, "target": target, "measured": measured, "met": met})

    n = f.get("connections") or 0
    add("connections established", f"100% of {n:,}", f"{f['connected']:,} ({100 * f['connected'] / max(n, 1):.2f}%)",
        f["connected"] == n)
    add("echoes answered", "100%", f"{f['echo_success_pct']:.3f}%", f["echo_success_pct"] >= 100.0)
    if f.get("rss_per_conn_kib") is not None:
        add("server RSS per idle connection", "≤ 4 KiB", f"{f['rss_per_conn_kib']:.2f} KiB", f["rss_per_conn_kib"] <= 4.0)
    if f.get("connect_vs_c") is not None:
        add("time to connect all vs C server", "≤ 1.5×",
            f"{f['connect_s']:.2f} s vs {results['c']['connect_s']:.2f} s = {f['connect_vs_c']:.2f}×",
            f["connect_vs_c"] <= 1.5)
    if f.get("bc_vs_c") is not None:
        add("broadcast to the last client (p50) vs C server", "≤ 1.05×",
            f"{f['bc_last_p50_ms']:.1f} ms vs {results['c']['bc_last_p50_ms']:.1f} ms = {f['bc_vs_c']:.2f}×",
            f["bc_vs_c"] <= 1.05)
    if f.get("flood_undelivered") is not None:
        add("nothing lost when broadcasts come every "
            f"{f.get('flood_interval_ms', 50):g} ms", "0 undelivered, 0 gaps",
            f"{f['flood_undelivered']} undelivered, {f.get('flood_gaps')} gaps, "
            f"max lag {f.get('flood_lag_max_ms')} ms",
            f["flood_undelivered"] == 0 and not f.get("flood_gaps"))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.c10k", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", help="comma-separated: " + ",".join(a.name for a in ADAPTERS)
                   + " (--mode hold: " + ",".join(a.name for a in HOLD_ADAPTERS) + ")")
    p.add_argument("--mode", choices=("c10k", "hold"), default="c10k",
                   help="hold: N connections to an echo server send one message each, then idle (RSS per conn)")
    p.add_argument("--deflate", action="store_true",
                   help="wsload offers permessage-deflate and sends JSON-like text (--payload json)")
    p.add_argument("--deflate-params", metavar="PARAMS", help="the offer's parameters (implies --deflate)")
    p.add_argument("--add-server", action="append", metavar="NAME=COMMAND",
                   help="also run your own broadcast server: COMMAND with {host} and {port} (repeatable)")
    p.add_argument("--connections", type=int, help="default 10,000 (1,000 with --quick)")
    p.add_argument("--concurrency", type=int, default=1000, help="handshakes in progress at once")
    p.add_argument("--sources", type=int, default=0, help="client source addresses (0: from the port range)")
    p.add_argument("--idle", type=float, default=2.0, help="seconds held idle")
    p.add_argument("--ping-rounds", type=int, default=2)
    p.add_argument("--ping-spread", type=float, default=1.0, help="seconds each ping round is spread over")
    p.add_argument("--broadcasts", type=int, default=10)
    p.add_argument("--broadcast-gap", type=float, default=0.1)
    p.add_argument("--flood", type=int, default=40, help="broadcasts in the flood phase")
    p.add_argument("--flood-interval", type=float, default=0.05)
    p.add_argument("--size", type=int, default=64, help="broadcast message size (>= 16)")
    p.add_argument("--phase-timeout", type=float, default=5.0)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the servers")
    p.add_argument("--quick", action="store_true", help="1,000 connections, short phases")
    p.add_argument("--time-limit", type=float, default=230.0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--server-core", type=int, default=0, help="core for the server (-1: no pinning)")
    p.add_argument("--client-core", type=int, default=1, help="core for the load generator (-1: no pinning)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--tag", default="")
    p.add_argument("--no-chart", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.idle, args.ping_rounds, args.ping_spread = 0.5, 1, 0.3
        args.broadcasts, args.flood, args.phase_timeout = 5, 10, 3.0
    if args.connections is None:
        args.connections = 1000 if args.quick else 10000
    if args.deflate_params is not None:
        args.deflate = True
    if args.connections < 1 or args.size < 16 or args.rounds < 1:
        raise SystemExit("error: --connections >= 1, --size >= 16 and --rounds >= 1 are required")
    if args.host != "127.0.0.1":
        raise SystemExit("error: the C10k run stays on loopback (--host 127.0.0.1)")
    try:
        build_loadgen()
    except HarnessError as exc:
        raise SystemExit(f"error: {exc}") from None
    notes: list[str] = []
    soft, problem = raise_nofile(args.connections + FD_MARGIN)
    if problem:
        print(f"warning: {problem}", flush=True)
        notes.append(problem)
        args.connections = max(1, soft - FD_MARGIN)
        notes.append(f"ran with {args.connections} connections instead")
    if args.sources <= 0:
        args.sources, why = sources_needed(args.connections)
        notes.append(why)
    extra = custom_adapters(args.add_server)
    base_adapters = HOLD_ADAPTERS if args.mode == "hold" else ADAPTERS
    known = {a.name: a for a in [*base_adapters, *extra]}
    wanted = args.servers.split(",") if args.servers else [a.name for a in base_adapters]
    wanted += [a.name for a in extra if a.name not in wanted]
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit(f"error: unknown server(s): {', '.join(bad)} (choose from {', '.join(known)})")
    apps = fastsock_apps()
    adapters, skipped = [], {}
    for name in wanted:
        reason = unavailable(known[name], apps)
        if reason:
            skipped[name] = reason
            print(f"skip {name}: {reason}", flush=True)
        else:
            adapters.append(known[name])
    result: dict[str, Any] = {
        "scenario": "c10k",
        "mode": args.mode,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": command_line("benchmarks.c10k", argv if argv is not None else sys.argv[1:]),
        "params": {"connections": args.connections, "concurrency": args.concurrency, "sources": args.sources,
                   "idle_s": args.idle, "ping_rounds": args.ping_rounds, "broadcasts": args.broadcasts,
                   "size": args.size, "flood": args.flood, "flood_interval_ms": args.flood_interval * 1e3,
                   "rounds": args.rounds, "server_core": args.server_core, "client_core": args.client_core,
                   "rlimit_nofile": soft, "mode": args.mode, "deflate": args.deflate,
                   "deflate_params": args.deflate_params},
        "limits": limits_report(),
        "notes": notes,
        "servers": [a.name for a in adapters],
        "skipped": skipped,
        "results": {},
        "rounds": {a.name: [] for a in adapters},
        "incomplete": False,
    }
    for n in notes:
        print(f"note: {n}", flush=True)
    deadline = time.monotonic() + args.time_limit
    t0 = time.monotonic()
    for rnd in range(args.rounds):
        for adapter in adapters:
            if time.monotonic() + 20 > deadline:
                result["incomplete"] = True
                print("time limit reached, stopping", flush=True)
                break
            print(f"[{time.monotonic() - t0:5.0f}s] round {rnd + 1}: {adapter.name} "
                  f"({args.connections:,} connections)", flush=True)
            try:
                r = drive(adapter, args, deadline)
                r["flood_interval_ms"] = args.flood_interval * 1e3
            except HarnessError as exc:
                r = {"error": str(exc)}
                print(f"    FAILED: {exc}", flush=True)
            result["rounds"][adapter.name].append(r)
        if result["incomplete"]:
            break
    for name, rs in result["rounds"].items():
        result["results"][name] = combine(rs)
    add_ratios(result["results"])
    if args.mode == "hold":
        result["goals"] = hold_goals(result["results"])
    else:
        result["goals"] = goals(result["results"]) + (deflate_goals(result["results"]) if args.deflate else [])
    stem = "c10k" + (f"-{args.tag}" if args.tag else "")
    paths = report.write(result, args.out, stem, chart=not args.no_chart)
    print(report.markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0 if all("error" not in r for r in result["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
