"""How asyncio programs get fastsock's loop: uvloop's four entry points.

    fastsock.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=fastsock.new_event_loop)   # Python 3.11+
    fastsock.install()                                     # the policy, process-wide
    asyncio.set_event_loop_policy(fastsock.EventLoopPolicy())
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Coroutine, TypeVar

from .loop import Reactor

__all__ = ["EventLoopPolicy", "new_event_loop", "install", "run"]

T = TypeVar("T")


def new_event_loop() -> Reactor:
    """A new fastsock event loop (epoll on Linux)."""
    return Reactor()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy (child watchers included) making fastsock loops."""

    def _loop_factory(self) -> Reactor:
        return Reactor()

    def __repr__(self) -> str:
        return "<fastsock.EventLoopPolicy>"


def install() -> None:
    """Make fastsock's loop the one ``asyncio.new_event_loop()`` returns."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a fresh fastsock loop: cancels what is left,
    shuts down async generators and the default executor, closes the loop."""
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    old = asyncio.get_event_loop_policy()  # pragma: no cover - Python 3.10
    asyncio.set_event_loop_policy(EventLoopPolicy())
    try:
        return asyncio.run(main, debug=bool(debug))
    finally:
        asyncio.set_event_loop_policy(old)
