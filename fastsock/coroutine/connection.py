"""The coroutine face of a WebSocket connection: ``await ws.recv()``, ``async for``.

Two objects make one connection:

- :class:`ConnectionCore` is a :class:`~fastsock.websocket.WebSocketHandler`
  (the same compiled per-message core the callback API runs on). Its
  ``on_message`` hands each whole message to its :class:`Receiver`
  (``_hotpath.pyx``, twin ``_hotpath_py.py``): a bounded deque and the one waiting
  ``recv``. Nothing else happens per message: no task, no Future, no
  ``call_soon``. A waiting handler is resumed at once, inside the turn that
  read the message, so its reply goes out in that turn's one write; a
  ``recv`` with a message queued returns without suspending. When the deque
  holds ``max_queue`` messages the core pauses the transport's reading, so
  the kernel's receive window fills and TCP pushes back on the peer;
  reading resumes once ``recv`` has taken the deque down to a quarter of
  that.
- :class:`Connection` is what the application holds: the coroutine methods
  (``recv``, ``send``, ``ping``, ``close``...). It is a separate object, not a
  subclass, because the core's synchronous ``send``/``ping``/``close`` are
  what the glue, the keep-alive timer and ``ServerState.close_all`` call.

Works on any asyncio loop: fastsock's, asyncio's and uvloop's.

Logging (standard :mod:`logging`, ``fastsock.server`` or ``fastsock.client``
unless ``logger=``): INFO when a connection opens and when it closes, with
its id, peer and close code. DEBUG lines, one per frame in and out, come from
the connection core (``WebSocketHandler._log_frame``) on the same logger,
prefixed with the id: decided once, when the connection opens; a connection
that does not log keeps the compiled paths with no level check per message.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
import uuid
from typing import (Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable,
                    Optional, Union)

from .._switch import compiled
from ..frame import OP_BINARY, OP_CONTINUATION, OP_TEXT, CloseCode, build_frame
from ..websocket.protocol import CLOSED, OPEN, State, WebSocketHandler
from . import _hotpath_py

_hotpath = compiled("._hotpath", __package__)
# The compiled receive path, or its pure-Python twin (FASTSOCK_PURE=1).
Receiver: type[_hotpath_py.Receiver] = _hotpath.Receiver if _hotpath is not None else _hotpath_py.Receiver
Sender: type[_hotpath_py.Sender] = _hotpath.Sender if _hotpath is not None else _hotpath_py.Sender

__all__ = ["Connection", "ConnectionCore", "DEFAULT_MAX_QUEUE", "Data", "Dumps", "Loads",
           "LoggerLike", "Receiver", "get_logger"]

# Received messages held before reading pauses (websockets' default is 16).
DEFAULT_MAX_QUEUE = 16
# Reading resumes when the queue is down to max_queue // this.
_RESUME_DIVISOR = 4
# Random ping payloads: 4 bytes, as the keep-alive uses.
_PING_PAYLOAD_SIZE = 4

Data = Union[str, bytes]
Fragment = Union[str, bytes, bytearray, memoryview]
Dumps = Callable[[Any], Union[str, bytes]]
Loads = Callable[[Union[str, bytes]], Any]
# A logging.Logger, or the name of one.
LoggerLike = Union[logging.Logger, str]

# Default logger names of each side.
SERVER_LOGGER = "fastsock.server"
CLIENT_LOGGER = "fastsock.client"
# Characters of a message shown in a DEBUG line.


def get_logger(logger: Optional[LoggerLike], default: str) -> logging.Logger:
    """``logger`` itself, the logger of that name, or the ``default`` one."""
    if logger is None:
        return logging.getLogger(default)
    if isinstance(logger, str):
        return logging.getLogger(logger)
    return logger


class ConnectionCore(WebSocketHandler):
    """The callback core of one coroutine connection (see the module docstring).

    ``on_start(core)`` runs in ``on_open``: the server uses it to start the
    application's handler.
    """

    # on_message is a slot holding rx.push: the compiled core's call of
    # self.on_message(data) reaches the receiver with no Python frame between.
    __slots__ = ("rx", "on_message", "_closed_waiter", "pong_waiters", "_on_start", "_log_ctx",
                 "_ping_sent")

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE,
                 on_start: Optional[Callable[["ConnectionCore"], None]] = None) -> None:
        super().__init__()
        # the queue and the waiting recv (ValueError unless max_queue >= 1)
        self.rx = Receiver(self, max_queue, max_queue // _RESUME_DIVISOR)
        self.on_message: Callable[[Data], None] = self.rx.push  # type: ignore[assignment]
        self._closed_waiter: Optional[asyncio.Future[None]] = None
        # ping payload -> (future resolved with the latency, perf_counter when sent)
        self.pong_waiters: Optional[dict[bytes, tuple[asyncio.Future[float], float]]] = None
        self._on_start = on_start
        # (logger, connection id, peer), set by Connection: for the close line
        self._log_ctx: Optional[tuple[logging.Logger, str, Any]] = None
        # ping payload -> perf_counter when sent, for every ping (keep-alive's too)
        self._ping_sent: Optional[dict[bytes, float]] = None

    # ------------------------------------------------------------ callbacks

    def on_open(self) -> None:
        if self._on_start is not None:
            self._on_start(self)

    def ping(self, payload: Union[bytes, str] = b"") -> None:
        # The core times pings with loop.time(), which uvloop counts in whole
        # milliseconds (a loopback round trip reads 0.0); perf_counter here.
        WebSocketHandler.ping(self, payload)
        times = self._ping_sent
        if times is None:
            times = self._ping_sent = {}
        times[payload.encode() if isinstance(payload, str) else bytes(payload)] = time.perf_counter()

    def on_pong(self, payload: bytes) -> None:
        times = self._ping_sent
        if times and payload in times:
            self.latency = time.perf_counter() - times[payload]
            times.clear()           # pongs answer pings in order: older ones are implied
        waiters = self.pong_waiters
        if not waiters or payload not in waiters:
            return
        now = time.perf_counter()
        # Pongs answer pings in order: the ones sent before are answered too.
        for key in list(waiters):
            future, sent = waiters.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == payload:
                break

    def on_close(self, code: int, reason: str) -> None:
        ctx = self._log_ctx
        if ctx is not None and ctx[0].isEnabledFor(logging.INFO):
            ctx[0].info("connection closed id=%s peer=%s code=%s reason=%r",
                        ctx[1], _peer(ctx[2]), code, reason)
        self.rx.mark_closed()
        closed = self._closed_waiter
        if closed is not None and not closed.done():
            closed.set_result(None)
        waiters, self.pong_waiters = self.pong_waiters, None
        for future, _ in (waiters or {}).values():
            if not future.done():
                future.set_exception(self._closed_error())

    def resume_writing(self) -> None:
        if self.rx.paused:
            # Reading stays paused for the full queue; recv() resumes it.
            self._reading_paused = False
        super().resume_writing()

    # ------------------------------------------------------------ for Connection

    def _log_name(self) -> str:
        # DEBUG frame lines carry the connection's id (ws.id), as its INFO lines do.
        ctx = self._log_ctx
        return ctx[1] if ctx is not None else WebSocketHandler._log_name(self)

    # ------------------------------------------------------------ for Receiver

    def _queue_full(self) -> None:
        """The queue holds ``max_queue`` messages: pause reading."""
        # Already paused by the slow-peer policy: it must not resume
        # while the queue is full either (see resume_writing).
        if not self._reading_paused and self._io is not None:
            self._io.pause_reading(self)

    def _queue_low(self) -> None:
        """``recv`` took the queue down to a quarter: resume reading."""
        if not self._reading_paused and self._state is not CLOSED and self._io is not None:
            self._io.resume_reading(self)

    def closed_waiter(self) -> "asyncio.Future[None]":
        if self._closed_waiter is None:
            self._closed_waiter = self._create_future()
            if self._state is CLOSED:
                self._closed_waiter.set_result(None)
        return self._closed_waiter

    @property
    def queue_paused(self) -> bool:
        """Reading is paused because ``max_queue`` messages wait for ``recv``."""
        return self.rx.paused

    @property
    def messages(self) -> "collections.deque[Data]":
        """The messages received and not yet taken by ``recv``."""
        return self.rx.messages

    @property
    def max_queue(self) -> int:
        return self.rx.max_queue


class Connection:
    """One WebSocket connection for coroutines (server or client side).

    Receiving: :meth:`recv`, ``async for message in ws``, :meth:`recv_json`.
    Sending: :meth:`send`, :meth:`send_json`. Control: :meth:`ping`,
    :meth:`close`, :meth:`wait_closed`. Attributes: ``id``, ``request``,
    ``response`` (client side: the server's 101, status and headers),
    ``subprotocol``, ``remote_address``, ``latency``, ``close_code``,
    ``close_reason``, ``state``, ``core`` (the callback-API object underneath).

    ``logger`` (a :class:`logging.Logger` or a name; default
    ``fastsock.server`` or ``fastsock.client`` by side) gets the INFO open
    and close lines and, if enabled for DEBUG when the connection is made,
    a DEBUG line per message and control frame.
    """

    # send is a slot holding the compiled Sender's bound send (see _hotpath):
    # `await ws.send(m)` then runs no Python frame and makes no coroutine.
    __slots__ = ("core", "id", "dumps", "loads", "response", "_fragmenting", "_rx", "_tx",
                 "send", "__weakref__")

    send: Callable[[Union[Fragment, Iterable[Fragment], AsyncIterable[Fragment]]],
                   Coroutine[Any, Any, None]]
    """Send a message: ``str`` as text, bytes-like as binary, an iterable or
    async iterable of fragments (all ``str`` or all bytes-like) as one
    fragmented message. ``await`` it: it returns at once unless the write
    buffer is over its high watermark (``write_limit``); then it waits until
    it is back under ``write_low``. Raises
    :class:`~fastsock.exceptions.ConnectionClosed` once closing started. A
    ``str`` or ``bytes`` goes out when ``send`` is called; the result is a
    coroutine (``asyncio.create_task`` takes it) that raises any error."""

    def __init__(self, core: ConnectionCore, *, dumps: Dumps = json.dumps,
                 loads: Loads = json.loads, logger: Optional[LoggerLike] = None) -> None:
        self.core = core
        self.id = uuid.uuid4()
        self.dumps = dumps
        self.loads = loads
        # the handshake Response (client side; set by fastsock.connect)
        self.response: Any = None
        # done when the fragmented message being sent is complete
        self._fragmenting: Optional[asyncio.Future[None]] = None
        self._rx = core.rx
        self._tx = Sender(core, self._send)
        # Set through the slot itself: a subclass may define send (and call
        # super().send) and the slot still holds the fast path.
        _SEND_SLOT.__set__(self, self._tx.send)
        log = get_logger(logger, CLIENT_LOGGER if core._client else SERVER_LOGGER)
        peer = core.remote_address
        core._log_ctx = (log, str(self.id), peer)
        if log.isEnabledFor(logging.INFO):
            request = core.request
            log.info("connection open id=%s peer=%s path=%s subprotocol=%s", self.id,
                     _peer(peer), request.path if request is not None else "-",
                     core.subprotocol)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.core.state.name} {self.remote_address}>"

    # ------------------------------------------------------------ attributes

    @property
    def request(self) -> Any:
        """The handshake :class:`~fastsock.websocket.Request` (server side)."""
        return self.core.request

    @property
    def subprotocol(self) -> Optional[str]:
        return self.core.subprotocol

    @property
    def remote_address(self) -> Any:
        return self.core.remote_address

    @property
    def latency(self) -> Optional[float]:
        """Seconds from the last answered ping (keep-alive or :meth:`ping`) to its pong."""
        return self.core.latency

    @property
    def close_code(self) -> Optional[int]:
        """The code of the peer's close frame once closed (1006 if none came)."""
        return self.core.close_code

    @property
    def close_reason(self) -> str:
        return self.core.close_reason

    @property
    def state(self) -> State:
        return self.core.state

    @property
    def transport(self) -> Any:
        return self.core.transport

    @property
    def server(self) -> Any:
        """The server's :class:`~fastsock.server.ServerState` (``None`` on a client)."""
        return self.core.server

    def _broadcast_frame(self, frame: bytes) -> bool:
        # fastsock.broadcast's fast path, through the core (see protocol.broadcast)
        return self.core._broadcast_frame(frame)

    # ------------------------------------------------------------ receiving

    async def recv(self, decode: Optional[bool] = None) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        ``decode=True`` returns binary messages decoded as UTF-8,
        ``decode=False`` returns text messages as UTF-8 bytes. Messages that
        arrived before the close are returned first; then it raises
        :class:`ConnectionClosedOK` (1000/1001) or
        :class:`ConnectionClosedError`. Cancelling it loses no message.
        """
        message: Data = await self._rx.wait()
        if decode is None:
            return message
        if decode:
            return message if type(message) is str else message.decode()   # type: ignore[union-attr]
        return message.encode() if type(message) is str else message

    def __aiter__(self) -> AsyncIterator[Data]:
        # The receiver itself: each step of `async for` is its compiled
        # __anext__ and am_send, with no coroutine object per message.
        return self._rx

    def __anext__(self) -> Awaitable[Data]:
        return self._rx.__anext__()

    async def recv_json(self, *, loads: Optional[Loads] = None) -> Any:
        """The next message parsed with ``loads`` (default: the connection's, ``json.loads``)."""
        return (loads or self.loads)(await self.recv())

    # ------------------------------------------------------------ sending

    async def _send(self, message: Union[Fragment, Iterable[Fragment], AsyncIterable[Fragment]]) -> None:
        # send() for what the Sender does not take itself: other bytes-likes,
        # fragments, and any message while a fragmented one is being sent.
        core = self.core
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            while self._fragmenting is not None:     # never inside a fragmented message
                await asyncio.shield(self._fragmenting)
            WebSocketHandler.send(core, message)
        elif isinstance(message, dict):
            raise TypeError("cannot send a dict: use send_json")
        elif hasattr(message, "__aiter__") or isinstance(message, Iterable):
            await self._send_fragments(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}: expected str, "
                            f"bytes-like or an iterable of them")
        if core._writing_paused:
            await core.drained()

    async def send_json(self, obj: Any, *, dumps: Optional[Dumps] = None) -> None:
        """Send ``obj`` as a text message made by ``dumps`` (default: the
        connection's, ``json.dumps``; one returning bytes, like orjson's, works)."""
        text = (dumps or self.dumps)(obj)
        await self.send(text.decode() if isinstance(text, bytes) else text)

    async def _send_fragments(self, fragments: Union[Iterable[Fragment], AsyncIterable[Fragment]]) -> None:
        while self._fragmenting is not None:
            await asyncio.shield(self._fragmenting)
        core = self.core
        done: asyncio.Future[None] = core._create_future()
        self._fragmenting = done
        self._tx.fragmenting = True
        try:
            exts = core._extensions
            # permessage-deflate compresses fragment by fragment; any other
            # extension encodes whole messages: join, then send one message.
            streaming = exts[0] if len(exts) == 1 and hasattr(exts[0], "encode_fragment") else None
            if exts and streaming is None:
                parts = [f async for f in _aiter(fragments)]
                if parts:
                    if any(isinstance(p, str) for p in parts) and not all(isinstance(p, str) for p in parts):
                        raise TypeError("fragments must be all str or all bytes-like")
                    joined = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
                    WebSocketHandler.send(core, joined)
                return
            opcode = 0
            total = 0
            first = True
            previous: Optional[bytes] = None
            async for fragment in _aiter(fragments):
                if isinstance(fragment, str):
                    kind, payload = OP_TEXT, fragment.encode()
                elif isinstance(fragment, (bytes, bytearray, memoryview)):
                    kind, payload = OP_BINARY, bytes(fragment)
                else:
                    raise TypeError(f"cannot send a fragment of type {type(fragment).__name__}")
                if previous is None:
                    opcode = kind
                elif kind != opcode:
                    raise TypeError("fragments must be all str or all bytes-like")
                if previous is not None:
                    self._write_frame(OP_CONTINUATION if total else opcode, previous, fin=False,
                                      ext=streaming, first=first)
                    first = False
                    total += len(previous)
                    if core._writing_paused:
                        await core.drained()
                previous = payload
            if previous is None:
                return            # an empty iterable sends nothing
            self._write_frame(OP_CONTINUATION if total else opcode, previous, fin=True,
                              ext=streaming, first=first)
            total += len(previous)
            if opcode == OP_TEXT:
                core._tx_text += 1
                core._tx_text_bytes += total
            else:
                core._tx_binary += 1
                core._tx_binary_bytes += total
        finally:
            self._fragmenting = None
            self._tx.fragmenting = False
            done.set_result(None)

    def _write_frame(self, opcode: int, payload: bytes, *, fin: bool, ext: Any = None,
                     first: bool = False) -> None:
        core = self.core
        if core._state is not OPEN:
            raise core._closed_error()
        rsv = 0
        if core._frame_log is not None:
            core._log_frame(">", opcode, payload, fin)
        if ext is not None:
            rsv, payload = ext.encode_fragment(opcode, payload, first, fin)
        core._out.append(build_frame(opcode, payload, fin=fin, rsv=rsv, mask=core._client))
        if not core._batching:
            core._flush()

    # ------------------------------------------------------------ control

    async def ping(self, data: Union[str, bytes, None] = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds.
        ``data`` defaults to 4 random bytes. Raises ``ConnectionClosed`` if the
        connection closes first."""
        core = self.core
        payload = os.urandom(_PING_PAYLOAD_SIZE) if data is None else (
            data.encode() if isinstance(data, str) else bytes(data))
        waiters = core.pong_waiters
        if waiters is None:
            waiters = core.pong_waiters = {}
        if payload in waiters:
            raise ValueError("already waiting for a pong with this payload")
        core.ping(payload)          # raises ConnectionClosed unless open
        future: asyncio.Future[float] = core._create_future()
        # perf_counter: uvloop's loop.time() counts whole milliseconds
        waiters[payload] = (future, time.perf_counter())
        return await future

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (if not started) and wait until the connection is closed."""
        self.core.close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (TCP gone)."""
        await asyncio.shield(self.core.closed_waiter())


_SEND_SLOT: Any = Connection.__dict__["send"]


def _peer(address: Any) -> str:
    """``host:port`` of a peer address tuple (``[host]:port`` for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)


async def _aiter(items: Union[Iterable[Fragment], AsyncIterable[Fragment]]) -> AsyncIterator[Fragment]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
