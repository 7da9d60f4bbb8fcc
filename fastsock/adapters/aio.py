"""fastsock's WebSocket server and client on asyncio or uvloop loops.

The handshake protocols and :class:`~fastsock.websocket.WebSocketHandler`
only use asyncio's protocol/transport shape and ``loop.call_later`` /
``loop.time``, so they run unchanged on any asyncio loop::

    server = await fastsock.adapters.aio.serve(Echo, "127.0.0.1", 8765)
    ws = await fastsock.adapters.aio.connect("ws://127.0.0.1:8765/", Client)

:func:`new_loop` makes an ``"asyncio"`` or ``"uvloop"`` loop by name.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional, Sequence, cast

from ..websocket.extensions.permessage_deflate import client_factories
from ..client import ClientHandshakeProtocol
from ..frame import CloseCode
from ..server import Routes, ServerState
from ..websocket.handshake import parse_uri
from ..websocket.protocol import WebSocketHandler, WebSocketOptions

__all__ = ["AioWebSocketServer", "serve", "connect", "new_loop", "run"]


def new_loop(kind: str = "asyncio") -> asyncio.AbstractEventLoop:
    """A new ``"asyncio"`` or ``"uvloop"`` event loop."""
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if kind == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError(f"unknown loop kind {kind!r}: expected 'asyncio' or 'uvloop'")


class AioWebSocketServer:
    """A listening server on an asyncio loop: ``close()``, ``wait_closed()``,
    ``broadcast()``, ``connections``, ``port``."""

    def __init__(self, server: Any, state: ServerState) -> None:
        self.server = server
        self.state = state

    @property
    def sockets(self) -> Any:
        return self.server.sockets

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> set[WebSocketHandler]:
        return self.state.handlers

    def broadcast(self, message: Any) -> int:
        return self.state.broadcast(message)

    def stats(self) -> dict[str, Any]:
        """The server's metrics as plain numbers (see ``WebSocketServer.stats``;
        ``emfile`` is None: asyncio's loop does not count it)."""
        return self.state.snapshot()

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting and send ``code`` to every open connection."""
        self.server.close()
        self.state.close_all(code, reason)

    async def wait_closed(self, timeout: Optional[float] = None) -> None:
        """Wait until every connection is gone (aborting the rest after ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while len(self.state):
            if deadline is not None and loop.time() >= deadline:
                self.state.abort_all()
                await asyncio.sleep(0)
                break
            await asyncio.sleep(0.01)
        await self.server.wait_closed()


async def serve(handler: Routes, host: str = "127.0.0.1", port: int = 0, *,
                backlog: int = 1024, reuse_port: bool = False, sock: Any = None,
                ssl: Any = None, **kwargs: Any) -> AioWebSocketServer:
    """Listen on the running asyncio/uvloop loop; arguments as :func:`fastsock.server.serve`
    (``sock``: serve this listening socket instead of binding ``host``:``port``;
    ``ssl``: an ``SSLContext``, for wss://)."""
    loop = asyncio.get_running_loop()
    state = ServerState(handler, loop, **kwargs)
    factory = cast(Callable[[], asyncio.Protocol], state.protocol_factory)
    if sock is not None:
        server = await loop.create_server(factory, sock=sock, backlog=backlog, ssl=ssl)
    else:
        server = await loop.create_server(factory, host, port, backlog=backlog, ssl=ssl,
                                          reuse_address=True, reuse_port=reuse_port or None)
    return AioWebSocketServer(server, state)


async def connect(uri: str, handler: Callable[[], WebSocketHandler], *,
                  subprotocols: Sequence[str] = (), headers: Sequence[tuple[str, str]] = (),
                  origin: Optional[str] = None, options: Optional[WebSocketOptions] = None,
                  timeout: float = 10.0, extensions: Sequence[Any] = (),
                  compression: Any = "deflate") -> WebSocketHandler:
    """Open a WebSocket on the running loop; returns the open handler."""
    loop = asyncio.get_running_loop()
    parsed = parse_uri(uri)
    if parsed.secure:
        raise ValueError("wss:// needs TLS, which fastsock's WebSocket client does not do yet")
    future = loop.create_future()
    proto = ClientHandshakeProtocol(parsed, handler, loop, future, subprotocols=subprotocols,
                                    headers=headers, origin=origin, options=options,
                                    timeout=timeout,
                                    extensions=client_factories(compression, extensions))
    try:
        factory = cast(Callable[[], asyncio.Protocol], lambda: proto)
        await asyncio.wait_for(loop.create_connection(factory, parsed.host, parsed.port), timeout)
    except asyncio.TimeoutError:
        proto._finish()
        from ..exceptions import ConnectTimeoutError
        raise ConnectTimeoutError(f"TCP connect to {parsed.host_header} timed out") from None
    except BaseException:
        proto._finish()
        raise
    return cast(WebSocketHandler, await future)


def run(handler: Routes, host: str = "127.0.0.1", port: int = 0, *, loop: str = "asyncio",
        on_ready: Optional[Callable[[AioWebSocketServer], None]] = None,
        on_shutdown: Optional[Callable[[], Awaitable[Any]]] = None,
        shutdown_timeout: float = 5.0, **kwargs: Any) -> int:
    """Serve on a new ``"asyncio"`` or ``"uvloop"`` loop until SIGINT/SIGTERM,
    then close every connection with 1001 (bounded by ``shutdown_timeout``);
    ``on_shutdown()`` is awaited after that, as in :func:`fastsock.server.run`."""
    import signal

    async def main() -> int:
        running = asyncio.get_running_loop()
        server = await serve(handler, host, port, **kwargs)
        stop = running.create_future()

        def on_signal() -> None:
            if not stop.done():
                stop.set_result(None)
            else:                      # a second signal: stop waiting
                server.state.abort_all()

        for sig in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(sig, on_signal)
        if on_ready is not None:
            on_ready(server)
        await stop
        server.close()
        await server.wait_closed(shutdown_timeout)
        if on_shutdown is not None:
            try:
                await asyncio.wait_for(on_shutdown(), shutdown_timeout)
            except asyncio.TimeoutError:
                pass
        # As asyncio.run() does: cancel the tasks still running (e.g. a hub's)
        # and let them finish before the loop closes (bounded).
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=shutdown_timeout)
        return 0

    event_loop = new_loop(loop)
    try:
        asyncio.set_event_loop(event_loop)
        return event_loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        event_loop.close()
