"""``fastsock.connect``: a WebSocket client for coroutines, ws:// and wss://.

::

    async with fastsock.connect("wss://example.com/chat") as ws:
        await ws.send("hello")
        print(await ws.recv())

It runs on the running loop (fastsock's, asyncio's or uvloop's) with the
same handshake glue as the callback client
(:class:`fastsock.client.ClientHandshakeProtocol`). For wss:// the default
``ssl.create_default_context()`` verifies the certificate and the host
name, and SNI carries the URI's host; pass ``ssl=`` for another context
(e.g. your own CA, or one with verification turned off on purpose).

How an opening can fail, each with its own exception:

======================================  =============================================
TCP connect refused / unreachable       ``OSError`` (``ConnectionRefusedError``...)
TLS: certificate or host name rejected  ``ssl.SSLCertVerificationError``
TLS: other handshake failure            ``ssl.SSLError``
the server answered, but not 101        ``InvalidResponseError`` (``.status``)
bad ``Sec-WebSocket-Accept``, an
unoffered subprotocol or extension      ``InvalidResponseError`` (``.status`` 101)
the server closed during the handshake  ``InvalidResponseError`` (``.status`` 0)
not done within ``open_timeout``        ``ConnectTimeoutError`` (also ``TimeoutError``)
a malformed URI, ``ssl=`` on ws://      ``ValueError``
======================================  =============================================

:func:`connect` also keeps the callback form: given a handler factory it is
:func:`fastsock.client.connect` on ``reactor=``.
"""
from __future__ import annotations

import asyncio
import json
import ssl as _ssl
from typing import Any, Callable, Generator, Optional, Sequence, Union, cast

from ..client import ClientHandshakeProtocol
from ..client import connect as _callback_connect
from ..exceptions import ConnectTimeoutError
from ..websocket.handshake import parse_uri
from ..websocket.protocol import WebSocketHandler, WebSocketOptions
from .connection import DEFAULT_MAX_QUEUE, Connection, ConnectionCore, Dumps, Loads

__all__ = ["Connect", "connect", "DEFAULT_OPEN_TIMEOUT"]

DEFAULT_OPEN_TIMEOUT = 10.0   # seconds for TCP connect, TLS and the WebSocket handshake


class Connect:
    """A connection being opened: ``await`` it for the :class:`Connection`,
    or ``async with`` it to close the connection on the way out."""

    def __init__(self, uri: str, *, ssl: Optional[_ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None,
                 open_timeout: Optional[float] = DEFAULT_OPEN_TIMEOUT,
                 subprotocols: Sequence[str] = (), headers: Sequence[tuple[str, str]] = (),
                 origin: Optional[str] = None, options: Optional[WebSocketOptions] = None,
                 extensions: Sequence[Any] = (), max_queue: int = DEFAULT_MAX_QUEUE,
                 dumps: Dumps = json.dumps, loads: Loads = json.loads) -> None:
        self.uri = parse_uri(uri)
        if not self.uri.secure and ssl is not None:
            raise ValueError("ssl= needs a wss:// URI")
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._open_timeout = open_timeout
        self._subprotocols = subprotocols
        self._headers = headers
        self._origin = origin
        self._options = options
        self._extensions = extensions
        self._max_queue = max_queue
        self._dumps = dumps
        self._loads = loads
        self.connection: Optional[Connection] = None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        uri = self.uri
        ssl_context: Optional[_ssl.SSLContext] = None
        server_hostname: Optional[str] = None
        if uri.secure:
            ssl_context = self._ssl if self._ssl is not None else _ssl.create_default_context()
            server_hostname = self._server_hostname or uri.host
        future: asyncio.Future[WebSocketHandler] = loop.create_future()
        max_queue = self._max_queue
        # The handshake's own timer is off: one deadline covers TCP, TLS and HTTP.
        proto = ClientHandshakeProtocol(uri, lambda: ConnectionCore(max_queue), loop, future,
                                        subprotocols=self._subprotocols, headers=self._headers,
                                        origin=self._origin, options=self._options, timeout=0,
                                        extensions=self._extensions)
        factory = cast(Callable[[], asyncio.Protocol], lambda: proto)
        try:
            async with asyncio.timeout(self._open_timeout):
                if ssl_context is not None:
                    await loop.create_connection(factory, uri.host, uri.port, ssl=ssl_context,
                                                 server_hostname=server_hostname)
                else:
                    await loop.create_connection(factory, uri.host, uri.port)
                core = await future
        except BaseException as exc:
            # Drop the half-open connection; nobody waits for `future` any more.
            future.cancel()
            proto._fail(exc)
            if isinstance(exc, TimeoutError) and not isinstance(exc, ConnectTimeoutError):
                raise ConnectTimeoutError(f"opening {uri.host_header} did not finish within "
                                          f"{self._open_timeout} s") from None
            raise
        assert isinstance(core, ConnectionCore)
        self.connection = Connection(core, dumps=self._dumps, loads=self._loads)
        return self.connection

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    async def __aenter__(self) -> Connection:
        return await self._open()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.connection is not None:
            await self.connection.close()


def connect(uri: str, handler: Optional[Callable[[], WebSocketHandler]] = None, *,
            reactor: Any = None, **kwargs: Any) -> Union[Connect, Any]:
    """Open a WebSocket to ``uri`` (``ws://`` or ``wss://``).

    Without ``handler``: the coroutine API, on the running loop. Returns a
    :class:`Connect`: ``ws = await connect(uri)`` or ``async with
    connect(uri) as ws``. Keywords: ``ssl``, ``server_hostname``,
    ``open_timeout`` (default 10 s; ``None``: no limit), ``subprotocols``,
    ``headers``, ``origin``, ``options``, ``extensions``, ``max_queue``,
    ``dumps``/``loads``.

    With ``handler`` (a :class:`WebSocketHandler` factory): the callback
    API, :func:`fastsock.client.connect` on ``reactor=``; returns a Future.
    """
    if handler is None:
        if reactor is not None:
            raise TypeError("the coroutine client runs on the running loop: drop reactor=")
        return Connect(uri, **kwargs)
    return _callback_connect(uri, handler, reactor=reactor, **kwargs)
