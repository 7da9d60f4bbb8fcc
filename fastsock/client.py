"""WebSocket client glue: connect, send the opening handshake, check the answer.

:class:`ClientHandshakeProtocol` (asyncio protocol shape) writes the upgrade
request, reads the response head, checks ``101`` and
``Sec-WebSocket-Accept``, then hands the transport to the handler with
``transport.set_protocol``. :func:`connect` runs it on fastsock's reactor;
:func:`fastsock.adapters.aio.connect` on asyncio/uvloop.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from .exceptions import ConnectTimeoutError, InvalidResponseError
from .websocket.handshake import (
    MAX_HEAD_SIZE,
    Headers,
    WebSocketURI,
    check_response,
    client_request,
    parse_extension_header,
    parse_response,
    parse_uri,
)
from .websocket.protocol import WebSocketHandler, WebSocketOptions, check_handler

__all__ = ["ClientHandshakeProtocol", "connect"]

log = logging.getLogger("fastsock.client")


class ClientHandshakeProtocol:
    """Does the client side of the opening handshake; resolves ``future``
    with the open handler, or fails it with :class:`InvalidResponseError`
    (carrying the HTTP status) or :class:`ConnectTimeoutError`."""

    def __init__(self, uri: WebSocketURI, factory: Callable[[], WebSocketHandler], loop: Any,
                 future: Any, *, subprotocols: Sequence[str] = (),
                 headers: Sequence[tuple[str, str]] = (), origin: Optional[str] = None,
                 options: Optional[WebSocketOptions] = None, timeout: float = 10.0,
                 extensions: Sequence[Any] = ()) -> None:
        self.uri = uri
        self.factory = factory
        self.loop = loop
        self.future = future
        self.subprotocols = tuple(subprotocols)
        self.options = options
        self.extensions = tuple(extensions)
        offers = ", ".join(factory.offer() for factory in self.extensions) or None
        self.key, self.request = client_request(uri, subprotocols=self.subprotocols,
                                                extensions=offers, origin=origin, headers=headers)
        self.transport: Any = None
        self.buffer = b""
        self.timer = loop.call_later(timeout, self._timed_out) if timeout else None
        self.done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.done:          # timed out while connecting
            transport.abort()
            return
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        start = max(0, len(self.buffer) - 3)
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self.buffer) > MAX_HEAD_SIZE:
                self._fail(InvalidResponseError("server sent a response head that is too large", 0))
            return
        end += 4
        head, rest = self.buffer[:end], self.buffer[end:]
        self.buffer = b""
        try:
            response = parse_response(head)
            if response.status != 101:
                # Include the start of the body: it usually says why.
                body = rest[:200].decode("utf-8", "replace").strip()
                raise InvalidResponseError(
                    f"server rejected the WebSocket connection: HTTP {response.status}"
                    + (f": {body}" if body else ""), response.status)
            subprotocol = check_response(response, self.key, self.subprotocols)
            extensions = self._accept_extensions(
                Headers(response.headers).get("Sec-WebSocket-Extensions"))
            handler = self.factory()
            check_handler(handler)
        except InvalidResponseError as exc:
            self._fail(exc)
            return
        except Exception as exc:
            self._fail(exc)
            return
        self._finish()
        transport = self.transport
        transport.set_protocol(handler)
        try:
            handler.attach(transport, self.loop, client=True, options=self.options,
                           subprotocol=subprotocol, extensions=extensions)
        except Exception as exc:
            log.exception("error in %s.on_open", type(handler).__name__)
            handler.fail(1011, "internal error")
            if not self.future.done():
                self.future.set_exception(exc)
            return
        if not self.future.done():
            self.future.set_result(handler)
        if rest:
            handler.data_received(rest)

    def _accept_extensions(self, header: Optional[str]) -> list[Any]:
        """The extensions the server accepted, each checked by the factory that offered it."""
        accepted: list[Any] = []
        used: set[str] = set()
        for name, params in parse_extension_header(header):
            factory = next((f for f in self.extensions if f.name == name and name not in used), None)
            ext = factory.accept(params) if factory is not None else None
            if ext is None:
                raise InvalidResponseError(
                    f"server accepted extension {name!r}, which was not offered like that", 101)
            used.add(name)
            accepted.append(ext)
        return accepted

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.done:
            self._fail(exc if isinstance(exc, Exception) else
                       InvalidResponseError("server closed the connection during the handshake", 0),
                       abort=False)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fail(self, exc: BaseException, abort: bool = True) -> None:
        self._finish()
        if not self.future.done():
            self.future.set_exception(exc)
        if abort and self.transport is not None:
            self.transport.abort()

    def _timed_out(self) -> None:
        self.timer = None
        if not self.done:
            self._fail(ConnectTimeoutError(f"WebSocket handshake with {self.uri.host_header} "
                                           f"did not finish in time"))


def connect(uri: str, handler: Callable[[], WebSocketHandler], *, reactor: Any,
            subprotocols: Sequence[str] = (), headers: Sequence[tuple[str, str]] = (),
            origin: Optional[str] = None, options: Optional[WebSocketOptions] = None,
            timeout: float = 10.0, extensions: Sequence[Any] = ()) -> Any:
    """Open a WebSocket to ``uri`` (``ws://host:port/path?query``) on ``reactor``.

    Returns a reactor Future resolved with the open handler (``on_open``
    has run), or failed with :class:`InvalidResponseError` (``.status``),
    :class:`ConnectTimeoutError` or the ``OSError`` of the TCP connect.
    ``timeout`` bounds TCP connect plus handshake. ``extensions`` are client
    extension factories: ``name``, ``offer() -> str`` (the offer for the
    request header) and ``accept(params) -> Extension | None`` (check the
    server's answer).
    """
    from .transports.tcp import create_tcp_connection

    parsed = parse_uri(uri)
    if parsed.secure:
        raise ValueError("wss:// needs TLS, which fastsock's WebSocket client does not do yet")
    future = reactor.create_future()
    proto = ClientHandshakeProtocol(parsed, handler, reactor, future, subprotocols=subprotocols,
                                    headers=headers, origin=origin, options=options,
                                    timeout=timeout, extensions=extensions)
    tcp = create_tcp_connection(reactor, lambda: proto, parsed.host, parsed.port, timeout=timeout)

    def tcp_done(f: Any) -> None:
        if f.cancelled():
            if not future.done():
                future.cancel()
            proto._finish()
        elif f.exception() is not None:
            proto._finish()
            if not future.done():
                future.set_exception(f.exception())

    tcp.add_done_callback(tcp_done)
    return future
