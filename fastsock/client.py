"""WebSocket client glue: open the connection (proxy, TLS, redirects), move the handshake's bytes.

The handshake itself is sans-I/O (:class:`~fastsock.websocket.client_handshake.ClientHandshake`):
:class:`ClientHandshakeProtocol` (asyncio protocol shape) only writes its
request, feeds it the response and, once it accepts, hands the transport
to the handler with ``transport.set_protocol``.

:func:`open_connection` is the one opening procedure both APIs use, on any
asyncio loop (fastsock's reactor, asyncio's, uvloop's): proxy tunnel
(``CONNECT``), TLS for wss:// (SNI and verification by default), the
handshake, redirects (at most ``max_redirects``), all within
``open_timeout``. :func:`connect` is the callback API's entry point.
"""
from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Callable, NamedTuple, Optional, Sequence, TypeVar, Union, cast

from .exceptions import ConnectTimeoutError, InvalidResponseError
from .frame import CloseCode
from .proxy import ProxySetting, open_tunnel, select_proxy
from .websocket.extensions.permessage_deflate import Compression, client_factories
from .websocket.client_handshake import (
    DEFAULT_MAX_REDIRECTS,
    REDIRECT_STATUSES,
    USER_AGENT,
    ClientExtensionFactory,
    ClientHandshake,
    ClientURI,
    InvalidStatus,
    TooManyRedirects,
    parse_client_uri,
    redirect_url,
    same_origin,
    strip_credentials,
)
from .websocket.handshake import Response, WebSocketURI
from .websocket.protocol import WebSocketHandler, WebSocketOptions, check_handler

__all__ = ["ClientHandshakeProtocol", "Opened", "connect", "open_connection",
           "DEFAULT_OPEN_TIMEOUT", "USER_AGENT"]

log = logging.getLogger("fastsock.client")

DEFAULT_OPEN_TIMEOUT = 10.0   # seconds for proxy, TCP, TLS, handshake and redirects together

H = TypeVar("H", bound=WebSocketHandler)
HeaderList = Sequence[tuple[str, str]]


class ClientHandshakeProtocol:
    """Moves the bytes of one :class:`ClientHandshake`; resolves ``future``
    with the open handler, or fails it with what the handshake raised
    (:class:`InvalidStatus`, :class:`InvalidResponseError`) or
    :class:`ConnectTimeoutError` (its own ``timeout``, 0 for none)."""

    def __init__(self, uri: WebSocketURI, factory: Callable[[], WebSocketHandler], loop: Any,
                 future: Any, *, subprotocols: Sequence[str] = (),
                 headers: HeaderList = (), origin: Optional[str] = None,
                 options: Optional[WebSocketOptions] = None, timeout: float = 10.0,
                 extensions: Sequence[Any] = (), handshake: Optional[ClientHandshake] = None,
                 logger: Optional[logging.Logger] = None) -> None:
        self.uri = uri
        self.logger = logger            # the connection's frame lines at DEBUG (attach)
        self.factory = factory
        self.loop = loop
        self.future = future
        self.options = options
        self.handshake = handshake if handshake is not None else ClientHandshake(
            uri, subprotocols=subprotocols, extensions=extensions, origin=origin, headers=headers,
            user_agent_header=None)
        self.transport: Any = None
        self.timer = loop.call_later(timeout, self._timed_out) if timeout else None
        self.done = False

    @property
    def response(self) -> Optional[Response]:
        return self.handshake.response

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.done:          # timed out while connecting
            transport.abort()
            return
        transport.write(self.handshake.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        handshake = self.handshake
        try:
            if not handshake.receive_data(data):
                return
            handler = self.factory()
            check_handler(handler)
        except Exception as exc:
            self._fail(exc)
            return
        self._finish()
        transport = self.transport
        transport.set_protocol(handler)
        try:
            handler.attach(transport, self.loop, client=True, options=self.options,
                           subprotocol=handshake.subprotocol, extensions=handshake.extensions,
                           logger=self.logger)
        except Exception as exc:
            log.exception("error in %s.on_open", type(handler).__name__)
            handler.fail(CloseCode.INTERNAL_ERROR, "internal error")
            if not self.future.done():
                self.future.set_exception(exc)
            return
        if not self.future.done():
            self.future.set_result(handler)
        if handshake.rest:
            handler.data_received(handshake.rest)

    def _accept_extensions(self, header: Optional[str]) -> list[Any]:
        return self.handshake.accept_extensions(header)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.done:
            if not isinstance(exc, Exception):
                # Status 0 caused by EOFError: what a reconnecting client retries.
                exc = InvalidResponseError("server closed the connection during the handshake", 0)
                exc.__cause__ = EOFError()
            self._fail(exc, abort=False)

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


class Opened(NamedTuple):
    """What :func:`open_connection` returns."""

    handler: WebSocketHandler
    response: Response        # the server's 101
    url: str                  # the URL finally connected to (after redirects)


def _ssl_context(uri: WebSocketURI, ssl: Optional[_ssl.SSLContext]) -> Optional[_ssl.SSLContext]:
    if not uri.secure:
        return None
    return ssl if ssl is not None else _ssl.create_default_context()


async def _attempt(loop: asyncio.AbstractEventLoop, target: ClientURI,
                   factory: Callable[[], WebSocketHandler], *, ssl: Optional[_ssl.SSLContext],
                   server_hostname: Optional[str], proxy: ProxySetting, headers: HeaderList,
                   subprotocols: Sequence[str], extensions: Sequence[ClientExtensionFactory],
                   origin: Optional[str], user_agent_header: Optional[str],
                   options: Optional[WebSocketOptions],
                   logger: Optional[logging.Logger]) -> Opened:
    """One connection and handshake, no redirects."""
    uri = target.uri
    handshake = ClientHandshake(target, subprotocols=subprotocols, extensions=extensions,
                                origin=origin, headers=headers, user_agent_header=user_agent_header)
    future: asyncio.Future[WebSocketHandler] = loop.create_future()
    proto = ClientHandshakeProtocol(uri, factory, loop, future, options=options, timeout=0,
                                    handshake=handshake, logger=logger)
    context = _ssl_context(uri, ssl)
    hostname = (server_hostname or uri.host) if context is not None else None
    tunnel = select_proxy(proxy, uri)
    transport: Any = None
    try:
        if tunnel is None:
            await loop.create_connection(cast(Callable[[], asyncio.Protocol], lambda: proto),
                                         uri.host, uri.port, ssl=context,
                                         server_hostname=hostname)
        else:
            transport, rest = await open_tunnel(loop, tunnel, uri, user_agent=user_agent_header)
            if context is not None:
                # TLS with the target, inside the tunnel; SNI names the target.
                transport = await loop.start_tls(transport, cast(asyncio.Protocol, proto), context,
                                                 server_hostname=hostname)
                proto.connection_made(transport)
            else:
                transport.set_protocol(cast(asyncio.Protocol, proto))
                proto.connection_made(transport)
                if rest:
                    proto.data_received(rest)
                transport.resume_reading()
        handler = await future
    except BaseException as exc:
        # Drop the half-open connection; nobody waits for `future` any more.
        future.cancel()
        proto._fail(exc)
        if transport is not None and proto.transport is None:
            transport.abort()
        raise
    assert handshake.response is not None
    return Opened(handler, handshake.response, target.url)


async def open_connection(url: str, factory: Callable[[], WebSocketHandler], *,
                          ssl: Optional[_ssl.SSLContext] = None,
                          server_hostname: Optional[str] = None,
                          proxy: ProxySetting = True,
                          open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
                          max_redirects: int = DEFAULT_MAX_REDIRECTS,
                          headers: HeaderList = (),
                          subprotocols: Sequence[str] = (),
                          extensions: Sequence[ClientExtensionFactory] = (),
                          origin: Optional[str] = None,
                          user_agent_header: Optional[str] = USER_AGENT,
                          options: Optional[WebSocketOptions] = None,
                          compression: Compression = "deflate",
                          logger: Optional[logging.Logger] = None) -> Opened:
    """Open a WebSocket to ``url`` on the running loop; see :func:`connect` for the arguments
    (``logger``: where the connection logs its frames if it is enabled for DEBUG at open).

    Follows 301/302/303/307/308 redirects (ws:// -> wss:// yes, wss:// -> ws://
    never; credentials headers are dropped on a redirect to another origin).
    ``ssl`` is used for wss:// only: given with a ws:// URL, it serves a
    redirect to wss://.
    """
    target = parse_client_uri(url)
    extensions = client_factories(compression, extensions)
    if max_redirects < 0:
        raise ValueError("max_redirects must be >= 0")
    loop = asyncio.get_running_loop()
    extra = list(headers)
    last: Optional[Response] = None
    try:
        async with asyncio.timeout(open_timeout):
            for _ in range(max_redirects + 1):
                try:
                    return await _attempt(loop, target, factory, ssl=ssl,
                                          server_hostname=server_hostname, proxy=proxy,
                                          headers=extra, subprotocols=subprotocols,
                                          extensions=extensions, origin=origin,
                                          user_agent_header=user_agent_header, options=options,
                                          logger=logger)
                except InvalidStatus as exc:
                    if exc.response.status not in REDIRECT_STATUSES:
                        raise
                    last = exc.response
                    new = parse_client_uri(redirect_url(target, exc.response))
                    log.debug("redirected from %s to %s (HTTP %d)", target.url, new.url,
                              exc.response.status)
                    if not same_origin(target.uri, new.uri):
                        extra = strip_credentials(extra)
                        server_hostname = None     # it named the old host
                    target = new
            assert last is not None
            raise TooManyRedirects(f"more than {max_redirects} redirects in a row "
                                   f"(last to {target.url})", last)
    except TimeoutError as exc:
        if isinstance(exc, ConnectTimeoutError):
            raise
        raise ConnectTimeoutError(f"opening {target.url} did not finish within "
                                  f"{open_timeout} s") from None


def connect(uri: str, handler: Callable[[], H], *, reactor: Optional[asyncio.AbstractEventLoop] = None,
            ssl: Optional[_ssl.SSLContext] = None, server_hostname: Optional[str] = None,
            proxy: Union[str, bool, None] = True,
            open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
            max_redirects: int = DEFAULT_MAX_REDIRECTS,
            headers: HeaderList = (), subprotocols: Sequence[str] = (),
            extensions: Sequence[ClientExtensionFactory] = (), origin: Optional[str] = None,
            user_agent_header: Optional[str] = USER_AGENT,
            options: Optional[WebSocketOptions] = None,
            compression: Compression = "deflate") -> "asyncio.Future[H]":
    """Open a WebSocket to ``uri`` (``ws://`` or ``wss://``) for the callback API.

    Returns a Future on ``reactor`` (default: the running loop) resolved with
    the open handler (``on_open`` has run), typed as ``handler`` returns.
    Failures: :class:`~fastsock.websocket.client_handshake.InvalidStatus`
    (``.response``), :class:`InvalidResponseError`, ``TooManyRedirects``,
    :class:`~fastsock.proxy.ProxyError`, :class:`ConnectTimeoutError`, the
    ``OSError`` of the TCP connect or ``ssl.SSLError``. A malformed URI
    raises ``InvalidURI`` (a ``ValueError``) at once.

    ``ssl``: the context for wss:// (default: verify, SNI ``server_hostname``
    or the host). ``proxy``: a ``http://`` proxy URL, True (from the
    environment, the default) or None. ``headers``: extra request headers.
    ``user_agent_header``: None sends none. ``extensions``: client extension
    factories (``name``, ``offer()``, ``accept(params)``); ``compression``:
    "deflate" (offer permessage-deflate, the default), None, or a
    ``ClientPerMessageDeflate(...)`` (docs/compression.md). ``open_timeout``
    covers everything up to the open handler (None: no limit).
    """
    parse_client_uri(uri)      # a bad URI fails here, not in the future
    if reactor is None:
        try:
            reactor = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("fastsock.client.connect needs reactor= when no loop is "
                               "running") from None

    async def opening() -> H:
        opened = await open_connection(
            uri, handler, ssl=ssl, server_hostname=server_hostname, proxy=proxy,
            open_timeout=open_timeout, max_redirects=max_redirects, headers=headers,
            subprotocols=subprotocols, extensions=extensions, origin=origin,
            user_agent_header=user_agent_header, options=options, compression=compression)
        return cast(H, opened.handler)

    return reactor.create_task(opening())
