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

import logging
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from .exceptions import InvalidHandshakeError
from .websocket.handshake import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    Request,
    Response,
    accept_response,
    check_request,
    header_tokens,
    http_response,
    is_upgrade_attempt,
    parse_extension_header,
    parse_request,
)
from .websocket.protocol import (
    Extension,
    TurnFlush,
    WebSocketHandler,
    WebSocketOptions,
    broadcast,
    check_handler,
)

__all__ = [
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
ProcessRequest = Callable[[Request], Optional[Response]]


def default_http_handler(request: Request) -> Response:
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
                 origins: Optional[Sequence[Optional[str]]] = None,
                 subprotocols: Sequence[str] = (),
                 extensions: Sequence[Any] = (),
                 process_request: Optional[ProcessRequest] = None,
                 http_handler: Optional[Callable[[Request], Optional[Response]]] = default_http_handler,
                 extra_headers: Union[Sequence[tuple[str, str]], Callable[[Request], Sequence[tuple[str, str]]]] = (),
                 handshake_timeout: float = 10.0,
                 max_head_size: int = MAX_HEAD_SIZE,
                 max_headers: int = MAX_HEADERS) -> None:
        if isinstance(handler, Mapping):
            self.routes: Optional[dict[str, HandlerFactory]] = dict(handler)
            self.default: Optional[HandlerFactory] = None
        else:
            self.routes = None
            self.default = handler
        self.loop = loop
        # One per server: the replies of every connection read in a loop turn
        # are written together at its end (see TurnFlush).
        self.flusher = TurnFlush(loop) if loop is not None else None
        self.options = options or WebSocketOptions()
        self.origins = None if origins is None else set(origins)
        self.subprotocols = tuple(subprotocols)
        self.extensions = tuple(extensions)
        self.process_request = process_request
        self.http_handler = http_handler
        self.extra_headers = extra_headers
        self.handshake_timeout = handshake_timeout
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.handlers: set[WebSocketHandler] = set()
        self.handshakes: set[ServerHandshakeProtocol] = set()
        self.stats = {"accepted": 0, "rejected": 0, "http": 0, "timeouts": 0}

    def protocol_factory(self) -> "ServerHandshakeProtocol":
        return ServerHandshakeProtocol(self)

    def factory_for(self, path: str) -> Optional[HandlerFactory]:
        if self.routes is None:
            return self.default
        return self.routes.get(path) or self.routes.get("*")

    def broadcast(self, message: Union[str, bytes]) -> int:
        """Send one message to every open connection of this server (encoded once)."""
        return broadcast(self.handlers, message)

    # graceful stop --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.handlers) + len(self.handshakes)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
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

    def _lost(self, handler: WebSocketHandler) -> None:
        self.handlers.discard(handler)


class ServerHandshakeProtocol:
    """Reads one HTTP request; upgrades or answers it. asyncio protocol shape."""

    __slots__ = ("state", "transport", "buffer", "timer", "done")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: Any = None
        self.buffer = b""
        self.timer: Any = None
        self.done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.state.handshakes.add(self)
        self.timer = self.state.loop.call_later(self.state.handshake_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        start = max(0, len(self.buffer) - 3)
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self.buffer) > self.state.max_head_size:
                self._reject(431, "request head too large")
            return
        end += 4
        if end > self.state.max_head_size:
            self._reject(431, "request head too large")
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
        self.state.handshakes.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if not self.done:
            self.state.stats["timeouts"] += 1
            self._reject(408, "opening handshake timed out")

    def _respond(self, raw: bytes) -> None:
        """Answer and end the connection with a lingering close: FIN after the
        response, discard what the client still sends, close on its FIN (or
        abort after ``close_timeout``), so a reset cannot eat the response."""
        self._finish()
        transport = self.transport
        transport.write(raw)
        try:
            can_eof = transport.can_write_eof()
        except (AttributeError, NotImplementedError):
            can_eof = False
        if not can_eof:
            transport.close()
            return
        transport.write_eof()
        self.timer = self.state.loop.call_later(self.state.options.close_timeout, transport.abort)

    def _reject(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.state.stats["rejected"] += 1
        self._respond(http_response(status, f"{status} {reason}\n", headers))

    def _handle(self, head: bytes, rest: bytes) -> None:
        state = self.state
        try:
            request = parse_request(head, state.max_headers)
        except InvalidHandshakeError as exc:
            self._reject(exc.status, str(exc))
            return
        if not is_upgrade_attempt(request):
            state.stats["http"] += 1
            response = state.http_handler(request) if state.http_handler else None
            if response is None:
                response = default_http_handler(request)
            self._finish()
            body = b"" if request.method == "HEAD" else response.body
            self._respond(http_response(response.status, body, response.headers))
            return
        try:
            key = check_request(request)
        except InvalidHandshakeError as exc:
            headers = [("Sec-WebSocket-Version", "13")] if exc.status == 426 else []
            if exc.status == 405:
                headers.append(("Allow", "GET"))
            self._reject(exc.status, str(exc), headers)
            return
        factory = state.factory_for(request.path)
        if factory is None:
            self._reject(404, f"no WebSocket endpoint at {request.path}")
            return
        if state.origins is not None and request.headers.get("Origin") not in state.origins:
            self._reject(403, "origin not allowed")
            return
        try:
            if state.process_request is not None:
                response = state.process_request(request)
                if response is not None:
                    state.stats["rejected"] += 1
                    self._respond(http_response(response.status, response.body, response.headers))
                    return
            subprotocol = self._select_subprotocol(request)
            ext_header, extensions = self._negotiate_extensions(request)
            extra = state.extra_headers
            if callable(extra):
                extra = extra(request)
            response_bytes = accept_response(key, subprotocol, ext_header, extra)
            handler = factory()
            check_handler(handler)
        except InvalidHandshakeError as exc:
            self._reject(exc.status, str(exc))
            return
        except Exception:
            log.exception("WebSocket handshake failed on the server side")
            self._reject(500, "internal server error")
            return
        self._finish()
        state.stats["accepted"] += 1
        transport = self.transport
        transport.write(response_bytes)
        handler.server = state
        state.handlers.add(handler)
        transport.set_protocol(handler)
        try:
            handler.attach(transport, state.loop, options=state.options, extensions=extensions,
                           subprotocol=subprotocol, request=request, flusher=state.flusher)
        except Exception:
            log.exception("error in %s.on_open", type(handler).__name__)
            handler.fail(1011, "internal error")
            return
        if rest:
            handler.data_received(rest)

    def _select_subprotocol(self, request: Request) -> Optional[str]:
        offered = header_tokens(request.headers.get("Sec-WebSocket-Protocol"))
        if not offered or not self.state.subprotocols:
            return None
        # Tokens were lower-cased for matching; answer with the server's spelling.
        for proto in self.state.subprotocols:
            if proto.lower() in offered:
                return proto
        return None

    def _negotiate_extensions(self, request: Request) -> tuple[Optional[str], list[Extension]]:
        if not self.state.extensions:
            return None, []
        offers = parse_extension_header(request.headers.get("Sec-WebSocket-Extensions"))
        accepted: list[Extension] = []
        answers: list[str] = []
        used: set[str] = set()
        rsv = 0
        for name, params in offers:
            if name in used:
                continue
            for factory in self.state.extensions:
                if factory.name != name:
                    continue
                result = factory.accept(params)
                if result is None:
                    continue
                answer, ext = result
                if ext.rsv & rsv:
                    continue        # two extensions may not claim the same RSV bit
                rsv |= ext.rsv
                used.add(name)
                accepted.append(ext)
                answers.append(answer)
                break
        return (", ".join(answers) or None), accepted


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

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting and start closing every connection with ``code``."""
        self.tcp_server.close()
        self.state.close_all(code, reason)


def serve(handler: Routes, host: str = "127.0.0.1", port: int = 0, *, reactor: Any,
          backlog: int = 1024, reuse_port: bool = False, **kwargs: Any) -> WebSocketServer:
    """Listen for WebSocket connections on ``reactor``.

    ``handler`` is a :class:`WebSocketHandler` subclass (or any factory
    returning one), or a ``{path: factory}`` dict for routing (unknown paths
    get 404). Other keyword arguments go to :class:`ServerState`; limits go
    in ``options=WebSocketOptions(...)``.
    """
    from .transports.tcp import create_tcp_server

    state = ServerState(handler, reactor, **kwargs)
    tcp = create_tcp_server(reactor, state.protocol_factory, host, port,
                            backlog=backlog, reuse_port=reuse_port)
    server = WebSocketServer(tcp, state)
    reactor.add_shutdown_hook(lambda deadline: server.close())
    return server


def run(handler: Routes, host: str = "127.0.0.1", port: int = 0, *,
        on_ready: Optional[Callable[[WebSocketServer], None]] = None,
        shutdown_timeout: float = 5.0, **kwargs: Any) -> int:
    """Serve on a new fastsock reactor until SIGINT/SIGTERM, then close every
    connection with 1001 (up to ``shutdown_timeout`` seconds) and return 0.

    ``on_ready(server)`` runs once the socket listens (e.g. to print the port).
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
    finally:
        reactor.close()
    return 0
