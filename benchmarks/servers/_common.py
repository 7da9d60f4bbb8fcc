"""What every peer server script shares: the command line, the event loop
choice, the ready line and a clean exit on SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any


def parser(description: str, *, modes: tuple[str, ...] = (), loops: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    if modes:
        p.add_argument("--mode", choices=modes, default=modes[0])
    if loops:
        p.add_argument("--loop", choices=loops, default=loops[0])
    return p


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def ready(name: str, scheme: str, host: str, port: int) -> None:
    """The one line the harness waits for."""
    sys.stdout.write(f"{name} listening on {scheme}://{host}:{port}\n")
    sys.stdout.flush()


def serve(loop: asyncio.AbstractEventLoop, start: Callable[[], Awaitable[Any]]) -> int:
    """Runs ``start()`` (which binds and prints the ready line), then waits for
    SIGINT/SIGTERM and returns 0."""
    asyncio.set_event_loop(loop)
    stop = loop.create_future()
    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)

    async def main() -> None:
        handle = await start()
        await stop
        close = getattr(handle, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    try:
        loop.run_until_complete(main())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0
