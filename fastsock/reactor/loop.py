"""The reactor: a complete asyncio event loop on epoll, with fastsock's fast paths.

:class:`Reactor` *is* an ``asyncio.AbstractEventLoop``: it subclasses
asyncio's selector loop, so coroutines, tasks, streams, ``sock_*``, pipes,
subprocesses, signals, executors and TLS keep asyncio's own semantics (the
reference, as it is for uvloop). What it replaces is the machinery under
them:

* **the poll and the dispatch**: one table ``fd -> [reader, reader args,
  writer, writer args]`` and, compiled (``_epollc.pyx``), one C call that
  runs ``epoll_wait`` into a preallocated array and calls the callbacks of
  every event, no ``selectors`` keys, no handle per event;
* **timers** on a heap of ``(when, sequence, handle)`` tuples, compared in C;
* **stream transports**: ``create_connection``/``create_server`` (and
  ``start_tls``, ``ssl=``) run on fastsock's compiled TCP transport, and an
  accepted plain connection becomes a transport without a task per
  connection;
* **datagram endpoints** run on fastsock's batched UDP transport.

One loop turn (``_run_once``):

1. poll for I/O with a timeout that is 0 when callbacks are ready, the time
   to the next timer otherwise, infinite when there is nothing to wait for;
2. run each ready reader/writer callback straight from the fd table;
3. move due timers to the ready queue;
4. run the callbacks that were ready when the turn started (callbacks they
   schedule run next turn, so I/O is never starved).

fastsock's own extras sit on top of asyncio's contract: ``run_until``,
``run_until_complete(..., timeout=)``, graceful :meth:`Reactor.shutdown`
with hooks and transport tracking, the loop-owned receive buffer that the
compiled transports share, and :attr:`Reactor.stats`.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import socket
import ssl
import sys
import threading
import time
from asyncio import base_events, constants, events, futures, sslproto, tasks
from asyncio.log import logger as asyncio_logger
from collections.abc import Mapping
from selectors import EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey
from typing import Any, Callable, Iterable

from .._switch import compiled
from ..exceptions import ReactorClosedError
# the EMFILE policy of fastsock's own TCP server, for asyncio's servers too
from ..transports.listener import ACCEPT_RETRY_MAX, ACCEPT_RETRY_MIN
from ..transports.listener import _EXHAUSTED as _ACCEPT_EXHAUSTED

__all__ = ["Reactor"]

logger = logging.getLogger("fastsock.reactor")

# Compact the timer heap when more than this many cancelled timers sit in it
# and they are more than half of it (lazy deletion otherwise).
_MIN_CANCELLED_TIMERS_TO_COMPACT = 100
# asyncio's cap on one poll's timeout (a clock jump must not freeze the loop).
_MAXIMUM_POLL_TIMEOUT = 24 * 3600
# The loop-owned receive buffer every compiled stream transport reads into.
RECV_BUFFER_SIZE = 256 * 1024


_monotonic = time.monotonic


def _dispatch(events_: list[tuple[int, int]], fds: dict[int, list[Any]], rev: int, wev: int,
              stale: Callable[[int], None], failed: Callable[[Any, BaseException], None]) -> None:
    """Run the reader/writer callbacks for one poll's events (the hot loop).

    The pure-Python twin of ``_epollc.EpollPoller.poll_dispatch`` (used with
    FASTSOCK_PURE=1, the selectors backend, or when it is not built). The
    reader and writer halves are written out rather than shared through a
    helper: in Python a helper call per event costs more than the loop body.
    """
    for fd, ev in events_:
        entry = fds.get(fd)
        if entry is None:
            stale(fd)
            continue
        if ev & rev:
            cb = entry[0]
            if cb is not None:
                args = entry[1]
                try:
                    if args is None:
                        cb()
                    else:
                        cb(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    failed(cb, exc)
        if ev & wev:
            cb = entry[2]
            if cb is not None:
                args = entry[3]
                try:
                    if args is None:
                        cb()
                    else:
                        cb(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    failed(cb, exc)


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        n = fd
    else:
        try:
            n = int(fd.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fd!r}") from None
    if n < 0:
        raise ValueError(f"Invalid file descriptor: {n}")
    return n


def _make_backend(backend: str | None) -> Any:
    if backend in (None, "epoll"):
        try:
            from ._epoll import EpollBackend
            return EpollBackend()
        except (ImportError, AttributeError):
            if backend == "epoll":
                raise ValueError("the epoll backend is not available on this platform") from None
    if backend in (None, "selectors"):
        from ._selector import SelectorsBackend
        return SelectorsBackend()
    raise ValueError(f"unknown reactor backend {backend!r} (expected 'epoll' or 'selectors')")


def _cancel_handle(cb: Any) -> None:
    """Cancel the asyncio Handle behind a table entry (``handle._run``), if any:
    asyncio's ``_remove_reader`` cancels the handle it replaces or removes."""
    handle = getattr(cb, "__self__", None)
    if isinstance(handle, (events.Handle, _Handle)):
        handle.cancel()


class _PyLoopCore:
    """The pure-Python half that ``_loopc.LoopCore`` compiles (used when it is
    not built or FASTSOCK_PURE=1): asyncio's handles, the same heap and turn."""

    _timers: list[tuple[float, int, events.TimerHandle]]
    _timer_seq = 0
    _cancelled_timers = 0
    _io_events = _timers_run = _callbacks_run = _iterations = 0

    def call_at(self: Any, when: float, callback: Callable[..., Any], *args: Any,
                context: Any = None) -> events.TimerHandle:
        """asyncio's ``call_at``; the heap holds ``(when, seq, handle)`` tuples."""
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = events.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:  # type: ignore[attr-defined]
            del timer._source_traceback[-1]  # type: ignore[attr-defined]
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, timer))
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _timer_handle_cancelled(self: Any, handle: Any) -> None:
        # Lazy deletion: counted here, dropped when they reach the top of the
        # heap, or all at once when they dominate it (see _run_once).
        if handle._scheduled:
            self._cancelled_timers += 1

    def _compact_timers(self: Any) -> None:
        kept = []
        for entry in self._timers:
            if entry[2]._cancelled:
                entry[2]._scheduled = False
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._timers = kept
        self._cancelled_timers = 0

    def _run_once(self: Any) -> None:
        ready = self._ready
        timers = self._timers
        if (self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_COMPACT
                and self._cancelled_timers * 2 > len(timers)):
            self._compact_timers()
            timers = self._timers
        else:
            while timers and timers[0][2]._cancelled:
                heapq.heappop(timers)[2]._scheduled = False
                self._cancelled_timers -= 1
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            timeout = min(max(0.0, timers[0][0] - _monotonic()), _MAXIMUM_POLL_TIMEOUT)
        else:
            timeout = -1.0

        poll_dispatch = self._poll_dispatch
        if poll_dispatch is not None:
            # compiled: epoll_wait into a C array and the dispatch (_epollc.pyx)
            self._io_events += poll_dispatch(timeout, self._fds, self._stale_event,
                                             self._callback_failed)
        else:
            self._io_events += self._poll_python(timeout)

        if timers:
            end = _monotonic() + self._clock_resolution
            while timers and timers[0][0] < end:
                timer = heapq.heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                    continue
                ready.append(timer)
                self._timers_run += 1

        ntodo = len(ready)
        if ntodo:
            self._callbacks_run += ntodo
            popleft = ready.popleft
            if self._debug:
                self._run_ready_debug(ntodo)
            else:
                while ntodo:
                    ntodo -= 1
                    handle = popleft()
                    if not handle._cancelled:
                        handle._run()
                handle = None  # break cycles when an exception occurs
        self._iterations += 1

    def _run_ready_debug(self: Any, ntodo: int) -> None:
        """asyncio's debug mode: time each callback and warn on slow ones."""
        ready = self._ready
        for _ in range(ntodo):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    asyncio_logger.warning(
                        "Executing %s took %.3f seconds",
                        base_events._format_handle(handle), dt)  # type: ignore[attr-defined]
            finally:
                self._current_handle = None



# The compiled core unless it is not built or FASTSOCK_PURE=1.
_loopc = compiled("._loopc", __package__)
_LoopCore: Any = _loopc.LoopCore if _loopc is not None else _PyLoopCore
# TLS: the compiled record path (fastsock/transports/_tls.pyx) or its twin,
# asyncio's own with the same handshake-failure log line (_tls_py.py)
_tls = compiled("fastsock.transports._tls")
if _tls is None:
    from ..transports import _tls_py as _tls_twin
_SSLProtocol: Any = _tls.SSLProtocol if _tls is not None else _tls_twin.SSLProtocol
_Handle: Any = _loopc.Handle if _loopc is not None else events.Handle
IMPLEMENTATION = "python" if _LoopCore is _PyLoopCore else "cython"


class _FdTableSelector(BaseSelector):
    """A read-only ``selectors`` view of the loop's fd table.

    asyncio code that inspects ``loop._selector`` (transport ``repr``s, the
    test-suite) sees the real registrations; registering goes through the
    loop (``add_reader``...), which owns the table and the poller.
    """

    def __init__(self, loop: Reactor) -> None:
        self._loop = loop

    def _key(self, fd: int, entry: list[Any]) -> SelectorKey:
        mask = (EVENT_READ if entry[0] is not None else 0) | (EVENT_WRITE if entry[2] is not None else 0)
        reader = getattr(entry[0], "__self__", entry[0])
        writer = getattr(entry[2], "__self__", entry[2])
        return SelectorKey(fd, fd, mask, (reader, writer))

    def get_key(self, fileobj: Any) -> SelectorKey:
        fd = _fileno(fileobj)
        entry = self._loop._fds.get(fd)
        if entry is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return self._key(fd, entry)

    def get_map(self) -> Mapping[Any, SelectorKey]:
        return {fd: self._key(fd, entry) for fd, entry in self._loop._fds.items()}

    def _unsupported(self, *args: Any) -> Any:
        raise NotImplementedError(
            "fastsock's loop owns its poller: use loop.add_reader()/add_writer() instead")

    register = modify = unregister = select = _unsupported  # type: ignore[assignment]

    def close(self) -> None:
        self._loop._backend.close()


def _outermost(transport: Any) -> Any:
    """The transport the application writes to: asyncio's TLS transport when
    ``transport`` carries TLS (an SSLProtocol on top of it), else ``transport``."""
    protocol = transport.get_protocol()
    if isinstance(protocol, sslproto.SSLProtocol):
        app = protocol._app_transport
        if app is not None and not app.is_closing():
            return app
    return transport


class Reactor(_LoopCore, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """fastsock's event loop: asyncio's contract on an epoll reactor.

    ``backend`` is ``None`` (epoll on Linux, else ``selectors``), ``"epoll"``
    or ``"selectors"``.
    """

    def __init__(self, *, backend: str | None = None) -> None:
        self._backend = _make_backend(backend)
        self._poll = self._backend.poll
        self._poll_dispatch = getattr(self._backend, "poll_dispatch", None)
        self._poller = getattr(self._backend, "poller", None)
        self._rmask = self._backend.READ
        self._wmask = self._backend.WRITE
        # fd -> [reader cb, reader args, writer cb, writer args]; args None = no args
        # (a plain call is cheaper than cb(*()) on the hot path)
        self._fds: dict[int, list[Any]] = {}
        # the dispatch's callbacks, bound once rather than on every turn
        self._stale_cb = self._stale_event
        self._failed_cb = self._callback_failed
        # asyncio's C Future and Task look up loop.call_soon for every callback
        # they schedule (each task wake-up): bound once here, that lookup finds
        # it in the instance dict instead of making a bound method each time.
        self.__dict__["call_soon"] = self.call_soon
        self._timers: list[tuple[float, int, events.TimerHandle]] = []
        self._timer_seq = 0
        self._cancelled_timers = 0
        # graceful shutdown: every live fastsock transport, and stream
        # transports by fd (add_reader on such an fd is refused, as asyncio does)
        self._shutdown_hooks: list[Callable[[float], Any]] = []
        self._live: set[Any] = set()
        self._stream_transports: dict[int, Any] = {}
        self._shutting_down = False
        self._shutdown_timer: events.TimerHandle | None = None
        # transports waiting for their write buffer to drain (sendfile)
        self._empty_waiters: dict[Any, asyncio.Future[None]] = {}
        self._accept_exhausted_logged = False
        # loop-owned receive buffer shared by every transport (single thread)
        self.recv_buffer = bytearray(RECV_BUFFER_SIZE)
        self.recv_view = memoryview(self.recv_buffer)
        self._callback_errors = 0
        self._stale_fd_rebuilds = 0
        super().__init__(selector=_FdTableSelector(self))

    @property
    def backend(self) -> str:
        return str(self._backend.name)

    def _check_closed(self) -> None:
        if self._closed:
            raise ReactorClosedError("Event loop is closed")

    # ------------------------------------------------------------- the fd table
    def _add_reader_raw(self, fd: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """Register ``callback(*args)`` as ``fd``'s reader; returns the one it replaced."""
        entry = self._fds.get(fd)
        if entry is None:
            self._fds[fd] = [callback, args or None, None, None]
            self._backend.register(fd, self._rmask)
            return None
        old = entry[0]
        entry[0] = callback
        entry[1] = args or None
        if old is None:
            self._backend.modify(fd, self._rmask | self._wmask if entry[2] is not None else self._rmask)
        return old

    def _add_writer_raw(self, fd: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        entry = self._fds.get(fd)
        if entry is None:
            self._fds[fd] = [None, None, callback, args or None]
            self._backend.register(fd, self._wmask)
            return None
        old = entry[2]
        entry[2] = callback
        entry[3] = args or None
        if old is None:
            self._backend.modify(fd, self._rmask | self._wmask if entry[0] is not None else self._wmask)
        return old

    def _remove_reader_raw(self, fd: int) -> Any:
        """Unregister ``fd``'s reader; returns it (None when there was none)."""
        entry = self._fds.get(fd)
        if entry is None or entry[0] is None:
            return None
        old = entry[0]
        entry[0] = None
        entry[1] = None
        if entry[2] is None:
            del self._fds[fd]
            self._backend.unregister(fd)
        else:
            self._backend.modify(fd, self._wmask)
        return old

    def _remove_writer_raw(self, fd: int) -> Any:
        entry = self._fds.get(fd)
        if entry is None or entry[2] is None:
            return None
        old = entry[2]
        entry[2] = None
        entry[3] = None
        if entry[0] is None:
            del self._fds[fd]
            self._backend.unregister(fd)
        else:
            self._backend.modify(fd, self._rmask)
        return old

    # asyncio's internal registration API (sock_*, pipes, accept, the
    # self-pipe): a Handle per registration, so callbacks run in the context
    # captured here and removal cancels the handle, as in asyncio.
    def _add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        self._check_closed()
        handle = _Handle(callback, args, self, None)
        _cancel_handle(self._add_reader_raw(_fileno(fd), handle._run, ()))
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        if self._closed:
            return False
        old = self._remove_reader_raw(_fileno(fd))
        _cancel_handle(old)
        return old is not None

    def _add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> Any:
        self._check_closed()
        handle = _Handle(callback, args, self, None)
        _cancel_handle(self._add_writer_raw(_fileno(fd), handle._run, ()))
        return handle

    def _remove_writer(self, fd: Any) -> bool:
        if self._closed:
            return False
        old = self._remove_writer_raw(_fileno(fd))
        _cancel_handle(old)
        return old is not None

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        """Call ``callback(*args)`` whenever ``fd`` is readable (level-triggered)."""
        n = _fileno(fd)
        self._ensure_fd_no_transport(n)
        known = n in self._fds
        self._add_reader(n, callback, *args)
        if known:
            self._reassert(n)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:  # type: ignore[override]
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        n = _fileno(fd)
        self._ensure_fd_no_transport(n)
        known = n in self._fds
        self._add_writer(n, callback, *args)
        if known:
            self._reassert(n)

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        super()._ensure_fd_no_transport(fd)
        n = _fileno(fd)
        transport = self._stream_transports.get(n)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def _reassert(self, fd: int) -> None:
        # The public API re-states the interest with one epoll_ctl: if the fd
        # number was closed while registered and is now another file, the
        # kernel forgot it and this registers the new one (see _epoll.py).
        entry = self._fds[fd]
        mask = (self._rmask if entry[0] is not None else 0) | (self._wmask if entry[2] is not None else 0)
        self._backend.modify(fd, mask)

    def _stale_event(self, fd: int) -> None:
        # An event for an fd nobody registered: see the essay in _epoll.py.
        if self._backend.unregister(fd):
            return
        self._stale_fd_rebuilds += 1
        logger.warning(
            "fd %d was closed while registered with the reactor and its file is "
            "still open elsewhere (dup/fork); rebuilding the poller. Call "
            "remove_reader/remove_writer before closing a descriptor.", fd)
        rm, wm = self._rmask, self._wmask
        self._backend.rebuild({
            f: (rm if e[0] is not None else 0) | (wm if e[2] is not None else 0)
            for f, e in self._fds.items()
        })
        self._poll = self._backend.poll
        self._poll_dispatch = getattr(self._backend, "poll_dispatch", None)
        self._poller = getattr(self._backend, "poller", None)

    # ------------------------------------------------------------- one turn
    def _poll_python(self, timeout: float) -> int:
        """Poll and dispatch without the compiled poller; returns the event count."""
        polled = self._poll(timeout)
        if polled:
            _dispatch(polled, self._fds, self._backend.READ_EVENTS, self._backend.WRITE_EVENTS,
                      self._stale_event, self._callback_failed)
        return len(polled)

    def _callback_failed(self, cb: Any, exc: BaseException) -> None:
        """A reader/writer callback run straight from the fd table raised."""
        self._callback_errors += 1
        self.call_exception_handler({
            "message": f"Exception in callback {getattr(cb, '__qualname__', cb)!s}",
            "exception": exc,
        })

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if "handle" in context and "exception" in context:
            self._callback_errors += 1  # a call_soon/timer callback raised
        super().call_exception_handler(context)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: loop turns, I/O events, callbacks and timers run, errors."""
        return {
            "iterations": self._iterations, "io_events": self._io_events,
            "callbacks": self._callbacks_run, "timers": self._timers_run,
            "callback_errors": self._callback_errors,
            "stale_fd_rebuilds": self._stale_fd_rebuilds,
        }

    # ------------------------------------------------------------- running
    def _enter(self) -> tuple[Any, ...]:
        """What ``run_forever`` does before its first turn (asyncio 3.11's)."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        events._set_running_loop(self)
        return tuple(old_agen_hooks)

    def _leave(self, old_agen_hooks: tuple[Any, ...]) -> None:
        self._stopping = False
        self._thread_id = None  # type: ignore[assignment]
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        sys.set_asyncgen_hooks(*old_agen_hooks)

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called."""
        saved = self._enter()
        try:
            run_once = self._run_once
            while True:
                run_once()
                if self._stopping:
                    break
        finally:
            self._leave(saved)

    def run_until(self, predicate: Callable[[], bool] | None = None,
                  timeout: float | None = None) -> bool:
        """Run until ``predicate()`` is true, ``timeout`` seconds pass or ``stop()``.

        Returns True when the predicate became true (checked before the first
        turn and after every turn), False on timeout or stop.
        """
        if predicate is not None and predicate():
            return True
        timer = None
        timed_out = [False]
        if timeout is not None:
            def expire() -> None:
                timed_out[0] = True
            timer = self.call_later(timeout, expire)
        saved = self._enter()
        try:
            run_once = self._run_once
            while not self._stopping and not timed_out[0]:
                run_once()
                if predicate is not None and predicate():
                    return True
            return False
        finally:
            if timer is not None:
                timer.cancel()
            self._leave(saved)

    def run_until_complete(self, future: Any, timeout: float | None = None) -> Any:
        """asyncio's ``run_until_complete``; with ``timeout``, ``TimeoutError``
        when it passes first (the future is left running)."""
        if timeout is None:
            return super().run_until_complete(future)
        self._check_closed()
        self._check_running()
        future = tasks.ensure_future(future, loop=self)
        if not self.run_until(future.done, timeout):
            if not future.done():
                raise TimeoutError(f"the future did not finish within {timeout} s")
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self) -> None:
        """Close the loop (it must be stopped): asyncio's close, then the poller."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        super().close()
        self._timers.clear()
        self._fds.clear()
        # Transports still open are dropped here: each warns with a
        # ResourceWarning when it is collected, as asyncio's do.
        self._live.clear()
        self._stream_transports.clear()
        self._empty_waiters.clear()

    # -------------------------------------------------------- transports
    def _make_socket_transport(self, sock: socket.socket, protocol: Any, waiter: Any = None, *,
                               extra: dict[str, Any] | None = None, server: Any = None) -> Any:
        from ..transports.stream import StreamTransport
        return StreamTransport(self, sock, protocol, extra, server=server, waiter=waiter)

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: Any, sslcontext: Any,
                            waiter: Any = None, *, server_side: bool = False,
                            server_hostname: str | None = None,
                            extra: dict[str, Any] | None = None, server: Any = None,
                            ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
                            ) -> Any:
        from ..transports.stream import StreamTransport
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        StreamTransport(self, rawsock, ssl_protocol, extra, server=server)
        return ssl_protocol._app_transport

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: ssl.SSLContext, *,
                        server_side: bool = False, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> Any:
        """asyncio's ``start_tls``, with fastsock's compiled TLS protocol."""
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                            f"got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout, call_connection_made=False)
        # paused first, so that no data reaches the TLS protocol before its
        # connection_made runs
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any, address: Any = None,
                                 waiter: Any = None, extra: dict[str, Any] | None = None) -> Any:
        from ..transports.udp import UDPTransport
        transport = UDPTransport(self, sock, protocol, address)
        if extra:
            transport._extra.update(extra)
        if waiter is not None:
            # after connection_made, which UDPTransport scheduled first
            self.call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                           waiter, None)
        return transport

    async def _sendfile_native(self, transp: Any, file: Any, offset: int, count: int | None) -> int:
        # asyncio's, for fastsock's stream transport: the socket leaves the
        # transport while os.sendfile writes to it directly
        fd = transp._sock_fd
        self._stream_transports.pop(fd, None)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count, fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()
            self._stream_transports[fd] = transp

    def _accept_connection(self, protocol_factory: Callable[[], Any], sock: socket.socket,
                           sslcontext: Any = None, server: Any = None, backlog: int = 100,
                           ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                           ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
                           _retry: float = 0.0) -> None:
        """Accept up to ``backlog`` connections. A plain connection becomes a
        transport at once (asyncio creates a task per connection); TLS ones
        take asyncio's path. Out of descriptors, accepting pauses with a
        doubling back-off and the limits report says why."""
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_EXHAUSTED:
                    raise  # the loop's exception handler reports it; serving goes on
                delay = min(max(_retry * 2, ACCEPT_RETRY_MIN), ACCEPT_RETRY_MAX)
                self.call_exception_handler({
                    "message": f"socket.accept() out of system resource; "
                               f"accepting again in {delay:g} s",
                    "exception": exc, "socket": sock,
                })
                if not self._accept_exhausted_logged:
                    self._accept_exhausted_logged = True
                    logger.error("accept() failed: %s. Pausing accepts with a back-off; raise the "
                                 "descriptor limit (see `python -m fastsock limits`). Logged once.",
                                 exc.strerror or exc)
                self._remove_reader(sock.fileno())
                self.call_later(delay, self._resume_accepting, protocol_factory, sock, sslcontext,
                                server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout, delay)
                return
            extra = {"peername": addr}
            if sslcontext is not None:
                self.create_task(self._accept_connection2(
                    protocol_factory, conn, extra, sslcontext, server,
                    ssl_handshake_timeout, ssl_shutdown_timeout))
                continue
            try:
                protocol = protocol_factory()
                self._make_socket_transport(conn, protocol, extra=extra, server=server)
            except (SystemExit, KeyboardInterrupt):
                conn.close()
                raise
            except BaseException as exc:
                conn.close()
                self.call_exception_handler({
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                })

    def _resume_accepting(self, protocol_factory: Callable[[], Any], sock: socket.socket,
                          sslcontext: Any, server: Any, backlog: int,
                          ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None,
                          retry: float) -> None:
        if sock.fileno() < 0 or (server is not None and not server.is_serving()):
            return
        # one accept pass first: if descriptors are still short it backs off longer
        self._add_reader(sock.fileno(), self._accept_connection, protocol_factory, sock,
                         sslcontext, server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout)
        self._accept_connection(protocol_factory, sock, sslcontext, server, backlog,
                                ssl_handshake_timeout, ssl_shutdown_timeout, retry)

    # -------------------------------------------------- graceful shutdown
    def add_shutdown_hook(self, hook: Callable[[float], Any]) -> None:
        """``hook(deadline)`` runs first thing in :meth:`shutdown` (servers stop accepting)."""
        self._shutdown_hooks.append(hook)

    def remove_shutdown_hook(self, hook: Callable[[float], Any]) -> bool:
        try:
            self._shutdown_hooks.remove(hook)
        except ValueError:
            return False
        return True

    def _track(self, transport: Any) -> None:
        self._live.add(transport)

    def _untrack(self, transport: Any) -> None:
        self._live.discard(transport)
        if self._shutting_down and not self._live:
            self.call_soon(self._finish_shutdown)

    @property
    def transports(self) -> frozenset[Any]:
        """The live fastsock transports (what :meth:`shutdown` drains)."""
        return frozenset(self._live)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop gracefully within ``timeout`` seconds.

        Shutdown hooks run (servers stop accepting, protocols may write a
        goodbye), then every live transport is closed -- which flushes its
        write buffer first -- and the loop stops as soon as all are gone, or
        at the deadline, when the rest are aborted. Called while the loop is
        not running, it runs the loop until that happens.
        """
        if self._closed or self._shutting_down:
            return
        self._shutting_down = True
        deadline = _monotonic() + timeout
        for hook in list(self._shutdown_hooks):
            try:
                hook(deadline)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(hook, exc)
        for transport in list(self._live):
            # a TLS connection closes through asyncio's TLS transport on top
            # of ours: what the TLS layer holds is flushed, then close_notify
            target = _outermost(transport)
            if getattr(transport, "_started", True) is False:
                # accepted just now, connection_made still queued: close it
                # after that (FIFO), so its protocol can answer it first (a
                # reload's old worker would otherwise drop such a client)
                self.call_soon(target.close)
                continue
            try:
                target.close()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(target.close, exc)
        self._shutdown_timer = self.call_at(deadline, self._finish_shutdown)
        if not self._live:
            self.call_soon(self._finish_shutdown)
        if not self.is_running():
            self.run_forever()

    def _finish_shutdown(self) -> None:
        if not self._shutting_down:
            return
        self._shutting_down = False
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        for transport in list(self._live):
            transport.abort()  # deadline passed: drop what did not drain
        # connection_lost callbacks were scheduled with call_soon; stop after them
        self.call_soon(self.stop)

    def is_shutting_down(self) -> bool:
        return self._shutting_down

    def install_shutdown_signals(self, timeout: float = 5.0,
                                 signals: Iterable[int] | None = None) -> None:
        """SIGINT/SIGTERM start :meth:`shutdown`; a second one stops at once."""
        import signal
        for sig in signals if signals is not None else (signal.SIGINT, signal.SIGTERM):
            self.add_signal_handler(sig, self._on_shutdown_signal, timeout)

    def _on_shutdown_signal(self, timeout: float) -> None:
        if self._shutting_down:
            self._finish_shutdown()
        else:
            self.shutdown(timeout)

    # ------------------------------------------------------------- misc
    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.is_running() else "idle")
        return (f"<Reactor {state} backend={self._backend.name} fds={len(self._fds)} "
                f"debug={self.get_debug()}>")

