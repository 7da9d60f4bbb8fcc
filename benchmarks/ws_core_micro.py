"""What the WebSocket core costs per echoed message, with no sockets involved.

    taskset -c 1 python -m benchmarks.ws_core_micro [--sizes 64,1024] [--messages 200000] [--rounds 7]

It measures ``python -m fastsock serve echo``'s handler (``on_message =
send``) attached to a transport whose ``write`` does nothing. Each step
hands it one masked text frame and then runs the loop-turn flush, as the
reactor does when a read holds one message: parse, decode, ``on_message``,
frame the reply and queue it, then write it.

It prints the best round's nanoseconds per message for the compiled core
and, from a child process with ``FASTSOCK_PURE=1``, for the pure-Python
twin. The figures in docs/bench-websocket.md come from this script. What
the kernel and the reactor add on top is measured by ``benchmarks.run``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def writelines(self, chunks: Any) -> None:
        pass

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass


class _Loop:
    """Just enough loop for a handler: call_soon collects, time is frozen."""

    def __init__(self) -> None:
        self.ready: list[Any] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.ready.append(callback)

    def time(self) -> float:
        return 0.0


def measure(size: int, messages: int, rounds: int) -> float:
    """Best-of-``rounds`` nanoseconds per echoed ``size``-byte text message."""
    from fastsock.apps.ws_echo import EchoHandler
    from fastsock.frame import build_frame
    from fastsock.websocket import TurnFlush, WebSocketOptions

    frames = [build_frame(1, b"x" * size, mask=True) for _ in range(16)]
    best = float("inf")
    for _ in range(rounds):
        loop = _Loop()
        handler = EchoHandler()
        handler.attach(_NullTransport(), loop, options=WebSocketOptions(ping_interval=None),
                       flusher=TurnFlush(loop))
        received = handler.data_received
        start = time.perf_counter()
        for i in range(messages):
            received(frames[i & 15])
            if loop.ready:
                ready, loop.ready = loop.ready, []
                for callback in ready:
                    callback()
        best = min(best, (time.perf_counter() - start) / messages * 1e9)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,1024", help="comma-separated message sizes")
    parser.add_argument("--messages", type=int, default=200_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="one JSON line (used for the pure twin)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be integers, not {args.sizes!r}")
    if args.messages < 1 or args.rounds < 1 or any(s < 0 or s > 65535 for s in sizes):
        parser.error("--messages and --rounds must be >= 1, sizes within 0..65535")
    from fastsock.websocket.protocol import CORE_IMPLEMENTATION
    here = {str(s): measure(s, args.messages, args.rounds) for s in sizes}
    if args.json:
        print(json.dumps({"core": CORE_IMPLEMENTATION, "ns": here}))
        return 0
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.ws_core_micro", "--json", "--sizes", args.sizes,
         "--messages", str(args.messages), "--rounds", str(args.rounds)],
        env=dict(os.environ, FASTSOCK_PURE="1"), capture_output=True, text=True, check=True)
    pure = json.loads(child.stdout)
    print(f"| message | {CORE_IMPLEMENTATION} core ns/msg | {pure['core']} core ns/msg | ratio |")
    print("|---:|---:|---:|---:|")
    for s in sizes:
        a, b = here[str(s)], pure["ns"][str(s)]
        print(f"| {s} B | {a:.0f} | {b:.0f} | {b / a:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
