"""One table for the event-loop issue: ``python -m benchmarks.aio_summary``.

Reads the results of the aio-echo, aio-streams and tls-echo runs
(``benchmarks.run``) and of ``benchmarks.aio_tasks``, and prints, for every
case, fastsock's loop against uvloop and against asyncio's loop, in msgs/s
(or operations/s) and per CPU second, with the issue's goal and whether the
medians meet it.  Every number comes from the result files; nothing is
measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.procs import RESULTS_DIR

SUBJECT = "fastsock"
# (result stem, case size or workload, label, goal vs uvloop)
CASES: tuple[tuple[str, str, str, float], ...] = (
    ("aio-echo", "64", "Protocol echo, 64 B × 50 conns", 1.1),
    ("aio-streams", "64", "streams echo (start_server), 64 B × 50 conns", 1.0),
    ("tls-echo", "64", "TLS echo, 64 B × 100 conns", 1.2),
    ("tls-echo", "16384", "TLS echo, 16 KiB × 100 conns", 1.2),
    ("aio-tasks", "switch", "tasks: 1 M sleep(0) switches", 1.0),
    ("aio-tasks", "gather", "tasks: gather of 10,000 tasks", 1.0),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def rates(result: dict[str, Any], key: str) -> tuple[dict[str, float | None], dict[str, float | None], str]:
    """Per loop: (median per wall second, median per CPU second), and the commit."""
    commit = result.get("machine", {}).get("commit", "?")
    if result.get("scenario") == "aio-tasks":
        summ = result["summary"]
        return ({n: s.get(f"{key}_per_s") for n, s in summ.items()},
                {n: s.get(f"{key}_per_cpu_s") for n, s in summ.items()}, commit)
    for case in result.get("cases", []):
        if str(case["size"]) == key:
            summ = case["summary"]
            return ({n: s.get("msgs_per_s") for n, s in summ.items()},
                    {n: s.get("msgs_per_cpu_s") for n, s in summ.items()}, commit)
    return {}, {}, commit


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def table(results_dir: Path, tag: str = "") -> str:
    lines = ["| case | goal (× uvloop) | × uvloop, msgs/s | × uvloop, per CPU-s | × asyncio, msgs/s "
             "| × asyncio, per CPU-s | met | commit |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for stem, key, label, goal in CASES:
        path = results_dir / f"{stem}{'-' + tag if tag else ''}.json"
        if not path.exists():
            lines.append(f"| {label} | {goal:.1f}× | not run | | | | | |")
            continue
        wall, cpu, commit = rates(json.loads(path.read_text()), key)
        uv_w, uv_c = _ratio(wall.get(SUBJECT), wall.get("uvloop")), _ratio(cpu.get(SUBJECT), cpu.get("uvloop"))
        aio_w, aio_c = _ratio(wall.get(SUBJECT), wall.get("asyncio")), _ratio(cpu.get(SUBJECT), cpu.get("asyncio"))
        if uv_w is None or uv_c is None:
            met = "–"
        elif uv_w >= goal and uv_c >= goal:
            met = "yes"
        elif uv_w >= goal or uv_c >= goal:
            met = "one measure only"
        else:
            met = "**no**"
        lines.append(f"| {label} | {goal:.1f}× | {_x(uv_w)} | {_x(uv_c)} | {_x(aio_w)} | {_x(aio_c)} | {met} "
                     f"| `{commit}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aio_summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="directory with the result JSON files")
    p.add_argument("--tag", default="", help="the --tag the runs were given")
    args = p.parse_args(argv)
    sys.stdout.write(table(args.results, args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
