"""Frame codec microbenchmarks: fastsock's Cython codec beside its pure-Python
twin and the peers' C/Cython code, on the same inputs.

Two ways to run it (always under the bench lock, pinned to one core):

* pytest-benchmark, one benchmark per (workload, implementation)::

    flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python -m pytest \
        benchmarks/test_bench_codec.py --benchmark-only -q

* the side-by-side table of docs/bench-codec.md: every workload's
  implementations run in interleaved rounds (so machine noise hits all of
  them alike) and the medians are compared::

    flock /tmp/fastsock-bench.lock taskset -c 1 .venv/bin/python \
        benchmarks/test_bench_codec.py --rounds 21

Peers: websockets' C ``apply_mask`` (websockets.speedups), aiohttp's Cython
``_websocket_mask_cython`` and C reader (aiohttp._websocket.reader_c), and
picows's parser driven in memory through its BufferedProtocol interface. A
peer that is not installed is left out.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import pytest

from fastsock import _frame_py

try:
    from fastsock import _frame as _frame_c
except ImportError:  # not built: only the twin and the peers are measured
    _frame_c = None

KEY = b"\x37\xfa\x21\x3d"
UNMASK_SIZES = [16, 125, 1024, 65536, 1 << 20]


@dataclass
class Case:
    group: str          # the workload
    name: str           # the implementation
    fn: Callable[[], object]
    nbytes: int         # payload bytes per call (for GB/s)
    nframes: int = 0    # frames per call (for frames/s)
    after: Callable[[], object] | None = None   # untimed cleanup after each sample
    note: str = ""
    keep: list = field(default_factory=list)    # objects the closures rely on


# --- peers ------------------------------------------------------------------

def _aiohttp_reader(decode_text: bool):
    """aiohttp's C reader fed directly; returns (feed, drain)."""
    from aiohttp._websocket import reader_c

    class Proto:
        _reading_paused = False

        def pause_reading(self):
            self._reading_paused = True

        def resume_reading(self):
            self._reading_paused = False

    loop = asyncio.new_event_loop()
    queue = reader_c.WebSocketDataQueue(Proto(), 2**30, loop=loop)
    reader = reader_c.WebSocketReader(queue, 0, compress=False, decode_text=decode_text)

    def drain():
        # Messages are already queued, so read() completes without awaiting.
        while queue._buffer:
            coro = queue.read()
            try:
                coro.send(None)
            except StopIteration:
                pass

    return reader.feed_data, drain, [loop, queue, reader]


def _picows_parser():
    """picows's server-side parser, handshake done in memory; returns (feed, counter)."""
    import picows
    from picows import picows as pw

    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name, default=None):
            return {"socket": self.sock, "peername": ("127.0.0.1", 1),
                    "sockname": ("127.0.0.1", 2)}.get(name, default)

        def write(self, data):
            pass

        def get_write_buffer_size(self):
            return 0

        def is_closing(self):
            return False

    class Listener(picows.WSListener):
        frames = 0

        def on_ws_frame(self, transport, frame):
            self.frames += 1

    # picows sets TCP options on the socket it is given; it never reads it.
    srv = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    listener = Listener()
    loop = asyncio.new_event_loop()

    async def make():
        return pw.WSProtocol(None, "/", False, lambda request: listener,
                             logging.getLogger("bench.picows"), False, None, False, 10, 10,
                             picows.WSAutoPingStrategy.PING_WHEN_IDLE, False, 2**31,
                             None, 1 << 21)

    proto = loop.run_until_complete(make())
    proto.connection_made(Transport(peer))
    get_buffer, buffer_updated = proto.get_buffer, proto.buffer_updated

    def feed(data):
        n = len(data)
        get_buffer(-1)[:n] = data
        buffer_updated(n)

    feed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return feed, listener, [loop, proto, srv, client, peer]


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# --- workloads --------------------------------------------------------------

def build_cases() -> list[Case]:
    cases: list[Case] = []
    impls = [("fastsock", _frame_c)] if _frame_c is not None else []
    impls.append(("fastsock twin (pure Python)", _frame_py))
    have_aiohttp = _have("aiohttp._websocket.reader_c")
    have_picows = _have("picows")

    def parse_cases(group, wire, nbytes, nframes, text, masked=True):
        for name, mod in impls:
            parser = mod.FrameParser(require_mask=masked)
            cases.append(Case(group, name, lambda p=parser: p.feed(wire), nbytes, nframes))
        if _frame_c is not None:
            parser = _frame_c.FrameParser(require_mask=masked)

            def consume(p=parser):
                for frame in p.feed(wire):
                    frame.payload
            cases.append(Case(group, "fastsock + Python loop over frames", consume, nbytes,
                              nframes, note="feed() plus reading each frame's payload"))
        if have_aiohttp:
            feed, drain, keep = _aiohttp_reader(decode_text=text)
            cases.append(Case(group, "aiohttp reader_c", lambda f=feed: f(wire), nbytes, nframes,
                              after=drain, keep=keep))
        if have_picows and masked:      # the harness drives picows as a server
            feed, listener, keep = _picows_parser()
            cases.append(Case(group, "picows (Python listener)", lambda f=feed: f(wire), nbytes,
                              nframes, keep=keep,
                              note="includes copying into its read buffer and one "
                                   "on_ws_frame call per frame"
                                   + ("; does not check UTF-8" if text else "")))

    small = b"".join(_frame_py.build_frame(2, os.urandom(16), mask=True) for _ in range(1000))
    parse_cases("parse 1000 masked 16 B binary frames (one 22 KB buffer)",
                small, 16 * 1000, 1000, False)
    big = _frame_py.build_frame(2, os.urandom(65536), mask=True)
    parse_cases("parse one masked 64 KiB binary frame", big, 65536, 1, False)
    parse_cases("parse one unmasked 64 KiB binary frame (client side)",
                _frame_py.build_frame(2, os.urandom(65536)), 65536, 1, False, masked=False)
    text = _frame_py.build_frame(1, ("fastsock €" * 6554).encode()[:65536 - 2] + b"ok",
                                 mask=True)
    parse_cases("parse one masked 64 KiB text frame (UTF-8 checked)", text, 65536, 1, True)

    ws_mask = None
    if _have("websockets.speedups"):
        from websockets.speedups import apply_mask as ws_mask
    aio_mask = None
    if _have("aiohttp._websocket.mask"):
        from aiohttp._websocket.mask import _websocket_mask_cython as aio_mask
    for n in UNMASK_SIZES:
        group = f"unmask {n} B"
        src = os.urandom(n)
        inplace = bytearray(src)
        if _frame_c is not None:
            cases.append(Case(group, "fastsock mask_inplace", lambda b=inplace: _frame_c.mask_inplace(b, KEY), n))
            cases.append(Case(group, "fastsock apply_mask", lambda s=src: _frame_c.apply_mask(s, KEY), n,
                              note="returns new bytes"))
        if aio_mask is not None:
            cases.append(Case(group, "aiohttp _websocket_mask_cython", lambda b=inplace: aio_mask(KEY, b), n,
                              note="in place"))
        if ws_mask is not None:
            cases.append(Case(group, "websockets.speedups apply_mask", lambda s=src: ws_mask(s, KEY), n,
                              note="returns new bytes"))
        cases.append(Case(group, "fastsock twin apply_mask", lambda s=src: _frame_py.apply_mask(s, KEY), n))
        cases.append(Case(group, "copy: bytes(bytearray)", lambda b=inplace: bytes(b), n,
                          note="allocate + memcpy: the floor for apply_mask"))
        dst = ctypes.create_string_buffer(n)
        srcbuf = ctypes.create_string_buffer(src, n)
        memmove, d_addr, s_addr = ctypes.memmove, ctypes.addressof(dst), ctypes.addressof(srcbuf)
        cases.append(Case(group, "copy: memmove into a buffer",
                          lambda d=d_addr, s=s_addr, n=n: memmove(d, s, n), n,
                          note="ctypes call, no allocation", keep=[dst, srcbuf]))

    ws_frame = None
    if _have("websockets.frames"):
        from websockets.frames import Frame as WsFrame, Opcode
        ws_frame = (WsFrame, Opcode)
    for n in (125, 65536):
        group = f"build one {n} B binary frame"
        payload = os.urandom(n)
        for name, mod in impls:
            cases.append(Case(group, f"{name}, server (unmasked)",
                              lambda m=mod, p=payload: m.build_frame(2, p), n))
            cases.append(Case(group, f"{name}, client (masked)",
                              lambda m=mod, p=payload: m.build_frame(2, p, mask=True), n))
        if ws_frame is not None:
            WsFrame, Opcode = ws_frame
            cases.append(Case(group, "websockets Frame.serialize, server",
                              lambda p=payload: WsFrame(Opcode.BINARY, p).serialize(mask=False), n))
            cases.append(Case(group, "websockets Frame.serialize, client",
                              lambda p=payload: WsFrame(Opcode.BINARY, p).serialize(mask=True), n))
    return cases


# --- pytest-benchmark -------------------------------------------------------

_CASES = build_cases()


@pytest.mark.parametrize("case", _CASES, ids=[f"{c.group} | {c.name}" for c in _CASES])
def test_codec(benchmark, case):
    benchmark.group = case.group
    if case.after is None:
        benchmark(case.fn)
    else:
        benchmark.pedantic(case.fn, setup=case.after, rounds=200, iterations=1, warmup_rounds=5)


# --- interleaved side-by-side table -----------------------------------------

def _calibrate(case: Case, target: float) -> int:
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            case.fn()
        dt = time.perf_counter() - t0
        if case.after:
            case.after()
        if dt >= target / 4 or number >= 1 << 22:
            return max(1, int(number * target / max(dt, 1e-9)))
        number *= 4


def _sample(case: Case, number: int) -> float:
    fn = case.fn
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    dt = time.perf_counter() - t0
    if case.after:
        case.after()
    return dt / number


def run_table(rounds: int, target: float, out=sys.stdout) -> None:
    groups: dict[str, list[Case]] = {}
    for case in _CASES:
        groups.setdefault(case.group, []).append(case)
    kernel = getattr(_frame_c, "MASK_KERNEL", "not built")
    print(f"Python {sys.version.split()[0]}, fastsock unmask kernel: {kernel}, "
          f"{rounds} interleaved rounds, ~{target * 1e3:.0f} ms per sample, median shown\n",
          file=out)
    for group, cases in groups.items():
        numbers = [_calibrate(c, target) for c in cases]
        samples: list[list[float]] = [[] for _ in cases]
        for r in range(rounds):
            order = list(range(len(cases)))
            order = order[r % len(order):] + order[:r % len(order)]   # rotate who goes first
            for i in order:
                samples[i].append(_sample(cases[i], numbers[i]))
        medians = [statistics.median(s) for s in samples]
        ref = medians[0]
        frames = cases[0].nframes
        print(f"#### {group}\n", file=out)
        head = "| implementation | time per call | GB/s |"
        head += " M frames/s |" if frames else ""
        head += " vs fastsock | note |"
        print(head, file=out)
        print("|" + "---|" * (head.count("|") - 1), file=out)
        for case, med in zip(cases, medians):
            t = f"{med * 1e6:.2f} µs" if med >= 1e-6 else f"{med * 1e9:.0f} ns"
            row = f"| {case.name} | {t} | {case.nbytes / med / 1e9:.2f} |"
            if frames:
                row += f" {case.nframes / med / 1e6:.2f} |"
            row += f" {ref / med:.2f}× | {case.note} |"
            print(row, file=out)
        print(file=out)
        out.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--sample-ms", type=float, default=3.0)
    ap.add_argument("--only", default="", help="run only groups containing this text")
    args = ap.parse_args()
    if args.only:
        _CASES[:] = [c for c in _CASES if args.only in c.group]
    run_table(args.rounds, args.sample_ms / 1e3)


if __name__ == "__main__":
    main()
