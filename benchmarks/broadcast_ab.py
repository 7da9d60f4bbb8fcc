"""Same-run A/B of ``fastsock.broadcast`` on callback handlers: the function
at a base commit against the current one (no sockets).

The base function is read from ``fastsock/pubsub/fanout.py`` at that commit,
or from ``fastsock/websocket/protocol.py`` where it lived before, and runs
against the compiled code built now (so it measures the Python side of the
change: e.g. the old Python loop calling ``_broadcast_frame`` per connection
against ``offer_all``'s one C loop).

    flock /tmp/fastsock-bench.lock taskset -c 1 \\
        .venv/bin/python -m benchmarks.broadcast_ab --base 474c9d0

Both functions run in one process over the same 1,000 attached
``WebSocketHandler``s (a transport whose ``write`` does nothing, one TurnFlush
run after each broadcast, as the loop does at the end of a turn), in
interleaved rounds. Cases: every connection open (the C fast path), and every
connection closed (the path after ``_broadcast_frame`` returns False). It
prints the median nanoseconds per connection of each and the ratio
current / base; the coroutine ``Connection`` support must not make the
callback case slower.
"""
from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import time
from typing import Any, Callable

from fastsock.pubsub import fanout
from fastsock.websocket import protocol
from fastsock.websocket.protocol import TurnFlush, WebSocketHandler

CONNECTIONS = 1000
ROUNDS = 15
CALLS = 200          # broadcasts per timed round
MESSAGE = "x" * 64


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def writelines(self, chunks: Any) -> None:
        pass

    def set_write_buffer_limits(self, high: Any = None, low: Any = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Loop:
    """Enough loop for TurnFlush: call_soon collects the end-of-turn flush."""

    def __init__(self) -> None:
        self.ready: list[Any] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.ready.append((callback, args))

    def time(self) -> float:
        return 0.0

    def run_ready(self) -> None:
        ready, self.ready = self.ready, []
        for callback, args in ready:
            callback(*args)


def base_broadcast(rev: str) -> Callable[..., int]:
    """``broadcast`` as it was at ``rev``, compiled in its module's namespace."""
    for path, module in (("fastsock/pubsub/fanout.py", fanout),
                         ("fastsock/websocket/protocol.py", protocol)):
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
        if shown.returncode != 0:
            continue
        tree = ast.parse(shown.stdout)
        node = next((n for n in tree.body
                     if isinstance(n, ast.FunctionDef) and n.name == "broadcast"), None)
        if node is not None:
            break
    else:
        raise SystemExit(f"no broadcast() at {rev}")
    namespace = dict(vars(module))
    exec(compile(ast.Module(body=[node], type_ignores=[]), "<base broadcast>", "exec"), namespace)
    fn: Callable[..., int] = namespace["broadcast"]
    return fn


def handlers(loop: _Loop, closed: bool) -> list[WebSocketHandler]:
    flusher = TurnFlush(loop)
    out = []
    for _ in range(CONNECTIONS):
        h = WebSocketHandler()
        h.attach(_NullTransport(), None, flusher=flusher)
        if closed:
            h._connection_closed()
        out.append(h)
    return out


def timed(fn: Callable[..., int], conns: list[WebSocketHandler], loop: _Loop) -> float:
    started = time.perf_counter_ns()
    for _ in range(CALLS):
        fn(conns, MESSAGE)
        loop.run_ready()
    return (time.perf_counter_ns() - started) / (CALLS * CONNECTIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="commit whose broadcast is the baseline")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    fns = {"base": base_broadcast(args.base), "current": fanout.broadcast}
    print(f"core: {protocol.CORE_IMPLEMENTATION}; {CONNECTIONS} connections, "
          f"{CALLS} broadcasts per round, {args.rounds} interleaved rounds")
    for case, closed in (("open (fast path)", False), ("closed (slow path)", True)):
        loop = _Loop()
        conns = handlers(loop, closed)
        results: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(args.rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for name in order:
                results[name].append(timed(fns[name], conns, loop))
        med = {name: statistics.median(v) for name, v in results.items()}
        print(f"{case:20s} base {med['base']:6.1f} ns/conn  current {med['current']:6.1f} ns/conn  "
              f"current/base {med['current'] / med['base']:.3f}")


if __name__ == "__main__":
    main()
