"""WebSocket server glue: the opening handshake on a transport, then the handler.

:class:`ServerHandshakeProtocol` has asyncio's protocol shape. It reads the
request head (bounded size, header count and time), answers plain HTTP
requests and bad upgrades with a proper HTTP/1.1 response, runs the hooks
(route, Origin, ``process_request``, subprotocol, extensions), writes
``101 Switching Protocols`` and then hands the transport to a fresh
:class:`~fastsock.websocket.WebSocketHandler` with ``transport.set_protocol``
so that every later byte goes straight to the handler (no extra hop on the
hot path). The same protocol runs on fastsock's reactor (:func:`serve`) and
on asyncio/uvloop (:func:`fastsock.adapters.aio.serve`).
"""
from __future__ import annotations

import asyncio
import bisect
import inspect
import logging
import ssl as _ssl
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Union, cast

from .frame import CloseCode
from .websocket.handshake import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    Request,
    Response,
    http_response,
)
from .websocket.server_handshake import (
    HTTP,
    PENDING,
    REJECT,
    HandshakePolicy,
    HandshakeRequest,
    OriginItem,
    SelectSubprotocol,
    ServerHandshake,
)
from .websocket.extensions.permessage_deflate import Compression, server_factories
from .pubsub.fanout import broadcast
from .websocket.seam import TransportSeam, half_close
from .websocket.protocol import (
    CLOSING,
    COUNTER_FIELDS,
    OPEN,
    SLOW_PEER_POLICIES,
    Extension,
    TurnFlush,
    WebSocketHandler,
    WebSocketOptions,
    check_handler,
    sum_counters,
)

__all__ = [
    "HANDSHAKE_FAILURES",
    "Histogram",
    "PING_RTT_BUCKETS",
    "BROADCAST_BUCKETS",
    "close_code_label",
    "ServerState",
    "ServerHandshakeProtocol",
    "WebSocketServer",
    "serve",
    "run",
    "default_http_handler",
]

log = logging.getLogger("fastsock.server")

HandlerFactory = Callable[[], WebSocketHandler]
Routes = Union[HandlerFactory, Mapping[str, HandlerFactory]]
# process_request(request) -> None (go on) | Response (answer that instead);
# may be a coroutine function (awaited on the loop). It may set
# request.state.<name>; the handler reads ws.request.state.<name>.
ProcessRequest = Callable[[HandshakeRequest], Union[Optional[Response], Awaitable[Optional[Response]]]]


# Why an opening handshake failed: the bounded label set of the metric.
HANDSHAKE_FAILURES = (
    "timeout",          # 408: the request head did not arrive in handshake_timeout
    "head_too_large",   # 431: over max_head_size
    "bad_request",      # 400: not parseable HTTP/1.1
    "bad_upgrade",      # 400/405/426: an upgrade request RFC 6455 does not accept
    "no_route",         # 404: no handler for the path
    "origin",           # 403: Origin not allowed
    "process_request",  # the process_request hook answered instead
    "negotiation",      # a subprotocol/extension hook refused
    "internal",         # 500: a hook or handler factory raised
)

# Histogram bounds (seconds). Pings cross a network; a broadcast only queues
# one frame per connection, so it is measured in microseconds to tens of ms.
PING_RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0)
BROADCAST_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                     0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# Close codes as metric labels: the RFC's own codes each, the application
# ranges as one label each, so a peer cannot grow the label set.
_RFC_CLOSE_CODES = frozenset(range(1000, 1016))


def close_code_label(code: int) -> str:
    """The metric label of a close code: ``"1000"``..``"1015"``, ``"3xxx"``,
    ``"4xxx"`` or ``"other"``."""
    if code in _RFC_CLOSE_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "other"


CLOSE_CODE_LABELS = tuple(str(c) for c in sorted(_RFC_CLOSE_CODES)) + ("3xxx", "4xxx", "other")


class Histogram:
    """Observations counted into fixed buckets (Prometheus ``le`` semantics:
    a value equal to a bound falls in that bound's bucket). ``counts`` has one
    more slot than ``bounds``: the +Inf bucket. Not cumulative."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict[str, Any]:
        """``{"buckets": [(le, cumulative count), ..., ("+Inf", n)], "count", "sum"}``."""
        buckets: list[tuple[Union[float, str], int]] = []
        total = 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            buckets.append((bound if bound != float("inf") else "+Inf", total))
        return {"buckets": buckets, "count": total, "sum": self.sum}


def default_http_handler(request: Union[Request, HandshakeRequest]) -> Response:
    """A plain HTTP request (no Upgrade) on a WebSocket port: say what this is."""
    return Response(426, [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                    "426 Upgrade Required: this is a WebSocket endpoint\n")


class ServerState:
    """Everything the connections of one server share: routes, hooks, limits,
    the live handlers (for broadcast and a graceful stop).

    ``close_all`` (1001 to every open WebSocket) and ``abort_all`` are what a
    graceful stop uses; ``len(state)`` counts connections not yet gone.
    """

    def __init__(self, handler: Routes, loop: Any, *,
                 options: Optional[WebSocketOptions] = None,
                 origins: Optional[Sequence[OriginItem]] = None,
                 subprotocols: Sequence[str] = (),
                 select_subprotocol: Optional[SelectSubprotocol] = None,
                 extensions: Sequence[Any] = (),
                 compression: Compression = "deflate",
                 process_request: Optional[ProcessRequest] = None,
                 http_handler: Optional[Callable[[Any], Optional[Response]]] = default_http_handler,
                 extra_headers: Union[Sequence[tuple[str, str]], Callable[[HandshakeRequest], Sequence[tuple[str, str]]]] = (),
                 handshake_timeout: float = 10.0,
                 max_head_size: int = MAX_HEAD_SIZE,
                 max_headers: int = MAX_HEADERS,
                 logger: Optional[Union[logging.Logger, str]] = None) -> None:
        # Routing, Origin, subprotocol and extension policy: sans-I/O, decided
        # by ServerHandshake objects (fastsock/websocket/server_handshake.py).
        self.policy = HandshakePolicy(handler, origins=origins, subprotocols=subprotocols,
                                      select_subprotocol=select_subprotocol,
                                      extensions=server_factories(compression, extensions),
                                      extra_headers=extra_headers,
                                      max_headers=max_headers)
        self.loop = loop
        # One per server: the replies of every connection read in a loop turn
        # are written together at its end (see TurnFlush).
        self.flusher = TurnFlush(loop) if loop is not None else None
        # One I/O seam for all its connections (each one's transport is in
        # its compiled core): no seam object per connection.
        self.seam = TransportSeam(loop)
        self.options = options or WebSocketOptions()
        self.process_request = process_request
        self.http_handler = http_handler
        self.handshake_timeout = handshake_timeout
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        # Where each connection logs its frames when that logger is enabled
        # for DEBUG as it opens (None: fastsock.websocket).
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.handlers: set[WebSocketHandler] = set()
        # Handshakes in progress → their deadline (loop.time()), in start order,
        # so deadlines never decrease: one sweep timer per server expires them
        # (a timer per connection cost a heap entry each; C10k connect time).
        self.handshakes: dict[ServerHandshakeProtocol, float] = {}
        self._sweep_timer: Any = None
        # Counters for metrics (fastsock/metrics.py) and stats(). Everything
        # here changes on cold paths only (a connection's start and end, a
        # handshake, a control frame, a broadcast); the per-message counters
        # are fields of each connection, summed when read.
        self.stats = {"accepted": 0, "rejected": 0, "http": 0, "timeouts": 0,
                      "connections": 0, "messages_dropped": 0,
                      "ping_in": 0, "ping_in_bytes": 0, "pong_in": 0, "pong_in_bytes": 0,
                      "ping_out": 0, "ping_out_bytes": 0, "pong_out": 0, "pong_out_bytes": 0,
                      "broadcasts": 0, "broadcast_deliveries": 0}
        self.handshake_failures = dict.fromkeys(HANDSHAKE_FAILURES, 0)
        self.close_codes_sent = dict.fromkeys(CLOSE_CODE_LABELS, 0)
        self.close_codes_received = dict.fromkeys(CLOSE_CODE_LABELS, 0)
        self.slow_peer_actions = dict.fromkeys(SLOW_PEER_POLICIES, 0)
        # the largest write buffer seen: at each write_limit crossing and each snapshot
        self.write_buffer_peak = 0
        self.ping_rtt = Histogram(PING_RTT_BUCKETS)
        self.broadcast_seconds = Histogram(BROADCAST_BUCKETS)
        # the message counters of connections that are gone (COUNTER_FIELDS order)
        self.retired = [0] * len(COUNTER_FIELDS)
        # the TCP listener, where it keeps stats (fastsock's reactor: EMFILE count)
        self.listener: Any = None

    def protocol_factory(self) -> "ServerHandshakeProtocol":
        return ServerHandshakeProtocol(self)

    def _handshake_started(self, hs: "ServerHandshakeProtocol") -> None:
        loop = self.loop
        self.handshakes[hs] = loop.time() + self.handshake_timeout
        if self._sweep_timer is None:
            self._sweep_timer = loop.call_later(self.handshake_timeout, self._sweep)

    def _handshake_done(self, hs: "ServerHandshakeProtocol") -> None:
        handshakes = self.handshakes
        handshakes.pop(hs, None)
        if not handshakes and self._sweep_timer is not None:
            self._sweep_timer.cancel()      # no timer outlives the last handshake
            self._sweep_timer = None

    def _sweep(self) -> None:
        """Time out the handshakes past their deadline; come back at the next one."""
        self._sweep_timer = None
        now = self.loop.time()
        expired = []
        for hs, deadline in self.handshakes.items():
            if deadline > now:
                break
            expired.append(hs)
        for hs in expired:
            hs._timed_out()
        for deadline in self.handshakes.values():
            self._sweep_timer = self.loop.call_at(deadline, self._sweep)
            break

    def factory_for(self, path: str) -> Optional[HandlerFactory]:
        match = self.policy.router.match(path)
        return None if match is None else match[0]

    def broadcast(self, message: Union[str, bytes]) -> int:
        """Send one message to every open connection of this server (encoded once)."""
        return broadcast(self.handlers, message)

    # graceful stop --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.handlers) + len(self.handshakes)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Graceful stop: close every WebSocket with ``code``; drop half-done handshakes."""
        for hs in list(self.handshakes):
            hs.abort()
        for handler in list(self.handlers):
            try:
                handler.close(code, reason)
            except Exception:  # a handler's callback must not stop the shutdown
                log.exception("error while closing %r", handler)

    def abort_all(self) -> None:
        for hs in list(self.handshakes):
            hs.abort()
        for handler in list(self.handlers):
            handler.abort()

    # ConnectionObserver (fastsock/websocket/observer.py): what the
    # connections report. ------------------------------------------------------
    def connection_closed(self, handler: WebSocketHandler) -> None:
        if handler not in self.handlers:
            return
        self.handlers.discard(handler)
        # Keep what the connection counted; record its close codes, with
        # "1006" where no close frame went that way (never on the wire).
        self.retired = [a + b for a, b in zip(self.retired, sum_counters((handler,)))]
        sent = handler._sent_code if handler._close_sent else None
        self.close_codes_sent[close_code_label(CloseCode.ABNORMAL_CLOSURE if sent is None else sent)] += 1
        got = handler.close_code if handler._close_received else None
        self.close_codes_received[close_code_label(CloseCode.ABNORMAL_CLOSURE if got is None else got)] += 1

    def control_frame(self, key: str, size: int) -> None:
        # A ping or pong in or out.
        stats = self.stats
        stats[key] += 1
        stats[key + "_bytes"] += size

    def write_limit_crossed(self, policy: str, buffered: int) -> None:
        # A connection's transport called pause_writing.
        self.slow_peer_actions[policy] += 1
        if buffered > self.write_buffer_peak:
            self.write_buffer_peak = buffered

    def message_dropped(self) -> None:
        self.stats["messages_dropped"] += 1

    def ping_answered(self, seconds: float) -> None:
        self.ping_rtt.observe(seconds)

    def _broadcast_done(self, seconds: float, delivered: int) -> None:
        self.stats["broadcasts"] += 1
        self.stats["broadcast_deliveries"] += delivered
        self.broadcast_seconds.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """Every number the metrics expose, read now (see ``WebSocketServer.stats``).

        ``emfile`` is the TCP listener's ``fd_exhausted`` count where it keeps
        one (fastsock's reactor), else None.
        """
        listener_stats: Optional[Mapping[str, int]] = getattr(self.listener, "stats", None)
        live = list(self.handlers)
        counts = [a + b for a, b in zip(self.retired, sum_counters(live))]
        opened = closing = buffered = biggest = 0
        for h in live:
            state = h._state
            if state is OPEN:
                opened += 1
            elif state is CLOSING:
                closing += 1
            size = h.buffered_amount
            buffered += size
            if size > biggest:
                biggest = size
        if biggest > self.write_buffer_peak:
            self.write_buffer_peak = biggest
        stats = self.stats
        by_type = dict(zip(COUNTER_FIELDS, counts))
        return {
            "connections": {"connecting": len(self.handshakes), "open": opened,
                            "closing": closing},
            "accepts": stats["connections"],
            "emfile": None if listener_stats is None else listener_stats.get("fd_exhausted", 0),
            "handshakes": stats["accepted"],
            "http_requests": stats["http"],
            "handshake_failures": dict(self.handshake_failures),
            "messages_in": {"text": by_type["_rx_text"], "binary": by_type["_rx_binary"],
                            "ping": stats["ping_in"], "pong": stats["pong_in"]},
            "bytes_in": {"text": by_type["_rx_text_bytes"], "binary": by_type["_rx_binary_bytes"],
                         "ping": stats["ping_in_bytes"], "pong": stats["pong_in_bytes"]},
            "messages_out": {"text": by_type["_tx_text"], "binary": by_type["_tx_binary"],
                             "ping": stats["ping_out"], "pong": stats["pong_out"]},
            "bytes_out": {"text": by_type["_tx_text_bytes"], "binary": by_type["_tx_binary_bytes"],
                          "ping": stats["ping_out_bytes"], "pong": stats["pong_out_bytes"]},
            "close_codes_sent": {k: v for k, v in self.close_codes_sent.items() if v},
            "close_codes_received": {k: v for k, v in self.close_codes_received.items() if v},
            "ping_rtt_seconds": self.ping_rtt.snapshot(),
            "broadcasts": stats["broadcasts"],
            "broadcast_deliveries": stats["broadcast_deliveries"],
            "broadcast_seconds": self.broadcast_seconds.snapshot(),
            "slow_peer_actions": dict(self.slow_peer_actions),
            "messages_dropped": stats["messages_dropped"],
            "write_buffer_bytes": buffered,
            "write_buffer_max_bytes": biggest,
            "write_buffer_peak_bytes": self.write_buffer_peak,
        }


class ServerHandshakeProtocol:
    """Reads one HTTP request; upgrades or answers it. asyncio protocol shape.

    The decisions are :class:`~fastsock.websocket.server_handshake.ServerHandshake`'s;
    this glue finds the head, runs the hooks that may await (``process_request``),
    writes what the handshake object answers and hands the transport on.
    """

    __slots__ = ("state", "transport", "buffer", "timer", "done", "pending")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: Any = None
        self.buffer = b""
        self.timer: Any = None
        self.done = False
        # the task awaiting an async process_request, if any
        self.pending: Optional[asyncio.Future[Any]] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.state.stats["connections"] += 1
        self.state._handshake_started(self)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if self.pending is not None:
            # bytes after the head while process_request runs: kept for the handler
            self.buffer += data
            if len(self.buffer) > self.state.max_head_size:
                self._reject(400, "peer sent too much before the handshake finished",
                             why="bad_request")
            return
        if not self.buffer and data.endswith(b"\r\n\r\n") and len(data) <= self.state.max_head_size:
            # the usual case: the whole head in one read and nothing after it
            end = data.find(b"\r\n\r\n")
            if end == len(data) - 4:
                self._handle(data, b"")
                return
        start = max(0, len(self.buffer) - 3)
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self.buffer) > self.state.max_head_size:
                self._reject(431, "request head too large", why="head_too_large")
            return
        end += 4
        if end > self.state.max_head_size:
            self._reject(431, "request head too large", why="head_too_large")
            return
        head, rest = self.buffer[:end], self.buffer[end:]
        self.buffer = b""
        self._handle(head, rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._finish()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def abort(self) -> None:
        self._finish()
        if self.transport is not None:
            self.transport.abort()

    # ----------------------------------------------------------------------------

    def _finish(self) -> None:
        self.done = True
        self.state._handshake_done(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pending = self.pending
        if pending is not None:
            self.pending = None
            if not pending.done():
                pending.cancel()

    def _timed_out(self) -> None:
        if not self.done:
            self.state.stats["timeouts"] += 1
            self._reject(408, "opening handshake timed out", why="timeout")

    def _respond(self, raw: bytes) -> None:
        """Answer and end the connection with a lingering close: FIN after the
        response, discard what the client still sends, close on its FIN (or
        abort after ``close_timeout``), so a reset cannot eat the response."""
        self._finish()
        transport = self.transport
        transport.write(raw)
        if not half_close(transport):
            return
        self.timer = self.state.loop.call_later(self.state.options.close_timeout, transport.abort)

    def _reject(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = (), *,
                why: str) -> None:
        # why: one of HANDSHAKE_FAILURES (the metric's label)
        self.state.stats["rejected"] += 1
        self.state.handshake_failures[why] += 1
        self._respond(http_response(status, f"{status} {reason}\n", headers))

    def _rejected(self, hs: ServerHandshake) -> None:
        assert hs.failure is not None and hs.response is not None
        self.state.stats["rejected"] += 1
        self.state.handshake_failures[hs.failure] += 1
        self._respond(hs.response)

    def _internal_error(self, what: str) -> None:
        log.exception("WebSocket handshake failed on the server side (%s)", what)
        self._reject(500, "internal server error", why="internal")

    def _handle(self, head: bytes, rest: bytes) -> None:
        state = self.state
        hs = ServerHandshake(state.policy, head)
        outcome = hs.outcome
        if outcome is not PENDING:
            if outcome is HTTP:
                self._answer_http(hs)
            else:
                self._rejected(hs)
            return
        hook = state.process_request
        if hook is not None:
            try:
                result = hook(cast(HandshakeRequest, hs.request))
            except Exception:
                self._internal_error("process_request")
                return
            if inspect.isawaitable(result):
                # An async hook runs on the loop; the handshake timer keeps
                # running, and a lost connection cancels it.
                self.buffer = rest
                try:
                    pending = self.pending = asyncio.ensure_future(result, loop=state.loop)
                except Exception:       # a loop that cannot run tasks (a test clock)
                    if inspect.iscoroutine(result):
                        result.close()
                    self._internal_error("process_request returned an awaitable this loop cannot run")
                    return
                pending.add_done_callback(lambda task: self._processed(task, hs))
                return
            if result is not None:
                self._hook_answered(hs, result)
                return
        self._accept(hs, rest)

    def _processed(self, task: "asyncio.Future[Any]", hs: ServerHandshake) -> None:
        if self.done or self.pending is not task:
            return          # timed out, aborted or lost while the hook ran
        self.pending = None
        if task.cancelled():
            self._reject(500, "internal server error", why="internal")
            return
        exc = task.exception()
        if exc is not None:
            log.error("WebSocket handshake failed on the server side (process_request)",
                      exc_info=exc)
            self._reject(500, "internal server error", why="internal")
            return
        result = task.result()
        if result is not None:
            self._hook_answered(hs, result)
            return
        rest, self.buffer = self.buffer, b""
        self._accept(hs, rest)

    def _hook_answered(self, hs: ServerHandshake, response: Any) -> None:
        if not isinstance(response, Response):
            log.error("process_request returned %r; expected None or a Response", response)
            self._reject(500, "internal server error", why="internal")
            return
        hs.reject(response.status, "", list(response.headers), body=response.body)
        self._rejected(hs)

    def _answer_http(self, hs: ServerHandshake) -> None:
        state = self.state
        request = cast(HandshakeRequest, hs.request)
        state.stats["http"] += 1
        try:
            response = state.http_handler(request) if state.http_handler else None
        except Exception:
            self._internal_error("http_handler")
            return
        if response is None:
            response = default_http_handler(request)
        body = b"" if request.method == "HEAD" else response.body
        self._respond(http_response(response.status, body, response.headers))

    def _accept(self, hs: ServerHandshake, rest: bytes) -> None:
        state = self.state
        try:
            response = hs.accept()
            if hs.outcome is REJECT:
                self._rejected(hs)
                return
            handler = cast(HandlerFactory, hs.factory)()
            check_handler(handler)
        except Exception:
            self._internal_error("negotiation or handler factory")
            return
        self._finish()
        state.stats["accepted"] += 1
        transport = self.transport
        transport.write(response)
        handler.server = state
        state.handlers.add(handler)
        transport.set_protocol(handler)
        try:
            handler.attach(transport, state.loop, options=state.options, extensions=hs.extensions,
                           subprotocol=hs.subprotocol, request=hs.request, flusher=state.flusher,
                           seam=state.seam, logger=state.logger)
        except Exception:
            log.exception("error in %s.on_open", type(handler).__name__)
            handler.fail(CloseCode.INTERNAL_ERROR, "internal error")
            return
        if rest:
            handler.data_received(rest)


class WebSocketServer:
    """A listening WebSocket server on fastsock's reactor (see :func:`serve`)."""

    def __init__(self, tcp_server: Any, state: ServerState) -> None:
        self.tcp_server = tcp_server
        self.state = state

    @property
    def addresses(self) -> list[Any]:
        return list(self.tcp_server.addresses)

    @property
    def port(self) -> int:
        return int(self.tcp_server.addresses[0][1])

    @property
    def connections(self) -> set[WebSocketHandler]:
        return self.state.handlers

    def broadcast(self, message: Union[str, bytes]) -> int:
        return self.state.broadcast(message)

    def stats(self) -> dict[str, Any]:
        """The server's metrics, read now, as plain numbers: the same ones
        ``fastsock.metrics`` exposes to Prometheus (docs/metrics.md)."""
        return self.state.snapshot()

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting and start closing every connection with ``code``."""
        self.tcp_server.close()
        self.state.close_all(code, reason)


class _TLSListener:
    """The loop's TLS server (``asyncio.Server`` shape) as :class:`WebSocketServer`
    uses a listener: ``addresses`` and ``close()``."""

    def __init__(self, server: Any) -> None:
        self.server = server

    @property
    def addresses(self) -> list[Any]:
        return [s.getsockname() for s in self.server.sockets]

    def close(self) -> None:
        self.server.close()


def serve(handler: Routes, host: str = "127.0.0.1", port: int = 0, *, reactor: Any,
          backlog: int = 1024, reuse_port: bool = False, sock: Any = None,
          ssl: Optional[_ssl.SSLContext] = None, **kwargs: Any) -> WebSocketServer:
    """Listen for WebSocket connections on ``reactor``.

    ``handler`` is a :class:`WebSocketHandler` subclass (or any factory
    returning one), or a ``{path: factory}`` dict for routing (unknown paths
    get 404). Other keyword arguments go to :class:`ServerState`; limits go
    in ``options=WebSocketOptions(...)``. ``sock``: serve this listening
    socket instead of binding ``host``:``port`` (e.g. a worker's, see
    :mod:`fastsock.workers`). ``ssl``: an ``SSLContext`` with the server's
    certificate: serve wss through the reactor's TLS transport (call
    ``serve`` before the reactor runs, as :func:`run` does).
    """
    from .transports.tcp import create_tcp_server

    state = ServerState(handler, reactor, **kwargs)
    tcp: Any
    if ssl is None:
        tcp = create_tcp_server(reactor, state.protocol_factory, host, port,
                                backlog=backlog, reuse_port=reuse_port, sock=sock)
    else:
        if not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, not {type(ssl).__name__}")
        if reactor.is_running():
            raise RuntimeError("serve(ssl=...) starts listening before the reactor runs; on a "
                               "running loop use the coroutine API (fastsock.serve with an "
                               "async handler) or loop.create_server(state.protocol_factory, ssl=)")
        where: dict[str, Any] = ({"sock": sock} if sock is not None else
                                 {"host": host, "port": port, "reuse_address": True,
                                  "reuse_port": reuse_port or None})
        tcp = _TLSListener(reactor.run_until_complete(reactor.create_server(
            state.protocol_factory, ssl=ssl, backlog=backlog, **where)))
    state.listener = tcp
    server = WebSocketServer(tcp, state)
    reactor.add_shutdown_hook(lambda deadline: server.close())
    return server


def run(handler: Routes, host: str = "127.0.0.1", port: int = 0, *,
        on_ready: Optional[Callable[[WebSocketServer], None]] = None,
        on_shutdown: Optional[Callable[[], Awaitable[Any]]] = None,
        shutdown_timeout: float = 5.0, **kwargs: Any) -> int:
    """Serve on a new fastsock reactor until SIGINT/SIGTERM, then close every
    connection with 1001 (up to ``shutdown_timeout`` seconds) and return 0.

    ``on_ready(server)`` runs once the socket listens (e.g. to print the port).
    ``on_shutdown()``, a coroutine function, is awaited on the loop after the
    connections are closed and before the loop is (e.g. ``hub.aclose``);
    bounded by ``shutdown_timeout``.
    """
    from .reactor import Reactor

    reactor = Reactor()
    try:
        server = serve(handler, host, port, reactor=reactor, **kwargs)
        reactor.install_shutdown_signals(shutdown_timeout)
        if on_ready is not None:
            on_ready(server)
        reactor.run_forever()
        if len(server.state):
            # Whatever did not finish its closing handshake before the deadline.
            server.state.abort_all()
            reactor.run_until(lambda: not len(server.state), timeout=0.5)
        server.tcp_server.close()
        if on_shutdown is not None:
            try:
                reactor.run_until_complete(on_shutdown(), timeout=shutdown_timeout)
            except TimeoutError:
                log.warning("on_shutdown did not finish within %.1fs", shutdown_timeout)
    finally:
        reactor.close()
    return 0
