"""Same-run A/B of apply_mask: fastsock _frame builds (given as NAME=path.so in $MODS)
against websockets C apply_mask and a bytes(bytearray) copy, interleaved rounds, medians.

    MODS=old=/tmp/old/_frame.so,new=fastsock/_frame.cpython-311-x86_64-linux-gnu.so \
        flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python scripts/bench_mask_ab.py 64 65536
"""
import os, sys, time, statistics, importlib.util
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastsock.exceptions
def load(path):
    spec = importlib.util.spec_from_file_location("_frame", path)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m
mods = {name: load(path) for name, path in (a.split("=") for a in os.environ["MODS"].split(","))}
from websockets.speedups import apply_mask as W
KEY = b"\x37\xfa\x21\x3d"
sizes = [int(x) for x in sys.argv[1:]]
for n in sizes:
    src = os.urandom(n); ba = bytearray(src)
    fns = {k: (lambda m=m: m.apply_mask(src, KEY)) for k, m in mods.items()}
    fns["websockets"] = lambda: W(src, KEY)
    fns["copy"] = lambda: bytes(ba)
    number = max(20, int(2e6 // (n + 200)))
    res = {k: [] for k in fns}
    for r in range(int(os.environ.get("ROUNDS", "31"))):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number): fn()
            res[k].append((time.perf_counter() - t0) / number)
    md = {k: statistics.median(v) for k, v in res.items()}
    print(f"{n:>8} B  " + "  ".join(f"{k} {md[k]*1e9:.0f}" for k in fns) + "  | ws/x: " +
          " ".join(f"{k} {md['websockets']/md[k]:.2f}x" for k in fns), flush=True)
