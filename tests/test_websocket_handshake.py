"""The sans-I/O opening handshake: request/response parsing and checks."""
from __future__ import annotations

import pytest

from fastsock.exceptions import InvalidHandshakeError, InvalidResponseError
from fastsock.websocket.handshake import (
    Headers, Response, accept_key, accept_response, check_request, check_response,
    client_request, header_tokens, http_response, is_upgrade_attempt, parse_extension_header,
    parse_request, parse_response, parse_uri,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(extra: str = "", method: str = "GET", version: str = "1.1", target: str = "/chat?room=1") -> bytes:
    return (f"{method} {target} HTTP/{version}\r\nHost: server.example.com\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def test_rfc_example_accept_key() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_and_check_a_good_request() -> None:
    req = parse_request(request("Origin: http://example.com\r\n"))
    assert (req.method, req.path, req.query, req.version) == ("GET", "/chat", "room=1", "1.1")
    assert req.headers["origin"] == "http://example.com"
    assert is_upgrade_attempt(req)
    assert check_request(req) == KEY


def test_plain_http_is_not_an_upgrade_attempt() -> None:
    req = parse_request(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not is_upgrade_attempt(req)


@pytest.mark.parametrize("raw, status", [
    (request(method="PUT"), 405),
    (request(version="1.0"), 400),
    (request().replace(b"Host: server.example.com\r\n", b""), 400),
    (request().replace(b"Upgrade: websocket", b"Upgrade: irc"), 400),
    (request().replace(b"Connection: Upgrade", b"Connection: close"), 400),
    (request().replace(b"13\r\n", b"7\r\n"), 426),
    (request("Sec-WebSocket-Version: 13\r\n"), 426),           # two version headers
    (request().replace(KEY.encode(), b"AAAA"), 400),             # 3 bytes, not 16
    (request("Sec-WebSocket-Key: " + KEY + "\r\n"), 400),       # two keys
])
def test_bad_requests_carry_their_status(raw: bytes, status: int) -> None:
    with pytest.raises(InvalidHandshakeError) as info:
        check_request(parse_request(raw))
    assert info.value.status == status


def test_header_limits_and_garbage() -> None:
    with pytest.raises(InvalidHandshakeError) as info:
        parse_request(request("".join(f"X-{i}: y\r\n" for i in range(101))))
    assert info.value.status == 431
    with pytest.raises(InvalidHandshakeError) as info:
        parse_request(b"\x16\x03\x01 TLS hello\r\n\r\n")
    assert info.value.status == 400


def test_tokens_are_case_insensitive_lists() -> None:
    assert header_tokens("keep-alive, Upgrade") == ["keep-alive", "upgrade"]
    assert header_tokens(None) == []
    req = parse_request(request().replace(b"Connection: Upgrade", b"Connection: keep-alive, UPGRADE"))
    assert check_request(req) == KEY


def test_responses() -> None:
    raw = accept_response(KEY, "chat", "x-ext; a=1", [("X-Y", "z")])
    assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in raw
    assert b"Sec-WebSocket-Protocol: chat\r\n" in raw and raw.endswith(b"X-Y: z\r\n\r\n")
    raw = http_response(403, "no\n")
    assert raw == (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: 3\r\nConnection: close\r\n\r\nno\n")
    with pytest.raises(ValueError):
        http_response(200, "", [("X", "a\r\nInjected: 1")])


def test_extension_header_parsing() -> None:
    offers = parse_extension_header('permessage-deflate; client_max_window_bits, x-foo; a="1"; b')
    assert offers == [("permessage-deflate", [("client_max_window_bits", None)]),
                      ("x-foo", [("a", "1"), ("b", None)])]


@pytest.mark.parametrize("uri, host, port, resource, header", [
    ("ws://example.com", "example.com", 80, "/", "example.com"),
    ("ws://example.com:8080/a/b?c=d", "example.com", 8080, "/a/b?c=d", "example.com:8080"),
    ("ws://[::1]:9000/x", "::1", 9000, "/x", "[::1]:9000"),
    ("wss://h/", "h", 443, "/", "h"),
])
def test_parse_uri(uri: str, host: str, port: int, resource: str, header: str) -> None:
    u = parse_uri(uri)
    assert (u.host, u.port, u.resource, u.host_header) == (host, port, resource, header)


def test_client_request_and_response_check() -> None:
    key, raw = client_request(parse_uri("ws://[::1]:9000/p?q"), subprotocols=["a", "b"],
                              headers=[("Authorization", "Bearer t")])
    req = parse_request(raw)
    assert check_request(req) == key and req.target == "/p?q"
    assert req.headers["Host"] == "[::1]:9000" and req.headers["Sec-WebSocket-Protocol"] == "a, b"
    good = parse_response(accept_response(key, "b"))
    assert check_response(good, key, ["a", "b"]) == "b"
    with pytest.raises(InvalidResponseError, match="not offered"):
        check_response(good, key, ["a"])
    with pytest.raises(InvalidResponseError, match="Accept"):
        check_response(good, KEY, ["b"])
    refused = parse_response(http_response(503, "busy"))
    with pytest.raises(InvalidResponseError) as info:
        check_response(refused, key)
    assert info.value.status == 503 and refused.body == b"busy"


def test_headers_object() -> None:
    h = Headers([("A", "1"), ("a", "2"), ("B", "3")])
    assert h.get("a") == "1, 2" and h.get_all("A") == ["1", "2"] and "b" in h and len(h) == 3
    with pytest.raises(KeyError):
        h["missing"]
    assert isinstance(Response(200), Response)
