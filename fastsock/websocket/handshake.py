"""RFC 6455 opening handshake, sans-I/O: parse and check requests and responses.

Nothing here touches a socket. The server decides with
:class:`~fastsock.websocket.server_handshake.ServerHandshake`, which scans
the head in compiled code; :func:`parse_request` (httptools),
:func:`check_request` and :func:`accept_response` are the same checks
step by step, a reference the compiled scan is tested against, and
:func:`http_response` writes every HTTP answer. The client glue builds its
request with :func:`client_request` and checks the answer with
:func:`parse_response` and :func:`check_response`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import httptools

from ..exceptions import InvalidHandshakeError, InvalidResponseError

__all__ = [
    "GUID",
    "MAX_HEAD_SIZE",
    "MAX_HEADERS",
    "Headers",
    "Request",
    "Response",
    "WebSocketURI",
    "accept_key",
    "parse_request",
    "is_upgrade_attempt",
    "check_request",
    "accept_response",
    "http_response",
    "parse_uri",
    "client_request",
    "parse_response",
    "check_response",
    "header_tokens",
    "parse_extension_header",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_SIZE = 16 * 1024   # request line + headers, bytes
MAX_HEADERS = 100

HeaderList = Sequence[Tuple[str, str]]

_REASONS = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    426: "Upgrade Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class Headers:
    """HTTP headers in arrival order with case-insensitive lookup."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Tuple[str, str]] = ()) -> None:
        self._items = list(items)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``name``; repeated headers are joined with ``", "``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        # A handshake makes about a dozen lookups; comparing lengths first
        # skips lower-casing almost every name that cannot match (an index
        # would be faster but costs memory for the connection's life).
        name = name.lower()
        size = len(name)
        return [v for k, v in self._items if len(k) == size and k.lower() == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def append(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request(NamedTuple):
    """A parsed HTTP/1.1 request head."""

    method: str
    target: str            # raw request target: path plus query
    path: str
    query: str
    version: str           # "1.1"
    headers: Headers


class Response(NamedTuple):
    """An HTTP response: what a ``process_request`` or ``http_handler`` hook returns."""

    status: int
    headers: "HeaderList | Headers" = ()
    body: bytes | str = b""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.encode("ascii") + GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def header_tokens(value: Optional[str]) -> list[str]:
    """Lower-cased tokens of a comma-separated header value."""
    if not value:
        return []
    return [t.strip().lower() for t in value.split(",") if t.strip()]


class _Collector:
    __slots__ = ("url", "headers", "count", "limit", "error")

    def __init__(self, limit: int) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.count = 0
        self.limit = limit
        self.error: Optional[str] = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count += 1
        if self.count > self.limit:
            self.error = f"more than {self.limit} headers"
            return
        try:
            self.headers.append((name.decode("ascii"), value.decode("latin-1").strip()))
        except UnicodeDecodeError:
            self.error = "non-ASCII header name"


def parse_request(head: bytes, max_headers: int = MAX_HEADERS) -> Request:
    """Parse a complete request head (ending with a blank line).

    Raises :class:`InvalidHandshakeError` with the HTTP status to answer.
    """
    collector = _Collector(max_headers)
    parser = httptools.HttpRequestParser(collector)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass   # the head ends where the upgraded stream begins: expected
    except httptools.HttpParserError as exc:
        raise InvalidHandshakeError(f"peer sent a malformed HTTP request: {exc}", 400) from None
    if collector.error is not None:
        status = 431 if collector.count > max_headers else 400
        raise InvalidHandshakeError(f"peer sent {collector.error}", status)
    method = parser.get_method().decode("ascii", "replace")
    version = parser.get_http_version()
    try:
        target = collector.url.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidHandshakeError("peer sent a non-ASCII request target", 400) from None
    path, _, query = target.partition("?")
    return Request(method, target, path, query, version, Headers(collector.headers))


def is_upgrade_attempt(request: Request) -> bool:
    """True if the request tries to open a WebSocket (else: plain HTTP)."""
    h = request.headers
    return "Upgrade" in h or "Sec-WebSocket-Key" in h


def check_request(request: Request) -> str:
    """Validate a WebSocket upgrade request; return its ``Sec-WebSocket-Key``.

    Raises :class:`InvalidHandshakeError` carrying the status to answer
    (400, 405 or 426).
    """
    h = request.headers
    if request.method != "GET":
        raise InvalidHandshakeError(f"peer used method {request.method}, expected GET", 405)
    if request.version != "1.1":
        raise InvalidHandshakeError(f"peer used HTTP/{request.version}, expected HTTP/1.1", 400)
    if not h.get("Host"):
        raise InvalidHandshakeError("peer sent no Host header", 400)
    if "websocket" not in header_tokens(h.get("Upgrade")):
        raise InvalidHandshakeError("peer sent no 'Upgrade: websocket' header", 400)
    if "upgrade" not in header_tokens(h.get("Connection")):
        raise InvalidHandshakeError("peer sent no 'Connection: upgrade' header", 400)
    versions = h.get_all("Sec-WebSocket-Version")
    if len(versions) != 1 or versions[0].strip() != "13":
        raise InvalidHandshakeError("peer did not ask for Sec-WebSocket-Version 13", 426)
    keys = h.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise InvalidHandshakeError("peer sent no or several Sec-WebSocket-Key headers", 400)
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise InvalidHandshakeError("peer sent a Sec-WebSocket-Key that is not base64 of 16 bytes", 400)
    return key


def _head(status: int, headers: Iterable[Tuple[str, str]]) -> list[str]:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return lines


def accept_response(key: str, subprotocol: Optional[str] = None,
                    extensions: Optional[str] = None, headers: HeaderList = ()) -> bytes:
    """The ``101 Switching Protocols`` answer for a checked request."""
    fields = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", accept_key(key))]
    if subprotocol:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    fields.extend(headers)
    return ("\r\n".join(_head(101, fields)) + "\r\n\r\n").encode("latin-1")


def http_response(status: int, body: bytes | str = b"",
                  headers: Iterable[Tuple[str, str]] = (), *, close: bool = True) -> bytes:
    """A complete HTTP/1.1 response; a ``str`` body is sent as UTF-8 text/plain."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    fields = list(headers)
    names = {name.lower() for name, _ in fields}
    if "content-type" not in names and body:
        fields.append(("Content-Type", "text/plain; charset=utf-8"))
    fields.append(("Content-Length", str(len(body))))
    if close:
        fields.append(("Connection", "close"))
    return ("\r\n".join(_head(status, fields)) + "\r\n\r\n").encode("latin-1") + body


def parse_extension_header(value: Optional[str]) -> list[tuple[str, list[tuple[str, Optional[str]]]]]:
    """``Sec-WebSocket-Extensions`` as ``[(name, [(param, value|None), ...]), ...]``."""
    offers = []
    for item in (value or "").split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params: list[tuple[str, Optional[str]]] = []
        for p in parts[1:]:
            # An empty parameter (";;" or a trailing ";") is kept as ("",
            # None): the factory decides (permessage-deflate answers 400).
            k, eq, v = p.partition("=")
            params.append((k.strip().lower(), v.strip().strip('"') if eq else None))
        offers.append((parts[0].lower(), params))
    return offers


# --------------------------------------------------------------------- client


class WebSocketURI(NamedTuple):
    secure: bool
    host: str              # without brackets
    port: int
    resource: str          # path plus query, at least "/"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Split a ``ws://`` (or ``wss://``) URL; IPv6 literals go in brackets."""
    parts = urlsplit(uri)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{uri!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise ValueError(f"{uri!r} has no host")
    if parts.fragment:
        raise ValueError(f"{uri!r} has a fragment, which WebSocket URLs cannot have")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return WebSocketURI(secure, parts.hostname, port, resource)


def client_request(uri: WebSocketURI, key: Optional[str] = None, *,
                   subprotocols: Sequence[str] = (), extensions: Optional[str] = None,
                   origin: Optional[str] = None, headers: HeaderList = ()) -> tuple[str, bytes]:
    """Return ``(key, request bytes)`` for an opening handshake."""
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
    fields = [("Host", uri.host_header), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if origin:
        fields.append(("Origin", origin))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", extensions))
    fields.extend(headers)
    lines = [f"GET {uri.resource} HTTP/1.1"]
    for name, value in fields:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return key, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _ResponseCollector(_Collector):
    __slots__ = ("body",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body


def parse_response(head: bytes, max_headers: int = MAX_HEADERS) -> Response:
    """Parse a response head (plus any body bytes that came with it)."""
    collector = _ResponseCollector(max_headers)
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        raise InvalidResponseError(f"server sent a malformed HTTP response: {exc}", 0) from None
    if collector.error is not None:
        raise InvalidResponseError(f"server sent {collector.error}", 0)
    return Response(parser.get_status_code(), Headers(collector.headers), collector.body)


def check_response(response: Response, key: str, subprotocols: Sequence[str] = ()) -> Optional[str]:
    """Validate the server's answer; return the chosen subprotocol (or None)."""
    status = response.status
    h = response.headers if isinstance(response.headers, Headers) else Headers(response.headers)
    if status != 101:
        raise InvalidResponseError(f"server rejected the WebSocket connection: HTTP {status}", status)
    if "websocket" not in header_tokens(h.get("Upgrade")):
        raise InvalidResponseError("server sent no 'Upgrade: websocket' header", status)
    if "upgrade" not in header_tokens(h.get("Connection")):
        raise InvalidResponseError("server sent no 'Connection: upgrade' header", status)
    if h.get("Sec-WebSocket-Accept") != accept_key(key):
        raise InvalidResponseError("server sent a wrong Sec-WebSocket-Accept", status)
    protocol = h.get("Sec-WebSocket-Protocol")
    if protocol is not None and protocol not in subprotocols:
        raise InvalidResponseError(f"server chose subprotocol {protocol!r}, which was not offered", status)
    return protocol
