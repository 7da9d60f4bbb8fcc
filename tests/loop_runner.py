"""``LoopRunner``: run coroutines on asyncio's loop, uvloop or fastsock's,
with a deadline, collecting loop errors. The ``aio`` fixture of
``tests/conftest.py`` hands one out; tests that need their own import it from
here (``conftest`` is not importable by name: every test directory has one).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

LOOP_KINDS = ("asyncio", "uvloop", "fastsock")


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "asyncio":
        # the selector loop itself, whatever policy another test installed
        return asyncio.SelectorEventLoop
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    import fastsock
    # No skip: until fastsock has the asyncio loop, this leg fails on purpose.
    factory: Callable[[], asyncio.AbstractEventLoop] = fastsock.new_event_loop
    return factory


class LoopRunner:
    """Runs coroutines on one kind of loop, with a deadline, and collects loop errors.

    ``errors`` holds every context passed to the loop's exception handler; a
    run that produced any fails unless ``allow_errors`` is set, so a callback
    that raises inside the loop cannot go unnoticed.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.errors: list[dict[str, Any]] = []
        self.allow_errors = False
        self._tolerated: tuple[str, ...] = ()
        self._runner = asyncio.Runner(loop_factory=_loop_factory(kind))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._runner.get_loop()

    def tolerate_handshake_failures(self) -> None:
        """For tests that fail handshakes on purpose: in debug mode (-X dev)
        asyncio's loop reports each failed incoming handshake, uvloop's does not."""
        self._tolerated = ("Error on transport creation for incoming connection",)

    def _collect(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if isinstance(context.get("exception"), OSError) and any(t in message for t in self._tolerated):
            return
        self.errors.append(context)
        loop.default_exception_handler(context)

    def run(self, coro: Awaitable[Any], timeout: float) -> Any:
        """Run ``coro`` to completion; TimeoutError after ``timeout`` seconds."""
        loop = self._runner.get_loop()
        loop.set_exception_handler(self._collect)

        async def bounded() -> Any:
            async with asyncio.timeout(timeout):
                return await coro

        result = self._runner.run(bounded())
        if self.errors and not self.allow_errors:
            pytest.fail(f"the {self.kind} loop reported errors: "
                        + "; ".join(f"{c.get('message')}: {c.get('exception')!r}" for c in self.errors))
        return result

    def close(self) -> None:
        self._runner.close()
