"""The per-message path of a WebSocket connection, in Python.

This is the twin of ``fastsock/websocket/_core.pyx`` (same behaviour, same
names). :mod:`fastsock.websocket.protocol` picks the compiled module when it is
built and the codec is compiled too; ``FASTSOCK_PURE=1`` forces this one.

:class:`HandlerCore` is the base of ``WebSocketHandler``. It holds the state
every message touches, and the two methods every message goes through:

- ``data_received``: bytes in, then ``on_message`` for each whole frame;
- ``send``: a message becomes a frame, then goes to the transport.

Everything else is ``WebSocketHandler``'s Python: fragments, control frames,
closing, extensions and the client side. The core calls it by name:
``_handle_frames``, ``fail``, ``_flush`` and ``_send_slow``.

:class:`TurnFlush` writes, once per loop turn, what connections queued while
they handled input (see its docstring for why).
"""
from __future__ import annotations

import logging
import struct
from typing import Any, Iterable, Optional, Union

from ..exceptions import ProtocolError

log = logging.getLogger("fastsock.websocket")

# Server frame headers for payloads under 126 bytes, indexed by length.
_H_TEXT = [bytes((0x81, n)) for n in range(126)]
_H_BINARY = [bytes((0x82, n)) for n in range(126)]
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack
# Below this size a frame's header and payload are joined into one bytes
# (one buffer for the kernel); above it the payload is written as it is.
COALESCE = 4096

# The metrics counters every connection keeps (whole text/binary messages
# and their payload bytes, in and out): C fields in the compiled core, int
# attributes here. sum_counters returns them in this order.
COUNTER_FIELDS = ("_rx_text", "_rx_text_bytes", "_rx_binary", "_rx_binary_bytes",
                  "_tx_text", "_tx_text_bytes", "_tx_binary", "_tx_binary_bytes")


def _header_size(b1: int) -> int:
    """A frame header's size, from its second byte (mask bit, 7-bit length)."""
    n = b1 & 0x7F
    return (6 if b1 & 0x80 else 2) + (2 if n == 126 else 8 if n == 127 else 0)


def sum_counters(handlers: Iterable["HandlerCore"]) -> list[int]:
    """The metrics counters of ``handlers`` added up, in ``COUNTER_FIELDS`` order."""
    totals = [0] * len(COUNTER_FIELDS)
    for h in handlers:
        totals[0] += h._rx_text
        totals[1] += h._rx_text_bytes
        totals[2] += h._rx_binary
        totals[3] += h._rx_binary_bytes
        totals[4] += h._tx_text
        totals[5] += h._tx_text_bytes
        totals[6] += h._tx_binary
        totals[7] += h._tx_binary_bytes
    return totals


def frame_header(b0: int, n: int) -> bytes:
    """The unmasked header of a frame with first byte ``b0`` and ``n`` payload bytes."""
    if n < 126:
        return bytes((b0, n))
    if n < 65536:
        return _pack16(b0, 126, n)
    return _pack64(b0, 127, n)


class HandlerCore:
    """The per-message state and path of a connection (see the module docstring).

    ``_parser`` is ``None`` until the handshake is done and again once the
    connection is closing for good. ``_fast`` means "server side, open, no
    extensions, transport attached", so ``send`` may frame and write at once.
    ``_rx_fast`` means "open, no extensions, UTF-8 checked by the codec", so a
    whole data frame goes straight to ``on_message``. ``_batching`` is true
    while received bytes are handled: whatever is sent then waits in ``_out``
    and goes out in one write at the end.
    """

    __slots__ = ("_parser", "_transport", "_out", "_writer", "_batching", "_fast", "_rx_fast",
                 "_close_received", "_flusher", "_queued", "_writing_paused") + COUNTER_FIELDS

    _parser: Any
    _transport: Any
    _out: list[bytes]
    # the transport's pointer write (fastsock/_send.pxd): the compiled core
    # frames small replies into scratch memory for it; this twin sends bytes
    _writer: Any
    _batching: bool
    _fast: bool
    _rx_fast: bool
    _close_received: bool
    _flusher: Optional["TurnFlush"]   # None: write at the end of each data_received
    _queued: bool                     # waiting in _flusher for this turn's write
    _writing_paused: bool             # the transport asked us to stop writing (pause_writing)
    _rx_text: int
    _rx_text_bytes: int
    _rx_binary: int
    _rx_binary_bytes: int
    _tx_text: int
    _tx_text_bytes: int
    _tx_binary: int
    _tx_binary_bytes: int

    def __new__(cls, *args: Any, **kwargs: Any) -> "HandlerCore":
        # The compiled core's C fields start at 0 before any __init__ runs;
        # so do these (a subclass __init__ need not know about them).
        self = super().__new__(cls)
        self._rx_text = self._rx_text_bytes = self._rx_binary = self._rx_binary_bytes = 0
        self._tx_text = self._tx_text_bytes = self._tx_binary = self._tx_binary_bytes = 0
        return self

    def data_received(self, data: bytes) -> None:
        """Handle received bytes. Callbacks fire first; then everything they
        sent goes out in one write. This is both the transport callback and the
        sans-I/O entry: with no transport attached, the output waits for
        ``data_to_send``."""
        parser = self._parser
        if parser is None:
            return
        try:
            frames = parser.feed(data)
        except ProtocolError:
            return   # already failed on this error: discard what follows
        self._batching = True
        try:
            on_message = self.on_message   # type: ignore[attr-defined]
            for i, frame in enumerate(frames):
                # Whole text or binary frames on an open connection without
                # extensions go straight to the application (the codec has
                # already checked the UTF-8).
                if frame.fin and self._rx_fast:
                    op = frame.opcode
                    if op == 1:
                        self._rx_text += 1
                        self._rx_text_bytes += len(frame.payload)
                        on_message(frame.payload.decode())
                        continue
                    if op == 2:
                        self._rx_binary += 1
                        self._rx_binary_bytes += len(frame.payload)
                        on_message(frame.payload)
                        continue
                self._handle_frames(frames[i:] if i else frames)   # type: ignore[attr-defined]
                break
            err = parser.error
            if err is not None and not self._close_received:
                self._batching = False
                self.fail(err.close_code, str(err))   # type: ignore[attr-defined]
        except Exception:
            # A bug in an on_* callback: report it and fail with 1011
            # ("internal error") instead of tearing the socket down silently.
            log.exception("error in a callback of %s", type(self).__name__)
            self._batching = False
            self.fail(1011, "internal error")   # type: ignore[attr-defined]
        finally:
            self._batching = False
            if self._out:
                flusher = self._flusher
                if flusher is None:
                    self._write_out()
                else:
                    flusher.add(self)

    def _write_out(self) -> None:
        """Write everything queued in ``_out``."""
        out = self._out
        if len(out) == 1 and self._fast:
            self._transport.write(out[0])      # the one-reply case
            out.clear()
        else:
            self._flush()   # type: ignore[attr-defined]

    def _broadcast_frame(self, frame: bytes) -> bool:
        """Queue an encoded server frame for this turn's write if this
        connection is open, a server's, without extensions and not paused;
        else return False and leave it to the caller (``broadcast``)."""
        if not self._fast or self._writing_paused:
            return False
        self._count_frame_out(frame)
        self._queue_frame(frame)   # type: ignore[attr-defined]
        return True

    def _count_frame_out(self, frame: bytes) -> None:
        """Count an encoded server data frame as a message sent (metrics)."""
        if len(frame) >= 2:
            op = frame[0] & 0x0F
            n = len(frame) - _header_size(frame[1])
            if op == 1:
                self._tx_text += 1
                self._tx_text_bytes += n
            elif op == 2:
                self._tx_binary += 1
                self._tx_binary_bytes += n

    def send(self, message: Union[str, bytes, bytearray, memoryview]) -> None:
        """Send one message: ``str`` as text, bytes-like as binary.

        Raises :class:`~fastsock.exceptions.ConnectionClosed` once the
        closing handshake has started. A memoryview is copied only if it is
        small; do not change a large one until ``buffered_amount`` says it was
        sent.
        """
        if self._fast:
            # The common case in one straight line: server, open, no
            # extensions, a str or a bytes.
            payload: Optional[bytes]
            if type(message) is str:
                payload = message.encode()
                b0 = 0x81
            elif type(message) is bytes:
                payload = message
                b0 = 0x82
            else:
                payload = None
                b0 = 0
            if payload is not None:
                n = len(payload)
                if b0 == 0x81:
                    self._tx_text += 1
                    self._tx_text_bytes += n
                else:
                    self._tx_binary += 1
                    self._tx_binary_bytes += n
                out = self._out
                if n < COALESCE:
                    if n < 126:
                        frame = (_H_TEXT if b0 == 0x81 else _H_BINARY)[n] + payload
                    else:
                        frame = _pack16(b0, 126, n) + payload
                    if self._batching:
                        out.append(frame)
                    elif out:
                        out.append(frame)
                        self._flush()   # type: ignore[attr-defined]
                    else:
                        self._transport.write(frame)
                    return
                out.append(frame_header(b0, n))
                out.append(payload)
                if not self._batching:
                    self._flush()   # type: ignore[attr-defined]
                return
        self._send_slow(message)   # type: ignore[attr-defined]


def offer_all(connections: Iterable[Any], frame: bytes, rest: list[Any]) -> tuple[int, Any]:
    """Queue ``frame`` (an encoded server frame) for this turn's write on each
    of ``connections`` that takes the fast path (``_broadcast_frame``: open,
    a server's, without extensions, not over its write limit); a coroutine
    ``Connection`` is looked through to its ``core``. The others are
    appended to ``rest``, in order, for the hub's Python path
    (``fastsock.pubsub.fanout``). Returns how many were queued here and the
    last connection seen (None if there was none)."""
    sent = 0
    conn = None
    for conn in connections:
        core = conn if isinstance(conn, HandlerCore) else getattr(conn, "core", None)
        if isinstance(core, HandlerCore) and core._broadcast_frame(frame):
            sent += 1
        else:
            rest.append(conn)
    return sent, conn


class TurnFlush:
    """Writes each connection's queued output once per loop turn.

    A handler does not write the replies it produces while it handles input.
    It hands itself to its loop's ``TurnFlush`` (``add``), and the first
    ``add`` of a turn schedules one ``loop.call_soon(run)``. So a turn that
    reads from N connections does all N reads and all the Python work first,
    then makes N writes back to back.

    Peers on the same machine then wake once per burst of replies instead of
    once per reply: at one message in flight on 100 connections this is worth
    about 20% in WebSocket echo (docs/benchmarks.md). Broadcasts and frames
    offered by the hub (``fastsock.pubsub.fanout``) go through the same
    queue, so every connection gets at most one write per turn.
    """

    __slots__ = ("loop", "pending")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.pending: list[HandlerCore] = []

    def add(self, handler: HandlerCore) -> None:
        """Write ``handler``'s queued output at the end of this turn (once)."""
        if handler._queued:
            return
        handler._queued = True
        if not self.pending:
            self.loop.call_soon(self.run)
        self.pending.append(handler)

    def run(self) -> None:
        batch = self.pending
        self.pending = []
        for handler in batch:
            handler._queued = False
            if handler._out:
                try:
                    handler._write_out()
                except Exception:
                    # One broken transport must not keep the others' bytes queued.
                    log.exception("error writing to %r", handler._transport)
