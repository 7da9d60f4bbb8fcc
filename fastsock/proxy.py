"""HTTP proxies for the WebSocket client: ``CONNECT host:port`` tunnels.

Which proxy (as websockets 15 chooses, plus ``all_proxy``):

1. ``proxy="http://[user:pass@]host:port"`` given to ``connect``: that one;
   ``proxy=None``: none;
2. by default (``proxy=True``) from the environment, through the standard
   library's :func:`urllib.request.getproxies`: nothing if the host is in
   ``no_proxy``; else ``wss_proxy``/``ws_proxy`` (for wss:// / ws://), then
   ``https_proxy`` (both), ``http_proxy`` (ws:// only), ``all_proxy``.

Only ``http://`` proxies are supported (the tunnel itself is plain TCP; a
wss:// connection runs TLS with the target through it, SNI naming the
target). ``https://`` and SOCKS proxies raise :class:`InvalidProxy`.

Failures: :class:`InvalidProxy` (a bad proxy URL, a ``ValueError``),
:class:`ProxyError` (the proxy answered but did not open the tunnel;
``.status`` and ``.response``: 407 when it wants credentials, 403, 502...),
``OSError`` (the proxy cannot be reached).
"""
from __future__ import annotations

import asyncio
import urllib.request
from typing import Any, NamedTuple, Optional, Union
from urllib.parse import unquote, urlsplit

from .exceptions import HandshakeError
from .websocket.client_handshake import basic_authorization
from .websocket.handshake import MAX_HEAD_SIZE, Response, WebSocketURI, parse_response

__all__ = ["Proxy", "InvalidProxy", "ProxyError", "parse_proxy", "proxy_from_environment",
           "select_proxy", "connect_request", "open_tunnel"]

_DEFAULT_PROXY_PORT = 80
# Environment lookup order (keys of urllib.request.getproxies(), i.e. NAME_proxy).
_SECURE_SCHEMES = ("wss", "https", "all")
_PLAIN_SCHEMES = ("ws", "https", "http", "all")

ProxySetting = Union[str, bool, None]


class InvalidProxy(HandshakeError, ValueError):
    """The proxy URL is not an ``http://host[:port]`` URL."""

    status = 0


class ProxyError(HandshakeError):
    """The proxy did not open the tunnel. ``status``/``response``: its answer
    (status 0 and no response if it closed without one)."""

    def __init__(self, message: str, response: Optional[Response] = None) -> None:
        super().__init__(message, response.status if response is not None else 0)
        self.response = response


class Proxy(NamedTuple):
    host: str
    port: int
    credentials: Optional[tuple[str, str]]
    url: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse ``http://[user:password@]host[:port][/]``; raises :class:`InvalidProxy`."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PROXY_PORT
    except ValueError as exc:
        raise InvalidProxy(f"proxy {url!r}: {exc}") from None
    if parts.scheme != "http":
        raise InvalidProxy(f"proxy {url!r}: only http:// proxies are supported "
                           f"(not {parts.scheme or 'a URL without scheme'})")
    if not parts.hostname:
        raise InvalidProxy(f"proxy {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxy(f"proxy {url!r}: a proxy URL has no path, query or fragment")
    credentials = None
    if parts.username is not None:
        if parts.password is None:
            raise InvalidProxy(f"proxy {url!r} has a user name but no password")
        credentials = (unquote(parts.username), unquote(parts.password))
    return Proxy(parts.hostname, port, credentials, url)


def proxy_from_environment(uri: WebSocketURI) -> Optional[str]:
    """The proxy URL the environment sets for ``uri`` (see the module docstring), or None."""
    if urllib.request.proxy_bypass(f"{uri.host}:{uri.port}"):
        return None
    proxies = urllib.request.getproxies()
    for scheme in _SECURE_SCHEMES if uri.secure else _PLAIN_SCHEMES:
        if proxies.get(scheme):
            return proxies[scheme]
    return None


def select_proxy(setting: ProxySetting, uri: WebSocketURI) -> Optional[Proxy]:
    """The proxy for ``uri``: ``setting`` is a URL, True (the environment) or None/False."""
    if setting is None or setting is False:
        return None
    if setting is True:
        url = proxy_from_environment(uri)
        return parse_proxy(url) if url else None
    if not isinstance(setting, str):
        raise TypeError(f"proxy= takes a URL, True or None, not {type(setting).__name__}")
    return parse_proxy(setting)


def connect_request(proxy: Proxy, uri: WebSocketURI, user_agent: Optional[str]) -> bytes:
    """The ``CONNECT`` request that opens a tunnel to ``uri``'s host and port."""
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    target = f"{host}:{uri.port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    if proxy.credentials is not None:
        lines.append(f"Proxy-Authorization: {basic_authorization(*proxy.credentials)}")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError("a proxy request line contains a line break")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _TunnelProtocol(asyncio.Protocol):
    """Sends ``CONNECT`` and waits for a 2xx; resolves ``done`` with the bytes
    that came after the answer's head (normally none)."""

    def __init__(self, request: bytes, done: "asyncio.Future[bytes]", proxy: Proxy) -> None:
        self.request = request
        self.done = done
        self.proxy = proxy
        self.buffer = b""
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_SIZE:
                self._fail(ProxyError(f"proxy {self.proxy.address} sent a response head that "
                                      f"is too large"))
            return
        end += 4
        head, rest = self.buffer[:end], self.buffer[end:]
        self.buffer = b""
        try:
            response = parse_response(head)
        except HandshakeError as exc:
            self._fail(ProxyError(f"proxy {self.proxy.address}: {exc}"))
            return
        if not 200 <= response.status < 300:
            what = ("wants credentials (407 Proxy Authentication Required)"
                    if response.status == 407 else f"answered HTTP {response.status}")
            self._fail(ProxyError(f"proxy {self.proxy.address} refused the tunnel: {what}",
                                  response))
            return
        # Stop reading until the WebSocket (or TLS) protocol takes over.
        assert self.transport is not None
        self.transport.pause_reading()
        self.done.set_result(rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.done.done():
            self.done.set_exception(exc if exc is not None else ProxyError(
                f"proxy {self.proxy.address} closed the connection before opening the tunnel"))

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, uri: WebSocketURI, *,
                      user_agent: Optional[str]) -> tuple[asyncio.Transport, bytes]:
    """Connect to ``proxy`` and open a tunnel to ``uri``'s host and port.

    Returns the transport (reading paused, its protocol still the tunnel's:
    the caller sets its own) and any bytes that came after the proxy's answer.
    """
    done: asyncio.Future[bytes] = loop.create_future()
    request = connect_request(proxy, uri, user_agent)
    transport, _ = await loop.create_connection(
        lambda: _TunnelProtocol(request, done, proxy), proxy.host, proxy.port)
    try:
        rest = await done
    except BaseException:
        transport.abort()
        raise
    return transport, rest
