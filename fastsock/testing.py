"""Test helpers for code built on fastsock: no sockets, no real time.

Three pieces, usable alone or together:

- :class:`FakeClock` has the loop methods protocols use for time
  (``time``, ``call_soon``, ``call_later``, ``call_at``, ``create_future``);
  nothing runs until the test calls :meth:`~FakeClock.advance` or
  :meth:`~FakeClock.run_ready`, so keep-alive pings and close timeouts can be
  stepped through by hand, deterministically.
- :class:`FakeTransport` has asyncio's transport shape and records every call
  a protocol makes on it (writes, ``close``, ``abort``, ``write_eof``,
  ``pause_reading``...); the test feeds it bytes with
  :meth:`~FakeTransport.feed` and simulates a slow peer with
  :meth:`~FakeTransport.set_buffer_size`.
- :class:`ConnectionPair` wires two asyncio-shaped protocols together in
  memory: what one writes, the other receives, with TCP's close, half-close
  and reset semantics and real back-pressure (a protocol that pauses reading
  makes its peer's write buffer grow until ``pause_writing``).
  :func:`websocket_pair` builds one with fastsock's real server and client
  handshake protocols, so a :class:`~fastsock.websocket.WebSocketHandler`
  is tested exactly as it runs behind a socket.

Delivery is asynchronous, as on a real loop (``connection_lost``, received
data and done-callbacks come "soon", never from inside the call that caused
them); call :meth:`FakeClock.run_ready` (or :meth:`ConnectionPair.run`) to let
them happen. An exception raised by a callback propagates out of
``advance``/``run_ready`` instead of being logged, so a broken handler fails the
test that triggered it.

The Twisted equivalents (``StringTransport``, ``MemoryReactorClock``) and
h11's ``ConnectionPair`` test helper were the model.
"""
from __future__ import annotations

import abc
import collections
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from ._fakeclock import MAX_CALLBACKS as MAX_CALLBACKS
from ._fakeclock import FakeClock, FakeTimer
from .frame import Frame, FrameParser, build_frame

__all__ = [
    "FakeClock",
    "FakeTimer",
    "FakeTransport",
    "MemoryTransport",
    "ConnectionPair",
    "WebSocketPair",
    "websocket_pair",
    "client_frame",
    "decode_frames",
]

DEFAULT_HIGH_WATER = 64 * 1024      # asyncio's (and fastsock's) default watermarks
DEFAULT_LOW_WATER = 16 * 1024

Address = Any


# ---------------------------------------------------------------- clock
# FakeClock and FakeTimer live in fastsock/_fakeclock.py (the sans-I/O seam
# keeps its timers on the same clock) and are published here.


# ---------------------------------------------------------------- transports


def _deliver(protocol: Any, data: bytes) -> None:
    """Hand ``data`` to a protocol: ``data_received`` or, for a buffered
    protocol, ``get_buffer``/``buffer_updated`` (as many rounds as it takes)."""
    get_buffer = getattr(protocol, "get_buffer", None)
    if get_buffer is None or not callable(getattr(protocol, "buffer_updated", None)):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = memoryview(get_buffer(len(view))).cast("B")
        n = min(len(buf), len(view))
        if n == 0:
            raise RuntimeError(f"{type(protocol).__name__}.get_buffer() returned an empty buffer")
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


class _TransportShape(abc.ABC):
    """What both fake transports share: extra info, protocol, watermarks."""

    def __init__(self, protocol: Any, clock: Any, extra: Optional[Mapping[str, Any]]) -> None:
        self._protocol = protocol
        self._clock = clock
        self._extra: dict[str, Any] = dict(extra or {})
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_LOW_WATER
        self._writing_paused = False
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, in asyncio's order."""
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_watermarks()

    @abc.abstractmethod
    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet delivered (each fake keeps its own count)."""

    def _check_watermarks(self) -> None:
        size = self.get_write_buffer_size()
        if not self._writing_paused and size > self._high:
            self._writing_paused = True
            if self._protocol is not None:
                self._protocol.pause_writing()
        elif self._writing_paused and size <= self._low:
            self._writing_paused = False
            if self._protocol is not None:
                self._protocol.resume_writing()

    def _soon(self, callback: Callable[..., Any], *args: Any) -> None:
        if self._clock is None:
            callback(*args)
        else:
            self._clock.call_soon(callback, *args)


class FakeTransport(_TransportShape):
    """A transport with asyncio's shape that records what its protocol does.

    - Every call is appended to :attr:`calls` as a tuple, in order:
      ``("write", data)``, ``("writelines", [chunks])``, ``("write_eof",)``,
      ``("close",)``, ``("abort",)``, ``("pause_reading",)``,
      ``("resume_reading",)``, ``("set_write_buffer_limits", high, low)``.
    - Written bytes accumulate in :attr:`data`; :meth:`take` returns and
      clears them. A write after ``write_eof`` raises ``RuntimeError`` (as
      asyncio does); a write after ``close``/``abort`` is dropped and counted
      in :attr:`dropped_writes` (asyncio drops it too).
    - ``close`` and ``abort`` deliver ``protocol.connection_lost(None)``
      once: through ``clock.call_soon`` when a clock is given (asyncio's
      order), else at once.
    - The test plays the peer: :meth:`feed`, :meth:`feed_eof`,
      :meth:`lose_connection`, and :meth:`set_buffer_size` for a peer that
      does not read (the protocol gets ``pause_writing``/``resume_writing``
      at the watermarks).
    """

    def __init__(self, protocol: Any = None, *, clock: Any = None,
                 peername: Address = ("127.0.0.1", 54321), sockname: Address = ("127.0.0.1", 8765),
                 extra: Optional[Mapping[str, Any]] = None) -> None:
        info = {"peername": peername, "sockname": sockname}
        info.update(extra or {})
        super().__init__(protocol, clock, info)
        self.data = bytearray()
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False          # close() or abort() was called (or the peer went away)
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.dropped_writes = 0
        self.buffer_size = 0         # what get_write_buffer_size() reports; see set_buffer_size()
        self._lost = False
        self._paused_input: list[Union[bytes, None]] = []   # fed while reading was paused; None = EOF

    # what a protocol calls -----------------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        self.calls.append(("write", data))
        self._append(data)

    def writelines(self, chunks: Iterable[Union[bytes, bytearray, memoryview]]) -> None:
        chunks = [bytes(c) for c in chunks]
        self.calls.append(("writelines", chunks))
        self._append(b"".join(chunks))

    def _append(self, data: bytes) -> None:
        if self.eof_written:
            raise RuntimeError("cannot call write() after write_eof()")
        if self.closed:
            self.dropped_writes += 1
            return
        self.data += data

    def write_eof(self) -> None:
        self.calls.append(("write_eof",))
        self.eof_written = True

    def close(self) -> None:
        self.calls.append(("close",))
        self._shut(None)

    def abort(self) -> None:
        self.calls.append(("abort",))
        self.aborted = True
        self._shut(None)

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading",))
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append(("resume_reading",))
        self.reading = True
        pending, self._paused_input = self._paused_input, []
        for item in pending:
            if not self.reading:        # paused again while catching up
                self._paused_input.append(item)
            elif item is None:
                self.feed_eof()
            else:
                self.feed(item)

    def is_reading(self) -> bool:
        return self.reading and not self.closed

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        self.calls.append(("set_write_buffer_limits", high, low))
        super().set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    # what the test calls (playing the peer) --------------------------------------

    def take(self) -> bytes:
        """The bytes written since the last ``take()``."""
        out = bytes(self.data)
        self.data.clear()
        return out

    def feed(self, data: bytes) -> None:
        """The peer sent ``data``: delivered to the protocol now, or kept
        until ``resume_reading`` while reading is paused. Then, as at the end
        of a loop turn, the clock's callbacks that are due now run: that is
        when a WebSocket handler writes its replies."""
        if self.closed:
            raise RuntimeError("cannot feed data to a closed transport")
        if not self.reading:
            self._paused_input.append(bytes(data))
            return
        _deliver(self._protocol, bytes(data))
        run_ready = getattr(self._clock, "run_ready", None)
        if run_ready is not None:
            run_ready()

    def feed_eof(self) -> None:
        """The peer half-closed (TCP FIN): ``eof_received``; a false answer
        closes the transport, as asyncio does."""
        if self.closed:
            raise RuntimeError("cannot feed EOF to a closed transport")
        if not self.reading:
            self._paused_input.append(None)
            return
        if not self._protocol.eof_received():
            self.close()

    def lose_connection(self, exc: Optional[BaseException] = None) -> None:
        """The connection broke under the protocol (e.g. a reset): ``connection_lost(exc)``."""
        self._shut(exc)

    def set_buffer_size(self, size: int) -> None:
        """Pretend ``size`` bytes wait in the kernel-side buffer: the protocol
        gets ``pause_writing`` above the high watermark and ``resume_writing``
        at the low one, as from a real transport."""
        if size < 0:
            raise ValueError("size must be >= 0")
        self.buffer_size = size
        self._check_watermarks()

    def _shut(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self._closing = True
        if not self._lost:
            self._lost = True
            if self._protocol is not None:
                self._soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FakeTransport {state} {len(self.data)} bytes unread, {len(self.calls)} calls>"


class MemoryTransport(_TransportShape):
    """One end of a :class:`ConnectionPair`; asyncio's stream transport shape.

    Writes queue bytes for the peer; they count in ``get_write_buffer_size``
    until the pair delivers them (on the next :meth:`ConnectionPair.run`, or
    later while the peer has paused reading), with ``pause_writing`` /
    ``resume_writing`` at the watermarks.
    """

    def __init__(self, pair: "ConnectionPair", protocol: Any, clock: Any,
                 extra: Mapping[str, Any]) -> None:
        super().__init__(protocol, clock, extra)
        self._pair = pair
        self.peer: MemoryTransport = self     # set by the pair
        self._outbox: collections.deque[bytes] = collections.deque()
        self._outbox_size = 0
        self._fin_queued = False      # write_eof() or close(): FIN follows the queued bytes
        self._fin_sent = False
        self._reading = True
        self._lost = False            # connection_lost was scheduled
        self._flush_scheduled = False
        self.bytes_sent = 0
        self.dropped_writes = 0

    # asyncio's transport API -----------------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._fin_queued and not self._closing:
            raise RuntimeError("cannot call write() after write_eof()")
        if self._closing or self._lost:
            self.dropped_writes += 1
            return
        if not data:
            return
        data = bytes(data)
        self._outbox.append(data)
        self._outbox_size += len(data)
        self._check_watermarks()
        self._schedule_flush()

    def writelines(self, chunks: Iterable[Union[bytes, bytearray, memoryview]]) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        if self._closing or self._fin_queued:
            return
        self._fin_queued = True
        self._schedule_flush()

    def close(self) -> None:
        """Send what is queued, then FIN; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._fin_queued = True
        self._reading = False
        self._schedule_flush()

    def abort(self) -> None:
        """Drop what is queued; both ends lose the connection (the peer sees a reset)."""
        if self._lost:
            return
        self._closing = True
        self._outbox.clear()
        self._outbox_size = 0
        self._lose(None)
        self.peer._lose(ConnectionResetError("connection reset by peer (in-memory abort)"))

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self.peer._schedule_flush()     # what the peer queued meanwhile can come in now

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return self._outbox_size

    # delivery ------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._lost:
            self._flush_scheduled = True
            delay = self._pair.delay
            if delay:
                self._clock.call_later(delay, self._flush)
            else:
                self._soon(self._flush)

    def _flush(self) -> None:
        """Move queued bytes (then the FIN) to the peer, as far as it reads."""
        self._flush_scheduled = False
        if self._lost:
            return
        peer = self.peer
        chunk_size = self._pair.chunk_size
        while self._outbox:
            if peer._lost or peer._closing:
                # Nobody reads on the other side any more: TCP would answer with a reset.
                self._outbox.clear()
                self._outbox_size = 0
                self._lose(ConnectionResetError("connection reset by peer (in-memory: peer closed)"))
                return
            if not peer._reading:
                return                 # peer.resume_reading() schedules the rest
            data = self._outbox.popleft()
            if chunk_size and len(data) > chunk_size:
                self._outbox.appendleft(data[chunk_size:])
                data = data[:chunk_size]
            self._outbox_size -= len(data)
            self.bytes_sent += len(data)
            _deliver(peer._protocol, data)
            self._check_watermarks()
            if self._lost:
                return
        if self._fin_queued and not self._fin_sent:
            self._fin_sent = True
            peer._eof_received()
        if self._closing:
            # close() is done once our FIN is out; whatever the peer still
            # writes is answered with a reset (see above).
            self._lose(None)

    def _eof_received(self) -> None:
        if self._closing:             # closed (or lost) here already: nobody reads the FIN
            return
        if not self._protocol.eof_received():
            self.close()

    def _lose(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._reading = False
        self._soon(self._protocol.connection_lost, exc)

    def __repr__(self) -> str:
        state = "lost" if self._lost else "closing" if self._closing else "open"
        return f"<MemoryTransport {state} {self._outbox_size} bytes queued>"


class ConnectionPair:
    """Two protocols talking through memory, as two ends of one TCP connection.

    ``connection_made`` is called on ``server`` then ``client`` before the
    constructor returns; data then moves when the clock runs (:meth:`run`).
    ``chunk_size`` splits every write into pieces of at most that many bytes
    (``1`` trickles byte by byte: the way to test a parser's partial input).
    ``delay`` is the one-way latency in clock seconds (0: next loop turn);
    bytes written while a delivery is already pending ride along with it.

    ``server_transport`` and ``client_transport`` are the two
    :class:`MemoryTransport` ends. ``clock`` defaults to a new
    :class:`FakeClock`; any loop with ``call_soon`` works (then let that loop
    run instead of calling :meth:`run`).
    """

    def __init__(self, server: Any, client: Any, *, clock: Any = None,
                 chunk_size: Optional[int] = None, delay: float = 0.0,
                 server_address: Address = ("127.0.0.1", 8765),
                 client_address: Address = ("127.0.0.1", 54321)) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be >= 1 or None")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.clock = clock if clock is not None else FakeClock()
        self.chunk_size = chunk_size
        self.delay = delay
        self.server_transport = MemoryTransport(
            self, server, self.clock, {"peername": client_address, "sockname": server_address})
        self.client_transport = MemoryTransport(
            self, client, self.clock, {"peername": server_address, "sockname": client_address})
        self.server_transport.peer = self.client_transport
        self.client_transport.peer = self.server_transport
        server.connection_made(self.server_transport)
        client.connection_made(self.client_transport)

    @property
    def server(self) -> Any:
        """The protocol on the server end now (``set_protocol`` may have replaced it)."""
        return self.server_transport.get_protocol()

    @property
    def client(self) -> Any:
        return self.client_transport.get_protocol()

    @property
    def closed(self) -> bool:
        """Both ends have lost the connection."""
        return self.server_transport._lost and self.client_transport._lost

    def run(self) -> int:
        """Deliver everything that can be delivered now (time does not move)."""
        if not isinstance(self.clock, FakeClock):
            raise RuntimeError("run() drives a FakeClock; with a real loop, let the loop run")
        return self.clock.run_ready()

    def advance(self, seconds: float) -> int:
        """Move the clock forward (timers fire, data moves)."""
        if not isinstance(self.clock, FakeClock):
            raise RuntimeError("advance() drives a FakeClock; with a real loop, let the loop run")
        return self.clock.advance(seconds)


# ---------------------------------------------------------------- WebSocket


def client_frame(opcode: int, payload: Union[bytes, str] = b"", *, fin: bool = True,
                 rsv: int = 0) -> bytes:
    """One masked frame, as a client (a browser) sends it; ``str`` payloads are UTF-8."""
    data = payload.encode() if isinstance(payload, str) else bytes(payload)
    return build_frame(opcode, data, fin=fin, rsv=rsv, mask=True)


def decode_frames(data: bytes, *, masked: bool = False) -> list[Frame]:
    """Parse the frames in ``data``: what a server wrote (``masked=False``)
    or what a client wrote (``masked=True``). Raises the codec's
    :class:`~fastsock.exceptions.ProtocolError` on a malformed stream or on
    bytes left after the last whole frame."""
    parser = FrameParser(require_mask=masked, validate_utf8=False)
    frames = parser.feed(data)
    if parser.error is not None:
        raise parser.error
    leftover = len(data) - _whole_frames_length(data)
    if leftover:
        from .exceptions import FrameError
        raise FrameError(f"{leftover} bytes after the last complete frame (a cut-off frame)")
    return frames


def _whole_frames_length(data: bytes) -> int:
    """How many leading bytes of ``data`` make up whole frames (header walk only)."""
    pos, end = 0, len(data)
    while pos + 2 <= end:
        b1 = data[pos + 1]
        n = b1 & 0x7F
        head = 2
        if n == 126:
            if pos + 4 > end:
                break
            n = int.from_bytes(data[pos + 2:pos + 4], "big")
            head = 4
        elif n == 127:
            if pos + 10 > end:
                break
            n = int.from_bytes(data[pos + 2:pos + 10], "big")
            head = 10
        if b1 & 0x80:
            head += 4
        if pos + head + n > end:
            break
        pos += head + n
    return pos


class WebSocketPair:
    """A WebSocket server handler and client handler, connected in memory
    through fastsock's real opening handshake. Made by :func:`websocket_pair`."""

    def __init__(self, connection: ConnectionPair, state: Any) -> None:
        self.connection = connection
        self.clock: FakeClock = connection.clock
        self.state = state                 # the server's ServerState (routes, hooks, handlers)

    @property
    def server(self) -> Any:
        """The server-side :class:`~fastsock.websocket.WebSocketHandler`."""
        return self.connection.server

    @property
    def client(self) -> Any:
        """The client-side :class:`~fastsock.websocket.WebSocketHandler`."""
        return self.connection.client

    @property
    def closed(self) -> bool:
        return self.connection.closed

    def run(self) -> int:
        """Deliver everything in flight, in both directions."""
        return self.connection.run()

    def advance(self, seconds: float) -> int:
        """Move time: keep-alive pings, close timeouts and handshake timeouts fire."""
        return self.connection.advance(seconds)


def websocket_pair(server_handler: Any, client_handler: Callable[[], Any] | None = None, *,
                   path: str = "/", host: str = "testserver",
                   client_subprotocols: Sequence[str] = (), headers: Sequence[tuple[str, str]] = (),
                   origin: Optional[str] = None, client_options: Any = None,
                   clock: Optional[FakeClock] = None, chunk_size: Optional[int] = None,
                   delay: float = 0.0, **server_kwargs: Any) -> WebSocketPair:
    """Open a WebSocket between ``server_handler`` and ``client_handler`` in memory.

    ``server_handler`` is what :func:`fastsock.serve` takes (a handler class
    or factory, or a ``{path: factory}`` routing dict); ``server_kwargs``
    are :func:`~fastsock.serve`'s keyword arguments (``options=``,
    ``subprotocols=``, ``origins=``, ``process_request=``...).
    ``client_handler`` is a factory for the client side (default: a plain
    :class:`~fastsock.websocket.WebSocketHandler`); ``headers``,
    ``origin``, ``client_subprotocols`` (offered) and ``client_options`` shape
    its request. The handshake runs
    through fastsock's server and client handshake protocols, so routing,
    hooks and rejections behave as over a socket. Returns once both sides
    are open (``on_open`` has run on both). ``chunk_size`` and ``delay`` are
    :class:`ConnectionPair`'s. Raises what the client would
    (:class:`~fastsock.exceptions.InvalidResponseError` with ``.status``
    when the server refuses).
    """
    from .client import ClientHandshakeProtocol
    from .server import ServerState
    from .websocket import WebSocketHandler, parse_uri

    clock = clock if clock is not None else FakeClock()
    state = ServerState(server_handler, clock, **server_kwargs)
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', not {path!r}")
    future = clock.create_future()
    client_proto = ClientHandshakeProtocol(
        parse_uri(f"ws://{host}{path}"), client_handler or WebSocketHandler, clock, future,
        subprotocols=client_subprotocols, headers=headers, origin=origin, options=client_options)
    pair = ConnectionPair(state.protocol_factory(), client_proto, clock=clock,
                          chunk_size=chunk_size, delay=delay)
    # Request, response, on_open on both sides: no time passes without a
    # delay; with one, the two trips take 2 * delay.
    if delay:
        pair.advance(2 * delay)
    else:
        pair.run()
    if not future.done():
        raise RuntimeError("the in-memory WebSocket handshake did not finish "
                           "(a server hook that never answers?)")
    future.result()                 # raises the client's error if the server refused
    return WebSocketPair(pair, state)
