"""``fastsock.serve``: a WebSocket server whose handler is a coroutine.

::

    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    async with fastsock.serve(handler, "127.0.0.1", 8765) as server:
        await server.serve_forever()

It runs on the running loop (fastsock's, asyncio's or uvloop's) through
``loop.create_server`` with the same handshake glue as the callback API
(:class:`fastsock.server.ServerState`); ``ssl=`` makes it wss. One task per
connection runs the handler; nothing is scheduled per message.

:func:`serve` also keeps the callback form: given a
:class:`~fastsock.websocket.WebSocketHandler` subclass (or factory, or a
routes dict of them) it is :func:`fastsock.server.serve` on ``reactor=``.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import socket
import ssl as _ssl
from typing import (TYPE_CHECKING, Any, Awaitable, Callable, Generator, Mapping, Optional,
                    Sequence, Union, cast, overload)

from ..exceptions import ConnectionClosed
from ..frame import CloseCode
from ..server import ProcessRequest, ServerState, WebSocketServer, default_http_handler
from ..server import serve as _callback_serve
from ..websocket.extensions.permessage_deflate import Compression
from ..websocket.handshake import MAX_HEAD_SIZE, MAX_HEADERS, Response
from ..websocket.protocol import OPEN, WebSocketHandler, WebSocketOptions
from ..websocket.server_handshake import HandshakeRequest, OriginItem, SelectSubprotocol
from .connection import (DEFAULT_MAX_QUEUE, SERVER_LOGGER, Connection, ConnectionCore, Dumps,
                         LoggerLike, Loads, get_logger)

if TYPE_CHECKING:
    from ..reactor import Reactor

__all__ = ["AnyHandler", "CallbackFactory", "Handler", "Routes", "Server", "serve",
           "is_coroutine_handler"]

Handler = Callable[[Connection], Awaitable[Any]]
# A callback-API handler: a WebSocketHandler subclass or factory.
CallbackFactory = Callable[[], WebSocketHandler]
# What a Server serves: coroutine handlers, callback factories, or routes mixing them.
AnyHandler = Union[Handler, CallbackFactory]
Routes = Union[AnyHandler, Mapping[str, AnyHandler]]
# Close code and reason when the application's handler raises.
INTERNAL_ERROR_REASON = "internal error"
# ServerState's default: seconds for a client to finish the opening handshake.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0


def is_coroutine_handler(handler: Any) -> bool:
    """True for ``async def handler(ws)`` (or an object whose ``__call__`` is
    one, or a ``functools.partial`` of one): the coroutine API. A
    ``WebSocketHandler`` subclass or factory is the callback API."""
    if isinstance(handler, type):
        return False
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))


class Server:
    """A WebSocket server on the running loop (see :func:`serve`): coroutine
    handlers, each run in a task with its :class:`Connection`, and callback
    handlers, run as they are.

    ``async with`` starts it and on exit closes it (1001 to every client,
    bounded by ``options.close_timeout``); ``await serve(...)`` only starts
    it. ``serve_forever()`` waits until :meth:`close`.
    """

    def __init__(self, handler: Routes, host: Optional[str],
                 port: int, *, ssl: Optional[_ssl.SSLContext] = None, backlog: int = 1024,
                 reuse_port: bool = False, sock: Any = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, dumps: Dumps = json.dumps,
                 loads: Loads = json.loads, logger: Optional[LoggerLike] = None,
                 options: Optional[WebSocketOptions] = None, **state_kwargs: Any) -> None:
        self._handler = handler
        self._max_queue = max_queue
        # checked here, so that a wrong handler fails at serve(), not at start
        self._routes: Any = ({path: self._factory(h) for path, h in handler.items()}
                             if isinstance(handler, Mapping) else self._factory(handler))
        self._host = host
        self._port = port
        self._ssl = ssl
        self._backlog = backlog
        self._reuse_port = reuse_port
        self._sock = sock
        self._max_queue = max_queue
        self._dumps = dumps
        self._loads = loads
        self._log = get_logger(logger, SERVER_LOGGER)
        self._options = options or WebSocketOptions()
        self._state_kwargs = state_kwargs
        self.state: Optional[ServerState] = None
        self.server: Any = None          # the loop's server (asyncio.Server shape)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: dict[ConnectionCore, Connection] = {}
        self._closed: Optional[asyncio.Future[None]] = None

    # ------------------------------------------------------------ start

    async def start(self) -> "Server":
        """Listen on the running loop."""
        if self.server is not None:
            return self
        loop = asyncio.get_running_loop()
        state = ServerState(self._routes, loop, options=self._options, logger=self._log,
                            **self._state_kwargs)
        factory = cast(Callable[[], asyncio.Protocol], state.protocol_factory)
        if self._sock is not None:
            server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog,
                                              ssl=self._ssl)
        else:
            server = await loop.create_server(factory, self._host, self._port,
                                              backlog=self._backlog, ssl=self._ssl,
                                              reuse_address=True,
                                              reuse_port=self._reuse_port or None)
        self.state = state
        state.listener = server
        self.server = server
        self._closed = loop.create_future()
        return self

    def _factory(self, handler: AnyHandler) -> Callable[[], WebSocketHandler]:
        if not is_coroutine_handler(handler):
            if not callable(handler):
                raise TypeError(f"{handler!r} is neither a coroutine function nor a "
                                f"WebSocketHandler factory")
            # The callback API: ServerState builds and runs it as it is.
            return cast(CallbackFactory, handler)
        coroutine = cast(Handler, handler)
        max_queue = self._max_queue

        def on_start(core: ConnectionCore) -> None:
            self._start_handler(coroutine, core)

        return lambda: ConnectionCore(max_queue, on_start)

    def _start_handler(self, handler: Handler, core: ConnectionCore) -> None:
        conn = Connection(core, dumps=self._dumps, loads=self._loads, logger=self._log)
        connections = self._connections
        connections[core] = conn
        # The task runs the handler's coroutine itself, with no wrapper
        # coroutine around it: every resumption of the handler (one per
        # message) would go through the wrapper's frame too. What the
        # wrapper did at the end is _handler_done, a done callback.
        task = asyncio.ensure_future(handler(conn), loop=core._loop)   # the seam's loop
        self._tasks.add(task)
        task.add_done_callback(lambda task: self._handler_done(conn, task))
        core.closed_waiter().add_done_callback(lambda _: connections.pop(core, None))

    def _handler_done(self, conn: Connection, task: "asyncio.Future[Any]") -> None:
        """The handler returned or raised: close the connection (1000 if it
        returned, 1011 if it raised, 1001 if it was cancelled)."""
        self._tasks.discard(task)
        core = conn.core
        if task.cancelled():
            core.close(CloseCode.GOING_AWAY, "server shutting down")
            return
        error = task.exception()
        if error is None:
            core.close()            # 1000; does nothing if closing already started
        elif isinstance(error, ConnectionClosed):
            pass                    # the peer went away while the handler used the connection
        elif isinstance(error, Exception):
            self._log.error("connection handler failed (%s %s)", conn.id, conn.remote_address,
                            exc_info=error)
            if core._state is OPEN:
                core.close(CloseCode.INTERNAL_ERROR, INTERNAL_ERROR_REASON)

    # ------------------------------------------------------------ use

    @property
    def sockets(self) -> Any:
        return self.server.sockets

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> list[Connection]:
        """The connections whose handler is running."""
        return list(self._connections.values())

    @property
    def handlers(self) -> set[WebSocketHandler]:
        """The connection cores (``fastsock.broadcast(server.handlers, msg)``)."""
        return self.state.handlers if self.state is not None else set()

    def broadcast(self, message: Union[str, bytes]) -> int:
        """Send one message to every open connection (encoded once); returns how many got it."""
        return self.state.broadcast(message) if self.state is not None else 0

    def stats(self) -> dict[str, Any]:
        """The server's metrics as plain numbers (see ``WebSocketServer.stats``)."""
        if self.state is None:
            raise RuntimeError("the server has not started")
        return self.state.snapshot()

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` (cancelling it closes the server)."""
        if self._closed is None:
            await self.start()
        assert self._closed is not None
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting and start closing every connection with ``code``."""
        if self.server is not None:
            self.server.close()
        if self.state is not None:
            self.state.close_all(code, reason)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self, timeout: Optional[float] = None) -> None:
        """Wait until every connection is closed and every handler returned;
        after ``timeout`` (default ``options.close_timeout``) abort the rest
        and cancel their handlers."""
        if self.state is None:
            return
        if timeout is None:
            timeout = self._options.close_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = self.state
        while (len(state) or self._tasks) and loop.time() < deadline:
            await asyncio.sleep(_POLL_INTERVAL)
        if len(state):
            state.abort_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self.server.wait_closed()

    async def __aenter__(self) -> "Server":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    def __await__(self) -> Generator[Any, None, "Server"]:
        return self.start().__await__()


# How often wait_closed looks whether the connections are gone.
_POLL_INTERVAL = 0.01


# The callback form: WebSocketHandler factories (classes), or {path: factory}.
CallbackRoutes = Union[Callable[[], WebSocketHandler], Mapping[str, Callable[[], WebSocketHandler]]]
# The request these hooks get is the handshake's request object.
ExtraHeaders = Union[Sequence[tuple[str, str]], Callable[[HandshakeRequest], Sequence[tuple[str, str]]]]
HttpHandler = Optional[Callable[[Any], Optional[Response]]]


@overload
def serve(handler: Routes, host: Optional[str] = ...,
          port: int = ..., *, ssl: Optional[_ssl.SSLContext] = ..., backlog: int = ...,
          reuse_port: bool = ..., sock: Optional[socket.socket] = ..., max_queue: int = ...,
          dumps: Dumps = ..., loads: Loads = ..., logger: Optional[LoggerLike] = ...,
          options: Optional[WebSocketOptions] = ...,
          origins: Optional[Sequence[OriginItem]] = ..., subprotocols: Sequence[str] = ...,
          select_subprotocol: Optional[SelectSubprotocol] = ...,
          extensions: Sequence[Any] = ..., compression: Compression = ...,
          process_request: Optional[ProcessRequest] = ...,
          http_handler: HttpHandler = ..., extra_headers: ExtraHeaders = ...,
          handshake_timeout: float = ..., max_head_size: int = ...,
          max_headers: int = ...) -> Server: ...


@overload
def serve(handler: CallbackRoutes, host: Optional[str] = ..., port: int = ..., *,
          reactor: "Reactor", ssl: Optional[_ssl.SSLContext] = ..., backlog: int = ...,
          reuse_port: bool = ...,
          sock: Optional[socket.socket] = ..., options: Optional[WebSocketOptions] = ...,
          origins: Optional[Sequence[OriginItem]] = ..., subprotocols: Sequence[str] = ...,
          select_subprotocol: Optional[SelectSubprotocol] = ...,
          extensions: Sequence[Any] = ..., compression: Compression = ...,
          process_request: Optional[ProcessRequest] = ...,
          http_handler: HttpHandler = ..., extra_headers: ExtraHeaders = ...,
          handshake_timeout: float = ..., max_head_size: int = ...,
          max_headers: int = ...) -> WebSocketServer: ...


def serve(handler: Any, host: Optional[str] = "127.0.0.1", port: int = 0, *,
          reactor: Optional["Reactor"] = None,
          ssl: Optional[_ssl.SSLContext] = None, backlog: int = 1024, reuse_port: bool = False,
          sock: Optional[socket.socket] = None, max_queue: int = DEFAULT_MAX_QUEUE,
          dumps: Dumps = json.dumps, loads: Loads = json.loads,
          logger: Optional[LoggerLike] = None, options: Optional[WebSocketOptions] = None,
          origins: Optional[Sequence[OriginItem]] = None, subprotocols: Sequence[str] = (),
          select_subprotocol: Optional[SelectSubprotocol] = None,
          extensions: Sequence[Any] = (), compression: Compression = "deflate",
          process_request: Optional[ProcessRequest] = None,
          http_handler: HttpHandler = default_http_handler, extra_headers: ExtraHeaders = (),
          handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
          max_head_size: int = MAX_HEAD_SIZE,
          max_headers: int = MAX_HEADERS) -> Union[Server, WebSocketServer]:
    """Serve WebSockets.

    Without ``reactor=``: on the running loop (fastsock's, asyncio's or
    uvloop's). Returns a :class:`Server` to use as ``async with serve(...)
    as server`` or ``server = await serve(...)``. ``handler`` is ``async
    def handler(ws)`` (the coroutine API), a :class:`WebSocketHandler`
    subclass or factory (the callback API), or a ``{path: handler}`` dict
    of either, mixed too. ``max_queue``, ``dumps``/``loads``
    (``send_json``/``recv_json``) and ``logger`` (a Logger or a name) are
    the coroutine API's own.

    With ``reactor=`` (fastsock's reactor, not running yet): the callback
    API only, :func:`fastsock.server.serve`; returns its ``WebSocketServer``.

    Both take ``ssl`` (an ``SSLContext``: wss://), ``backlog``,
    ``reuse_port``, ``sock`` (a listening socket to serve instead of
    binding), ``options`` and the keywords of
    :class:`~fastsock.server.ServerState` (``origins`` ... ``max_headers``).
    """
    state_kwargs: dict[str, Any] = dict(
        options=options, origins=origins, subprotocols=subprotocols,
        select_subprotocol=select_subprotocol, extensions=extensions, compression=compression,
        process_request=process_request, http_handler=http_handler,
        extra_headers=extra_headers, handshake_timeout=handshake_timeout,
        max_head_size=max_head_size, max_headers=max_headers)
    if reactor is None:
        # On the running loop: coroutine handlers, callback ones, or routes of both.
        return Server(handler, host, port, ssl=ssl, backlog=backlog, reuse_port=reuse_port,
                      sock=sock, max_queue=max_queue, dumps=dumps, loads=loads, logger=logger,
                      **state_kwargs)
    handlers = handler.values() if isinstance(handler, Mapping) else (handler,)
    if any(is_coroutine_handler(h) for h in handlers):
        raise TypeError("a coroutine handler runs on the running loop: drop reactor=")
    own = {"max_queue": max_queue != DEFAULT_MAX_QUEUE,
           "dumps": dumps is not json.dumps, "loads": loads is not json.loads,
           "logger": logger is not None}
    if any(own.values()):
        raise TypeError(f"{', '.join(k for k, v in own.items() if v)}: coroutine-API keywords, "
                        f"not taken by a callback handler")
    return _callback_serve(handler, host or "127.0.0.1", port, reactor=reactor, ssl=ssl,
                           backlog=backlog, reuse_port=reuse_port, sock=sock, **state_kwargs)
