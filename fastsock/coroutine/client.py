"""``fastsock.connect``: a WebSocket client for coroutines, ws:// and wss://.

::

    async with fastsock.connect("wss://example.com/chat") as ws:
        await ws.send("hello")
        print(await ws.recv())

    async for ws in fastsock.connect("wss://example.com/feed"):   # reconnects
        try:
            async for message in ws:
                ...
        except fastsock.ConnectionClosed:
            continue

It runs on the running loop (fastsock's, asyncio's or uvloop's) through the
same opening procedure as the callback client
(:func:`fastsock.client.open_connection`): proxy (``CONNECT``), TLS,
handshake, redirects, all within ``open_timeout``. For wss:// the default
``ssl.create_default_context()`` verifies the certificate and the host
name, and SNI carries the URI's host; pass ``ssl=`` for another context.

How an opening can fail, each with its own exception:

======================================  =============================================
a malformed URI                         ``InvalidURI`` (a ``ValueError``)
TCP connect refused / unreachable       ``OSError`` (``ConnectionRefusedError``...)
TLS: certificate or host name rejected  ``ssl.SSLCertVerificationError``
TLS: other handshake failure            ``ssl.SSLError``
the server answered, but not 101        ``InvalidStatus`` (``.status``, ``.response``)
a redirect that cannot be followed      ``RedirectError`` (wss:// -> ws://, no Location)
more than ``max_redirects`` redirects   ``TooManyRedirects``
bad ``Sec-WebSocket-Accept``, an
unoffered subprotocol or extension      ``InvalidResponseError`` (``.status`` 101)
the server closed during the handshake  ``InvalidResponseError`` (``.status`` 0)
a bad proxy URL                         ``InvalidProxy`` (a ``ValueError``)
the proxy refused the tunnel            ``ProxyError`` (``.status``: 407, 403, 502...)
not done within ``open_timeout``        ``ConnectTimeoutError`` (also ``TimeoutError``)
======================================  =============================================

:func:`connect` also keeps the callback form: given a handler factory it is
:func:`fastsock.client.connect`, returning a Future typed with the handler.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl as _ssl
from typing import (Any, AsyncIterator, Callable, Generator, Iterator, Optional, Sequence,
                    TypeVar, Union, overload)

from ..client import DEFAULT_OPEN_TIMEOUT, open_connection
from ..client import connect as _callback_connect
from ..exceptions import InvalidResponseError
from ..proxy import ProxyError
from ..websocket.client_handshake import (
    DEFAULT_MAX_REDIRECTS,
    USER_AGENT,
    ClientExtensionFactory,
    InvalidStatus,
    parse_client_uri,
)
from ..websocket.protocol import WebSocketHandler, WebSocketOptions
from .connection import (
    CLIENT_LOGGER, DEFAULT_MAX_QUEUE, Connection, ConnectionCore, Dumps, LoggerLike, Loads, get_logger,
)

__all__ = ["Connect", "connect", "backoff", "retryable", "DEFAULT_OPEN_TIMEOUT",
           "BACKOFF_INITIAL_DELAY", "BACKOFF_MIN_DELAY", "BACKOFF_MAX_DELAY", "BACKOFF_FACTOR"]

log = logging.getLogger("fastsock.client")

# Reconnection delays, as websockets': a random first delay in [0, initial)
# (RFC 6455 7.2.3: spread the clients of a restarted server), then min,
# min * factor, ... up to max, then max for ever.
BACKOFF_INITIAL_DELAY = 5.0
BACKOFF_MIN_DELAY = 3.1
BACKOFF_MAX_DELAY = 90.0
BACKOFF_FACTOR = 1.618
# Statuses worth retrying: the server or a proxy in front of it is in trouble.
_RETRY_STATUSES = range(500, 600)

H = TypeVar("H", bound=WebSocketHandler)
HeaderList = Sequence[tuple[str, str]]
ProcessException = Callable[[Exception], Optional[Exception]]


def backoff(initial: float = BACKOFF_INITIAL_DELAY, minimum: float = BACKOFF_MIN_DELAY,
            maximum: float = BACKOFF_MAX_DELAY, factor: float = BACKOFF_FACTOR) -> Iterator[float]:
    """The delays between reconnection attempts (see the constants above)."""
    yield random.random() * initial
    delay = minimum
    while delay < maximum:
        yield delay
        delay *= factor
    while True:
        yield maximum


def retryable(exc: Exception) -> Optional[Exception]:
    """The default ``process_exception``: None (retry) for network errors,
    timeouts, a server that closed during the handshake and 5xx answers of
    the server or the proxy; else ``exc`` itself (give up: 4xx, a bad URI or
    proxy URL, a TLS verification failure, a protocol violation)."""
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return exc
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidStatus):
        return None if exc.status in _RETRY_STATUSES else exc
    if isinstance(exc, ProxyError):
        return None if exc.status == 0 or exc.status in _RETRY_STATUSES else exc
    if isinstance(exc, InvalidResponseError) and isinstance(exc.__cause__, EOFError):
        return None        # the server closed during the handshake (going down?)
    return exc


class Connect:
    """A connection being opened: ``await`` it for the :class:`Connection`,
    ``async with`` it to close the connection on the way out, or ``async
    for`` over it to reconnect for ever (with back-off) when a connection
    ends or an attempt fails for a reason worth retrying
    (``process_exception``, default :func:`retryable`)."""

    def __init__(self, uri: str, *, ssl: Optional[_ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None,
                 proxy: Union[str, bool, None] = True,
                 open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
                 max_redirects: int = DEFAULT_MAX_REDIRECTS,
                 headers: HeaderList = (), subprotocols: Sequence[str] = (),
                 extensions: Sequence[ClientExtensionFactory] = (),
                 origin: Optional[str] = None, user_agent_header: Optional[str] = USER_AGENT,
                 options: Optional[WebSocketOptions] = None, max_queue: int = DEFAULT_MAX_QUEUE,
                 dumps: Dumps = json.dumps, loads: Loads = json.loads,
                 logger: Optional[LoggerLike] = None,
                 process_exception: ProcessException = retryable,
                 compression: Any = "deflate",
                 backoff_initial: float = BACKOFF_INITIAL_DELAY,
                 backoff_min: float = BACKOFF_MIN_DELAY, backoff_max: float = BACKOFF_MAX_DELAY,
                 backoff_factor: float = BACKOFF_FACTOR,
                 max_retries: Optional[int] = None) -> None:
        self.uri = parse_client_uri(uri).uri     # InvalidURI (a ValueError) here, at once
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.url = uri
        self._open_kwargs: dict[str, Any] = dict(
            ssl=ssl, server_hostname=server_hostname, proxy=proxy, open_timeout=open_timeout,
            max_redirects=max_redirects, headers=headers, subprotocols=subprotocols,
            extensions=extensions, origin=origin, user_agent_header=user_agent_header,
            options=options, compression=compression,
            logger=get_logger(logger, CLIENT_LOGGER))
        self._max_queue = max_queue
        self._dumps = dumps
        self._loads = loads
        self._logger = logger
        self._process_exception = process_exception
        self._backoff = (backoff_initial, backoff_min, backoff_max, backoff_factor)
        self._max_retries = max_retries
        self.connection: Optional[Connection] = None

    async def _open(self) -> Connection:
        max_queue = self._max_queue
        opened = await open_connection(self.url, lambda: ConnectionCore(max_queue),
                                       **self._open_kwargs)
        core = opened.handler
        assert isinstance(core, ConnectionCore)
        connection = Connection(core, dumps=self._dumps, loads=self._loads, logger=self._logger)
        connection.response = opened.response
        self.connection = connection
        return connection

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    async def __aenter__(self) -> Connection:
        return await self._open()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.connection is not None:
            await self.connection.close()

    def __aiter__(self) -> AsyncIterator[Connection]:
        return self._reconnecting()

    async def _reconnecting(self) -> AsyncIterator[Connection]:
        delays: Optional[Iterator[float]] = None
        failures = 0
        while True:
            try:
                connection = await self._open()
            except Exception as exc:
                fatal = self._process_exception(exc)
                if fatal is not None:
                    if fatal is exc:
                        raise
                    raise fatal from exc
                failures += 1
                if self._max_retries is not None and failures > self._max_retries:
                    raise
                if delays is None:
                    delays = backoff(*self._backoff)
                delay = next(delays)
                log.info("connect to %s failed (%s: %s); retrying in %.1f s", self.url,
                         type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = None
            failures = 0
            try:
                yield connection
            finally:
                # The loop body is done with it (or left the loop): close it.
                await connection.close()


@overload
def connect(uri: str, handler: None = None, *, ssl: Optional[_ssl.SSLContext] = None,
            server_hostname: Optional[str] = None, proxy: Union[str, bool, None] = True,
            open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
            max_redirects: int = DEFAULT_MAX_REDIRECTS, headers: HeaderList = (),
            subprotocols: Sequence[str] = (), extensions: Sequence[ClientExtensionFactory] = (),
            origin: Optional[str] = None, user_agent_header: Optional[str] = USER_AGENT,
            options: Optional[WebSocketOptions] = None, max_queue: int = DEFAULT_MAX_QUEUE,
            dumps: Dumps = json.dumps, loads: Loads = json.loads,
            logger: Optional[LoggerLike] = None, process_exception: ProcessException = retryable,
            backoff_initial: float = BACKOFF_INITIAL_DELAY, backoff_min: float = BACKOFF_MIN_DELAY,
            backoff_max: float = BACKOFF_MAX_DELAY, backoff_factor: float = BACKOFF_FACTOR,
            max_retries: Optional[int] = None, compression: Any = "deflate") -> Connect: ...


@overload
def connect(uri: str, handler: Callable[[], H], *,
            reactor: Optional[asyncio.AbstractEventLoop] = None,
            ssl: Optional[_ssl.SSLContext] = None, server_hostname: Optional[str] = None,
            proxy: Union[str, bool, None] = True,
            open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
            max_redirects: int = DEFAULT_MAX_REDIRECTS, headers: HeaderList = (),
            subprotocols: Sequence[str] = (), extensions: Sequence[ClientExtensionFactory] = (),
            origin: Optional[str] = None, user_agent_header: Optional[str] = USER_AGENT,
            options: Optional[WebSocketOptions] = None,
            compression: Any = "deflate") -> "asyncio.Future[H]": ...


def connect(uri: str, handler: Optional[Callable[[], H]] = None, *,
            reactor: Optional[asyncio.AbstractEventLoop] = None,
            ssl: Optional[_ssl.SSLContext] = None, server_hostname: Optional[str] = None,
            proxy: Union[str, bool, None] = True,
            open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
            max_redirects: int = DEFAULT_MAX_REDIRECTS, headers: HeaderList = (),
            subprotocols: Sequence[str] = (), extensions: Sequence[ClientExtensionFactory] = (),
            origin: Optional[str] = None, user_agent_header: Optional[str] = USER_AGENT,
            options: Optional[WebSocketOptions] = None, max_queue: int = DEFAULT_MAX_QUEUE,
            dumps: Dumps = json.dumps, loads: Loads = json.loads,
            logger: Optional[LoggerLike] = None, process_exception: ProcessException = retryable,
            backoff_initial: float = BACKOFF_INITIAL_DELAY, backoff_min: float = BACKOFF_MIN_DELAY,
            backoff_max: float = BACKOFF_MAX_DELAY, backoff_factor: float = BACKOFF_FACTOR,
            max_retries: Optional[int] = None,
            compression: Any = "deflate") -> "Union[Connect, asyncio.Future[H]]":
    """Open a WebSocket to ``uri`` (``ws://`` or ``wss://``; ``user:password@``
    in it sends ``Authorization: Basic``).

    Without ``handler``: the coroutine API, on the running loop. Returns a
    :class:`Connect`: ``ws = await connect(uri)``, ``async with connect(uri)
    as ws`` or ``async for ws in connect(uri)`` (reconnecting).

    With ``handler`` (a :class:`WebSocketHandler` factory): the callback
    API, :func:`fastsock.client.connect` on ``reactor=`` (default: the
    running loop); returns a Future of the open handler.

    Keywords: ``ssl``/``server_hostname`` (wss://), ``proxy`` (a ``http://``
    URL, True: from the environment, the default, None: never),
    ``open_timeout`` (default 10 s for everything; None: no limit),
    ``max_redirects`` (default 10), ``headers`` (extra request headers),
    ``subprotocols``, ``extensions`` (client extension factories),
    ``compression`` ("deflate", the default: offer permessage-deflate; None),
    ``origin``, ``user_agent_header`` (None: no User-Agent), ``options``
    (:class:`WebSocketOptions`). Coroutine API only: ``max_queue``,
    ``dumps``/``loads``, ``logger`` and, for ``async for``,
    ``process_exception`` (default :func:`retryable`), ``backoff_*``
    (seconds; see :func:`backoff`) and ``max_retries`` (consecutive failed
    attempts before the last error is raised; None: no limit).
    """
    if handler is None:
        if reactor is not None:
            raise TypeError("the coroutine client runs on the running loop: drop reactor=")
        return Connect(uri, ssl=ssl, server_hostname=server_hostname, proxy=proxy,
                       open_timeout=open_timeout, max_redirects=max_redirects, headers=headers,
                       subprotocols=subprotocols, extensions=extensions, origin=origin,
                       user_agent_header=user_agent_header, options=options,
                       max_queue=max_queue, dumps=dumps, loads=loads, logger=logger,
                       process_exception=process_exception, backoff_initial=backoff_initial,
                       backoff_min=backoff_min, backoff_max=backoff_max,
                       backoff_factor=backoff_factor, max_retries=max_retries,
                       compression=compression)
    return _callback_connect(uri, handler, reactor=reactor, ssl=ssl,
                             server_hostname=server_hostname, proxy=proxy,
                             open_timeout=open_timeout, max_redirects=max_redirects,
                             headers=headers, subprotocols=subprotocols, extensions=extensions,
                             origin=origin, user_agent_header=user_agent_header, options=options,
                             compression=compression)
