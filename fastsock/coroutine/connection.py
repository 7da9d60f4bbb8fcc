"""The coroutine face of a WebSocket connection: ``await ws.recv()``, ``async for``.

Two objects make one connection:

- :class:`ConnectionCore` is a :class:`~fastsock.websocket.WebSocketHandler`
  (the same compiled per-message core the callback API runs on). Its
  ``on_message`` appends each whole message to a bounded deque and wakes the
  one waiting ``recv``; nothing else happens per message (no task, no future
  unless a ``recv`` is already waiting). When the deque holds ``max_queue``
  messages it pauses the transport's reading, so the kernel's receive window
  fills and TCP pushes back on the peer; ``recv`` resumes reading once the
  deque is down to a quarter of that.
- :class:`Connection` is what the application holds: the coroutine methods
  (``recv``, ``send``, ``ping``, ``close``...). It is a separate object, not a
  subclass, because the core's synchronous ``send``/``ping``/``close`` are
  what the glue, the keep-alive timer and ``ServerState.close_all`` call.

Works on any asyncio loop: fastsock's, asyncio's and uvloop's.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import uuid
from typing import Any, AsyncIterable, AsyncIterator, Callable, Iterable, Optional, Union

from ..exceptions import ConnectionClosedOK
from ..frame import OP_BINARY, OP_CONTINUATION, OP_TEXT, build_frame
from ..websocket.protocol import CLOSED, OPEN, State, WebSocketHandler

__all__ = ["Connection", "ConnectionCore", "DEFAULT_MAX_QUEUE", "Data", "Dumps", "Loads"]

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


class ConnectionCore(WebSocketHandler):
    """The callback core of one coroutine connection (see the module docstring).

    ``on_start(core)`` runs in ``on_open``: the server uses it to start the
    application's handler.
    """

    __slots__ = ("messages", "max_queue", "_resume_at", "_queue_paused", "waiter",
                 "_closed_waiter", "pong_waiters", "_on_start")

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE,
                 on_start: Optional[Callable[["ConnectionCore"], None]] = None) -> None:
        super().__init__()
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.messages: collections.deque[Data] = collections.deque()
        self.max_queue = max_queue
        self._resume_at = max_queue // _RESUME_DIVISOR
        self._queue_paused = False
        self.waiter: Optional[asyncio.Future[None]] = None
        self._closed_waiter: Optional[asyncio.Future[None]] = None
        # ping payload -> (future resolved with the latency, perf_counter when sent)
        self.pong_waiters: Optional[dict[bytes, tuple[asyncio.Future[float], float]]] = None
        self._on_start = on_start

    # ------------------------------------------------------------ callbacks

    def on_open(self) -> None:
        if self._on_start is not None:
            self._on_start(self)

    def on_message(self, data: Union[str, bytes]) -> None:
        messages = self.messages
        messages.append(data)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(messages) >= self.max_queue and not self._queue_paused:
            self._queue_paused = True
            # Already paused by the slow-peer policy: it must not resume
            # while the queue is full either (see resume_writing).
            if not self._reading_paused and self._transport is not None:
                self._transport.pause_reading()

    def on_pong(self, payload: bytes) -> None:
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
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        closed = self._closed_waiter
        if closed is not None and not closed.done():
            closed.set_result(None)
        waiters, self.pong_waiters = self.pong_waiters, None
        for future, _ in (waiters or {}).values():
            if not future.done():
                future.set_exception(self._closed_error())

    def resume_writing(self) -> None:
        if self._queue_paused:
            # Reading stays paused for the full queue; recv() resumes it.
            self._reading_paused = False
        super().resume_writing()

    # ------------------------------------------------------------ for Connection

    def message_taken(self) -> None:
        """A message left the queue: resume reading once it is low enough."""
        if self._queue_paused and len(self.messages) <= self._resume_at:
            self._queue_paused = False
            if not self._reading_paused and self._state is not CLOSED and self._transport is not None:
                self._transport.resume_reading()

    def closed_waiter(self) -> "asyncio.Future[None]":
        if self._closed_waiter is None:
            self._closed_waiter = self._loop.create_future()
            if self._state is CLOSED:
                self._closed_waiter.set_result(None)
        return self._closed_waiter

    @property
    def queue_paused(self) -> bool:
        """Reading is paused because ``max_queue`` messages wait for ``recv``."""
        return self._queue_paused


class Connection:
    """One WebSocket connection for coroutines (server or client side).

    Receiving: :meth:`recv`, ``async for message in ws``, :meth:`recv_json`.
    Sending: :meth:`send`, :meth:`send_json`. Control: :meth:`ping`,
    :meth:`close`, :meth:`wait_closed`. Attributes: ``id``, ``request``,
    ``subprotocol``, ``remote_address``, ``latency``, ``close_code``,
    ``close_reason``, ``state``, ``core`` (the callback-API object underneath).
    """

    __slots__ = ("core", "id", "dumps", "loads", "_fragmenting", "_receiving", "__weakref__")

    def __init__(self, core: ConnectionCore, *, dumps: Dumps = json.dumps,
                 loads: Loads = json.loads) -> None:
        self.core = core
        self.id = uuid.uuid4()
        self.dumps = dumps
        self.loads = loads
        # done when the fragmented message being sent is complete
        self._fragmenting: Optional[asyncio.Future[None]] = None
        self._receiving = False

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

    # ------------------------------------------------------------ receiving

    async def recv(self, decode: Optional[bool] = None) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        ``decode=True`` returns binary messages decoded as UTF-8,
        ``decode=False`` returns text messages as UTF-8 bytes. Messages that
        arrived before the close are returned first; then it raises
        :class:`ConnectionClosedOK` (1000/1001) or
        :class:`ConnectionClosedError`. Cancelling it loses no message.
        """
        core = self.core
        messages = core.messages
        if not messages:
            if self._receiving:
                raise RuntimeError("cannot call recv while another coroutine is already "
                                   "waiting for the next message")
            if core._state is CLOSED:
                raise core._closed_error()
            waiter: asyncio.Future[None] = core._loop.create_future()
            core.waiter = waiter
            self._receiving = True
            try:
                await waiter
            finally:
                self._receiving = False
                if core.waiter is waiter:
                    core.waiter = None
            if not messages:
                raise core._closed_error()
        message = messages.popleft()
        core.message_taken()
        if decode is None:
            return message
        if decode:
            return message if type(message) is str else message.decode()   # type: ignore[union-attr]
        return message.encode() if type(message) is str else message

    def __aiter__(self) -> AsyncIterator[Data]:
        return self

    async def __anext__(self) -> Data:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def recv_json(self, *, loads: Optional[Loads] = None) -> Any:
        """The next message parsed with ``loads`` (default: the connection's, ``json.loads``)."""
        return (loads or self.loads)(await self.recv())

    # ------------------------------------------------------------ sending

    async def send(self, message: Union[Fragment, Iterable[Fragment], AsyncIterable[Fragment]]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary, an iterable
        or async iterable of fragments (all ``str`` or all bytes-like) as one
        fragmented message.

        Returns at once unless the write buffer is over its high watermark
        (``write_limit``): then it waits until it is back under ``write_low``.
        Raises :class:`~fastsock.exceptions.ConnectionClosed` once closing started.
        """
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
        done: asyncio.Future[None] = core._loop.create_future()
        self._fragmenting = done
        try:
            if core._extensions:
                # Extensions encode whole messages: join, then send one message.
                parts = [f async for f in _aiter(fragments)]
                if parts:
                    if any(isinstance(p, str) for p in parts) and not all(isinstance(p, str) for p in parts):
                        raise TypeError("fragments must be all str or all bytes-like")
                    joined = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
                    WebSocketHandler.send(core, joined)
                return
            opcode = 0
            total = 0
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
                    self._write_frame(OP_CONTINUATION if total else opcode, previous, fin=False)
                    total += len(previous)
                    if core._writing_paused:
                        await core.drained()
                previous = payload
            if previous is None:
                return            # an empty iterable sends nothing
            self._write_frame(OP_CONTINUATION if total else opcode, previous, fin=True)
            total += len(previous)
            if opcode == OP_TEXT:
                core._tx_text += 1
                core._tx_text_bytes += total
            else:
                core._tx_binary += 1
                core._tx_binary_bytes += total
        finally:
            self._fragmenting = None
            done.set_result(None)

    def _write_frame(self, opcode: int, payload: bytes, *, fin: bool) -> None:
        core = self.core
        if core._state is not OPEN:
            raise core._closed_error()
        core._out.append(build_frame(opcode, payload, fin=fin, mask=core._client))
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
        future: asyncio.Future[float] = core._loop.create_future()
        # perf_counter: uvloop's loop.time() counts whole milliseconds
        waiters[payload] = (future, time.perf_counter())
        return await future

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (if not started) and wait until the connection is closed."""
        self.core.close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (TCP gone)."""
        await asyncio.shield(self.core.closed_waiter())


async def _aiter(items: Union[Iterable[Fragment], AsyncIterable[Fragment]]) -> AsyncIterator[Fragment]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
