"""A minimal single-threaded future, shaped like ``asyncio.Future``.

Done callbacks are scheduled with ``call_soon`` (never run inline), so code
that sets a result never re-enters the code waiting for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from ..exceptions import InvalidStateError

if TYPE_CHECKING:
    from .loop import Reactor

__all__ = ["Future", "CancelledError"]

T = TypeVar("T")

_PENDING, _CANCELLED, _FINISHED = 0, 1, 2

try:  # the same class asyncio raises, so callers need not care which loop they run on
    from asyncio import CancelledError
except ImportError:  # pragma: no cover - asyncio is always there on CPython
    class CancelledError(BaseException):  # type: ignore[no-redef]
        """The future was cancelled."""


class Future(Generic[T]):
    """The eventual result of an operation, set once."""

    __slots__ = ("_reactor", "_state", "_result", "_exception", "_callbacks",
                 "_log_exception", "__weakref__")

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], Any]] = []
        self._log_exception = False

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> T:
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._state == _PENDING:
            raise InvalidStateError("cannot get the result of a future that is not done")
        self._log_exception = False
        if self._exception is not None:
            raise self._exception.with_traceback(self._exception.__traceback__)
        return self._result  # type: ignore[no-any-return]

    def exception(self) -> BaseException | None:
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._state == _PENDING:
            raise InvalidStateError("cannot get the exception of a future that is not done")
        self._log_exception = False
        return self._exception

    def set_result(self, result: T) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"cannot set the result of a future that is already done: {self!r}")
        self._result = result
        self._state = _FINISHED
        self._schedule_callbacks()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"cannot set the exception of a future that is already done: {self!r}")
        if isinstance(exception, type):
            exception = exception()
        if isinstance(exception, StopIteration):
            raise TypeError("StopIteration cannot be set as a future's exception")
        self._exception = exception
        self._state = _FINISHED
        self._log_exception = True
        self._schedule_callbacks()

    def cancel(self) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._schedule_callbacks()
        return True

    def add_done_callback(self, callback: Callable[[Future[T]], Any]) -> None:
        if self._state != _PENDING:
            self._reactor.call_soon(callback, self)
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback: Callable[[Future[T]], Any]) -> int:
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != callback]
        return before - len(self._callbacks)

    def get_loop(self) -> Reactor:
        return self._reactor

    def _schedule_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            self._reactor.call_soon(cb, self)

    def __del__(self) -> None:
        if self._log_exception and self._exception is not None:
            reactor = self._reactor
            if reactor is not None and not reactor.is_closed():
                reactor.call_exception_handler({
                    "message": "Future exception was never retrieved",
                    "exception": self._exception,
                    "future": self,
                })

    def __repr__(self) -> str:
        if self._state == _PENDING:
            return "<Future pending>"
        if self._state == _CANCELLED:
            return "<Future cancelled>"
        if self._exception is not None:
            return f"<Future finished exception={self._exception!r}>"
        return f"<Future finished result={self._result!r}>"
