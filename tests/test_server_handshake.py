"""The sans-I/O server handshake (fastsock/websocket/server_handshake.py) and
its compiled scan: the compiled module and its twin give identical results
for the same bytes; policy (routes with parameters, Origin patterns,
subprotocol selection, extension negotiation) decided without I/O."""
from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsock.exceptions import InvalidHandshakeError
from fastsock.websocket import _handshake_py
from fastsock.websocket.protocol import Extension
from fastsock.websocket.server_handshake import (ACCEPT, HTTP, PENDING, REJECT, HandshakePolicy,
                                                 ServerHandshake)

_handshake = pytest.importorskip("fastsock.websocket._handshake",
                                 reason="the compiled scan is not built (FASTSOCK_NO_EXT)")

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_VALUE = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="      # RFC 6455 section 1.3


def head(target: str = "/", *, extra: str = "", key: str = KEY, method: str = "GET",
         version: str = "1.1") -> bytes:
    return (f"{method} {target} HTTP/{version}\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode("latin-1")


def both(raw: bytes, want: int = 7, max_headers: int = 100) -> tuple[object, ...]:
    compiled = _handshake.scan_request(raw, max_headers, want)
    twin = _handshake_py.scan_request(raw, max_headers, want)
    assert compiled == twin
    return compiled


def test_rfc_example_accept_key() -> None:
    status, _, target, response, *_ = both(head("/chat?x=1"))
    assert status == 101 and target == "/chat?x=1"
    assert response == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                        + ACCEPT_VALUE.encode() + b"\r\n\r\n")


@given(st.binary(min_size=0, max_size=80))
def test_accept_key_matches_hashlib(key: bytes) -> None:
    expected = base64.b64encode(hashlib.sha1(key + _handshake_py.GUID).digest())
    assert _handshake.accept_key(key) == expected == _handshake_py.accept_key(key)


@given(st.binary(min_size=16, max_size=16))
def test_any_valid_key_is_answered_identically(raw_key: bytes) -> None:
    key = base64.b64encode(raw_key).decode()
    status, _, _, response, *_ = both(head(key=key))
    accept = base64.b64encode(hashlib.sha1(key.encode() + _handshake_py.GUID).digest())
    assert status == 101 and response is not None and accept in response


# Pieces of request heads, valid and broken, for the differential test.
LINES = st.sampled_from([
    "Host: example.com", "Host:", "Host:  ", "host: a", "Upgrade: websocket", "upgrade: WebSocket",
    "Upgrade: h2c, websocket", "Upgrade: websocket/13", "Connection: Upgrade",
    "Connection: keep-alive, upgrade", "connection: close", f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Key: abc", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=", "Sec-WebSocket-Key:  "
    + KEY + " ", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8",
    "sec-websocket-version:13", "Origin: https://a.example", "Origin: null",
    "Sec-WebSocket-Protocol: chat, superchat", "Sec-WebSocket-Extensions: permessage-deflate",
    "X-Folded: a\r\n b", "Bad Name: x", ": empty", "NoColon", "X-Ctl: a\x01b", "X-Del: \x7f",
    "X-Tab: a\tb", "X-Latin: caf\xe9", "X-Bare-CR: a\rb", "X-Bare-LF: a\nb", "",
])
REQUEST_LINES = st.sampled_from([
    "GET / HTTP/1.1", "GET /chat?room=1 HTTP/1.1", "POST / HTTP/1.1", "GET / HTTP/1.0",
    "GET / HTTP/2.0", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "get / HTTP/1.1", "GET /\x7f HTTP/1.1",
    "GET / HTTPS/1.1", "HEAD /x HTTP/1.1", "GET", "",
])


@settings(max_examples=400, deadline=None)
@given(REQUEST_LINES, st.lists(LINES, max_size=12), st.integers(0, 12), st.integers(0, 7),
       st.booleans())
def test_compiled_and_twin_agree(line: str, lines: list[str], max_headers: int, want: int,
                                 terminated: bool) -> None:
    raw = "\r\n".join([line, *lines]) + ("\r\n\r\n" if terminated else "\r\n")
    both(raw.encode("latin-1"), want, max_headers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 7))
def test_compiled_and_twin_agree_on_noise(noise: bytes, want: int) -> None:
    both(noise, want)
    both(head() [:40] + noise + b"\r\n\r\n", want)


def test_repeated_headers_are_joined_and_bounded() -> None:
    raw = head(extra="Origin: a\r\nOrigin: b\r\nSec-WebSocket-Protocol: x\r\n"
                     "Sec-WebSocket-Protocol: y\r\n")
    assert both(raw)[4:6] == ("a, b", "x, y")
    too_many = head(extra="Upgrade: websocket\r\n" * 8)
    assert both(too_many)[:2] == (400, "peer repeated a WebSocket header too often")


@pytest.mark.parametrize("raw, status, why", [
    (head(method="POST"), 405, "bad_upgrade"),
    (head(version="1.0"), 400, "bad_upgrade"),
    (head(key="abc"), 400, "bad_upgrade"),
    (head().replace(b"Version: 13", b"Version: 8"), 426, "bad_upgrade"),
    (head().replace(b"Host: example.com\r\n", b""), 400, "bad_upgrade"),
    (head(extra="X: a\r\n b\r\n"), 400, "bad_request"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "bad_request"),
])
def test_malformed_requests_are_rejected(raw: bytes, status: int, why: str) -> None:
    hs = ServerHandshake(HandshakePolicy(lambda: None), raw)
    assert hs.outcome is REJECT and hs.status == status and hs.failure == why
    assert hs.response is not None
    assert hs.response.startswith(f"HTTP/1.1 {status} ".encode())
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in hs.response
    if status == 405:
        assert b"Allow: GET\r\n" in hs.response


def test_plain_http_request_is_left_to_the_glue() -> None:
    hs = ServerHandshake(HandshakePolicy(lambda: None),
                         b"HEAD /health?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
    assert hs.outcome is HTTP and hs.request is not None
    r = hs.request
    assert (r.method, r.path, r.query, r.version) == ("HEAD", "/health", "x=1", "1.1")
    assert r.headers.get("accept") == "*/*"


def test_routes_with_path_parameters() -> None:
    rooms, files, exact, other = object(), object(), object(), object()
    policy = HandshakePolicy({"/rooms/{room}": lambda: rooms, "/files/{name:path}": lambda: files,
                              "/rooms/lobby": lambda: exact, "*": lambda: other})
    hs = ServerHandshake(policy, head("/rooms/caf%C3%A9?x=1"))
    assert hs.outcome is PENDING and hs.factory is not None and hs.factory() is rooms
    assert hs.request is not None and hs.request.path_params == {"room": "café"}
    hs = ServerHandshake(policy, head("/rooms/lobby"))
    assert hs.factory is not None and hs.factory() is exact
    assert hs.request is not None and hs.request.path_params == {}
    hs = ServerHandshake(policy, head("/files/a/b.txt"))
    assert hs.request is not None and hs.request.path_params == {"name": "a/b.txt"}
    hs = ServerHandshake(policy, head("/rooms/a/b"))
    assert hs.factory is not None and hs.factory() is other
    hs = ServerHandshake(HandshakePolicy({"/rooms/{room}": lambda: rooms}), head("/rooms/"))
    assert hs.outcome is REJECT and hs.status == 404 and hs.failure == "no_route"


def test_origin_exact_pattern_and_missing() -> None:
    policy = HandshakePolicy(lambda: None, origins=["https://app.example",
                                                    re.compile(r"https://[a-z]+\.example\.com")])
    for origin, ok in [("https://app.example", True), ("https://eu.example.com", True),
                       ("https://eu.example.com.evil", False), ("http://app.example", False)]:
        hs = ServerHandshake(policy, head(extra=f"Origin: {origin}\r\n"))
        assert (hs.outcome is PENDING) is ok, origin
        if not ok:
            assert hs.status == 403 and hs.failure == "origin"
    assert ServerHandshake(policy, head()).outcome is REJECT
    assert ServerHandshake(HandshakePolicy(lambda: None, origins=[None]), head()).outcome is PENDING


def test_subprotocol_list_and_callable() -> None:
    offer = head(extra="Sec-WebSocket-Protocol: Chat, superchat\r\n")
    hs = ServerHandshake(HandshakePolicy(lambda: None, subprotocols=["superchat", "chat"]), offer)
    response = hs.accept()
    assert hs.outcome is ACCEPT and hs.subprotocol == "superchat"
    assert response.endswith(b"\r\nSec-WebSocket-Protocol: superchat\r\n\r\n")

    seen = []

    def select(request: object, offered: list[str]) -> str | None:
        seen.append(offered)
        return offered[0]

    hs = ServerHandshake(HandshakePolicy(lambda: None, select_subprotocol=select), offer)
    hs.accept()
    assert seen == [["Chat", "superchat"]] and hs.subprotocol == "Chat"
    hs = ServerHandshake(HandshakePolicy(lambda: None, select_subprotocol=lambda r, o: "nope"),
                         offer)
    with pytest.raises(ValueError):
        hs.accept()
    hs = ServerHandshake(HandshakePolicy(lambda: None, select_subprotocol=lambda r, o: None), offer)
    assert b"Sec-WebSocket-Protocol" not in hs.accept() and hs.subprotocol is None


class _Ext(Extension):
    name = "x-test"
    rsv = 0x40


class _Factory:
    name = "x-test"

    def accept(self, params: list[tuple[str, str | None]]) -> tuple[str, Extension] | None:
        if ("bad", None) in params:
            raise InvalidHandshakeError("peer sent a malformed x-test offer")
        if ("no", None) in params:
            return None
        return "x-test; ok", _Ext()


def test_extension_factories() -> None:
    policy = HandshakePolicy(lambda: None, extensions=[_Factory()])
    hs = ServerHandshake(policy, head(extra="Sec-WebSocket-Extensions: x-test; no, x-test\r\n"))
    assert hs.accept().endswith(b"\r\nSec-WebSocket-Extensions: x-test; ok\r\n\r\n")
    assert [type(e) for e in hs.extensions] == [_Ext]
    hs = ServerHandshake(policy, head(extra="Sec-WebSocket-Extensions: x-test; bad\r\n"))
    response = hs.accept()
    assert hs.outcome is REJECT and hs.status == 400 and hs.failure == "negotiation"
    assert response.startswith(b"HTTP/1.1 400 ")


def test_extra_headers_and_lazy_request_state() -> None:
    policy = HandshakePolicy(lambda: None,
                             extra_headers=lambda r: [("X-Path", r.path), ("X-Q", r.query)])
    hs = ServerHandshake(policy, head("/p?q=1"))
    assert hs.request is not None and hs.request._parsed is None      # nothing parsed yet
    assert hs.accept().endswith(b"\r\nX-Path: /p\r\nX-Q: q=1\r\n\r\n")
    hs.request.state.user = "ann"
    assert hs.request.state.user == "ann"
    assert hs.request.headers.get("sec-websocket-key") == KEY
    bad = ServerHandshake(HandshakePolicy(lambda: None, extra_headers=[("X", "a\r\nb")]), head())
    with pytest.raises(ValueError):
        bad.accept()


NAMES = st.sampled_from(["Host", "host", "HOST"])


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.permutations(range(5)),
       st.lists(st.tuples(st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
                          st.from_regex(r"[ -~]{0,30}", fullmatch=True)), max_size=5),
       st.sampled_from(["Upgrade", "upgrade", "keep-alive, Upgrade"]),
       st.from_regex(r"/[A-Za-z0-9/._~%-]{0,20}(\?[A-Za-z0-9=&]{0,10})?", fullmatch=True))
def test_valid_requests_match_the_httptools_reference(raw_key: bytes, order: list[int],
                                                      extra: list[tuple[str, str]],
                                                      connection: str, target: str) -> None:
    """The compiled scan accepts what parse_request + check_request accept and
    answers with accept_response's bytes."""
    from fastsock.websocket.handshake import accept_response, check_request, parse_request

    key = base64.b64encode(raw_key).decode()
    fields = [("Host", "example.com:80"), ("Upgrade", "websocket"), ("Connection", connection),
              ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    lines = [fields[i] for i in order] + extra
    raw = (f"GET {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in lines)
           + "\r\n").encode()
    request = parse_request(raw)
    expected = accept_response(check_request(request))
    status, _, got_target, response, *_ = both(raw)
    assert (status, got_target, response) == (101, request.target, expected)
    hs = ServerHandshake(HandshakePolicy(lambda: None), raw)
    assert hs.request is not None
    assert list(hs.request.headers) == list(request.headers)
    assert (hs.request.method, hs.request.path, hs.request.query, hs.request.version) == (
        request.method, request.path, request.query, request.version)
