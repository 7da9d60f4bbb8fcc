"""The server's opening handshake, sans-I/O: request head bytes in, response bytes out.

::

    policy = HandshakePolicy(routes, origins=[...], subprotocols=[...])
    hs = ServerHandshake(policy, head)      # head: the bytes up to and with the empty line
    if hs.outcome is PENDING:               # a valid upgrade, routed, Origin allowed
        ...                                 # the glue may run process_request(hs.request)
        raw = hs.accept()                   # 101 (or an HTTP error: outcome REJECT)
    elif hs.outcome is HTTP:                # a plain HTTP request: the glue answers it
        ...
    write(hs.response)

No socket, loop or task here: the glue (:mod:`fastsock.server`) only moves
bytes, runs the application's hooks where they may await, and calls this.

Speed: the head is scanned, validated and answered (SHA-1, base64, the whole
``101``) in compiled code (:mod:`fastsock.websocket._handshake`, twin
``_handshake_py``) without a Python object per header. The request the
application sees (:class:`HandshakeRequest`) keeps only the head's bytes and
parses its headers the first time something asks for them.

Policy:

- **routes**: one handler factory, or ``{path: factory}``. A path may hold
  parameters: ``"/rooms/{room}"`` matches one segment (no ``/``),
  ``"/files/{name:path}"`` the rest of the path; the values, percent-decoded,
  are ``request.path_params``. Exact paths win over patterns, patterns are
  tried in the mapping's order, ``"*"`` catches the rest; no match is 404.
- **origins**: the ``Origin`` values allowed. A ``str`` matches exactly, a
  compiled regular expression (``re.compile(r"https://.*\\.example\\.com")``)
  must match the whole value (``fullmatch``), ``None`` allows a request
  without ``Origin`` (non-browser clients). Anything else is 403.
- **subprotocols**: the server's list in its order of preference (the first
  one the client offered wins, matched case-insensitively), or
  **select_subprotocol** ``(request, offered) -> str | None``, which picks
  from ``offered`` (the client's list as sent) or declines with None.
- **extensions**: factories with ``name`` and ``accept(params) ->
  (response_params, Extension) | None`` (params as
  :func:`~fastsock.websocket.handshake.parse_extension_header` gives them).
  One that raises a :class:`~fastsock.exceptions.HandshakeError` (for a
  malformed offer) fails the handshake with that error's status, 400 by default.
"""
from __future__ import annotations

import re
import types
from typing import Any, Callable, Iterable, Mapping, Optional, Pattern, Sequence, Tuple, Union
from urllib.parse import unquote

from .._switch import compiled
from ..exceptions import HandshakeError
from . import _handshake_py
from .handshake import MAX_HEADERS, Headers, http_response, parse_extension_header

__all__ = [
    "ACCEPT", "HTTP", "PENDING", "REJECT",
    "HandshakePolicy", "HandshakeRequest", "Router", "OriginPolicy", "ServerHandshake",
    "SelectSubprotocol", "scan_request", "parse_head",
]

_impl: Any = compiled("._handshake", __package__) or _handshake_py
scan_request = _impl.scan_request
parse_head = _impl.parse_head
WANT_ORIGIN = _handshake_py.WANT_ORIGIN
WANT_PROTOCOL = _handshake_py.WANT_PROTOCOL
WANT_EXTENSIONS = _handshake_py.WANT_EXTENSIONS
_UPGRADE = _handshake_py.UPGRADE
_PLAIN_HTTP = _handshake_py.PLAIN_HTTP

# ServerHandshake.outcome
PENDING = "pending"    # a valid upgrade, routed and allowed: call accept() (or reject())
HTTP = "http"          # a well-formed plain HTTP request: the glue answers it
ACCEPT = "accept"      # response is the 101
REJECT = "reject"      # response is an HTTP error; failure names why

HeaderList = Sequence[Tuple[str, str]]
SelectSubprotocol = Callable[["HandshakeRequest", list[str]], Optional[str]]
OriginItem = Union[str, Pattern[str], None]
# A head may not exceed what the scan accepted; parse_head re-checks none of it.
_NO_LIMIT = 1 << 30


class HandshakeRequest:
    """The request of an opening handshake, as the application sees it.

    Same fields as :class:`~fastsock.websocket.handshake.Request` (``method``,
    ``target``, ``path``, ``query``, ``version``, ``headers``), made from the
    head's bytes when first read. ``path_params`` holds the route's
    parameters; ``state`` is a namespace the application may fill (e.g.
    ``process_request`` sets ``request.state.user``; the handler reads
    ``ws.request.state.user``).
    """

    __slots__ = ("head", "_parsed", "_params", "_state")

    def __init__(self, head: bytes, params: Optional[dict[str, str]] = None) -> None:
        self.head = head
        self._parsed: Optional[tuple[str, str, str, Headers]] = None
        self._params = params
        self._state: Optional[types.SimpleNamespace] = None

    def _parse(self) -> tuple[str, str, str, Headers]:
        parsed = self._parsed
        if parsed is None:
            method, target, version, items = parse_head(self.head, _NO_LIMIT)
            parsed = self._parsed = (method, target, version, Headers(items))
        return parsed

    @property
    def method(self) -> str:
        return self._parse()[0]

    @property
    def target(self) -> str:
        """Path plus query, as sent."""
        head = self.head
        start = head.index(b" ") + 1
        return head[start:head.index(b" ", start)].decode("ascii")

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def version(self) -> str:
        return self._parse()[2]

    @property
    def headers(self) -> Headers:
        return self._parse()[3]

    @property
    def path_params(self) -> dict[str, str]:
        return dict(self._params) if self._params else {}

    @property
    def state(self) -> types.SimpleNamespace:
        if self._state is None:
            self._state = types.SimpleNamespace()
        return self._state

    def __repr__(self) -> str:
        return f"<HandshakeRequest {self.target}>"


class Router:
    """Path → handler factory, with ``{name}`` and ``{name:path}`` parameters."""

    __slots__ = ("default", "exact", "patterns", "fallback")

    _PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")

    def __init__(self, routes: Union[Callable[[], Any], Mapping[str, Callable[[], Any]]]) -> None:
        self.default: Optional[Callable[[], Any]] = None
        self.exact: dict[str, Callable[[], Any]] = {}
        self.patterns: list[tuple[Pattern[str], Callable[[], Any]]] = []
        self.fallback: Optional[Callable[[], Any]] = None
        if not isinstance(routes, Mapping):
            self.default = routes
            return
        for path, factory in routes.items():
            if path == "*":
                self.fallback = factory
            elif "{" in path:
                self.patterns.append((self._compile(path), factory))
            else:
                self.exact[path] = factory

    @classmethod
    def _compile(cls, path: str) -> Pattern[str]:
        out, pos = [], 0
        for m in cls._PARAM.finditer(path):
            out.append(re.escape(path[pos:m.start()]))
            out.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})")
            pos = m.end()
        rest = path[pos:]
        if "{" in rest or "}" in rest:
            raise ValueError(f"route {path!r}: a parameter is '{{name}}' or '{{name:path}}'")
        out.append(re.escape(rest))
        return re.compile("".join(out))

    def match(self, path: str) -> Optional[tuple[Callable[[], Any], Optional[dict[str, str]]]]:
        """``(factory, params or None)`` for ``path``, or None (404)."""
        if self.default is not None:
            return self.default, None
        factory = self.exact.get(path)
        if factory is not None:
            return factory, None
        for pattern, factory in self.patterns:
            m = pattern.fullmatch(path)
            if m is not None:
                return factory, {k: unquote(v) for k, v in m.groupdict().items()}
        if self.fallback is not None:
            return self.fallback, None
        return None


class OriginPolicy:
    """Allowed ``Origin`` values: exact strings, regex patterns (fullmatch), None."""

    __slots__ = ("exact", "patterns", "allow_missing")

    def __init__(self, origins: Iterable[OriginItem]) -> None:
        self.exact: set[str] = set()
        self.patterns: list[Pattern[str]] = []
        self.allow_missing = False
        for item in origins:
            if item is None:
                self.allow_missing = True
            elif isinstance(item, str):
                self.exact.add(item)
            elif isinstance(item, re.Pattern):
                self.patterns.append(item)
            else:
                raise TypeError(f"an origin is a str, a compiled re pattern or None, not {item!r}")

    def allows(self, origin: Optional[str]) -> bool:
        if origin is None:
            return self.allow_missing
        if origin in self.exact:
            return True
        return any(p.fullmatch(origin) for p in self.patterns)


class HandshakePolicy:
    """What a server accepts; shared by all its handshakes (see the module doc)."""

    __slots__ = ("router", "origins", "subprotocols", "select_subprotocol", "extensions",
                 "extra_headers", "max_headers", "want")

    def __init__(self, routes: Union[Callable[[], Any], Mapping[str, Callable[[], Any]]], *,
                 origins: Optional[Iterable[OriginItem]] = None,
                 subprotocols: Sequence[str] = (),
                 select_subprotocol: Optional[SelectSubprotocol] = None,
                 extensions: Sequence[Any] = (),
                 extra_headers: Union[HeaderList, Callable[[HandshakeRequest], HeaderList]] = (),
                 max_headers: int = MAX_HEADERS) -> None:
        self.router = routes if isinstance(routes, Router) else Router(routes)
        self.origins = None if origins is None else OriginPolicy(origins)
        self.subprotocols = tuple(subprotocols)
        self.select_subprotocol = select_subprotocol
        self.extensions = tuple(extensions)
        self.extra_headers = extra_headers
        self.max_headers = max_headers
        # Only the header values some policy reads become str objects.
        self.want = ((WANT_ORIGIN if self.origins is not None else 0)
                     | (WANT_PROTOCOL if self.subprotocols or select_subprotocol else 0)
                     | (WANT_EXTENSIONS if self.extensions else 0))


def _error_headers(status: int) -> list[tuple[str, str]]:
    if status == 426:
        return [("Sec-WebSocket-Version", "13")]
    if status == 405:
        return [("Allow", "GET")]
    return []


class ServerHandshake:
    """One opening handshake on the server (see the module doc).

    After construction ``outcome`` is ``PENDING`` (call :meth:`accept` or
    :meth:`reject`), ``HTTP`` (a plain request; ``request`` is set) or
    ``REJECT`` (``response`` holds the error, ``failure`` the metric label:
    ``bad_request``, ``bad_upgrade``, ``no_route`` or ``origin``).
    """

    __slots__ = ("policy", "outcome", "failure", "status", "reason", "request", "response",
                 "factory", "subprotocol", "extensions", "_protocols", "_offers")

    def __init__(self, policy: HandshakePolicy, head: bytes) -> None:
        self.policy = policy
        self.failure: Optional[str] = None
        self.status = 0
        self.reason = ""
        self.request: Optional[HandshakeRequest] = None
        self.response: Optional[bytes] = None
        self.factory: Optional[Callable[[], Any]] = None
        self.subprotocol: Optional[str] = None
        self.extensions: Sequence[Any] = ()
        status, reason, target, response, origin, protocols, offers = scan_request(
            head, policy.max_headers, policy.want)
        self._protocols: Optional[str] = protocols
        self._offers: Optional[str] = offers
        if status == _UPGRADE:
            router = policy.router
            if router.default is not None:      # one handler for every path
                self.factory = router.default
                self.request = HandshakeRequest(head)
            else:
                path = target.partition("?")[0]
                match = router.match(path)
                if match is None:
                    self.outcome = PENDING
                    self.reject(404, f"no WebSocket endpoint at {path}", failure="no_route")
                    return
                self.factory, params = match
                self.request = HandshakeRequest(head, params)
            self.response = response
            self.outcome = PENDING
            if policy.origins is not None and not policy.origins.allows(origin):
                self.reject(403, "origin not allowed", failure="origin")
        elif status == _PLAIN_HTTP:
            self.request = HandshakeRequest(head)
            self.outcome = HTTP
        else:
            # target is set when the head parsed and the upgrade checks failed
            self.outcome = PENDING
            self.reject(status, reason, _error_headers(status),
                        failure="bad_request" if target is None else "bad_upgrade")

    def reject(self, status: int, reason: str, headers: HeaderList = (), *,
               failure: str = "process_request", body: Union[bytes, str, None] = None) -> bytes:
        """Answer with an HTTP error instead (body ``"{status} {reason}\\n"``
        unless ``body`` is given); returns the response bytes."""
        self.outcome = REJECT
        self.failure = failure
        self.status = status
        self.reason = reason
        self.response = http_response(status, f"{status} {reason}\n" if body is None else body,
                                      headers)
        return self.response

    def accept(self) -> bytes:
        """Negotiate the subprotocol and extensions; return the 101 (or, when
        an extension factory refuses the offer as malformed, the HTTP error)."""
        if self.outcome is not PENDING or self.request is None or self.response is None:
            raise RuntimeError(f"cannot accept a handshake whose outcome is {self.outcome}")
        policy = self.policy
        response = self.response
        extra: list[tuple[str, str]] = []
        if self._protocols is not None:
            self.subprotocol = self._pick_subprotocol(self._protocols)
            if self.subprotocol is not None:
                extra.append(("Sec-WebSocket-Protocol", self.subprotocol))
        if policy.extensions and self._offers is not None:
            try:
                answer = self._negotiate(self._offers)
            except HandshakeError as exc:
                return self.reject(exc.status, str(exc), failure="negotiation")
            if answer:
                extra.append(("Sec-WebSocket-Extensions", answer))
        headers = policy.extra_headers
        if callable(headers):
            headers = headers(self.request)
        if headers:
            extra.extend(headers)
        if extra:
            lines = []
            for name, value in extra:
                if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                    raise ValueError(f"header {name!r} contains a line break")
                lines.append(f"{name}: {value}\r\n")
            response = response[:-2] + "".join(lines).encode("latin-1") + b"\r\n"
            self.response = response
        self.outcome = ACCEPT
        return response

    def _pick_subprotocol(self, header: str) -> Optional[str]:
        offered = [t.strip() for t in header.split(",") if t.strip()]
        if not offered:
            return None
        select = self.policy.select_subprotocol
        if select is not None:
            assert self.request is not None
            chosen = select(self.request, offered)
            if chosen is not None and chosen not in offered:
                raise ValueError(f"select_subprotocol chose {chosen!r}, which the client "
                                 f"did not offer ({offered!r})")
            return chosen
        lowered = {t.lower() for t in offered}
        # Tokens are matched case-insensitively; answer with the server's spelling.
        for proto in self.policy.subprotocols:
            if proto.lower() in lowered:
                return proto
        return None

    def _negotiate(self, header: str) -> Optional[str]:
        answers: list[str] = []
        accepted: list[Any] = []
        self.extensions = accepted
        used: set[str] = set()
        rsv = 0
        for name, params in parse_extension_header(header):
            if name in used:
                continue
            for factory in self.policy.extensions:
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
        return ", ".join(answers) or None
