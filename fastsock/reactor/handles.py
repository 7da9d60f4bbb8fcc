"""Callback handles: what ``call_soon``/``call_later``/``call_at`` return.

A handle is a callback plus its arguments. Cancelling one only marks it: the
loop skips cancelled handles when it reaches them (lazy deletion), which keeps
``cancel()`` O(1) and the timer heap untouched.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .loop import Reactor

__all__ = ["Handle", "TimerHandle"]


class Handle:
    """A scheduled callback. ``cancel()`` prevents it from running."""

    __slots__ = ("_callback", "_args", "_cancelled", "_reactor", "__weakref__")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...],
                 reactor: Reactor | None) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._reactor = reactor

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            # Drop references early: a cancelled handle may sit in a queue for a
            # while and must not keep big objects alive.
            self._callback = None  # type: ignore[assignment]
            self._args = ()

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        try:
            self._callback(*self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._reactor.call_exception_handler({  # type: ignore[union-attr]
                "message": f"Exception in callback {_format_callback(self._callback)}",
                "exception": exc,
                "handle": self,
            })

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__}{state} {_format_callback(self._callback)}>"


class TimerHandle(Handle):
    """A callback scheduled at a point in time (the reactor's monotonic clock)."""

    __slots__ = ("_when",)

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 reactor: Reactor | None) -> None:
        super().__init__(callback, args, reactor)
        self._when = when

    def when(self) -> float:
        """The absolute time (``reactor.time()`` clock) the callback is due."""
        return self._when

    def cancel(self) -> None:
        if not self._cancelled:
            Handle.cancel(self)
            if self._reactor is not None:
                self._reactor._timer_cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return (f"<TimerHandle{state} when={self._when:.3f} "
                f"{_format_callback(self._callback)}>")


def _format_callback(cb: Any) -> str:
    if cb is None:
        return "None"
    name = getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None)
    return name if name else repr(cb)
