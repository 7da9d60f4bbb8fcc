"""permessage-deflate settings, measured: what each costs per connection
(RSS), what it saves (compressed size) and what it takes (time), and which
zlib backend is fastest. The numbers behind docs/compression.md.

    flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python -m benchmarks.deflate_settings memory
    flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python -m benchmarks.deflate_settings ratio
    flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python -m benchmarks.deflate_settings backends

memory: N compressors (or decompressors) of the compiled module, each after
one 1 KiB message (the state zlib touches then is what an idle connection
keeps), RSS delta / N from /proc/self/statm. Each setting runs in a fresh
subprocess so freed memory does not blur the next.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

N_CONNS = 2000


def json_message(size: int, seed: int = 1) -> bytes:
    """A JSON-like chat/API message of about ``size`` bytes."""
    rng = random.Random(seed)
    words = ["user", "message", "status", "online", "channel", "general", "hello",
             "update", "price", "quantity", "timestamp", "id", "true", "false", "null"]
    items = []
    out = b""
    while len(out) < size:
        items.append({"id": rng.randrange(10**6), "user": f"user{rng.randrange(1000)}",
                      "text": " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12))),
                      "ts": 1733400000 + rng.randrange(10**5), "ok": rng.random() < 0.5})
        out = json.dumps({"type": "batch", "items": items}).encode()
    return out[:size]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_child(kind: str, wbits: int, mem: int, count: int) -> None:
    from fastsock.websocket import _deflate as z
    msgs = [json_message(1024, seed) for seed in range(count)]
    sender = z.Compressor(max(wbits, 9), mem or 5, 6)
    wires = [sender.compress(m) for m in msgs]
    keep: list[Any] = []
    before = rss()
    for _ in range(N_CONNS):
        if kind == "deflate":
            c = z.Compressor(wbits, mem, 6)
            for m in msgs:
                c.compress(m)
        else:
            c = z.Decompressor(wbits)
            for w in wires:
                c.decompress(w, 1 << 20)
        keep.append(c)
    print(json.dumps({"bytes": (rss() - before) / N_CONNS}))


def memory(args: argparse.Namespace) -> None:
    """RSS per connection after 1 message of 1 KiB and after 64 (64 KiB of
    history: the window is full), against zlib's documented formula."""
    for kind, settings in (("deflate", [(w, m) for w in (9, 10, 11, 12, 13, 14, 15)
                                        for m in (1, 3, 5, 8, 9)]),
                           ("inflate", [(w, 0) for w in (9, 10, 11, 12, 13, 14, 15)])):
        for wbits, mem in settings:
            got = []
            for count in (1, 64):
                out = subprocess.run([sys.executable, "-m", "benchmarks.deflate_settings",
                                      "_memory", kind, str(wbits), str(mem), str(count)],
                                     check=True, capture_output=True, text=True).stdout
                got.append(json.loads(out)["bytes"])
            formula = ((1 << (wbits + 2)) + (1 << (mem + 9))) if kind == "deflate" else (1 << wbits)
            print(f"{kind:8} wbits={wbits:2} memLevel={mem if mem else '-':>2}  RSS/conn "
                  f"after 1 KiB {got[0] / 1024:6.1f} KiB, after 64 KiB {got[1] / 1024:6.1f} KiB"
                  f"   zlib's formula {formula / 1024:6.1f} KiB", flush=True)


def _best(fn: Callable[[], Any], rounds: int, inner: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return statistics.median(times)


def ratio(args: argparse.Namespace) -> None:
    """Compressed size and time per message for each window/memLevel/level,
    on a stream of different JSON messages (context takeover) and alone."""
    from fastsock.websocket import _deflate as z
    for size in (64, 128, 256, 1024, 16384):
        msgs = [json_message(size, seed) for seed in range(200)]
        for wbits, mem, level in ((15, 8, 6), (12, 5, 6), (12, 5, 1), (10, 4, 6), (9, 1, 6)):
            for nct in (False, True):
                c = z.Compressor(wbits, mem, level, nct)
                total = sum(len(c.compress(m)) for m in msgs)
                c = z.Compressor(wbits, mem, level, nct)
                it = iter(msgs * 50)
                t = _best(lambda: c.compress(next(it)), 5, 200)
                print(f"{size:6} B  wbits={wbits:2} mem={mem} level={level} "
                      f"{'no-takeover' if nct else 'takeover   '}  "
                      f"ratio {total / (size * len(msgs)):.3f}  {t * 1e6:7.2f} us/msg", flush=True)


def backends(args: argparse.Namespace) -> None:
    """Compress + decompress speed: zlib (our C module and Python's zlib,
    the same libz), zlib-ng and isal (Python packages), on 1 KiB JSON-like
    and 64 KiB payloads, with the settings fastsock uses."""
    import zlib
    from fastsock.websocket import _deflate as z
    cands: dict[str, Any] = {"zlib (fastsock C)": None, "zlib (python module)": zlib}
    try:
        from zlib_ng import zlib_ng
        cands["zlib-ng"] = zlib_ng
    except ImportError:
        print("zlib-ng: not installed")
    try:
        from isal import isal_zlib
        cands["isal"] = isal_zlib
    except ImportError:
        print("isal: not installed")
    for size in (1024, 65536):
        # a stream of different JSON-like messages, with context takeover
        # (one compressor and one decompressor for the stream: no per-call
        # set-up in any backend)
        msgs = [json_message(size, seed) for seed in range(40)]
        inner = 40 if size < 4096 else 4
        for name, mod in cands.items():
            if mod is None:
                c = z.Compressor(12, 5, 6)
                wires = [c.compress(m) for m in msgs]
                d = z.Decompressor(15)
                assert [d.decompress(w, 1 << 20) for w in wires] == msgs

                def comp() -> None:
                    c = z.Compressor(12, 5, 6)
                    for m in msgs:
                        c.compress(m)

                def decomp() -> None:
                    d = z.Decompressor(15)
                    for w in wires:
                        d.decompress(w, 1 << 20)
            else:
                # isal takes levels 0-3 (1 is its default); zlib-ng's 6 is zlib's 6
                level = 1 if name == "isal" else 6
                wbits = -15 if name == "isal" else -12
                kw = {} if name == "isal" else {"memLevel": 5}

                def stream() -> list[bytes]:
                    co = mod.compressobj(level, mod.DEFLATED, wbits, **kw)
                    return [bytes(co.compress(m) + co.flush(mod.Z_SYNC_FLUSH))[:-4] for m in msgs]
                wires = stream()

                def comp() -> None:
                    stream()

                def decomp() -> None:
                    do = mod.decompressobj(-15)
                    for w in wires:
                        do.decompress(w + b"\x00\x00\xff\xff", 1 << 20)
                do = mod.decompressobj(-15)
                assert [do.decompress(w + b"\x00\x00\xff\xff") for w in wires] == msgs
            tc = _best(comp, 5, inner) / len(msgs)
            td = _best(decomp, 5, inner) / len(msgs)
            wire = sum(map(len, wires)) / len(wires)
            print(f"{size:6} B  {name:22} compress {tc * 1e6:8.2f} us ({size / tc / 1e6:6.1f} MB/s)"
                  f"  decompress {td * 1e6:7.2f} us ({size / td / 1e6:6.1f} MB/s)"
                  f"  wire {wire:7.0f} B", flush=True)


def _backend_memory_child(name: str) -> None:
    if name == "zlib-ng":
        from zlib_ng import zlib_ng as mod
    else:
        import zlib as mod
    msg = json_message(1024)
    keep = []
    before = rss()
    for _ in range(1000):
        c = mod.compressobj(6, mod.DEFLATED, -12, 5)
        c.compress(msg)
        c.flush(mod.Z_SYNC_FLUSH)
        keep.append(c)
    print(json.dumps({"bytes": (rss() - before) / 1000}))


def backend_memory(args: argparse.Namespace) -> None:
    """RSS per compressor (window 12, memLevel 5, after one 1 KiB message):
    zlib (Python's module, the same libz as fastsock's C module) and zlib-ng."""
    for name in ("zlib", "zlib-ng"):
        run = subprocess.run([sys.executable, "-m", "benchmarks.deflate_settings",
                              "_backend_memory", name], capture_output=True, text=True)
        if run.returncode:
            print(f"{name}: not available")
            continue
        print(f"{name:8} compressor RSS {json.loads(run.stdout)['bytes'] / 1024:6.1f} KiB", flush=True)


def threshold(args: argparse.Namespace) -> None:
    """Small messages: compressed size (ratio) and time per message, with
    and without context takeover, at the default settings (12/5/6)."""
    from fastsock.websocket import _deflate as z
    for size in (16, 24, 32, 48, 64, 96, 128, 256):
        msgs = [json_message(size, seed) for seed in range(400)]
        row = []
        for nct in (False, True):
            c = z.Compressor(12, 5, 6, nct)
            total = sum(len(c.compress(m)) for m in msgs)
            c = z.Compressor(12, 5, 6, nct)
            it = iter(msgs * 10)
            t = _best(lambda: c.compress(next(it)), 5, 400)
            row.append((total / (size * len(msgs)), t * 1e6))
        print(f"{size:4} B  takeover: ratio {row[0][0]:.3f}, {row[0][1]:.2f} us   "
              f"no takeover: ratio {row[1][0]:.3f}, {row[1][1]:.2f} us", flush=True)


def _pool_child(limit: int) -> None:
    from fastsock.websocket.extensions import permessage_deflate as pmd
    pmd.set_active_contexts(limit or None)
    peer = pmd.PerMessageDeflate(local_max_window_bits=12)
    msgs = [json_message(1024, seed) for seed in range(8)]
    wires = [peer.encode(1, m)[1] for m in msgs]
    conns = []
    before = rss()
    for i in range(N_CONNS):
        ext = pmd.PerMessageDeflate(local_max_window_bits=12, remote_max_window_bits=12)
        ext.decode(0x40, 1, wires[0], 1 << 20)        # each connection got one message...
        ext.encode(1, msgs[0])                          # ...and answered it
        conns.append(ext)
    per_conn = (rss() - before) / N_CONNS
    # round robin over all connections: every message after an idle spell
    t = time.perf_counter()
    for k in range(2):
        for ext in conns:
            ext.encode(1, msgs[1 + k])
    rr = (time.perf_counter() - t) / (2 * N_CONNS)
    # one busy connection
    one = conns[0]
    t = time.perf_counter()
    for k in range(2000):
        one.encode(1, msgs[k % 8])
    busy = (time.perf_counter() - t) / 2000
    print(json.dumps({"bytes": per_conn, "rr_us": rr * 1e6, "busy_us": busy * 1e6}))


def pool(args: argparse.Namespace) -> None:
    """2,000 connections with context takeover both ways (window 12,
    memLevel 5), each after one 1 KiB message in and one out: RSS per
    connection, and the time per message when every message comes from a
    connection that was idle (round robin) or from one busy connection."""
    for limit in (0, 1024, 256, 64):
        out = subprocess.run([sys.executable, "-m", "benchmarks.deflate_settings", "_pool",
                              str(limit)], check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        print(f"active contexts {limit or 'unlimited':>9}: RSS/conn {r['bytes'] / 1024:6.1f} KiB"
              f"   round robin {r['rr_us']:6.1f} us/msg   one busy {r['busy_us']:6.1f} us/msg",
              flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_backend_memory":
        _backend_memory_child(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_pool":
        _pool_child(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_memory":
        _memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["memory", "ratio", "backends", "backend-memory", "pool",
                                     "threshold"])
    args = ap.parse_args()
    {"memory": memory, "ratio": ratio, "backends": backends, "backend-memory": backend_memory,
     "pool": pool, "threshold": threshold}[args.what](args)


if __name__ == "__main__":
    main()
