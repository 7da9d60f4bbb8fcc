"""A loop stand-in whose time moves only when told to (``FakeClock``).

Published by :mod:`fastsock.testing`, where tests use it as a loop, and the
clock of :class:`fastsock.websocket.seam.SansIOSeam`, where a connection
driven sans-I/O keeps its timers. It imports nothing of the I/O layers.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Optional

__all__ = ["FakeClock", "FakeTimer", "MAX_CALLBACKS"]

MAX_CALLBACKS = 100_000             # per advance(): beyond this, something reschedules itself forever


class FakeTimer:
    """What :class:`FakeClock` returns: asyncio's ``TimerHandle`` shape."""

    __slots__ = ("_when", "callback", "args", "_cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._when = when
        self.callback = callback
        self.args = args
        self._cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def __repr__(self) -> str:
        name = getattr(self.callback, "__qualname__", repr(self.callback))
        state = " cancelled" if self._cancelled else ""
        return f"<FakeTimer when={self._when!r} {name}{state}>"


class FakeClock:
    """A loop stand-in whose time moves only when the test says so.

    Callbacks run in time order; callbacks due at the same time run in the
    order they were scheduled (``call_soon`` is ``call_at(now)``). While a
    timer runs, :meth:`time` reads its due time, as if the loop had woken up
    exactly on time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._queue: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()
        self.errors: list[dict[str, Any]] = []    # what call_exception_handler received

    # the loop API that protocols use ----------------------------------------

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Any = None) -> FakeTimer:
        timer = FakeTimer(float(when), callback, args)
        heapq.heappush(self._queue, (timer._when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: Any = None) -> FakeTimer:
        return self.call_at(self._now + delay, callback, *args)

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> FakeTimer:
        return self.call_at(self._now, callback, *args)

    def create_future(self) -> Any:
        """An ``asyncio.Future`` whose done-callbacks run on this clock."""
        # asyncio's Future needs only get_debug, call_soon(..., context=) and
        # call_exception_handler from its loop. Imported here: the sans-I/O
        # core that keeps its timers on this clock does not need asyncio.
        import asyncio
        return asyncio.Future(loop=self)  # type: ignore[arg-type]

    def get_debug(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Kept in :attr:`errors` (e.g. a future whose exception nobody read)."""
        self.errors.append(context)

    def is_closed(self) -> bool:
        return False

    # driving it --------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, running every callback that falls
        due on the way (including ones those callbacks schedule inside the
        window). Returns how many callbacks ran."""
        if seconds < 0:
            raise ValueError(f"cannot move time backwards ({seconds!r} s)")
        end = self._now + seconds
        ran = 0
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, timer = heapq.heappop(queue)
            if timer._cancelled:
                continue
            if ran >= MAX_CALLBACKS:
                heapq.heappush(queue, (when, next(self._seq), timer))
                raise RuntimeError(f"more than {MAX_CALLBACKS} callbacks in one advance(): "
                                   f"a callback keeps rescheduling itself ({timer!r})")
            self._now = max(self._now, when)
            ran += 1
            timer._cancelled = True        # done: cancel() on it is now a no-op, as in asyncio
            timer.callback(*timer.args)
        self._now = end
        return ran

    def run_ready(self) -> int:
        """Run what is due now (and what that schedules for now); time does not move."""
        return self.advance(0)

    def advance_to(self, when: float) -> int:
        """Move time to ``when`` (not before now), running what falls due."""
        return self.advance(max(0.0, when - self._now))

    def run_all(self, limit: float = 3600.0) -> int:
        """Jump from timer to timer until none is left within ``limit``
        seconds from now (periodic timers never run out: hence the bound)."""
        end = self._now + limit
        ran = 0
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                return ran
            ran += self.advance_to(deadline)

    def pending(self) -> list[FakeTimer]:
        """The timers that have not run and are not cancelled, soonest first."""
        return [t for _, _, t in sorted(self._queue) if not t._cancelled]

    def next_deadline(self) -> Optional[float]:
        """When the next live timer is due, or None."""
        queue = self._queue
        while queue and queue[0][2]._cancelled:
            heapq.heappop(queue)
        return queue[0][0] if queue else None
