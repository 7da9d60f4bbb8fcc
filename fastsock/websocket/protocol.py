"""The WebSocket connection core (RFC 6455 after the handshake).

:class:`WebSocketHandler` is both the connection state machine and the base
class applications subclass. It is sans-I/O: bytes go in through
:meth:`~WebSocketHandler.receive_data`, the application callbacks
(``on_message``...) come out, and what it wants done it asks of one seam
(:mod:`fastsock.websocket.seam`): write these frames, half-close, close,
abort, pause or resume reading, a timer. The seam is the only I/O it knows:
:class:`~fastsock.websocket.seam.TransportSeam` over asyncio-shaped
transports (fastsock's reactor, asyncio, uvloop; one per server), or
:class:`~fastsock.websocket.seam.SansIOSeam`, which records every request,
so the core can be tested through its outputs alone. States change only
through the table in :mod:`fastsock.websocket._state`. What the owner of a
connection (a server) learns, it learns through the
:class:`~fastsock.websocket.observer.ConnectionObserver` it set as
``server``.

Hot path (why it looks the way it does): one ``FrameParser.feed`` per received
chunk returns every frame the chunk completed; an unfragmented data frame goes
straight to ``on_message``; everything the application sends while a chunk is
being handled is queued and written with one ``writelines`` at the end of the
chunk, so N pipelined messages cost one send, not N. That path
(``data_received`` and ``send``) lives in :class:`HandlerCore`, the base
class, compiled from ``_core.pyx`` (its Python twin is ``_core_py.py``);
``CORE_IMPLEMENTATION`` says which one runs. Its direct writes are the seam's
write, inlined: :meth:`TransportSeam.bind` installs the transport there.
"""
from __future__ import annotations

import enum
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from .._switch import PURE
from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStateError,
    ProtocolError,
)
from .. import frame as _codec
from ..frame import OP_TEXT, CloseCode, FrameParser, build_frame
from ._core_py import COALESCE as _COALESCE
from ._core_py import COUNTER_FIELDS, _H_BINARY, _H_TEXT, _pack16
from ._core_py import frame_header as _header
from ._state import (
    CLOSE_RECEIVED, CLOSE_SENT, CLOSED, CLOSING, CONNECTING, FAILED, FAST, LOST, NEXT, OPEN,
    OPENED, Event, State, next_state,
)
from .extensions.base import Extension
from .seam import SansIOSeam, Seam, TransportSeam

if TYPE_CHECKING:
    from ._core_py import HandlerCore, TurnFlush, sum_counters
    CORE_IMPLEMENTATION = "python"
elif PURE or _codec.IMPLEMENTATION != "cython":
    # The compiled core reads the compiled codec's frames directly.
    from ._core_py import HandlerCore, TurnFlush, sum_counters
    CORE_IMPLEMENTATION = "python"
else:
    try:
        from ._core import HandlerCore, TurnFlush, sum_counters
        CORE_IMPLEMENTATION = "cython"
    except ImportError:
        from ._core_py import HandlerCore, TurnFlush, sum_counters
        CORE_IMPLEMENTATION = "python"

__all__ = [
    "CONNECTING",
    "OPEN",
    "CLOSING",
    "CLOSED",
    "State",
    "Event",
    "TurnFlush",
    "WebSocketHandler",
    "WebSocketOptions",
    "Extension",
    "SLOW_PEER_POLICIES",
    "COUNTER_FIELDS",
    "check_handler",
    "encode_message",
    "frame_message",
    "frame_payload",
    "is_valid_close_code",
    "sum_counters",
]

log = logging.getLogger("fastsock.websocket")

Data = Union[str, bytes, bytearray, memoryview]


SLOW_PEER_POLICIES = ("pause", "drop", "disconnect")


def is_valid_close_code(code: int) -> bool:
    """May this code appear in a close frame on the wire (RFC 6455 7.4)?"""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class WebSocketOptions:
    """Per-connection limits and timeouts; one instance is shared by a server.

    - ``max_message_size``: largest message accepted (bytes, after
      reassembly); bigger → close 1009, checked before buffering. ``None``:
      unlimited.
    - ``max_frame_size``: largest single frame; ``None``: same as the message limit.
    - ``close_timeout``: seconds to wait for the peer's close frame / TCP close.
    - ``ping_interval`` / ``ping_timeout``: keep-alive; ``None`` disables it.
    - ``write_limit`` / ``write_low``: write-buffer watermarks (bytes) where
      back-pressure starts and ends; ``slow_peer``: what happens at
      ``write_limit`` — ``"pause"`` (stop reading from that peer until its
      buffer drains), ``"drop"`` (broadcasts skip it, counted in
      ``messages_dropped``) or ``"disconnect"`` (abort the connection).
    - ``validate_utf8``: check text messages (turning it off breaks RFC 6455).
    """

    __slots__ = ("max_message_size", "max_frame_size", "close_timeout", "ping_interval",
                 "ping_timeout", "write_limit", "write_low", "slow_peer", "validate_utf8")

    def __init__(self, *, max_message_size: Optional[int] = 1 << 20,
                 max_frame_size: Optional[int] = None, close_timeout: float = 5.0,
                 ping_interval: Optional[float] = 20.0, ping_timeout: Optional[float] = 20.0,
                 write_limit: int = 1 << 20, write_low: Optional[int] = None,
                 slow_peer: str = "pause", validate_utf8: bool = True) -> None:
        if slow_peer not in SLOW_PEER_POLICIES:
            raise ValueError(f"slow_peer must be one of {SLOW_PEER_POLICIES}, not {slow_peer!r}")
        if max_message_size is not None and max_message_size < 0:
            raise ValueError("max_message_size must be >= 0 or None")
        if write_limit < 1:
            raise ValueError("write_limit must be >= 1")
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval or None
        self.ping_timeout = ping_timeout or None
        self.write_limit = write_limit
        self.write_low = write_limit // 4 if write_low is None else write_low
        self.slow_peer = slow_peer
        self.validate_utf8 = validate_utf8

    def parser(self, require_mask: bool, allowed_rsv: int = 0) -> FrameParser:
        big = 2**63 - 1
        msg = big if self.max_message_size is None else self.max_message_size
        frame = msg if self.max_frame_size is None else self.max_frame_size
        return FrameParser(require_mask=require_mask, max_frame_size=frame,
                           max_message_size=msg, allowed_rsv=allowed_rsv,
                           validate_utf8=self.validate_utf8)


DEFAULT_OPTIONS = WebSocketOptions()


def encode_message(message: Data) -> bytes:
    """One unmasked (server) frame for ``message``: ``str`` → text, else binary.

    The result can be written to any number of server-side connections.
    """
    if type(message) is str:
        payload = message.encode()
        b0 = 0x81
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        b0 = 0x82
    else:
        raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes-like")
    return _header(b0, len(payload)) + payload


def frame_payload(frame: bytes) -> bytes:
    """The payload of one unmasked frame made by :func:`encode_message`."""
    n = frame[1] & 0x7F          # 126: a 16-bit length follows; 127: a 64-bit one
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0):]


def frame_message(frame: bytes) -> Union[str, bytes]:
    """The message in one unmasked frame made by :func:`encode_message`: str
    for a text frame, bytes for a binary one."""
    payload = frame_payload(frame)
    return payload.decode() if frame[0] & 0x0F == OP_TEXT else payload


class WebSocketHandler(HandlerCore):
    """One WebSocket connection; subclass it and override the ``on_*`` callbacks.

    Callbacks (all optional, all called on the loop thread)::

        on_open()                       the handshake is done; send() works
        on_message(data)                a whole message: str (text) or bytes (binary)
        on_ping(payload) / on_pong(payload)
        on_pause_writing() / on_drain() the write buffer crossed write_limit / fell
                                        back under write_low
        on_close(code, reason)          once, when the connection is gone
                                        (1006 if it ended without a close frame)

    Actions: :meth:`send`, :meth:`ping`, :meth:`close`, :meth:`abort`, and
    :func:`fastsock.broadcast` (the hub layer) for one frame to many connections. State and
    measurements: ``state``, ``path``, ``request``, ``subprotocol``,
    ``remote_address``, ``latency``, ``buffered_amount``, ``close_code``,
    ``opened_at`` (``time.monotonic()`` when it opened; 0.0 before).
    """

    # HandlerCore holds _parser, _transport, _out, _writer, _batching, _fast,
    # _rx_fast, _close_received, _flusher, _queued and _writing_paused
    # (_transport and _writer are the seam's write lane, set by Seam.bind).
    __slots__ = (
        "__weakref__", "_state", "_client", "_io", "_frame_log",
        "_frag", "_frag_op", "_frag_rsv", "_close_sent", "_sent_code",
        "close_code", "close_reason", "_close_timer", "_ping_timer", "_pings", "latency", "_next_ping_at",
        "_extensions", "_options", "_reading_paused", "messages_dropped",
        "request", "subprotocol", "_eof_sent", "_fail_code", "_fail_reason",
        "server", "_drain_waiters", "opened_at",
    )

    def __init__(self) -> None:
        # Subclasses may define __init__ with no arguments and call super().__init__().
        self._state = CONNECTING
        self._fast = False          # OPEN server side without extensions: send()'s fast path
        self._rx_fast = False       # OPEN, no extensions, UTF-8 checked by the codec
        # Created when first needed: every container a connection keeps is
        # another object each garbage collection walks (C10k connect time).
        self._drain_waiters: Optional[list[Any]] = None
        self._client = False
        self._parser = None
        self._transport = None
        self._writer = None
        self._io: Optional[Seam] = None            # set by attach
        self._frame_log: Optional[logging.Logger] = None   # DEBUG frame lines, decided at attach
        self._out = []
        self._batching = False
        self._frag: Optional[list[bytes]] = None
        self._frag_op = 0
        self._frag_rsv = 0
        self._close_sent = False
        self._close_received = False
        self._sent_code: Optional[int] = None
        self.close_code: Optional[int] = None     # the peer's code once known; 1006 if none
        self.close_reason = ""
        self._close_timer: Any = None
        self._ping_timer: Any = None
        self._next_ping_at = 0.0
        self._pings: Optional[dict[bytes, float]] = None   # payload -> sent at
        self.latency: Optional[float] = None       # seconds, from the last answered ping
        self._extensions: Sequence[Extension] = ()
        self._options = DEFAULT_OPTIONS
        self._writing_paused = False
        self._reading_paused = False
        self.messages_dropped = 0
        self.request: Any = None                   # handshake.Request on a server
        self.subprotocol: Optional[str] = None
        self._eof_sent = False
        self._fail_code: Optional[int] = None
        self._fail_reason = ""
        self._flusher = None
        self._queued = False
        # The ConnectionObserver (fastsock/websocket/observer.py) told of the
        # connection's end, control frames, slow-peer actions: a server's ServerState.
        self.server: Any = None
        self.opened_at = 0.0                       # time.monotonic() at attach (stat's age)

    # ------------------------------------------------------------ callbacks

    def on_open(self) -> None:
        """The connection is open."""

    def on_message(self, data: Union[str, bytes]) -> None:
        """A complete message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_ping(self, payload: bytes) -> None:
        """A ping arrived (the pong is already queued)."""

    def on_pong(self, payload: bytes) -> None:
        """A pong arrived (``latency`` is updated if it answered our ping)."""

    def on_pause_writing(self) -> None:
        """The write buffer passed ``write_limit``: the peer reads slower than we send."""

    def on_drain(self) -> None:
        """The write buffer fell under ``write_low`` after a pause."""

    def on_close(self, code: int, reason: str) -> None:
        """The connection is closed (called exactly once)."""

    # ------------------------------------------------------------ set-up

    def attach(self, transport: Any, loop: Any, *, client: bool = False,
               options: Optional[WebSocketOptions] = None,
               extensions: Sequence[Extension] = (), subprotocol: Optional[str] = None,
               request: Any = None, flusher: Optional[TurnFlush] = None,
               seam: Optional[Seam] = None, logger: Optional[logging.Logger] = None) -> None:
        """Bind to a transport after a successful handshake and call ``on_open``.

        The connection's I/O goes through a seam (:mod:`fastsock.websocket.seam`):
        a :class:`~fastsock.websocket.seam.TransportSeam` over ``transport``
        and ``loop``, or the ``seam`` given. With neither transport nor seam
        the connection is sans-I/O: a :class:`~fastsock.websocket.seam.SansIOSeam`
        records what it asks for (``data_to_send()``, its timers); ``loop``
        then only serves :meth:`drained`. ``flusher`` is the
        :class:`TurnFlush` this connection shares with the others on its loop
        (a server passes its own); without one the connection gets its own,
        or with no loop writes at once.

        If ``logger`` (default ``fastsock.websocket``) is enabled for DEBUG
        now, every frame in and out is logged; such a connection takes the
        Python path for every message (the compiled fast lanes skip frames).
        """
        if self._state is not CONNECTING:
            raise InvalidStateError("cannot attach a connection twice")
        opts = options or DEFAULT_OPTIONS
        self._options = opts
        self._client = client
        if seam is None:
            seam = TransportSeam(loop) if transport is not None else SansIOSeam(loop=loop)
        self._io = seam
        if flusher is None and seam.loop is not None:
            flusher = TurnFlush(seam.loop)
        self._flusher = flusher
        self._extensions = tuple(extensions)
        rsv = 0
        for ext in self._extensions:
            rsv |= ext.rsv
        self._parser = opts.parser(require_mask=not client, allowed_rsv=rsv)
        self.subprotocol = subprotocol
        self.request = request
        frame_log = logger if logger is not None else log
        self._frame_log = frame_log if frame_log.isEnabledFor(logging.DEBUG) else None
        self._transition(OPENED)
        seam.bind(self, transport, opts.write_limit, opts.write_low)
        self.opened_at = time.monotonic()
        if opts.ping_interval:
            # _next_ping_at stays 0.0: the first wake-up, ping_interval from
            # now, is due for a ping (no clock read per connection here).
            self._ping_timer = seam.call_later(opts.ping_interval, self._keepalive)
        self.on_open()
        if self._out and not self._batching:
            self._flush()

    def _transition(self, event: Event) -> None:
        """The one place the state changes (by the table in ``_state.py``);
        the compiled core's fast-path flags follow from it. ``_fast`` (send
        frames and writes at once): open, a server, no extensions, a
        transport, no frame logging. ``_rx_fast`` (the codec delivers whole
        messages, UTF-8 already checked): open, no extensions, UTF-8
        validation on, no frame logging. Every other state clears both."""
        state = NEXT[self._state][event]
        if state is None:
            next_state(self._state, event)      # raises InvalidStateError
            return
        self._state = state
        if FAST[state] and not self._extensions and self._frame_log is None:
            io = self._io
            self._fast = not self._client and isinstance(io, TransportSeam)
            self._rx_fast = self._options.validate_utf8
        else:
            self._fast = self._rx_fast = False

    # ------------------------------------------------------------ properties

    @property
    def state(self) -> State:
        return self._state

    @property
    def open(self) -> bool:
        return self._state is OPEN

    @property
    def transport(self) -> Any:
        """The transport under the connection's seam (None when sans-I/O)."""
        return self._io.transport(self) if self._io is not None else None

    @property
    def seam(self) -> Optional[Seam]:
        """The connection's I/O seam (:mod:`fastsock.websocket.seam`), once attached."""
        return self._io

    @property
    def _loop(self) -> Any:
        # The seam's loop, where the coroutine layer runs handler tasks
        # (fastsock/coroutine: server.py, the compiled Waiter); the core
        # itself never calls it.
        return self._io.loop if self._io is not None else None

    @property
    def path(self) -> Optional[str]:
        return self.request.path if self.request is not None else None

    @property
    def remote_address(self) -> Any:
        io = self._io
        return io.peername(self) if io is not None else None

    @property
    def buffered_amount(self) -> int:
        """Bytes queued but not yet handed to the kernel."""
        n = sum(map(len, self._out))
        io = self._io
        if io is not None:
            n += io.write_buffer_size(self)
        return n

    @property
    def writing_paused(self) -> bool:
        return self._writing_paused

    @property
    def counters(self) -> dict[str, int]:
        """This connection's message counters: whole text/binary messages and
        their payload bytes (UTF-8 for text), received (``rx_*``) and sent
        (``tx_*``). A server adds them up for its metrics."""
        return {name[1:]: getattr(self, name) for name in COUNTER_FIELDS}

    def _count_control(self, key: str, size: int) -> None:
        # Pings and pongs are counted by the observer (no field per connection).
        server = self.server
        if server is not None:
            server.control_frame(key, size)

    def _dropped(self) -> None:
        # A message the slow-peer policy did not send.
        self.messages_dropped += 1
        server = self.server
        if server is not None:
            server.message_dropped()

    # ------------------------------------------------------------ receiving

    # the sans-I/O name for the transport callback (HandlerCore.data_received)
    receive_data = HandlerCore.data_received

    def _handle_frames(self, frames: list[Any]) -> None:
        on_message = self.on_message
        for frame in frames:
            if self._state is CLOSED or self._close_received:
                return                             # aborted or closed by a callback
            op = frame.opcode
            if self._frame_log is not None and not (frame.rsv and frame.fin and op in (1, 2)):
                self._log_frame("<", op, frame.payload, frame.fin, frame.rsv)
            if frame.rsv and (op == 0 or op >= 8):
                # An extension marks a message by its first frame (RFC 7692
                # 6: RSV1 never on a continuation or control frame).
                self.fail(CloseCode.PROTOCOL_ERROR, "RSV bit on a continuation or control frame")
                return
            if op == 1 or op == 2:
                if self._state is not OPEN:
                    continue                       # after our close: data is ignored
                if frame.fin:
                    payload = frame.payload
                    if frame.rsv:
                        payload = self._decode(frame.rsv, op, payload)
                        if payload is None:
                            return
                        if self._frame_log is not None:   # shown decompressed
                            self._log_frame("<", op, payload, True, frame.rsv)
                    if op == 2:
                        self._rx_binary += 1
                        self._rx_binary_bytes += len(payload)
                        on_message(payload)
                    else:
                        try:
                            text = payload.decode()
                        except UnicodeDecodeError:
                            self.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
                            return
                        self._rx_text += 1
                        self._rx_text_bytes += len(payload)
                        on_message(text)
                else:
                    self._frag = [frame.payload]
                    self._frag_op = op
                    self._frag_rsv = frame.rsv
            elif op == 0:
                frag = self._frag
                if frag is None:                    # the parser prevents this; be safe
                    self.fail(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                    return
                frag.append(frame.payload)
                if frame.fin:
                    self._frag = None
                    if self._state is not OPEN:
                        continue
                    payload = b"".join(frag)
                    op = self._frag_op
                    if self._frag_rsv:
                        payload = self._decode(self._frag_rsv, op, payload)
                        if payload is None:
                            return
                    if op == 1:
                        try:
                            text = payload.decode()
                        except UnicodeDecodeError:
                            self.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
                            return
                        self._rx_text += 1
                        self._rx_text_bytes += len(payload)
                        on_message(text)
                    else:
                        self._rx_binary += 1
                        self._rx_binary_bytes += len(payload)
                        on_message(payload)
            elif op == 9:
                self._count_control("ping_in", len(frame.payload))
                if self._state is OPEN:
                    self._queue_control(0x8A, frame.payload)
                    self._count_control("pong_out", len(frame.payload))
                self.on_ping(frame.payload)
            elif op == 10:
                self._count_control("pong_in", len(frame.payload))
                self._pong_received(frame.payload)
            else:
                self._close_frame_received(frame.payload)

    def receive_eof(self) -> None:
        """The peer closed its sending side (TCP FIN)."""
        if self._state is CLOSED or self._io is None:
            return
        self._io.close(self)

    def eof_received(self) -> bool:
        """Transport callback: after a close handshake this is the expected end;
        before it, the peer vanished (reported as 1006 by ``connection_lost``)."""
        return False     # let the transport close our side

    def _decode(self, rsv: int, op: int, payload: bytes) -> Optional[bytes]:
        # Each extension stops at max_message_size while it decodes (a small
        # compressed message must not make us hold more than the limit).
        size = self._options.max_message_size
        try:
            for ext in reversed(self._extensions):
                payload = ext.decode(rsv, op, payload, size)
        except ProtocolError as exc:
            self.fail(exc.close_code, str(exc))
            return None
        except Exception as exc:   # a broken extension: internal error, not the peer's
            self.fail(CloseCode.INTERNAL_ERROR, f"extension failed: {exc}")
            return None
        if size is not None and len(payload) > size:
            self.fail(CloseCode.MESSAGE_TOO_BIG, "message too big after decoding")
            return None
        return payload

    def _close_frame_received(self, payload: bytes) -> None:
        n = len(payload)
        code: int
        if n == 0:
            code, reason = CloseCode.NO_STATUS_RCVD, ""
        elif n == 1:
            self.fail(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
            return
        else:
            code = (payload[0] << 8) | payload[1]
            if not is_valid_close_code(code):
                self.fail(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in close reason")
                return
        self._close_received = True
        self.close_code = code
        self.close_reason = reason
        if not self._close_sent:
            # Echo the peer's code (and reason) back, as websockets does: an
            # empty close is answered with an empty close.
            self._close_sent = True
            self._sent_code = code
            self._queue_control(0x88, payload)
        self._transition(CLOSE_RECEIVED)
        self._frag = None
        self._finish_closing()

    def _finish_closing(self) -> None:
        """Both close frames are exchanged: the server ends TCP, the client waits.

        The server closes *lingering*: it half-closes (FIN after everything
        queued), then reads and discards until the peer's FIN, bounded by
        ``close_timeout``. A plain ``close()`` with unread bytes still
        arriving (say, a ping the peer sent after its close frame) makes
        Linux answer with RST, which discards whatever we had not sent yet —
        the tail of an echo, or our close frame."""
        self._cancel_ping()
        self._parser = None            # nothing after the peer's close frame matters
        if self._out:
            self._flush()
        if not self._client and not self._linger():
            return
        self._arm_close_timer()

    def _linger(self) -> bool:
        """The lingering close, once: FIN after everything queued (nothing
        is written after it). False when the seam could not half-close and
        ended the connection instead."""
        if self._eof_sent:
            return True
        self._eof_sent = True
        io = self._io
        return io is not None and io.half_close(self)

    # ------------------------------------------------------------ sending

    def _send_slow(self, message: Data) -> None:
        # send() for everything HandlerCore.send does not frame itself:
        # a closed connection, bytearray/memoryview, extensions, the client.
        payload: Any
        if self._state is not OPEN:
            raise self._closed_error()
        if type(message) is str:
            payload = message.encode()
            b0 = 0x81
        elif type(message) is bytes:
            payload = message
            b0 = 0x82
        elif isinstance(message, (bytearray, memoryview)):
            payload = message if len(message) >= _COALESCE else bytes(message)
            b0 = 0x82
        else:
            raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes-like")
        if b0 == 0x81:
            self._tx_text += 1
            self._tx_text_bytes += len(payload)
        else:
            self._tx_binary += 1
            self._tx_binary_bytes += len(payload)
        message_payload = payload
        if self._extensions:
            payload = bytes(payload)
            rsv = 0
            for ext in self._extensions:
                r, payload = ext.encode(b0 & 0x0F, payload)
                rsv |= r
            b0 |= rsv
        if self._frame_log is not None:
            # As websockets does: a compressed frame is shown decompressed.
            self._log_frame(">", b0 & 0x0F, message_payload, True, b0 & 0x70)
        n = len(payload)
        out = self._out
        if self._client:
            out.append(build_frame(b0 & 0x0F, payload, rsv=b0 & 0x70, mask=True))
        elif n < 126:
            out.append((_H_TEXT if b0 == 0x81 else _H_BINARY)[n] + payload
                       if b0 & 0x70 == 0 else bytes((b0, n)) + payload)
        elif n < _COALESCE:
            out.append(_pack16(b0, 126, n) + payload)
        else:
            out.append(_header(b0, n))
            out.append(payload)
        if not self._batching:
            self._flush()

    def ping(self, payload: Union[bytes, str] = b"") -> None:
        """Send a ping; ``on_pong`` gets the answer and ``latency`` is updated."""
        if self._state is not OPEN:
            raise self._closed_error()
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if self._pings is None:
            self._pings = {}
        self._pings[data] = self._io.time() if self._io is not None else 0.0
        self._queue_control(0x89, data)
        self._count_control("ping_out", len(data))
        if not self._batching:
            self._flush()

    def pong(self, payload: Union[bytes, str] = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat)."""
        if self._state is not OPEN:
            raise self._closed_error()
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > 125:
            raise ValueError("a pong payload is at most 125 bytes")
        self._queue_control(0x8A, data)
        self._count_control("pong_out", len(data))
        if not self._batching:
            self._flush()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; everything sent before is delivered first.

        ``on_close`` follows when the peer answers (or after ``close_timeout``).
        Calling it again, or after the connection closed, does nothing.
        """
        if code != 1000 and not (code in (1001, 1002, 1003) or 1007 <= code <= 1014
                                 or 3000 <= code <= 4999):
            raise ValueError(f"cannot send close code {code}")
        data = code.to_bytes(2, "big") + reason.encode()
        if len(data) > 125:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        if self._state is not OPEN:
            return
        self._send_close(code, data)
        if not self._batching:
            self._flush()

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 7.1.7): send a close with ``code``,
        stop sending, half-close TCP and wait (bounded) for the peer to go."""
        if self._state is CLOSED:
            return
        if self._fail_code is None and not self._close_received:
            self._fail_code = code
            self._fail_reason = reason
        if not self._close_sent:
            data = code.to_bytes(2, "big") + reason.encode()[:123]
            self._send_close(code, data)
        self._transition(FAILED)
        self._frag = None
        self._cancel_ping()
        if self._out:
            self._flush()
        if not self._eof_sent and self._linger():
            self._arm_close_timer()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (reported as 1006)."""
        if self._state is CLOSED:
            return
        self._out.clear()
        if self._io is not None:
            self._io.abort(self)
        else:
            self._connection_closed()

    def data_to_send(self) -> bytes:
        """Sans-I/O: take the bytes written for the peer (on a
        :class:`~fastsock.websocket.seam.SansIOSeam`; with a transport
        they went to it, and this is empty)."""
        io = self._io
        if self._out and not self._batching:
            self._flush()
        return io.data_to_send() if isinstance(io, SansIOSeam) else b""

    # ------------------------------------------------------------ internals

    def _log_frame(self, direction: str, opcode: int, payload: Any,
                   fin: bool = True, rsv: int = 0) -> None:
        # One DEBUG line per frame (only when _frame_log was enabled at attach).
        log_ = self._frame_log
        if log_ is not None:
            log_.debug("%s %s %s", self._log_name(), direction,
                       describe_frame(opcode, payload, fin, rsv))

    def _log_encoded(self, frame: bytes) -> None:
        # A pre-encoded server frame (fastsock.pubsub.fanout): unmasked.
        self._log_frame(">", frame[0] & 0x0F, frame_payload(frame), bool(frame[0] & 0x80),
                        frame[0] & 0x70)

    def _log_name(self) -> str:
        peer = self.remote_address
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return f"{type(self).__name__}@{id(self):x}"

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code if self.close_code is not None else (self._sent_code or CloseCode.ABNORMAL_CLOSURE)
        cls = ConnectionClosedOK if code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY) else ConnectionClosedError
        return cls(code, self.close_reason)

    def _queue_control(self, b0: int, payload: bytes) -> None:
        if self._frame_log is not None:
            self._log_frame(">", b0 & 0x0F, payload)
        if self._client:
            self._out.append(build_frame(b0 & 0x0F, payload, mask=True))
        else:
            self._out.append(bytes((b0, len(payload))) + payload)

    def _send_close(self, code: int, data: bytes) -> None:
        self._close_sent = True
        self._sent_code = code
        self._queue_control(0x88, data)
        self._transition(CLOSE_SENT)
        self._cancel_ping()
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        io = self._io
        if io is None:
            return
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = io.call_later(self._options.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self._state is not CLOSED and self._io is not None:
            self._io.abort(self)

    def _flush(self) -> None:
        out = self._out
        io = self._io
        if io is None or not out:
            return
        if self._eof_sent:          # nothing may follow our close frame
            out.clear()
            return
        io.write(self, out)
        out.clear()

    def _queue_frame(self, frame: bytes) -> None:
        """Queue a pre-encoded frame; written once per loop turn with the others."""
        if self._frame_log is not None:
            self._log_encoded(frame)
        self._out.append(frame)
        if not self._batching:
            self._request_flush()

    def _request_flush(self) -> None:
        # Write _out at the end of this loop turn (now, with no loop).
        if self._flusher is not None:
            self._flusher.add(self)
        else:
            self._flush()

    def _pong_received(self, payload: bytes) -> None:
        pings = self._pings
        sent = pings.pop(payload, None) if pings else None
        if sent is not None and pings is not None:
            self.latency = latency = self._io.time() - sent if self._io is not None else 0.0
            if self.server is not None:
                self.server.ping_answered(latency)
            # Pings are answered in order: older unanswered ones are implied.
            pings.clear()
        self.on_pong(payload)

    def _keepalive(self) -> None:
        # One timer serves both jobs: sending the next ping at ping_interval and
        # failing the connection ping_timeout after an unanswered ping, so a
        # dead peer is noticed after ping_timeout, not at the next interval tick.
        self._ping_timer = None
        if self._state is not OPEN:
            return
        opts = self._options
        io = self._io
        interval = opts.ping_interval
        if io is None or interval is None:
            return
        now = io.time()
        deadline: Optional[float] = None
        if self._pings and opts.ping_timeout:
            deadline = min(self._pings.values()) + opts.ping_timeout
            if now >= deadline:
                self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                return
        if now >= self._next_ping_at:
            if not self._pings:
                self.ping(os.urandom(4))
                if opts.ping_timeout:
                    deadline = now + opts.ping_timeout
            self._next_ping_at = now + interval
        wake = self._next_ping_at if deadline is None else min(self._next_ping_at, deadline)
        self._ping_timer = io.call_later(max(0.0, wake - now), self._keepalive)

    def _cancel_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None

    # transport callbacks ------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # pragma: no cover - the glue attaches
        pass

    def pause_writing(self) -> None:
        self._writing_paused = True
        policy = self._options.slow_peer
        if self.server is not None:
            self.server.write_limit_crossed(policy, self.buffered_amount)
        io = self._io
        if policy == "pause":
            if io is not None and not self._reading_paused:
                self._reading_paused = True
                io.pause_reading(self)
        elif policy == "disconnect":
            # Not from inside the transport's write(): abort on the next turn.
            if io is not None:
                io.call_soon(self.abort)
            else:
                self.abort()
            return
        self.on_pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._reading_paused and self._state is not CLOSED and self._io is not None:
            self._reading_paused = False
            self._io.resume_reading(self)
        self._wake_drain_waiters()
        self.on_drain()

    def drained(self) -> Any:
        """A future of the connection's loop, done once the write buffer is
        back under ``write_low`` (at once if it is not over ``write_limit``),
        or when the connection closes. ``await ws.drained()`` on asyncio;
        ``reactor.run_until_complete(ws.drained())`` or a done callback on
        fastsock's reactor."""
        future = self._create_future()
        if not self._writing_paused or self._state is CLOSED:
            future.set_result(None)
        else:
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(future)
        return future

    def _create_future(self) -> Any:
        # A future of the seam's loop (the coroutine layer waits on these too).
        if self._io is None:
            raise InvalidStateError("cannot wait on a connection before it opens")
        return self._io.create_future()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._connection_closed()

    def _connection_closed(self) -> None:
        if self._state is CLOSED:
            return
        if self._state is CONNECTING:
            self._transition(LOST)
            return
        self._transition(LOST)
        self._parser = None            # HandlerCore.data_received ignores what follows
        self._writing_paused = False
        self._wake_drain_waiters()
        self._cancel_ping()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._frag = None
        for ext in self._extensions:
            release = getattr(ext, "release", None)
            if release is not None:
                release()              # e.g. free zlib's state now, not at GC
        self._out.clear()              # can never be delivered
        if self._fail_code is not None:
            # We failed the connection: report why, not the peer's echo.
            code, reason = self._fail_code, self._fail_reason
            if self.close_code is None:
                self.close_code = CloseCode.ABNORMAL_CLOSURE
        elif self._close_received:
            code = self.close_code if self.close_code is not None else CloseCode.NO_STATUS_RCVD
            reason = self.close_reason
        else:
            code, reason = CloseCode.ABNORMAL_CLOSURE, ""
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        server = self.server
        try:
            self.on_close(code, reason)
        finally:
            if server is not None:
                server.connection_closed(self)   # forget it (ServerState.handlers)


_OPCODE_NAMES = {0: "CONT", 1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}
_LOGGED_CHARS = 60      # of a payload shown in a DEBUG frame line


def describe_frame(opcode: int, payload: Any, fin: bool = True, rsv: int = 0) -> str:
    """One frame as a DEBUG line shows it: ``TEXT 'hello' [5 bytes]``,
    ``BINARY 00 ff… [1024 bytes, continued]``, ``CLOSE 1000 'bye' [5 bytes]``."""
    data = bytes(payload)
    name = _OPCODE_NAMES.get(opcode, f"OPCODE {opcode:#x}")
    if opcode == 1:
        # A UTF-8 character is at most 4 bytes: this head holds the shown ones.
        head = data[:_LOGGED_CHARS * 4].decode(errors="replace")
        cut = len(head) > _LOGGED_CHARS or len(data) > _LOGGED_CHARS * 4
        detail = repr(head[:_LOGGED_CHARS]) + ("…" if cut else "")
    elif opcode == 8 and len(data) >= 2:
        detail = f"{int.from_bytes(data[:2], 'big')} {data[2:].decode(errors='replace')!r}"
    else:
        detail = data[:_LOGGED_CHARS].hex(" ") + ("…" if len(data) > _LOGGED_CHARS else "")
    notes = [f"{len(data)} bytes"]
    if not fin:
        notes.append("continued")
    if rsv:
        notes.append(f"rsv={rsv >> 4:03b}")
    return f"{name} {detail} [{', '.join(notes)}]".replace("  ", " ")


def check_handler(handler: Any) -> None:
    """Raise TypeError unless a factory returned a properly built handler."""
    if not isinstance(handler, WebSocketHandler):
        raise TypeError(f"handler factory returned {type(handler).__name__}, "
                        f"not a WebSocketHandler")
    try:
        handler._state
    except AttributeError:
        raise TypeError(f"{type(handler).__name__}.__init__ must call "
                        f"super().__init__()") from None
