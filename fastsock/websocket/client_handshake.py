"""The client side of the opening handshake, sans-I/O.

:class:`ClientHandshake` builds the upgrade request (key, subprotocols,
extension offers, Origin, Authorization from the URI's ``user:password@``,
User-Agent, extra headers) and checks the server's answer (status,
``Sec-WebSocket-Accept``, subprotocol, extensions). It never touches a
socket: the glue (:class:`fastsock.client.ClientHandshakeProtocol`) writes
:meth:`ClientHandshake.data_to_send` and feeds what arrives to
:meth:`ClientHandshake.receive_data`. Redirects are decided here too
(:func:`redirect_url`); following them (a new connection) is the glue's job.

Every way the server's answer can be wrong raises one exception::

    InvalidURI               (also ValueError) not a ws:// or wss:// URL
    InvalidResponseError     malformed head, bad Accept key, unoffered subprotocol/extension
    ├── InvalidStatus        the server answered, but not 101; carries .response
    └── RedirectError        a redirect that cannot be followed (no Location, wss -> ws)
        └── TooManyRedirects more than max_redirects in a row

Client extension factories have ``name``, ``offer() -> str`` (the offer in
``Sec-WebSocket-Extensions``) and ``accept(params) -> Extension | None``
(the extension for the server's answer, or None to refuse it).
"""
from __future__ import annotations

import base64
import sys
from typing import Any, NamedTuple, Optional, Protocol, Sequence, Tuple
from urllib.parse import unquote, urljoin, urlsplit

from .. import __version__
from ..exceptions import HandshakeError, InvalidResponseError
from .handshake import (
    MAX_HEAD_SIZE,
    Headers,
    Response,
    WebSocketURI,
    check_response,
    client_request,
    parse_extension_header,
    parse_response,
    parse_uri,
)

__all__ = [
    "USER_AGENT",
    "DEFAULT_MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "ClientExtensionFactory",
    "ClientHandshake",
    "ClientURI",
    "InvalidURI",
    "InvalidStatus",
    "RedirectError",
    "TooManyRedirects",
    "parse_client_uri",
    "basic_authorization",
    "redirect_url",
]

USER_AGENT = f"fastsock/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}"
# websockets follows at most 10 redirects in a row; so do we by default.
DEFAULT_MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Characters of the body quoted in an InvalidStatus message: it usually says why.
_BODY_EXCERPT = 200
# Headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

HeaderList = Sequence[Tuple[str, str]]


class InvalidURI(HandshakeError, ValueError):
    """The URI is not a usable ``ws://`` or ``wss://`` URL (status 0: nothing was sent)."""

    status = 0


class InvalidStatus(InvalidResponseError):
    """The server answered with a status other than 101. ``response`` holds it
    (``status``, ``headers``, the start of ``body``)."""

    def __init__(self, response: Response) -> None:
        body = bytes(response.body[:_BODY_EXCERPT]) if isinstance(response.body, bytes) else b""
        text = body.decode("utf-8", "replace").strip()
        super().__init__(f"server rejected the WebSocket connection: HTTP {response.status}"
                         + (f": {text}" if text else ""), response.status)
        self.response = response


class RedirectError(InvalidResponseError):
    """A redirect that cannot be followed. ``response`` is the 3xx answer."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message, response.status)
        self.response = response


class TooManyRedirects(RedirectError):
    """More redirects in a row than ``max_redirects``."""


class ClientExtensionFactory(Protocol):
    """What the client needs from an extension factory (see the module docstring)."""

    name: str

    def offer(self) -> str: ...

    def accept(self, params: Sequence[tuple[str, Optional[str]]]) -> Any: ...


class ClientURI(NamedTuple):
    """A parsed ``ws://``/``wss://`` URL plus its ``user:password@``, if any."""

    url: str                              # as given, for resolving relative redirects
    uri: WebSocketURI
    credentials: Optional[tuple[str, str]]


def parse_client_uri(url: str) -> ClientURI:
    """Parse ``url``; raises :class:`InvalidURI` (a ``ValueError``)."""
    try:
        uri = parse_uri(url)
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError as exc:             # includes a port out of range
        raise InvalidURI(str(exc)) from None
    credentials = None
    if username is not None:
        if password is None:
            raise InvalidURI(f"{url!r} has a user name but no password")
        credentials = (unquote(username, errors="strict"), unquote(password, errors="strict"))
    return ClientURI(url, uri, credentials)


def basic_authorization(username: str, password: str) -> str:
    """The value of an ``Authorization: Basic`` header (RFC 7617, UTF-8)."""
    if ":" in username:
        raise ValueError("a Basic auth user name cannot contain ':'")
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _has(headers: HeaderList, name: str) -> bool:
    name = name.lower()
    return any(k.lower() == name for k, _ in headers)


def redirect_url(current: ClientURI, response: Response) -> str:
    """Where a 3xx ``response`` sends the client, checked: raises
    :class:`RedirectError` without a ``Location`` header, for a target that
    is not ws:// or wss://, and for wss:// -> ws:// (a TLS downgrade)."""
    headers = response.headers if isinstance(response.headers, Headers) else Headers(response.headers)
    location = headers.get("Location")
    if not location:
        raise RedirectError(f"server redirected with HTTP {response.status} but sent no "
                            f"Location header", response)
    target = urljoin(current.url, location)
    try:
        new = parse_client_uri(target)
    except InvalidURI as exc:
        raise RedirectError(f"server redirected to {target!r}, which cannot be followed: {exc}",
                            response) from None
    if current.uri.secure and not new.uri.secure:
        raise RedirectError(f"server redirected from wss:// to non-secure {target!r}", response)
    return target


def same_origin(a: WebSocketURI, b: WebSocketURI) -> bool:
    return a.secure == b.secure and a.host == b.host and a.port == b.port


def strip_credentials(headers: HeaderList) -> list[tuple[str, str]]:
    """``headers`` without Authorization, Cookie and Proxy-Authorization: what
    may follow a redirect to another origin."""
    return [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]


class ClientHandshake:
    """One client opening handshake (see the module docstring).

    Use: write :meth:`data_to_send`; call :meth:`receive_data` with each
    chunk until it returns True (the response is complete and valid), then
    read ``response``, ``subprotocol``, ``extensions`` and ``rest`` (bytes
    after the head: the first WebSocket frames). A 3xx answer raises
    :class:`InvalidStatus` like any non-101 status; :func:`redirect_url`
    tells where it points.
    """

    def __init__(self, target: ClientURI | WebSocketURI, *, key: Optional[str] = None,
                 subprotocols: Sequence[str] = (), extensions: Sequence[ClientExtensionFactory] = (),
                 origin: Optional[str] = None, headers: HeaderList = (),
                 user_agent_header: Optional[str] = USER_AGENT,
                 max_head_size: int = MAX_HEAD_SIZE) -> None:
        if isinstance(target, WebSocketURI):
            target = ClientURI("", target, None)
        self.target = target
        self.uri = target.uri
        self.subprotocols = tuple(subprotocols)
        self.factories = tuple(extensions)
        self.max_head_size = max_head_size
        fields = list(headers)
        # Explicit headers win over the URI's credentials and the default agent.
        if target.credentials is not None and not _has(fields, "Authorization"):
            fields.append(("Authorization", basic_authorization(*target.credentials)))
        if user_agent_header is not None and not _has(fields, "User-Agent"):
            fields.append(("User-Agent", user_agent_header))
        offers = ", ".join(f.offer() for f in self.factories) or None
        self.key, self._request = client_request(self.uri, key, subprotocols=self.subprotocols,
                                                 extensions=offers, origin=origin, headers=fields)
        self._buffer = b""
        self.response: Optional[Response] = None
        self.subprotocol: Optional[str] = None
        self.extensions: list[Any] = []
        self.rest = b""

    def data_to_send(self) -> bytes:
        """The request bytes (the same on every call)."""
        return self._request

    def receive_data(self, data: bytes) -> bool:
        """Feed response bytes. False: the head is not complete yet. True: the
        server accepted. Raises :class:`InvalidStatus` for another status,
        :class:`InvalidResponseError` for anything else wrong."""
        if self.response is not None:
            raise InvalidResponseError("the handshake response was already received", 101)
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._buffer) > self.max_head_size:
                raise InvalidResponseError("server sent a response head that is too large", 0)
            return False
        end += 4
        head, rest = self._buffer[:end], self._buffer[end:]
        self._buffer = b""
        response = parse_response(head)
        if response.status != 101:
            # Keep the start of the body that came with the head: it says why.
            raise InvalidStatus(response._replace(body=response.body or rest[:_BODY_EXCERPT]))
        self.subprotocol = check_response(response, self.key, self.subprotocols)
        self.extensions = self.accept_extensions(
            Headers(response.headers).get("Sec-WebSocket-Extensions"))
        self.response = response
        self.rest = rest
        return True

    def accept_extensions(self, header: Optional[str]) -> list[Any]:
        """The extensions the server accepted, each checked by the factory that offered it."""
        accepted: list[Any] = []
        used: set[str] = set()
        for name, params in parse_extension_header(header):
            factory = next((f for f in self.factories if f.name == name and name not in used), None)
            ext = factory.accept(params) if factory is not None else None
            if ext is None:
                raise InvalidResponseError(
                    f"server accepted extension {name!r}, which was not offered like that", 101)
            used.add(name)
            accepted.append(ext)
        return accepted
