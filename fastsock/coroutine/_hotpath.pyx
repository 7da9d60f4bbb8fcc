# cython: language_level=3
"""The compiled per-message paths of a coroutine connection (contract: ``_hotpath_py.py``).

Receiving: one :class:`Receiver` per connection holds the bounded message queue and the
one waiting ``recv``. It is its own awaitable, and its :class:`Waiter` is the
"future" a waiting Task holds:

- ``await rx.wait()`` / ``async for m in rx`` go through the ``am_send`` slot
  set below: a queued message is returned without suspending and without an
  exception object (``PYGEN_RETURN``); an empty queue yields the waiter
  to the Task, which sees ``_asyncio_future_blocking`` and calls
  ``add_done_callback(wakeup, context=ctx)``. No Future, no coroutine and no
  generator per message. ``add_done_callback`` is an attribute holding a
  bound method made once, and the loop is the ``_loop`` attribute (what
  asyncio reads when there is no ``get_loop``), so the Task's look-ups make
  no bound method per wait.
- The wake-up is called with a Future that is already done (an exact
  ``asyncio.Future``), for which the C Task takes its fast path instead of
  calling ``.result()`` on the waiter; a cancelled one for ``cancel``.
- :meth:`push` (from the core's ``on_message``) calls that wake-up directly,
  in the task's context, when no task is running: the handler resumes inside
  the turn that read the message, so what it sends goes out in that turn's
  one write. ``call_soon`` is used only when a task is running (the wake-up
  cannot enter a second task), for the close and for ``cancel``.

Sending: :meth:`Sender.send` is ``Connection.send``. A ``str`` or ``bytes``
(not inside a fragmented message) goes to the compiled core at once and the
call returns :data:`SENT`, a finished awaitable (``am_send`` returns at
once; also a coroutine for ``asyncio.create_task``), so ``await ws.send(m)``
makes no coroutine. An error is raised when the result is awaited, as from an
``async def``; while the write buffer is over its high watermark the result
waits for the drain. Everything else goes to the connection's coroutine.
"""
import asyncio
from collections import deque
from collections.abc import Coroutine
from contextvars import copy_context

from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport Py_INCREF, PyObject

from ..exceptions import ConnectionClosedOK
from ..websocket.protocol import WebSocketHandler

cdef extern from "Python.h":
    # Declared as int (PYGEN_RETURN 0, PYGEN_ERROR -1, PYGEN_NEXT 1) so that
    # Cython's `except -1` keeps the exception set for PYGEN_ERROR.
    ctypedef int (*sendfunc)(object, object, PyObject **)
    ctypedef struct PyAsyncMethods:
        sendfunc am_send
    ctypedef struct _TypeObject "PyTypeObject":
        PyAsyncMethods *tp_as_async
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    void Py_DECREF_ "Py_DECREF"(PyObject *)
    Py_ssize_t PyDict_GET_SIZE(object d)

cdef object Future = asyncio.Future
# loop -> its running task; asyncio's own dict (a task may not enter another).
cdef object _current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
cdef object _current_task = asyncio.current_task
# The compiled core's send, unbound: what Connection.send always called.
cdef object _core_send = WebSocketHandler.send

cdef enum:
    _RECV = 0
    _ANEXT = 1
    _RETURN = 0
    _NEXT = 1


cdef void _busy() except *:
    raise RuntimeError("cannot call recv while another coroutine is already "
                       "waiting for the next message")


cdef inline bint _task_running(object loop):
    if type(_current_tasks) is dict:
        # Empty (no task running on any loop) in the usual case: the message
        # came from a transport callback. Only then look up this loop.
        return PyDict_GET_SIZE(_current_tasks) != 0 and PyDict_GetItem(_current_tasks, loop) != NULL
    return _current_task(loop) is not None


cdef class Waiter:
    """What a Task waiting on a :class:`Receiver` holds: a Future's shape.

    A separate object from the Receiver, so that the Receiver (what
    ``anext(ws)`` returns) is an awaitable and not a future: ``wait_for``
    and ``gather`` wrap it in a task as they wrap a coroutine.
    """

    def __cinit__(self):
        self._loop = None
        self._done = None
        self.add_done_callback = self._add_done_callback
        self._wakeup = None
        self._context = None
        self._waiting = False
        self._asyncio_future_blocking = False

    cdef int bind(self, loop) except -1:
        self._loop = loop
        self._done = Future(loop=loop)
        self._done.set_result(None)
        return 0

    cdef int wake(self, bint now) except -1:
        """Resume the waiting task: at once (``now``, and no task running)
        or on the next turn; a no-op when nothing waits."""
        cb, ctx = self._wakeup, self._context
        if cb is None:
            return 0
        self._wakeup = self._context = None
        self._waiting = False
        if not now or _task_running(self._loop):
            self._loop.call_soon(cb, self._done, context=ctx)
            return 0
        try:
            PyContext_Enter(ctx)
        except RuntimeError:
            # The context is already entered (pushed from inside ctx.run):
            # the wake-up runs in it on the next turn instead.
            self._loop.call_soon(cb, self._done, context=ctx)
            return 0
        try:
            cb(self._done)
        finally:
            PyContext_Exit(ctx)
        return 0

    def _add_done_callback(self, fn, *, context=None):
        if not self._waiting:
            raise RuntimeError("Waiter.add_done_callback: nothing is waiting")
        self._wakeup = fn
        self._context = copy_context() if context is None else context

    def remove_done_callback(self, fn):
        if self._wakeup is not None and self._wakeup == fn:
            self._wakeup = self._context = None
            self._waiting = False
            return 1
        return 0

    def result(self):
        return None

    def exception(self):
        return None

    def done(self):
        return not self._waiting

    def cancelled(self):
        return False

    def cancel(self, msg=None):
        """The waiting task is cancelled: it gets CancelledError at its await
        (on the next loop turn, as with a Future); queued messages stay."""
        if self._wakeup is None:
            return False
        cb, ctx = self._wakeup, self._context
        self._wakeup = self._context = None
        self._waiting = False
        cancelled = Future(loop=self._loop)
        cancelled.cancel(msg)
        self._loop.call_soon(cb, cancelled, context=ctx)
        return True

    def __repr__(self):
        return f"<Waiter waiting={bool(self._waiting)}>"


cdef class Receiver:
    """Messages received and not yet taken, and the one waiting receiver."""

    def __cinit__(self, owner, Py_ssize_t max_queue, Py_ssize_t resume_at):
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.messages = deque()
        self._append = self.messages.append
        self._popleft = self.messages.popleft
        self.max_queue = max_queue
        self._resume_at = resume_at
        self.paused = False
        self._owner = owner
        self._waiter = Waiter()
        self._closed = False
        self._mode = _RECV

    # ------------------------------------------------------------ the core's side

    def push(self, message):
        """A whole message arrived: queue it, wake the waiting receiver, and
        ask the owner to pause reading (``_queue_full()``) once the queue holds
        ``max_queue``."""
        self._append(message)
        if not self.paused and len(self.messages) >= self.max_queue:
            self.paused = True
            self._owner._queue_full()
        if self._waiter._wakeup is not None:
            self._waiter.wake(True)

    def mark_closed(self):
        """The connection closed: a waiting receiver takes what is queued,
        then gets the closed error (the owner's ``_closed_error()``)."""
        self._closed = True
        self._waiter.wake(False)

    # ------------------------------------------------------------ the awaiting side

    def wait(self):
        """The awaitable of one ``recv``: the next message."""
        if self._waiter._waiting:
            _busy()
        self._mode = _RECV
        return self

    def __aiter__(self):
        return self

    def __anext__(self):
        if self._waiter._waiting:
            _busy()
        self._mode = _ANEXT
        return self

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        cdef PyObject *result = NULL
        if self._step(&result) == _NEXT:
            value = <object>result
            Py_DECREF_(result)
            return value
        value = <object>result
        Py_DECREF_(result)
        raise StopIteration(value)

    cdef int _step(self, PyObject **result) except -1:
        cdef object message
        cdef Waiter waiter = self._waiter
        if waiter._waiting:
            _busy()
        if self.messages:
            message = self._popleft()
            if self.paused and len(self.messages) <= self._resume_at:
                self.paused = False
                self._owner._queue_low()
            Py_INCREF(message)
            result[0] = <PyObject *>message
            return _RETURN
        if self._closed:
            error = self._owner._closed_error()
            if self._mode == _ANEXT and isinstance(error, ConnectionClosedOK):
                raise StopAsyncIteration
            raise error
        if waiter._loop is None:
            waiter.bind(self._owner._loop)
        waiter._waiting = True
        waiter._asyncio_future_blocking = True
        Py_INCREF(waiter)
        result[0] = <PyObject *>waiter
        return _NEXT

    def close(self):
        """The coroutine awaiting this was closed (``coroutine.close()``
        closes what it awaits): forget its wake-up."""
        self._waiter._wakeup = self._waiter._context = None
        self._waiter._waiting = False

    def __repr__(self):
        return (f"<Receiver queued={len(self.messages)} waiting={bool(self._waiter._waiting)} "
                f"paused={bool(self.paused)} closed={bool(self._closed)}>")


cdef int _am_send(object rx, object arg, PyObject **result) except -1:
    return (<Receiver>rx)._step(result)


# Cython has no am_send slot of its own: set it on the type's async methods
# (present because Receiver defines __await__/__anext__).
(<_TypeObject *><PyObject *>Receiver).tp_as_async.am_send = <sendfunc>_am_send


cdef class Sent:
    """A send that needed no waiting: finished, its result None."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        raise (typ if val is None else val)

    def close(self):
        pass

    def __repr__(self):
        return "<Sent>"


cdef int _sent_am_send(object sent, object arg, PyObject **result) except -1:
    Py_INCREF(None)
    result[0] = <PyObject *>None
    return _RETURN


(<_TypeObject *><PyObject *>Sent).tp_as_async.am_send = <sendfunc>_sent_am_send
# asyncio.create_task(ws.send(m)) and gather() take it as they take a coroutine.
Coroutine.register(Sent)

SENT = Sent()


async def _raise(error):
    raise error


async def _wait(awaitable):
    await awaitable


cdef class Sender:
    """``Connection.send``'s fast path (see the module docstring)."""

    def __cinit__(self, core, slow):
        self._core = core
        self._slow = slow
        self.fragmenting = False

    def send(self, message):
        kind = type(message)
        if (kind is str or kind is bytes) and not self.fragmenting:
            core = self._core
            try:
                _core_send(core, message)
            except Exception as error:
                return _raise(error)
            if core._writing_paused:
                return _wait(core.drained())
            return SENT
        return self._slow(message)
