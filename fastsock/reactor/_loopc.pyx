# cython: language_level=3
"""The loop's per-callback machinery in C: handles, call_soon/call_at, one turn.

asyncio's ``Handle``, ``call_soon`` and ``_run_once`` are Python: every
task step pays a Python ``call_soon``, a Python ``Handle.__init__`` and a
Python ``Handle._run``, and every loop turn a Python ``_run_once``. Here they
are C, with asyncio's semantics kept to the letter (the reference is
``asyncio/events.py`` and ``base_events.py``):

* a handle runs its callback in the ``contextvars.Context`` it captured;
  an exception goes to ``loop.call_exception_handler`` with asyncio's
  context keys, SystemExit/KeyboardInterrupt propagate;
* cancelled handles are skipped; a cancelled timer is counted and dropped
  lazily (compacted when cancelled timers are more than half the heap);
* in debug mode, callbacks are timed and slow ones logged, handles keep
  their creation traceback, and ``call_soon`` checks the thread.

``LoopCore`` is a base of :class:`fastsock.reactor.loop.Reactor` (beside
asyncio's selector loop): the fields asyncio's code reads and writes
(``_ready``, ``_closed``, ``_stopping``, ``_debug``) are C fields here.
"""
cimport cython
from libc.time cimport timespec

from fastsock.reactor._epollc cimport EpollPoller

import sys
from asyncio import format_helpers as _format_helpers
from asyncio.futures import Future as _Future
from asyncio.tasks import Task as _Task, _set_task_name
from asyncio.log import logger as _asyncio_logger
from collections import deque
from heapq import heappop, heappush, heapify


cdef extern from "time.h" nogil:
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_MONOTONIC

cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    object PyContext_CopyCurrent()
    object PyObject_Call(object callable, object args, object kwargs)


# Compact the timer heap when more than this many cancelled timers sit in it
# and they are more than half of it (lazy deletion otherwise).
cdef Py_ssize_t MIN_CANCELLED_TIMERS_TO_COMPACT = 100
# asyncio's cap on one poll's timeout (a clock jump must not freeze the loop).
cdef double MAXIMUM_POLL_TIMEOUT = 86400.0

cdef tuple _NO_ARGS = ()


cdef inline double _now() noexcept nogil:
    # the clock of time.monotonic(), without its Python float round trip
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def monotonic():
    """``time.monotonic()`` as the loop reads it."""
    return _now()


@cython.freelist(256)
cdef class Handle:
    """A callback scheduled by ``call_soon`` (asyncio's ``Handle``, in C)."""

    def __init__(self, callback, args, loop, context=None):
        _init_handle(self, callback, args, loop, context)

    def _repr_info(self):
        info = [self.__class__.__name__]
        if self._cancelled:
            info.append("cancelled")
        if self._callback is not None:
            info.append(_format_helpers._format_callback_source(self._callback, self._args))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._repr_info()))

    def get_context(self):
        return self._context

    cpdef cancel(self):
        if not self._cancelled:
            self._cancelled = True
            if self._loop.get_debug():
                # keep the callback in the repr ("Executing <Handle ...> took")
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        return self._cancelled

    cpdef _run(self):
        cdef object ctx = self._context
        cdef object callback = self._callback
        cdef object args = self._args
        try:
            PyContext_Enter(ctx)  # asyncio's Context.run(): fails if already entered
        except BaseException as exc:
            self._report(exc, callback, args)
            return
        try:
            if not args:
                callback()
            else:
                callback(*args)
        except (SystemExit, KeyboardInterrupt):
            PyContext_Exit(ctx)
            raise
        except BaseException as exc:
            PyContext_Exit(ctx)
            self._report(exc, callback, args)
            return
        PyContext_Exit(ctx)

    cdef _report(self, exc, callback, args):
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise exc
        cb = _format_helpers._format_callback_source(callback, args)
        context = {
            "message": f"Exception in callback {cb}",
            "exception": exc,
            "handle": self,
        }
        if self._source_traceback:
            context["source_traceback"] = self._source_traceback
        self._loop.call_exception_handler(context)


@cython.freelist(256)
cdef class TimerHandle(Handle):
    """A callback scheduled at a time (asyncio's ``TimerHandle``, in C)."""

    def __init__(self, when, callback, args, loop, context=None):
        _init_handle(self, callback, args, loop, context)
        self._when = when
        self._scheduled = False

    def _repr_info(self):
        info = Handle._repr_info(self)
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def __hash__(self):
        return hash(self._when)

    def __richcmp__(self, other, int op):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        cdef TimerHandle o = <TimerHandle>other
        cdef bint eq = (self._when == o._when and self._callback == o._callback
                        and self._args == o._args and self._cancelled == o._cancelled)
        if op == 0:
            return self._when < o._when
        if op == 1:
            return self._when < o._when or eq
        if op == 2:
            return eq
        if op == 3:
            return not eq
        if op == 4:
            return self._when > o._when
        return self._when > o._when or eq

    cpdef cancel(self):
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
        Handle.cancel(self)

    def when(self):
        """The absolute time (``loop.time()`` clock) the callback is due."""
        return self._when


cdef inline int _init_handle(Handle h, object callback, object args, object loop,
                             object context) except -1:
    h._callback = callback
    h._args = args
    h._loop = loop
    h._context = PyContext_CopyCurrent() if context is None else context
    h._cancelled = False
    h._repr = None
    if loop.get_debug():
        # from C there is no frame of ours: frame 0 is the Python caller
        h._source_traceback = _format_helpers.extract_stack(sys._getframe(0))
    else:
        h._source_traceback = None
    return 0


cdef inline Handle _new_handle(object callback, tuple args, LoopCore loop, object context):
    cdef Handle h = Handle.__new__(Handle)
    h._callback = callback
    h._args = args
    h._loop = loop
    h._context = PyContext_CopyCurrent() if context is None else context
    h._cancelled = False
    h._repr = None
    h._source_traceback = None
    return h


cdef class LoopCore:
    """The hot half of fastsock's loop. Python subclasses add the rest."""

    def __cinit__(self):
        self._closed = True      # until asyncio's __init__ opens the loop
        self._ready = deque()
        self._timers = []
        # create_future's keyword arguments, made once: calling the C Future
        # type with them skips building a kwargs dict per future (its
        # __init__ only reads them).
        self._future_kwargs = {"loop": self}

    # ---------------------------------------------------------------- time
    def time(self):
        """The loop's clock: ``time.monotonic()``."""
        return _now()

    def get_debug(self):
        return self._debug

    def create_future(self):
        """asyncio's C ``Future`` on this loop (every await of a stream makes one)."""
        return PyObject_Call(_Future, _NO_ARGS, self._future_kwargs)

    def create_task(self, coro, *, name=None, context=None):
        """asyncio's ``create_task`` (a C ``Task``, or the task factory's)."""
        if self._closed:
            self._check_closed()
        factory = self._task_factory
        if factory is None:
            if context is None:
                task = _Task(coro, loop=self, name=name)
            else:
                task = _Task(coro, loop=self, name=name, context=context)
            if self._debug and task._source_traceback:
                del task._source_traceback[-1]
            return task
        task = factory(self, coro) if context is None else factory(self, coro, context=context)
        if name is not None:
            _set_task_name(task, name)
        return task

    # ----------------------------------------------------------- callbacks
    def call_soon(self, callback, *args, context=None):
        if self._closed:
            self._check_closed()
        cdef Handle h
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            h = Handle(callback, args, self, context)
        else:
            h = _new_handle(callback, args, self, context)
        self._ready.append(h)
        return h

    def _call_soon(self, callback, args, context):
        cdef Handle h
        if self._debug:
            h = Handle(callback, args, self, context)
        else:
            h = _new_handle(callback, tuple(args), self, context)
        self._ready.append(h)
        return h

    def call_later(self, delay, callback, *args, context=None):
        if delay is None:
            raise TypeError("delay must not be None")
        return self._call_at(_now() + delay, callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        return self._call_at(when, callback, args, context)

    cdef TimerHandle _call_at(self, object when, object callback, tuple args, object context):
        if self._closed:
            self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        cdef TimerHandle timer = TimerHandle.__new__(TimerHandle)
        _init_handle(timer, callback, args, self, context)
        timer._when = when
        self._timer_seq += 1
        heappush(self._timers, (timer._when, self._timer_seq, timer))
        timer._scheduled = True
        return timer

    def _timer_handle_cancelled(self, TimerHandle handle):
        # Lazy deletion: counted here, dropped when they reach the top of the
        # heap, or all at once when they dominate it (see _run_once).
        if handle._scheduled:
            self._cancelled_timers += 1

    cdef int _compact_timers(self) except -1:
        cdef list kept = []
        cdef tuple entry
        cdef TimerHandle timer
        for entry in self._timers:
            timer = <TimerHandle>entry[2]
            if timer._cancelled:
                timer._scheduled = False
            else:
                kept.append(entry)
        heapify(kept)
        self._timers = kept
        self._cancelled_timers = 0
        return 0

    # ------------------------------------------------------------ one turn
    def _run_once(self):
        """Poll, dispatch I/O from the fd table, move due timers, run what was ready."""
        cdef object ready = self._ready
        cdef list timers = self._timers
        cdef TimerHandle timer
        cdef double timeout, end
        cdef Py_ssize_t ntodo
        cdef object handle
        if (self._cancelled_timers > MIN_CANCELLED_TIMERS_TO_COMPACT
                and self._cancelled_timers * 2 > len(timers)):
            self._compact_timers()
            timers = self._timers
        else:
            while timers and (<TimerHandle>(<tuple>timers[0])[2])._cancelled:
                timer = <TimerHandle>(<tuple>heappop(timers))[2]
                timer._scheduled = False
                self._cancelled_timers -= 1
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = <double>(<tuple>timers[0])[0] - _now()
            if timeout < 0.0:
                timeout = 0.0
            elif timeout > MAXIMUM_POLL_TIMEOUT:
                timeout = MAXIMUM_POLL_TIMEOUT
        else:
            timeout = -1.0

        if self._poller is not None:
            # compiled: epoll_wait into a C array and the dispatch (_epollc.pyx), a C call
            self._io_events += (<EpollPoller>self._poller).poll_dispatch(
                timeout, self._fds, self._stale_cb, self._failed_cb)
        elif self._poll_dispatch is not None:
            self._io_events += self._poll_dispatch(timeout, self._fds, self._stale_cb,
                                                   self._failed_cb)
        else:
            self._io_events += self._poll_python(timeout)

        if timers:
            end = _now() + self._clock_resolution
            while timers and <double>(<tuple>timers[0])[0] < end:
                timer = <TimerHandle>(<tuple>heappop(timers))[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                    continue
                ready.append(timer)
                self._timers_run += 1

        ntodo = len(ready)
        if ntodo:
            self._callbacks_run += ntodo
            if self._debug:
                self._run_ready_debug(ntodo)
            else:
                popleft = ready.popleft
                while ntodo:
                    ntodo -= 1
                    handle = popleft()
                    if isinstance(handle, Handle):
                        if not (<Handle>handle)._cancelled:
                            (<Handle>handle)._run()
                    elif not handle._cancelled:
                        handle._run()  # an asyncio.Handle someone appended
                handle = None  # break cycles when an exception occurs
        self._iterations += 1

    def _run_ready_debug(self, Py_ssize_t ntodo):
        """asyncio's debug mode: time each callback and warn on slow ones."""
        from asyncio.base_events import _format_handle
        cdef object ready = self._ready
        cdef double t0, dt
        for _ in range(ntodo):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = _now()
                handle._run()
                dt = _now() - t0
                if dt >= self.slow_callback_duration:
                    _asyncio_logger.warning("Executing %s took %.3f seconds",
                                            _format_handle(handle), dt)
            finally:
                self._current_handle = None
