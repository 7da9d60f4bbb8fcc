"""Task switching on each asyncio event loop: ``python -m benchmarks.aio_tasks``.

Two workloads, the same code on every loop:

* **switches**: one task awaits ``asyncio.sleep(0)`` ``--switches`` times
  (1,000,000 by default).  Every await suspends the task and schedules its
  next step with ``call_soon``, so this measures one loop turn plus one task
  step.
* **gather**: ``asyncio.gather`` of ``--gather`` coroutines (10,000 by
  default), each awaiting ``sleep(0)`` once: 10,000 tasks created, each
  stepped twice, and a gather future that collects them.  Repeated
  ``--gather-reps`` times; the median repetition counts.

Each loop runs in its own fresh process pinned to one core (``taskset``), in
interleaved rounds (asyncio, uvloop, fastsock, asyncio, ...); tables give
medians over rounds, per wall second and per CPU second of the process, and
the ratio to uvloop.  Examples::

    python -m benchmarks.aio_tasks --rounds 5
    python -m benchmarks.aio_tasks --loops asyncio,uvloop --quick

Results go to benchmarks/results/aio-tasks.json, .md and .png.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import aio_loops
from benchmarks.procs import PYTHON, RESULTS_DIR, ROOT, HarnessError, command_line, machine_info, parse_result, pinned

SWITCHES = 1_000_000
GATHER_TASKS = 10_000
GATHER_REPS = 5
WARMUP_SWITCHES = 20_000       # first turns warm caches and the allocator, not measured
CHILD_TIMEOUT_S = 120.0        # one child's hard limit: the workloads take seconds
BASELINE = "uvloop"
# (key in a child's JSON, label): the two workloads, as operations per second
WORKLOADS = (("switch", "sleep(0) switches"), ("gather", "gather: tasks"))


# ---- the child: one loop, both workloads -------------------------------------------------

async def _switches(n: int) -> tuple[float, float]:
    """Awaits sleep(0) n times; returns (wall s, CPU s) of just that loop."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        await asyncio.sleep(0)
    return time.perf_counter() - t0, time.process_time() - c0


async def _one_step() -> None:
    await asyncio.sleep(0)


async def _gather(n: int) -> tuple[float, float]:
    """gather() of n tasks that each switch once; returns (wall s, CPU s)."""
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*[_one_step() for _ in range(n)])
    return time.perf_counter() - t0, time.process_time() - c0


def child(loop_name: str, switches: int, gather_tasks: int, gather_reps: int) -> dict[str, Any]:
    loop = aio_loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_switches(min(WARMUP_SWITCHES, switches)))
        sw_wall, sw_cpu = loop.run_until_complete(_switches(switches))
        reps = [loop.run_until_complete(_gather(gather_tasks)) for _ in range(gather_reps)]
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    g_wall = statistics.median(w for w, _ in reps)
    g_cpu = statistics.median(c for _, c in reps)
    return {
        "loop": loop_name, "loop_class": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "switches": switches, "switch_s": sw_wall, "switch_cpu_s": sw_cpu,
        "switch_per_s": switches / sw_wall, "switch_per_cpu_s": switches / sw_cpu if sw_cpu > 0 else None,
        "gather_tasks": gather_tasks, "gather_reps_s": [w for w, _ in reps],
        "gather_s": g_wall, "gather_cpu_s": g_cpu,
        "gather_per_s": gather_tasks / g_wall, "gather_per_cpu_s": gather_tasks / g_cpu if g_cpu > 0 else None,
    }


# ---- the parent: interleaved rounds, one fresh pinned process per run ---------------------

def run_child(loop_name: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [PYTHON, "-m", "benchmarks.aio_tasks", "--child", loop_name, "--switches", str(args.switches),
            "--gather", str(args.gather), "--gather-reps", str(args.gather_reps)]
    try:
        proc = subprocess.run(pinned(args.core, argv), capture_output=True, text=True, cwd=ROOT,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{loop_name} did not finish within {CHILD_TIMEOUT_S:.0f}s") from exc
    if proc.returncode != 0:
        raise HarnessError(f"{loop_name} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return parse_result(proc.stdout, proc.stderr, proc.returncode, f"aio_tasks --child {loop_name}")


def summarise(runs: dict[str, list[dict[str, Any]]], baseline: str) -> dict[str, dict[str, Any]]:
    """Medians over rounds of each loop's rates, and ratios to the baseline."""
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        s: dict[str, Any] = {"rounds": len(ok), "failed_rounds": len(rs) - len(ok)}
        for key, _ in WORKLOADS:
            for unit in ("per_s", "per_cpu_s"):
                vals = [float(r[f"{key}_{unit}"]) for r in ok if r.get(f"{key}_{unit}")]
                s[f"{key}_{unit}"] = statistics.median(vals) if vals else None
                s[f"{key}_{unit}_all"] = vals
        out[name] = s
    for s in out.values():
        for key, _ in WORKLOADS:
            for unit in ("per_s", "per_cpu_s"):
                base = out.get(baseline, {}).get(f"{key}_{unit}")
                mine = s.get(f"{key}_{unit}")
                s[f"{key}_{unit}_ratio"] = round(mine / base, 3) if mine and base else None
    return out


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(result: dict[str, Any]) -> str:
    m, p = result["machine"], result["params"]
    vers = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v != "not installed")
    base = result["baseline"]
    out = [
        "## aio-tasks", "",
        f"Measured {result['started']} at commit `{m.get('commit', '?')}` on {m.get('cpu', '?')} "
        f"({m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB), Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}; {vers}. Load average at start "
        f"{'/'.join(str(x) for x in m.get('loadavg_at_start', []))} (the machine is shared).", "",
        f"Command: `{result['command']}`", "",
        f"Each loop in its own process on core {p['core']}; {p['rounds']} interleaved round(s); medians. "
        f"switches: one task awaits `asyncio.sleep(0)` {p['switches']:,} times; gather: "
        f"`asyncio.gather` of {p['gather']:,} coroutines that each await `sleep(0)` once "
        f"(median of {p['gather_reps']} repetitions per process).",
    ]
    if result.get("skipped"):
        out += ["", "Not run: " + "; ".join(f"{k} ({why})" for k, why in result["skipped"].items()) + "."]
    if result.get("incomplete"):
        out += ["", "**Incomplete:** the run hit its time limit; missing rounds are not shown."]
    out += ["", f"| loop | switches/s | × {base} | switches per CPU-s | × {base} | ns per switch "
                f"| gather tasks/s | × {base} | tasks per CPU-s | × {base} | gather of {p['gather']:,} ms | rounds |",
            "|---|" + "---:|" * 11]
    for name, s in result["summary"].items():
        sw, g = s.get("switch_per_s"), s.get("gather_per_s")
        rounds = f"{s['rounds']}" + (f" ({s['failed_rounds']} failed)" if s.get("failed_rounds") else "")
        out.append(f"| {name} | {_fmt(sw, ',.0f')} | {_fmt(s.get('switch_per_s_ratio'), '.2f')} | "
                   f"{_fmt(s.get('switch_per_cpu_s'), ',.0f')} | {_fmt(s.get('switch_per_cpu_s_ratio'), '.2f')} | "
                   f"{_fmt(1e9 / sw if sw else None, '.0f')} | {_fmt(g, ',.0f')} | "
                   f"{_fmt(s.get('gather_per_s_ratio'), '.2f')} | {_fmt(s.get('gather_per_cpu_s'), ',.0f')} | "
                   f"{_fmt(s.get('gather_per_cpu_s_ratio'), '.2f')} | "
                   f"{_fmt(1e3 * p['gather'] / g if g else None, '.1f')} | {rounds} |")
    failures = [(n, r["error"]) for n, rs in result["runs"].items() for r in rs if "error" in r]
    for name, err in failures[:5]:
        out.append(f"\n{name} failed: `{err[:300]}`")
    return "\n".join(out) + "\n"


def render_chart(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [n for n, s in result["summary"].items() if s["rounds"]]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(9, 3.6))
    for ax, (key, title) in zip(axes, WORKLOADS):
        vals = [(result["summary"][n].get(f"{key}_per_s") or 0) / 1e6 for n in names]
        ax.bar(names, vals, color=["#d62728" if n == "fastsock" else "#7f7f7f" for n in names])
        ax.set_title(f"{title} (millions/s, median)", fontsize=9)
    fig.suptitle(f"asyncio tasks on each loop (commit {result['machine'].get('commit', '?')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict[str, Any], out_dir: Path, stem: str, *, chart: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(markdown(result))
    if chart:
        png = render_chart(result, out_dir / f"{stem}.png")
        if png:
            paths.append(png)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aio_tasks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loops", default=",".join(aio_loops.LOOPS),
                   help=f"comma-separated event loops (default {','.join(aio_loops.LOOPS)})")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--switches", type=int, default=SWITCHES, help=f"sleep(0) awaits (default {SWITCHES:,})")
    p.add_argument("--gather", type=int, default=GATHER_TASKS, help=f"tasks per gather (default {GATHER_TASKS:,})")
    p.add_argument("--gather-reps", type=int, default=GATHER_REPS,
                   help=f"gathers per process, median counts (default {GATHER_REPS})")
    p.add_argument("--core", type=int, default=0, help="core every child runs on (-1: no pinning)")
    p.add_argument("--quick", action="store_true", help="1 round, 100,000 switches, 2 gathers: a smoke run")
    p.add_argument("--time-limit", type=float, default=230.0, help="stop starting runs after this many seconds")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for JSON/MD/PNG")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG")
    p.add_argument("--child", metavar="LOOP", help=argparse.SUPPRESS)   # internal: run one loop, print JSON
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.rounds, args.switches, args.gather_reps = 1, 100_000, 2
    if min(args.rounds, args.switches, args.gather, args.gather_reps) < 1 or args.time_limit <= 0:
        raise SystemExit("error: --rounds, --switches, --gather, --gather-reps and --time-limit must be positive")
    if args.child:
        print(json.dumps(child(args.child, args.switches, args.gather, args.gather_reps)), flush=True)
        return 0
    wanted = [n for n in args.loops.split(",") if n]
    bad = [n for n in wanted if n not in aio_loops.LOOPS]
    if bad or not wanted:
        raise SystemExit(f"error: unknown loop(s): {', '.join(bad) or '(none)'} "
                         f"(choose from {', '.join(aio_loops.LOOPS)})")
    skipped = {n: why for n in wanted if (why := aio_loops.unavailable(n))}
    loops = [n for n in wanted if n not in skipped]
    for name, why in skipped.items():
        print(f"  skip {name}: {why}", flush=True)
    baseline = BASELINE if BASELINE in loops else (loops[0] if loops else BASELINE)
    result: dict[str, Any] = {
        "scenario": "aio-tasks",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "params": {"switches": args.switches, "gather": args.gather, "gather_reps": args.gather_reps,
                   "rounds": args.rounds, "core": args.core},
        "command": command_line("benchmarks.aio_tasks", sys.argv[1:] if argv is None else argv),
        "baseline": baseline, "loops": loops, "skipped": skipped, "incomplete": False,
        "runs": {n: [] for n in loops},
    }
    deadline = time.monotonic() + args.time_limit
    total, step, t_start = args.rounds * len(loops), 0, time.monotonic()
    for rnd in range(args.rounds):
        for name in loops:
            step += 1
            if time.monotonic() > deadline:
                result["incomplete"] = True
                print(f"[{step}/{total}] time limit reached, stopping", flush=True)
                break
            try:
                r = run_child(name, args)
                line = (f"{r['switch_per_s']:>12,.0f} switches/s  {r['gather_per_s']:>12,.0f} gathered tasks/s  "
                        f"({r['loop_class']})")
            except HarnessError as exc:
                r, line = {"error": str(exc)}, f"FAILED: {exc}"
            r["round"] = rnd + 1
            result["runs"][name].append(r)
            print(f"[{step}/{total} {time.monotonic() - t_start:5.0f}s] aio-tasks round {rnd + 1} {name:<9} {line}",
                  flush=True)
        if result["incomplete"]:
            break
    result["summary"] = summarise(result["runs"], baseline)
    paths = write(result, args.out, "aio-tasks" + (f"-{args.tag}" if args.tag else ""), chart=not args.no_chart)
    print(markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 1 if any("error" in r for rs in result["runs"].values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
