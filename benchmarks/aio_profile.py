"""Where an event loop's time goes under echo load: ``python -m benchmarks.aio_profile``.

Starts ``benchmarks/servers/aio_echo.py`` on one loop (pinned like the
benchmark runs), drives it with ``tcpload`` and samples it with ``py-spy
record`` for the whole load, then prints the functions with the most samples,
by self time and inclusive time.  Take it with the same lock as a benchmark::

    flock /tmp/fastsock-bench.lock python -m benchmarks.aio_profile --scenario aio-streams --loop fastsock

``--native`` adds C frames (Cython, CPython, OpenSSL, the kernel entry
points) to the stacks; py-spy then pauses the server for every sample, so
the msgs/s it prints are lower, but the compiled parts show up.
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import aio_loops, run
from benchmarks.procs import ROOT, HarnessError, ServerProcess, build_loadgen, free_port, run_loadgen

SAMPLE_RATE_HZ = 500         # py-spy samples per second (its default is 100)
TOP = 25
# py-spy's raw frame: "function (path/to/file.py:123)"; the line is dropped so
# samples of one function add up
FRAME_RE = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
# what is left of a path: asyncio/streams.py, fastsock/reactor/loop.py
PREFIX_RE = re.compile(r"^.*?(site-packages/|/lib/python3\.\d+/|" + re.escape(str(ROOT)) + "/)")


def frame_name(frame: str) -> str:
    m = FRAME_RE.match(frame.strip())
    if not m:
        return frame.strip()
    path = PREFIX_RE.sub("", m.group("file"))
    return f"{m.group('fn')} ({path})"


def tally(raw: str) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(total samples, self samples by function, inclusive samples by function)
    from py-spy's ``--format raw`` output (collapsed stacks, one per line)."""
    total, own, incl = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return total, own, incl


def table(title: str, counts: collections.Counter[str], total: int, top: int) -> str:
    lines = [f"| {title} | samples | % |", "|---|---:|---:|"]
    for name, n in counts.most_common(top):
        lines.append(f"| `{name}` | {n} | {100 * n / total:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aio_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=run.LOOP_SCENARIOS, default="aio-echo")
    p.add_argument("--loop", choices=aio_loops.LOOPS, default="fastsock")
    p.add_argument("--connections", type=int, help="default: the scenario's")
    p.add_argument("--size", type=int, help="message size (default: the scenario's first)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load (and sampling)")
    p.add_argument("--native", action="store_true", help="sample C frames too (py-spy --native)")
    p.add_argument("--top", type=int, default=TOP)
    p.add_argument("--raw-out", type=Path, help="keep py-spy's collapsed stacks here")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("error: py-spy is not installed (pip install -e '.[bench]')")
    why = aio_loops.unavailable(args.loop)
    if why:
        raise SystemExit(f"error: {why}")
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    build_loadgen()
    conns_d, sizes_d, _ = run.DEFAULTS[args.scenario]
    case = {"connections": args.connections or conns_d, "size": args.size or int(sizes_d.split(",")[0]),
            "inflight": 1}
    adapter = next(a for a in run.ADAPTERS[args.scenario] if a.name == args.loop)
    ns = argparse.Namespace()
    extra = {}
    if args.scenario == "tls-echo":
        files = run.cert_files(ns)
        extra = {"cert": str(files.cert), "key": str(files.key)}
    port = free_port()
    raw_path = args.raw_out or Path(tempfile.mkstemp(prefix="aio-profile-", suffix=".txt")[1])
    with ServerProcess(args.loop, adapter.command("127.0.0.1", port, **extra), core=args.server_core) as server:
        spy_argv = [pyspy, "record", "--pid", str(server.proc.pid), "--rate", str(SAMPLE_RATE_HZ),
                    "--duration", str(int(args.duration + 1)), "--format", "raw", "--output", str(raw_path)]
        # native stacks need the target paused per sample; Python-only sampling does not
        spy_argv.append("--native" if args.native else "--nonblocking")
        spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)                                   # py-spy attaches
        try:
            res = run_loadgen(run.loadgen_argv(args.scenario, "127.0.0.1", port, case, args.duration, 0.2, False),
                              core=args.client_core, timeout=args.duration + 60)
        except HarnessError as exc:
            spy.kill()
            raise SystemExit(f"error: {exc}") from None
        try:
            _, err = spy.communicate(timeout=args.duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
    total, own, incl = tally(raw_path.read_text() if raw_path.exists() else "")
    if not total:
        raise SystemExit(f"error: py-spy recorded nothing: {err.strip()[-400:]}")
    print(f"{args.scenario} on {args.loop}: {res['msgs_per_s']:,.0f} msgs/s while sampled "
          f"({case['connections']} connections, {case['size']} B); {total} samples at {SAMPLE_RATE_HZ} Hz; "
          f"stacks in {raw_path}\n")
    print(table("self (function)", own, total, args.top))
    print()
    print(table("inclusive (function)", incl, total, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
