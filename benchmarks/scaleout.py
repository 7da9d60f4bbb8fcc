"""Broadcast across processes through Redis vs in one process (issue 15's table).

    flock /tmp/fastsock-bench.lock .venv/bin/python -m benchmarks.scaleout [--connections 10000]

For each configuration, ``wsload --mode c10k`` (benchmarks/c10k.py's driver)
opens N WebSocket connections to one port, then one connection sends a
64-byte message and every connection must receive it (time to the last
receiver), BROADCASTS times:

- ``1 process``: ``serve broadcast`` (the in-process hub);
- ``2 workers + Redis``: ``serve broadcast --workers 2 --pubsub redis://...``
  on the same port: the kernel splits the connections between the two
  workers, and each broadcast crosses Redis once per worker.

With ``--echo-seconds S`` it also runs ``wsload`` in echo mode (100
connections, 8 messages in flight each, 64 bytes) for S seconds against
``serve echo`` and ``serve echo --workers 2``: messages per second and
messages per server CPU-second (the whole process tree).

Server CPU is the on-CPU time of the whole process tree (supervisor and
workers) between the phase boundaries. Redis messages per broadcast are
PUBLISH calls (Redis ``commandstats``) times the subscribers of the
channel (one per worker). Neither process is pinned: the two workers need
both cores, which they share with wsload and redis-server, so the CPU per
delivery is the fair comparison on this 2-core machine, not wall time alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import c10k
from benchmarks.procs import PYTHON, Sample, ServerProcess, build_loadgen, cpu_seconds, free_port, machine_info
from benchmarks.run import Adapter

REDIS_START_TIMEOUT = 10.0
TIME_LIMIT = 600.0            # the whole run
CHANNEL = b"fastsock:t:broadcast"


class TreeServerProcess(ServerProcess):
    """A server whose samples count the CPU and memory of its workers too."""

    def sample(self) -> Sample:
        procs = [self.ps]
        try:
            procs += self.ps.children(recursive=True)
        except psutil.Error:
            pass
        cpu, rss, fds = 0.0, 0, 0
        for p in procs:
            try:
                cpu += cpu_seconds(p)
                rss += int(p.memory_info().rss)
                fds += p.num_fds()
            except psutil.Error:
                continue
        return Sample(time.monotonic(), cpu, rss, fds)


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (scripts/ensure-system-deps.sh)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def publish_calls(port: int) -> int:
    import redis
    stats = redis.Redis(port=port).info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def numsub(port: int) -> int:
    import redis
    return int(dict(redis.Redis(port=port).pubsub_numsub(CHANNEL))[CHANNEL])


ECHO_CONNECTIONS = 100
ECHO_INFLIGHT = 8


def echo_run(argv: list[str], seconds: float, connections: int = ECHO_CONNECTIONS) -> dict[str, Any]:
    """wsload echo against the server ``argv`` (which gets --host/--port): msgs/s
    and msgs per CPU-second of the server's process tree."""
    from benchmarks.procs import run_loadgen, tool
    port = free_port()
    with TreeServerProcess("echo", [*argv, "--host", "127.0.0.1", "--port", str(port)],
                           core=None) as server:
        time.sleep(0.3)
        before = server.sample()
        res = run_loadgen([str(tool("wsload")), "--port", str(port), "--connections",
                           str(connections), "--inflight", str(ECHO_INFLIGHT), "--size", "64",
                           "--duration", str(seconds), "--warmup", "0"], core=None,
                          timeout=seconds + 60)
        after = server.sample()
    cpu = after.cpu_s - before.cpu_s
    msgs = float(res.get("messages", 0))
    return {"msgs_per_s": res.get("msgs_per_s"), "p50_us": res.get("p50_us"),
            "p99_us": res.get("p99_us"), "server_cpu_s": round(cpu, 3),
            "msgs_per_cpu_s": round(msgs / cpu) if cpu > 0 else None,
            "loadgen_cpu_pct": res.get("loadgen_cpu_pct"), "errors": res.get("errors")}


def broadcast_runs(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """wsload c10k against 1 process and against 2 workers + Redis, args.rounds times."""
    c10k.raise_nofile(args.connections + c10k.FD_MARGIN)
    cargs = c10k.build_parser().parse_args([
        "--connections", str(args.connections), "--broadcasts", str(args.broadcasts),
        "--flood", "0", "--idle", "0.5", "--ping-rounds", "0", "--server-core", "-1",
        "--client-core", "-1", "--phase-timeout", "10"])
    cargs.sources = c10k.sources_needed(args.connections)[0]
    c10k.ServerProcess = TreeServerProcess  # type: ignore[misc]   # sample the process tree
    deadline = time.monotonic() + TIME_LIMIT
    results: dict[str, list[dict[str, Any]]] = {"1 process": [], "2 workers + Redis": []}
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_port = start_redis(Path(tmp))
        try:
            url = f"redis://127.0.0.1:{redis_port}"
            configs = {
                "1 process": Adapter("1p", (PYTHON, "-m", "fastsock", "serve", "broadcast", "--quiet",
                                            "--host", "{host}", "--port", "{port}")),
                "2 workers + Redis": Adapter("2w", (PYTHON, "-m", "fastsock", "serve", "broadcast",
                                                    "--quiet", "--workers", "2", "--pubsub", url,
                                                    "--host", "{host}", "--port", "{port}")),
            }
            for _ in range(args.rounds):
                for name, adapter in configs.items():
                    before = publish_calls(redis_port)
                    row = c10k.drive(adapter, cargs, deadline)
                    published = publish_calls(redis_port) - before
                    if name != "1 process" and row.get("bc_count"):
                        row["redis_publish_per_broadcast"] = published / row["bc_count"]
                    results[name].append(row)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    return results


def print_broadcast(summary: dict[str, dict[str, Any]]) -> None:
    one, two = summary["1 process"], summary["2 workers + Redis"]
    print(f"\n{'':<22}{'last p50 ms':>12}{'last p99 ms':>12}{'CPU µs/delivery':>17}{'delivered':>11}")
    for name, row in summary.items():
        print(f"{name:<22}{row.get('bc_last_p50_ms', float('nan')):>12.2f}"
              f"{row.get('bc_last_p99_ms', float('nan')):>12.2f}"
              f"{row.get('bc_cpu_us_per_delivery', float('nan')):>17.3f}"
              f"{row.get('bc_delivered', 0):>11}")
    if one.get("bc_last_p50_ms") and two.get("bc_last_p50_ms"):
        print(f"time to last, 2 workers / 1 process: {two['bc_last_p50_ms'] / one['bc_last_p50_ms']:.2f}x")
    if one.get("bc_cpu_us_per_delivery") and two.get("bc_cpu_us_per_delivery"):
        print(f"CPU per delivery, 2 workers / 1 process: "
              f"{two['bc_cpu_us_per_delivery'] / one['bc_cpu_us_per_delivery']:.2f}x")
    if "redis_publish_per_broadcast" in two:
        print(f"Redis: {two['redis_publish_per_broadcast']:.2f} PUBLISH per broadcast, each to one "
              f"subscriber per worker (2): {2 * two['redis_publish_per_broadcast']:.2f} messages "
              f"out of Redis per broadcast")


def echo_runs(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    base = [PYTHON, "-m", "fastsock", "serve", "echo", "--quiet"]
    configs: list[tuple[str, list[str], int]] = [
        (f"echo, 1 process, {ECHO_CONNECTIONS} conns", [], ECHO_CONNECTIONS),
        (f"echo, 2 workers, {ECHO_CONNECTIONS} conns", ["--workers", "2"], ECHO_CONNECTIONS)]
    if args.echo_half_load:
        configs.append((f"echo, 1 process, {ECHO_CONNECTIONS // 2} conns", [],
                        ECHO_CONNECTIONS // 2))
    echo: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for name, extra, connections in configs:
            echo.setdefault(name, []).append(echo_run(base + extra, args.echo_seconds, connections))
    print(f"\n{'':<30}{'msgs/s':>10}{'msgs/CPU-s':>12}{'server CPU s':>14}{'p99 µs':>9}")
    medians = {name: c10k.combine(rows) for name, rows in echo.items()}
    for name, row in medians.items():
        print(f"{name:<30}{row['msgs_per_s']:>10.0f}{row['msgs_per_cpu_s']:>12.0f}"
              f"{row['server_cpu_s']:>14.2f}{row['p99_us']:>9.0f}")
    one_e, two_e = medians[configs[0][0]], medians[configs[1][0]]
    print(f"messages per server CPU-second, 2 workers / 1: "
          f"{two_e['msgs_per_cpu_s'] / one_e['msgs_per_cpu_s']:.2f}x; throughput "
          f"{two_e['msgs_per_s'] / one_e['msgs_per_s']:.2f}x")
    return echo


# -- --echo-profile: where the 2-worker echo spends its extra CPU ---------------------------

def _proc_counters(pid: int) -> dict[str, float]:
    """On-CPU seconds, context switches and migrations of one process (all threads)."""
    out = {"cpu_s": cpu_seconds(psutil.Process(pid)), "voluntary": 0.0, "involuntary": 0.0,
           "migrations": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    key = key.strip()
                    if key == "nr_voluntary_switches":
                        out["voluntary"] += float(value)
                    elif key == "nr_involuntary_switches":
                        out["involuntary"] += float(value)
                    elif key == "se.nr_migrations":
                        out["migrations"] += float(value)
        except OSError:
            continue
    return out


def _scrape(port: int) -> dict[str, float]:
    """The loop and message counters of a scrape (the supervisor's totals with workers)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("fastsock_loop_iterations_total", "fastsock_loop_io_events_total"):
                out[sample.name] = sample.value
            elif sample.name == "fastsock_received_messages_total" and \
                    sample.labels.get("type") == "binary":
                out["messages"] = sample.value
    return out


PROFILE_CONFIGS: dict[str, tuple[int, str, int | None]] = {
    # name: (workers, pinning of the server processes, loadgen core)
    "1 process, unpinned": (1, "none", None),
    "2 workers, unpinned": (2, "none", None),
    "2 workers, worker i on core i": (2, "own", None),
    "1 process on core 0, loadgen on core 1": (1, "core0", 1),
    "2 workers both on core 0, loadgen on core 1": (2, "core0", 1),
    # SCHED_BATCH: a woken server does not preempt the running load generator,
    # so more messages are ready per loop turn (chrt -b; the workers inherit it)
    "1 process, SCHED_BATCH": (1, "batch", None),
    "2 workers, SCHED_BATCH": (2, "batch", None),
}


def echo_profile_run(workers: int, pinning: str, loadgen_core: int | None, seconds: float,
                     connections: int = ECHO_CONNECTIONS,
                     inflight: int = ECHO_INFLIGHT) -> dict[str, Any]:
    """One echo run like echo_run, with per-process CPU, context switches and
    migrations, and the loop's turns and I/O events (from --metrics-port)."""
    from benchmarks.procs import run_loadgen, tool
    port, metrics_port = free_port(), free_port()
    argv = [PYTHON, "-m", "fastsock", "serve", "echo", "--quiet", "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(metrics_port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if pinning == "batch":
        argv = ["chrt", "--batch", "0", *argv]
    with TreeServerProcess("echo", argv, core=0 if pinning == "core0" else None) as server:
        time.sleep(0.3)
        servers = [c.pid for c in server.ps.children()] if workers > 1 else [server.ps.pid]
        if pinning == "batch":
            assert all(os.sched_getscheduler(pid) == os.SCHED_BATCH for pid in servers)
        if pinning == "own":
            for core, pid in enumerate(sorted(servers)):
                psutil.Process(pid).cpu_affinity([core % len(os.sched_getaffinity(0))])
        before = {pid: _proc_counters(pid) for pid in servers}
        loop_before = _scrape(metrics_port)
        sup_before = _proc_counters(server.ps.pid) if workers > 1 else None
        res = run_loadgen([str(tool("wsload")), "--port", str(port), "--connections",
                           str(connections), "--inflight", str(inflight), "--size", "64",
                           "--binary", "--duration", str(seconds), "--warmup", "0"],
                          core=loadgen_core, timeout=seconds + 60)
        after = {pid: _proc_counters(pid) for pid in servers}
        loop_after = _scrape(metrics_port)
        sup_after = _proc_counters(server.ps.pid) if workers > 1 else None
    msgs = float(res.get("messages", 0))
    delta = {k: sum(after[p][k] - before[p][k] for p in servers) for k in before[servers[0]]}
    cpu = delta["cpu_s"]
    if sup_before is not None and sup_after is not None:
        cpu += sup_after["cpu_s"] - sup_before["cpu_s"]     # the supervisor too (≈ 0)
    turns = loop_after.get("fastsock_loop_iterations_total", 0) - loop_before.get("fastsock_loop_iterations_total", 0)
    events = loop_after.get("fastsock_loop_io_events_total", 0) - \
        loop_before.get("fastsock_loop_io_events_total", 0)
    per_k = 1000.0 / msgs if msgs else float("nan")
    return {"msgs_per_s": res.get("msgs_per_s"), "messages": msgs, "server_cpu_s": round(cpu, 3),
            "msgs_per_cpu_s": round(msgs / cpu) if cpu > 0 else None,
            "cpu_us_per_msg": round(1e6 * cpu / msgs, 4) if msgs else None,
            "voluntary_per_1k_msgs": round(delta["voluntary"] * per_k, 3),
            "involuntary_per_1k_msgs": round(delta["involuntary"] * per_k, 3),
            "migrations_per_1k_msgs": round(delta["migrations"] * per_k, 3),
            "turns_per_1k_msgs": round(turns * per_k, 2) if turns else None,
            "io_events_per_turn": round(events / turns, 2) if turns else None,
            "loadgen_cpu_pct": res.get("loadgen_cpu_pct"), "p99_us": res.get("p99_us"),
            "errors": res.get("errors")}


def echo_profile(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    configs = list(PROFILE_CONFIGS.items())
    if args.echo_configs:
        configs = [configs[int(i)] for i in args.echo_configs.split(",")]
    for _ in range(args.rounds):                  # interleaved
        for name, (workers, pinning, core) in configs:
            rows.setdefault(name, []).append(
                echo_profile_run(workers, pinning, core, args.echo_seconds,
                                 args.echo_connections, args.echo_inflight))
    medians = {name: c10k.combine(r) for name, r in rows.items()}
    head = ("msgs/s", "msgs/CPU-s", "µs/msg", "vol/1k", "invol/1k", "migr/1k", "turns/1k",
            "ev/turn", "lg CPU%")
    print(f"\n{'':<46}" + "".join(f"{h:>11}" for h in head))
    for name, r in medians.items():
        cells = (r["msgs_per_s"], r["msgs_per_cpu_s"], r["cpu_us_per_msg"],
                 r["voluntary_per_1k_msgs"], r["involuntary_per_1k_msgs"],
                 r["migrations_per_1k_msgs"], r["turns_per_1k_msgs"], r["io_events_per_turn"],
                 r["loadgen_cpu_pct"])
        print(f"{name:<46}" + "".join(f"{c:>11.3f}" if isinstance(c, float) and c < 100
                                        else f"{c:>11.0f}" if c is not None else f"{'-':>11}"
                                        for c in cells))
    names = list(PROFILE_CONFIGS)
    for two, one in ((1, 0), (2, 0), (4, 3), (6, 5), (6, 0)):
        if names[two] in medians and names[one] in medians:
            ratio = medians[names[two]]["msgs_per_cpu_s"] / medians[names[one]]["msgs_per_cpu_s"]
            print(f"msgs per CPU-s, {names[two]} / {names[one]}: {ratio:.3f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--broadcasts", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--echo-seconds", type=float, default=0.0,
                   help="also compare serve echo with 1 and 2 workers for this long (0: skip)")
    p.add_argument("--echo-half-load", action="store_true",
                   help="with --echo-seconds, also run 1 process at half the connections "
                        "(the load each of 2 workers gets)")
    p.add_argument("--skip-broadcast", action="store_true", help="only the echo comparison")
    p.add_argument("--echo-connections", type=int, default=ECHO_CONNECTIONS,
                   help="with --echo-profile: connections (default %(default)s)")
    p.add_argument("--echo-inflight", type=int, default=ECHO_INFLIGHT,
                   help="with --echo-profile: messages in flight per connection "
                        "(default %(default)s)")
    p.add_argument("--echo-configs", default=None,
                   help="with --echo-profile: comma-separated indexes of the configurations "
                        "to run (default: all)")
    p.add_argument("--echo-profile", action="store_true",
                   help="with --echo-seconds: instead of the plain echo comparison, profile it: "
                        "pinning variants, context switches, migrations, loop turns per message")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    build_loadgen()
    results: dict[str, list[dict[str, Any]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    if not args.skip_broadcast:
        results = broadcast_runs(args)
        summary = {name: c10k.combine(rows) for name, rows in results.items()}
        print_broadcast(summary)
    if args.echo_profile and args.echo_seconds > 0:
        echo = echo_profile(args)
    else:
        echo = echo_runs(args) if args.echo_seconds > 0 else {}
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_info(), "results": summary,
                                        "rounds": results, "echo": echo}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
