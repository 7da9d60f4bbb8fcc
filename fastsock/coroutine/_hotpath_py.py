"""The per-message paths of a coroutine connection: the pure-Python twin of ``_hotpath.pyx``.

Receiving: one :class:`Receiver` per connection holds the bounded message queue and the
one waiting ``recv``. It is its own awaitable: awaiting it returns a queued
message without suspending; with the queue empty it yields its
:class:`Waiter` (a Future's shape, ``_asyncio_future_blocking``) to the
Task, which registers its wake-up through ``add_done_callback``. :meth:`push` calls that wake-up
directly, in the task's context, when no task is running, so the handler
resumes inside the turn that read the message and what it sends goes out in
that turn's one write; otherwise (a task is running, the close, ``cancel``)
the wake-up goes through ``loop.call_soon`` as a Future's callbacks do. The
wake-up's argument is a Future already done (cancelled, for ``cancel``): the
Task reads its result there. The loop is the ``_loop`` attribute, which is
what asyncio reads from a future without ``get_loop``.

The owner (the connection core) provides ``_queue_full()`` (pause reading),
``_queue_low()`` (resume it), ``_closed_error()`` and ``_loop``.

Sending: :meth:`Sender.send` is ``Connection.send``. A ``str`` or ``bytes``
(not inside a fragmented message) goes to the core at once, and the call
returns a finished coroutine (the compiled module returns one shared
finished awaitable instead); an error is raised when it is awaited, as from
an ``async def``; while the write buffer is over its high watermark it waits
for the drain. Everything else goes to the connection's coroutine.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
from typing import Any, Awaitable, Callable, Coroutine, Generator, Optional, Union

from ..exceptions import ConnectionClosedOK
from ..websocket.protocol import WebSocketHandler

__all__ = ["Receiver", "Sender", "Waiter"]

Data = Union[str, bytes]

_current_tasks: Any = getattr(asyncio.tasks, "_current_tasks", None)

_BUSY = "cannot call recv while another coroutine is already waiting for the next message"


def _task_running(loop: Any) -> bool:
    if type(_current_tasks) is dict:
        return loop in _current_tasks
    return asyncio.current_task(loop) is not None


def _can_enter(ctx: contextvars.Context) -> bool:
    """False when ``ctx`` is already entered (pushed from inside ``ctx.run``)."""
    try:
        ctx.run(int)
    except RuntimeError:
        return False
    return True


class Waiter:
    """What a Task waiting on a :class:`Receiver` holds: a Future's shape.

    A separate object from the Receiver, so that the Receiver (what
    ``anext(ws)`` returns) is an awaitable and not a future: ``wait_for``
    and ``gather`` wrap it in a task as they wrap a coroutine.
    """

    __slots__ = ("_loop", "_done", "_wakeup", "_context", "_waiting", "_asyncio_future_blocking")

    def __init__(self) -> None:
        self._loop: Any = None
        self._done: Optional[asyncio.Future[None]] = None
        self._wakeup: Optional[Callable[[Any], Any]] = None
        self._context: Optional[contextvars.Context] = None
        self._waiting = False
        self._asyncio_future_blocking = False

    def bind(self, loop: Any) -> None:
        self._loop = loop
        self._done = asyncio.Future(loop=loop)
        self._done.set_result(None)

    def wake(self, now: bool) -> None:
        """Resume the waiting task: at once (``now``, and no task running)
        or on the next turn; a no-op when nothing waits."""
        cb, ctx = self._wakeup, self._context
        if cb is None or ctx is None:
            return
        self._wakeup = self._context = None
        self._waiting = False
        if not now or _task_running(self._loop) or not _can_enter(ctx):
            self._loop.call_soon(cb, self._done, context=ctx)
        else:
            ctx.run(cb, self._done)

    def add_done_callback(self, fn: Callable[[Any], Any], *,
                          context: Optional[contextvars.Context] = None) -> None:
        if not self._waiting:
            raise RuntimeError("Waiter.add_done_callback: nothing is waiting")
        self._wakeup = fn
        self._context = contextvars.copy_context() if context is None else context

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:
        if self._wakeup is not None and self._wakeup == fn:
            self._wakeup = self._context = None
            self._waiting = False
            return 1
        return 0

    def result(self) -> None:
        return None

    def exception(self) -> None:
        return None

    def done(self) -> bool:
        return not self._waiting

    def cancelled(self) -> bool:
        return False

    def cancel(self, msg: Any = None) -> bool:
        """The waiting task is cancelled: it gets CancelledError at its await
        (on the next loop turn, as with a Future); queued messages stay."""
        if self._wakeup is None:
            return False
        cb, ctx = self._wakeup, self._context
        self._wakeup = self._context = None
        self._waiting = False
        cancelled: asyncio.Future[None] = asyncio.Future(loop=self._loop)
        cancelled.cancel(msg)
        self._loop.call_soon(cb, cancelled, context=ctx)
        return True

    def __repr__(self) -> str:
        return f"<Waiter waiting={self._waiting}>"


class Receiver:
    """Messages received and not yet taken, and the one waiting receiver."""

    __slots__ = ("messages", "max_queue", "_resume_at", "paused", "_owner", "_waiter", "_closed",
                 "_anext")

    def __init__(self, owner: Any, max_queue: int, resume_at: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.messages: collections.deque[Data] = collections.deque()
        self.max_queue = max_queue
        self._resume_at = resume_at
        self.paused = False
        self._owner = owner
        self._waiter = Waiter()
        self._closed = False
        self._anext = False

    # ------------------------------------------------------------ the core's side

    def push(self, message: Data) -> None:
        """A whole message arrived: queue it, wake the waiting receiver, and
        ask the owner to pause reading once the queue holds ``max_queue``."""
        self.messages.append(message)
        if not self.paused and len(self.messages) >= self.max_queue:
            self.paused = True
            self._owner._queue_full()
        self._waiter.wake(True)

    def mark_closed(self) -> None:
        """The connection closed: a waiting receiver takes what is queued,
        then gets the closed error."""
        self._closed = True
        self._waiter.wake(False)

    # ------------------------------------------------------------ the awaiting side

    def wait(self) -> "Receiver":
        """The awaitable of one ``recv``: the next message."""
        if self._waiter._waiting:
            raise RuntimeError(_BUSY)
        self._anext = False
        return self

    def __aiter__(self) -> "Receiver":
        return self

    def __anext__(self) -> "Receiver":
        if self._waiter._waiting:
            raise RuntimeError(_BUSY)
        self._anext = True
        return self

    def __await__(self) -> Generator[Any, None, Data]:
        waiter = self._waiter
        while True:
            if waiter._waiting:
                raise RuntimeError(_BUSY)
            messages = self.messages
            if messages:
                message = messages.popleft()
                if self.paused and len(messages) <= self._resume_at:
                    self.paused = False
                    self._owner._queue_low()
                return message
            if self._closed:
                error = self._owner._closed_error()
                if self._anext and isinstance(error, ConnectionClosedOK):
                    raise StopAsyncIteration
                raise error
            if waiter._loop is None:
                waiter.bind(self._owner._loop)
            waiter._waiting = True
            waiter._asyncio_future_blocking = True
            try:
                yield waiter
            except GeneratorExit:
                self.close()
                raise

    def close(self) -> None:
        """The coroutine awaiting this was closed: forget its wake-up."""
        self._waiter._wakeup = self._waiter._context = None
        self._waiter._waiting = False

    def __repr__(self) -> str:
        return (f"<Receiver queued={len(self.messages)} waiting={self._waiter._waiting} "
                f"paused={self.paused} closed={self._closed}>")


async def _sent() -> None:
    return None


async def _raise(error: BaseException) -> None:
    raise error


async def _wait(awaitable: Awaitable[Any]) -> None:
    await awaitable


class Sender:
    """``Connection.send``'s fast path (see the module docstring)."""

    __slots__ = ("_core", "_slow", "fragmenting")

    def __init__(self, core: Any, slow: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        self._core = core
        self._slow = slow
        self.fragmenting = False

    def send(self, message: Any) -> Coroutine[Any, Any, None]:
        kind = type(message)
        if (kind is str or kind is bytes) and not self.fragmenting:
            core = self._core
            try:
                WebSocketHandler.send(core, message)
            except Exception as error:
                return _raise(error)
            if core._writing_paused:
                return _wait(core.drained())
            return _sent()
        return self._slow(message)
