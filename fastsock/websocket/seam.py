"""The one I/O seam of a WebSocket connection.

The connection core (:class:`~fastsock.websocket.protocol.WebSocketHandler`)
decides; it never touches a socket, a transport or a loop. What it needs
done it asks of one object, its seam, through these operations only (the
per-connection ones take the connection, ``core``, first):

========================  ==================================================
``write(core, frames)``   send these frames, in order, after what is queued
``half_close(core)``      FIN after everything queued (the lingering close)
``close(core)``           end the connection: gracefully /
``abort(core)``           at once
``pause_reading(core)``   stop / restart delivering received bytes
``resume_reading(core)``
``call_later(d, cb)``     a timer (keep-alive, close timeout; None
                          where there is no loop); ``time()``
``call_soon(cb)``         run ``cb`` on the next loop turn
``create_future()``       something a coroutine can wait on (``drained()``)
========================  ==================================================

plus ``bind(core, transport, write_limit, write_low)`` when the connection
opens and two facts about it (``peername(core)``, ``write_buffer_size(core)``).

:class:`TransportSeam` is the glue to asyncio-shaped transports on one loop:
fastsock's reactor, asyncio, uvloop. A server has one for all its
connections (no object per connection: C10k memory and GC time); each
connection's transport lives in the compiled core's ``_transport`` field,
which :meth:`TransportSeam.bind` sets together with, where the transport
takes a pointer, its ``ChunkWriter``, so a message sent on the hot path is
written by compiled code with no Python call in between.

:class:`SansIOSeam` performs nothing and records everything, so the core can
be driven and checked through its outputs alone: the bytes it wrote
(:meth:`~SansIOSeam.data_to_send`), whether it half-closed, closed or
aborted, whether it paused reading, and the timers it wants
(:attr:`~SansIOSeam.timers`, fired by :meth:`~SansIOSeam.advance`).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from .._fakeclock import FakeClock, FakeTimer
from ..exceptions import InvalidStateError

if TYPE_CHECKING:
    from .._send import ChunkWriter
    from .protocol import WebSocketHandler

try:
    from .._send import writer_for as _writer_for
except ImportError:             # no compiled extensions: transports take bytes
    def _writer_for(transport: Any) -> Optional[ChunkWriter]:
        return None

__all__ = ["Seam", "TimerHandle", "TransportSeam", "SansIOSeam", "half_close"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Seam(Protocol):
    """What the connection core asks of I/O (see the module docstring)."""

    @property
    def loop(self) -> Any: ...

    def bind(self, core: "WebSocketHandler", transport: Any,
             write_limit: int, write_low: int) -> None: ...
    def transport(self, core: "WebSocketHandler") -> Any: ...
    def write(self, core: "WebSocketHandler", frames: list[bytes]) -> None: ...
    def half_close(self, core: "WebSocketHandler") -> bool: ...
    def close(self, core: "WebSocketHandler") -> None: ...
    def abort(self, core: "WebSocketHandler") -> None: ...
    def pause_reading(self, core: "WebSocketHandler") -> None: ...
    def resume_reading(self, core: "WebSocketHandler") -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Optional[TimerHandle]: ...
    def call_soon(self, callback: Callable[[], None]) -> None: ...
    def time(self) -> float: ...
    def create_future(self) -> Any: ...
    def peername(self, core: "WebSocketHandler") -> Any: ...
    def write_buffer_size(self, core: "WebSocketHandler") -> int: ...


def half_close(transport: Any) -> bool:
    """Send FIN after what is queued (a lingering close). False when that
    cannot be done: a transport without half-close is closed instead, and
    one whose peer is already gone (asyncio's raises ENOTCONN) is aborted."""
    try:
        can_eof = transport.can_write_eof()
    except (AttributeError, NotImplementedError):
        can_eof = False
    if not can_eof:
        transport.close()
        return False
    try:
        transport.write_eof()
    except OSError:
        transport.abort()
        return False
    return True


class TransportSeam:
    """The seam over asyncio-shaped transports on one loop (one per server
    or client; the transport of each connection is in its ``_transport``)."""

    __slots__ = ("loop",)

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def bind(self, core: "WebSocketHandler", transport: Any,
             write_limit: int, write_low: int) -> None:
        """The connection opened on ``transport``: set its write-buffer
        limits and install the compiled core's write lane."""
        try:
            transport.set_write_buffer_limits(high=write_limit, low=write_low)
        except (AttributeError, NotImplementedError):
            pass
        # The compiled core writes on its fast path itself (HandlerCore's
        # _transport and _writer, fastsock/websocket/_core.pxd): the seam's
        # write, inlined. The pointer writer only serves that fast path.
        core._transport = transport
        core._writer = _writer_for(transport) if core._fast else None

    def transport(self, core: "WebSocketHandler") -> Any:
        return core._transport

    def write(self, core: "WebSocketHandler", frames: list[bytes]) -> None:
        if len(frames) == 1:
            core._transport.write(frames[0])
        else:
            core._transport.writelines(frames)

    def half_close(self, core: "WebSocketHandler") -> bool:
        return half_close(core._transport)

    def close(self, core: "WebSocketHandler") -> None:
        core._transport.close()

    def abort(self, core: "WebSocketHandler") -> None:
        core._transport.abort()

    def pause_reading(self, core: "WebSocketHandler") -> None:
        core._transport.pause_reading()

    def resume_reading(self, core: "WebSocketHandler") -> None:
        core._transport.resume_reading()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Optional[TimerHandle]:
        # Without a loop there are no timers (no keep-alive, no close timeout).
        if self.loop is None:
            return None
        handle: TimerHandle = self.loop.call_later(delay, callback)
        return handle

    def call_soon(self, callback: Callable[[], None]) -> None:
        if self.loop is None:
            callback()
        else:
            self.loop.call_soon(callback)

    def time(self) -> float:
        return float(self.loop.time()) if self.loop is not None else time.monotonic()

    def create_future(self) -> Any:
        if self.loop is None:
            raise InvalidStateError("cannot wait for a drain without a loop")
        return self.loop.create_future()

    def peername(self, core: "WebSocketHandler") -> Any:
        return core._transport.get_extra_info("peername")

    def write_buffer_size(self, core: "WebSocketHandler") -> int:
        return int(core._transport.get_write_buffer_size())


class SansIOSeam:
    """No I/O: the core's requests are recorded for the caller to act on.

    Timers go on :attr:`clock`, a :class:`~fastsock.testing.FakeClock`
    (starting at ``now``) whose time moves only with :meth:`advance`, which
    runs the timers that fall due, in order. Ending the connection
    (``close()``/``abort()``) reports it lost to the core at once: there is
    no transport whose end could be waited for. ``loop``, if given, makes
    the futures of :meth:`create_future` (``drained()``); else the clock does.
    """

    def __init__(self, *, now: float = 0.0, loop: Any = None) -> None:
        self.clock = FakeClock(now)
        self.loop = loop
        self._sent = bytearray()
        self.eof_sent = False
        self.closed = False
        self.aborted = False
        self.reading_paused = False
        self.write_limits: Optional[tuple[int, int]] = None
        self._core: Optional["WebSocketHandler"] = None

    # -- what the core asks ---------------------------------------------------
    def bind(self, core: "WebSocketHandler", transport: Any,
             write_limit: int, write_low: int) -> None:
        self._core = core
        self.write_limits = (write_limit, write_low)
        core._transport = None
        core._writer = None

    def transport(self, core: "WebSocketHandler") -> Any:
        return None

    def write(self, core: "WebSocketHandler", frames: list[bytes]) -> None:
        if self.closed or self.aborted:
            return
        for frame in frames:
            self._sent += frame

    def half_close(self, core: "WebSocketHandler") -> bool:
        self.eof_sent = True
        return True

    def close(self, core: "WebSocketHandler") -> None:
        if not (self.closed or self.aborted):
            self.closed = True
            self._lost()

    def abort(self, core: "WebSocketHandler") -> None:
        if not (self.closed or self.aborted):
            self.aborted = True
            self._lost()

    def pause_reading(self, core: "WebSocketHandler") -> None:
        self.reading_paused = True

    def resume_reading(self, core: "WebSocketHandler") -> None:
        self.reading_paused = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        return self.clock.call_later(max(0.0, delay), callback)

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.clock.call_soon(callback)

    def time(self) -> float:
        return self.clock.time()

    def create_future(self) -> Any:
        return (self.loop if self.loop is not None else self.clock).create_future()

    def peername(self, core: "WebSocketHandler") -> Any:
        return None

    def write_buffer_size(self, core: "WebSocketHandler") -> int:
        return 0

    # -- what the caller reads or does -----------------------------------------
    def data_to_send(self) -> bytes:
        """Take the bytes written so far."""
        data = bytes(self._sent)
        self._sent.clear()
        return data

    @property
    def timers(self) -> list[FakeTimer]:
        """The timers wanted and not cancelled, soonest first."""
        return self.clock.pending()

    def advance(self, seconds: float) -> int:
        """Move the clock on by ``seconds`` and run the timers due by then
        (including ones those timers set within the interval). Returns how
        many ran."""
        return self.clock.advance(seconds)

    def _lost(self) -> None:
        if self._core is not None:
            self._core.connection_lost(None)
