"""The reactor: one thread, one poller, timers on a heap, signals via a wakeup fd.

One loop turn (``_run_once``):

1. poll for I/O with a timeout that is 0 when callbacks are ready, the time
   to the next timer otherwise, infinite when there is nothing to wait for;
2. run each ready reader/writer callback straight from the fd table (no
   intermediate handle queue);
3. move due timers to the ready queue;
4. run the callbacks that were ready when the turn started (callbacks they
   schedule run next turn, so I/O is never starved).

An exception in any callback goes to the exception handler (by default: logged
with its traceback) and the loop carries on with everyone else.
"""
from __future__ import annotations

import errno
import heapq
import logging
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

from ..exceptions import ReactorClosedError
from .future import Future
from .handles import Handle, TimerHandle

__all__ = ["Reactor"]

logger = logging.getLogger("fastsock.reactor")

# Compact the timer heap when more than this many cancelled timers sit in it
# and they are more than half of it (lazy deletion otherwise).
_MIN_CANCELLED_TIMERS_TO_COMPACT = 100

_monotonic = time.monotonic


def _dispatch(events: list[tuple[int, int]], fds: dict[int, list[Any]], rev: int, wev: int,
              stale: Callable[[int], None], failed: Callable[[Any, BaseException], None]) -> None:
    """Run the reader/writer callbacks for one poll's events (the hot loop).

    The pure-Python twin of ``_epollc.EpollPoller.poll_dispatch`` (used with
    FASTSOCK_PURE=1, the selectors backend, or when it is not built). The
    reader and writer halves are written out rather than shared through a
    helper: in Python a helper call per event costs more than the loop body.
    """
    for fd, ev in events:
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
            raise ValueError(f"invalid file object: {fd!r}") from None
    if n < 0:
        raise ValueError(f"invalid file descriptor: {n}")
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


class Reactor:
    """A single-threaded event loop with asyncio's method names.

    ``backend`` is ``None`` (epoll on Linux, else ``selectors``), ``"epoll"``
    or ``"selectors"``.
    """

    def __init__(self, *, backend: str | None = None) -> None:
        self._backend = _make_backend(backend)
        self._poll = self._backend.poll
        self._poll_dispatch = getattr(self._backend, "poll_dispatch", None)
        self._rmask = self._backend.READ
        self._wmask = self._backend.WRITE
        # fd -> [reader cb, reader args, writer cb, writer args]; args None = no args
        # (a plain call is cheaper than cb(*()) on the hot path)
        self._fds: dict[int, list[Any]] = {}
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = 0
        self._cancelled_timers = 0
        self._running = False
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._exception_handler: Callable[[Reactor, dict[str, Any]], Any] | None = None
        # graceful shutdown
        self._shutdown_hooks: list[Callable[[float], Any]] = []
        self._transports: set[Any] = set()
        self._shutting_down = False
        self._shutdown_timer: TimerHandle | None = None
        # signals and cross-thread wakeups: one socketpair, read end in the loop
        self._signal_handlers: dict[int, Handle] = {}
        self._ssock, self._csock = socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._add_reader_raw(self._ssock.fileno(), self._read_wakeup, ())
        # loop-owned receive buffer shared by every transport (single thread)
        self.recv_buffer = bytearray(256 * 1024)
        self.recv_view = memoryview(self.recv_buffer)
        self.stats: dict[str, int] = {
            "iterations": 0, "io_events": 0, "callbacks": 0, "timers": 0,
            "callback_errors": 0, "stale_fd_rebuilds": 0,
        }

    # ------------------------------------------------------------------ time
    def time(self) -> float:
        """The loop's clock: ``time.monotonic()``."""
        return _monotonic()

    @property
    def backend(self) -> str:
        return str(self._backend.name)

    # ------------------------------------------------------------- callbacks
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        if self._closed:
            raise ReactorClosedError("cannot schedule a callback: the reactor is closed")
        handle = Handle(callback, args, self)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Like ``call_soon``, from any thread; wakes the loop up."""
        handle = self.call_soon(callback, *args)
        self._wake()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(_monotonic() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        if self._closed:
            raise ReactorClosedError("cannot schedule a timer: the reactor is closed")
        handle = TimerHandle(when, callback, args, self)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, handle))
        return handle

    def _timer_cancelled(self) -> None:
        # Called by TimerHandle.cancel(). Lazy deletion, compacting only when
        # cancelled timers dominate, so cancel is O(1) amortised.
        self._cancelled_timers += 1
        if (self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_COMPACT
                and self._cancelled_timers * 2 > len(self._timers)):
            self._timers = [t for t in self._timers if not t[2]._cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def create_future(self) -> Future[Any]:
        return Future(self)

    # ------------------------------------------------------------------- I/O
    def _add_reader_raw(self, fd: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        entry = self._fds.get(fd)
        if entry is None:
            self._fds[fd] = [callback, args or None, None, None]
            self._backend.register(fd, self._rmask)
        else:
            had = entry[0] is not None
            entry[0] = callback
            entry[1] = args or None
            if not had:
                self._backend.modify(fd, self._rmask | self._wmask if entry[2] is not None else self._rmask)

    def _add_writer_raw(self, fd: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        entry = self._fds.get(fd)
        if entry is None:
            self._fds[fd] = [None, None, callback, args or None]
            self._backend.register(fd, self._wmask)
        else:
            had = entry[2] is not None
            entry[2] = callback
            entry[3] = args or None
            if not had:
                self._backend.modify(fd, self._rmask | self._wmask if entry[0] is not None else self._wmask)

    def _remove_reader_raw(self, fd: int) -> bool:
        entry = self._fds.get(fd)
        if entry is None or entry[0] is None:
            return False
        entry[0] = None
        entry[1] = None
        if entry[2] is None:
            del self._fds[fd]
            self._backend.unregister(fd)
        else:
            self._backend.modify(fd, self._wmask)
        return True

    def _remove_writer_raw(self, fd: int) -> bool:
        entry = self._fds.get(fd)
        if entry is None or entry[2] is None:
            return False
        entry[2] = None
        entry[3] = None
        if entry[0] is None:
            del self._fds[fd]
            self._backend.unregister(fd)
        else:
            self._backend.modify(fd, self._rmask)
        return True

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable (level-triggered)."""
        self._check_closed()
        fd = _fileno(fd)
        known = fd in self._fds
        self._add_reader_raw(fd, callback, args)
        if known:
            self._reassert(fd)

    def remove_reader(self, fd: Any) -> bool:
        if self._closed:
            return False
        return self._remove_reader_raw(_fileno(fd))

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (level-triggered)."""
        self._check_closed()
        fd = _fileno(fd)
        known = fd in self._fds
        self._add_writer_raw(fd, callback, args)
        if known:
            self._reassert(fd)

    def remove_writer(self, fd: Any) -> bool:
        if self._closed:
            return False
        return self._remove_writer_raw(_fileno(fd))

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
        self.stats["stale_fd_rebuilds"] += 1
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

    # ------------------------------------------------------------- running
    def _check_closed(self) -> None:
        if self._closed:
            raise ReactorClosedError("the reactor is closed")

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout = 0.0
        elif timers:
            while timers and timers[0][2]._cancelled:
                heapq.heappop(timers)
                self._cancelled_timers -= 1
            timeout = timers[0][0] - _monotonic() if timers else -1.0
            if timeout < 0.0 and timers:
                timeout = 0.0
        else:
            timeout = -1.0

        poll_dispatch = self._poll_dispatch
        if poll_dispatch is not None:
            # compiled: epoll_wait into a C array and the dispatch (_epollc.pyx)
            nevents = poll_dispatch(timeout, self._fds, self._stale_event, self._callback_failed)
            if nevents:
                self.stats["io_events"] += nevents
        else:
            events = self._poll(timeout)
            if events:
                _dispatch(events, self._fds, self._backend.READ_EVENTS, self._backend.WRITE_EVENTS,
                          self._stale_event, self._callback_failed)
                self.stats["io_events"] += len(events)

        if timers:
            end = _monotonic()
            while timers and timers[0][0] <= end:
                timer = heapq.heappop(timers)[2]
                if timer._cancelled:
                    self._cancelled_timers -= 1
                    continue
                timer._reactor = None  # out of the heap: cancel() need not count it
                ready.append(timer)
                self.stats["timers"] += 1

        ntodo = len(ready)
        if ntodo:
            self.stats["callbacks"] += ntodo
            popleft = ready.popleft
            while ntodo:
                ntodo -= 1
                handle = popleft()
                if handle._cancelled:
                    continue
                try:
                    handle._callback(*handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._callback_failed(handle._callback, exc, handle)
        self.stats["iterations"] += 1

    def _callback_failed(self, cb: Any, exc: BaseException, handle: Handle | None = None) -> None:
        self.stats["callback_errors"] += 1
        context: dict[str, Any] = {
            "message": f"Exception in callback {getattr(cb, '__qualname__', cb)!s}",
            "exception": exc,
        }
        if handle is not None:
            context["handle"] = handle
        self.call_exception_handler(context)

    def _enter(self) -> None:
        self._check_closed()
        if self._running:
            raise RuntimeError("the reactor is already running")
        self._running = True
        self._thread_id = threading.get_ident()

    def _leave(self) -> None:
        self._stopping = False
        self._running = False
        self._thread_id = None

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called."""
        self._enter()
        try:
            run_once = self._run_once
            while not self._stopping:
                run_once()
        finally:
            self._leave()

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
        self._enter()
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
            self._leave()

    def run_until_complete(self, future: Future[Any], timeout: float | None = None) -> Any:
        """Run until ``future`` is done and return its result (or raise its error).

        Raises ``TimeoutError`` when ``timeout`` passes first, ``RuntimeError``
        when the loop was stopped before the future finished.
        """
        if not self.run_until(future.done, timeout):
            if timeout is not None and not future.done():
                raise TimeoutError(f"the future did not finish within {timeout} s")
            raise RuntimeError("the reactor stopped before the future completed")
        return future.result()

    def stop(self) -> None:
        """Stop after the current turn (callbacks already due still run)."""
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the poller and the wakeup socketpair. The reactor must be stopped."""
        if self._running:
            raise RuntimeError("cannot close a running reactor")
        if self._closed:
            return
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._fds.clear()
        self._backend.close()
        self._ssock.close()
        self._csock.close()

    # --------------------------------------------------------- exceptions
    def set_exception_handler(self, handler: Callable[[Reactor, dict[str, Any]], Any] | None) -> None:
        """``handler(reactor, context)`` receives every error a callback raised."""
        if handler is not None and not callable(handler):
            raise TypeError(f"an exception handler must be callable, got {handler!r}")
        self._exception_handler = handler

    def get_exception_handler(self) -> Callable[[Reactor, dict[str, Any]], Any] | None:
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        message = context.get("message") or "Unhandled exception in the reactor"
        exc = context.get("exception")
        details = [f"{k}: {v!r}" for k, v in sorted(context.items()) if k not in ("message", "exception")]
        if details:
            message = message + "\n" + "\n".join(details)
        logger.error(message, exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.exception("the default exception handler failed")
            return
        try:
            self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in the exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.exception("the default exception handler failed")

    # ------------------------------------------------------------- signals
    def _wake(self) -> None:
        try:
            self._csock.send(b"\0")
        except OSError:
            pass  # buffer full: the loop is already due to wake up

    def _read_wakeup(self) -> None:
        # Bytes are signal numbers written by Python's C-level handler via
        # signal.set_wakeup_fd, or 0 from call_soon_threadsafe.
        while True:
            try:
                data = self._ssock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._signal_handlers.get(signum)
                if handle is not None and not handle._cancelled:
                    self._ready.append(handle)

    def add_signal_handler(self, sig: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in the loop when ``sig`` arrives (main thread only)."""
        self._check_closed()
        if not isinstance(sig, int) or not 1 <= sig < signal.NSIG:
            raise ValueError(f"invalid signal number {sig!r}")
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"signal {sig} cannot be caught")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        if not self._signal_handlers:
            try:
                self._previous_wakeup_fd = signal.set_wakeup_fd(
                    self._csock.fileno(), warn_on_full_buffer=False)
            except (ValueError, OSError) as exc:
                raise RuntimeError(f"cannot install the signal wakeup fd: {exc}") from exc
        self._signal_handlers[sig] = Handle(callback, args, self)
        try:
            # The Python-level handler does nothing: the C handler has already
            # written the signal number to the wakeup fd, and the loop reads it.
            signal.signal(sig, _noop_signal_handler)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                signal.set_wakeup_fd(self._previous_wakeup_fd)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"signal {sig} cannot be caught") from exc
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        if sig not in self._signal_handlers:
            return False
        del self._signal_handlers[sig]
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except (OSError, ValueError):
            pass
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(getattr(self, "_previous_wakeup_fd", -1))
            except (ValueError, OSError):
                pass
        return True

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
        self._transports.add(transport)

    def _untrack(self, transport: Any) -> None:
        self._transports.discard(transport)
        if self._shutting_down and not self._transports:
            self.call_soon(self._finish_shutdown)

    @property
    def transports(self) -> frozenset[Any]:
        """The live transports (what :meth:`shutdown` drains)."""
        return frozenset(self._transports)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop gracefully within ``timeout`` seconds.

        Shutdown hooks run (servers stop accepting, protocols may write a
        goodbye), then every live transport is closed -- which flushes its
        write buffer first -- and the loop stops as soon as all are gone, or
        at the deadline, when the rest are aborted. Called while the loop is
        not running, it runs the loop until that happens.
        """
        if self._closed:
            return
        if self._shutting_down:
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
        for transport in list(self._transports):
            try:
                transport.close()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(transport.close, exc)
        self._shutdown_timer = self.call_at(deadline, self._finish_shutdown)
        if not self._transports:
            self.call_soon(self._finish_shutdown)
        if not self._running:
            self.run_forever()

    def _finish_shutdown(self) -> None:
        if not self._shutting_down:
            return
        self._shutting_down = False
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        for transport in list(self._transports):
            transport.abort()  # deadline passed: drop what did not drain
        # connection_lost callbacks were scheduled with call_soon; stop after them
        self.call_soon(self.stop)

    def is_shutting_down(self) -> bool:
        return self._shutting_down

    def install_shutdown_signals(self, timeout: float = 5.0,
                                 signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """SIGINT/SIGTERM start :meth:`shutdown`; a second one stops at once."""
        for sig in signals:
            self.add_signal_handler(sig, self._on_shutdown_signal, timeout)

    def _on_shutdown_signal(self, timeout: float) -> None:
        if self._shutting_down:
            self._finish_shutdown()
        else:
            self.shutdown(timeout)

    # ------------------------------------------------------------- misc
    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running else "idle")
        return f"<Reactor {state} backend={self._backend.name} fds={len(self._fds)}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and not sys.is_finalizing():
            try:
                self.close()
            except Exception:
                pass


def _noop_signal_handler(signum: int, frame: Any) -> None:
    """Python-level handler; the real work happens in the loop."""

