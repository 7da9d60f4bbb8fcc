"""The sans-I/O client handshake (fastsock/websocket/client_handshake.py) and the
proxy helpers (fastsock/proxy.py), through their outputs alone: request bytes,
the verdict on response bytes, redirect targets, proxy choice."""
from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

import pytest

from fastsock.exceptions import InvalidResponseError
from fastsock.proxy import InvalidProxy, connect_request, parse_proxy, proxy_from_environment
from fastsock.websocket.client_handshake import (
    USER_AGENT,
    ClientHandshake,
    InvalidStatus,
    InvalidURI,
    RedirectError,
    parse_client_uri,
    redirect_url,
    strip_credentials,
)
from fastsock.websocket.handshake import Headers, Response, accept_key, parse_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request_of(hs: ClientHandshake) -> Any:
    return parse_request(hs.data_to_send())


def answer(key: str = KEY, *extra: str) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Reverse:
    name = "x-reverse"

    def __init__(self) -> None:
        self.params: Optional[Sequence[tuple[str, Optional[str]]]] = None

    def offer(self) -> str:
        return "x-reverse; level=2"

    def accept(self, params: Sequence[tuple[str, Optional[str]]]) -> Any:
        self.params = params
        return None if ("bad", None) in params else ("ext", params)


def test_request_carries_every_field() -> None:
    target = parse_client_uri("ws://us%40er:p%3Ass@example.com:8080/chat?room=1")
    hs = ClientHandshake(target, key=KEY, subprotocols=["v2", "v1"], extensions=[Reverse()],
                         origin="https://app.example", headers=[("X-Trace", "7")])
    req = request_of(hs)
    h = req.headers
    assert (req.method, req.target) == ("GET", "/chat?room=1")
    assert h["Host"] == "example.com:8080" and h["Sec-WebSocket-Key"] == KEY
    assert h["Sec-WebSocket-Protocol"] == "v2, v1"
    assert h["Sec-WebSocket-Extensions"] == "x-reverse; level=2"
    assert h["Origin"] == "https://app.example" and h["X-Trace"] == "7"
    assert h["Authorization"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert h["User-Agent"] == USER_AGENT and USER_AGENT.startswith("fastsock/")


def test_explicit_headers_win_and_user_agent_can_be_dropped() -> None:
    target = parse_client_uri("ws://u:p@h/")
    hs = ClientHandshake(target, headers=[("Authorization", "Bearer x"), ("User-Agent", "me/1")])
    h = request_of(hs).headers
    assert h.get_all("Authorization") == ["Bearer x"] and h.get_all("User-Agent") == ["me/1"]
    assert "User-Agent" not in request_of(ClientHandshake(target, user_agent_header=None)).headers
    assert request_of(ClientHandshake(target, user_agent_header="probe")).headers["User-Agent"] == "probe"
    with pytest.raises(ValueError, match="line break"):
        ClientHandshake(target, headers=[("X", "a\r\nInjected: 1")])


def test_response_fed_byte_by_byte_then_rest() -> None:
    factory = Reverse()
    hs = ClientHandshake(parse_client_uri("ws://h/"), key=KEY, subprotocols=["v1"],
                         extensions=[factory])
    data = answer(KEY, "Sec-WebSocket-Protocol: v1", "Sec-WebSocket-Extensions: x-reverse; level=1")
    head_size = len(data)
    data += b"\x81\x02hi"           # a first frame in the same chunk as the head's end
    verdicts = [hs.receive_data(data[i:i + 1]) for i in range(head_size - 1)]
    assert verdicts == [False] * (head_size - 1)
    assert hs.response is None
    assert hs.receive_data(data[head_size - 1:]) is True
    assert hs.response is not None and hs.response.status == 101
    assert hs.subprotocol == "v1" and hs.extensions == [("ext", [("level", "1")])]
    assert hs.rest == b"\x81\x02hi"
    with pytest.raises(InvalidResponseError):
        hs.receive_data(b"more")      # a second response is a bug in the glue


@pytest.mark.parametrize("extra, match", [
    (("Sec-WebSocket-Protocol: v9",), "subprotocol 'v9'"),
    (("Sec-WebSocket-Extensions: permessage-deflate",), "extension 'permessage-deflate'"),
    (("Sec-WebSocket-Extensions: x-reverse; bad",), "extension 'x-reverse'"),
    (("Sec-WebSocket-Extensions: x-reverse, x-reverse",), "extension 'x-reverse'"),
])
def test_what_was_not_offered_is_refused(extra: tuple[str, ...], match: str) -> None:
    hs = ClientHandshake(parse_client_uri("ws://h/"), key=KEY, subprotocols=["v1"],
                         extensions=[Reverse()])
    with pytest.raises(InvalidResponseError, match=match) as info:
        hs.receive_data(answer(KEY, *extra))
    assert info.value.status == 101


def test_wrong_accept_and_non_101() -> None:
    hs = ClientHandshake(parse_client_uri("ws://h/"), key=KEY)
    with pytest.raises(InvalidResponseError, match="Sec-WebSocket-Accept"):
        hs.receive_data(answer("AAAAAAAAAAAAAAAAAAAAAA=="))
    hs = ClientHandshake(parse_client_uri("ws://h/"), key=KEY)
    with pytest.raises(InvalidStatus) as info:
        hs.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Why: acl\r\n\r\nnot you\n")
    assert info.value.status == 403 and info.value.response.status == 403
    assert info.value.response.headers.get("X-Why") == "acl"
    assert "HTTP 403: not you" in str(info.value)
    hs = ClientHandshake(parse_client_uri("ws://h/"), max_head_size=64)
    with pytest.raises(InvalidResponseError, match="too large"):
        hs.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: y\r\n" * 20)


def redirect(location: Optional[str], status: int = 302) -> Response:
    return Response(status, Headers([("Location", location)] if location is not None else []))


def test_redirect_targets() -> None:
    here = parse_client_uri("ws://h:8000/a/b?x=1")
    assert redirect_url(here, redirect("c")) == "ws://h:8000/a/c"
    assert redirect_url(here, redirect("/root")) == "ws://h:8000/root"
    assert redirect_url(here, redirect("wss://other/")) == "wss://other/"
    with pytest.raises(RedirectError, match="no Location"):
        redirect_url(here, redirect(None))
    with pytest.raises(RedirectError, match="cannot be followed"):
        redirect_url(here, redirect("https://h/"))
    secure = parse_client_uri("wss://h/")
    with pytest.raises(RedirectError, match="non-secure") as info:
        redirect_url(secure, redirect("ws://h/", 301))
    assert info.value.status == 301
    assert strip_credentials([("Authorization", "a"), ("cookie", "c"), ("X", "y"),
                              ("Proxy-Authorization", "p")]) == [("X", "y")]


@pytest.mark.parametrize("url", ["http://h/", "ws://", "ws://h/#f", "ws://user@h/", "ws://h:70000/"])
def test_invalid_uris(url: str) -> None:
    with pytest.raises(InvalidURI):
        parse_client_uri(url)


# --------------------------------------------------------------------- proxy


def test_parse_proxy() -> None:
    p = parse_proxy("http://a%40b:c%3Ad@proxy.local:3128/")
    assert (p.host, p.port, p.credentials) == ("proxy.local", 3128, ("a@b", "c:d"))
    assert parse_proxy("http://[::1]").address == "[::1]:80"
    for bad, match in [("https://p/", "only http://"), ("socks5h://p:1080", "only http://"),
                       ("p:3128", "only http://"), ("http://p/path", "no path"),
                       ("http://u@p/", "no password"), ("http:///", "no host"),
                       ("http://p:99999", "out of range")]:
        with pytest.raises(InvalidProxy, match=match):
            parse_proxy(bad)


def test_connect_request() -> None:
    uri = parse_client_uri("wss://[::1]:8443/x").uri
    raw = connect_request(parse_proxy("http://u:p@proxy:1"), uri, user_agent="ua/1")
    lines = raw.decode().split("\r\n")
    assert lines[0] == "CONNECT [::1]:8443 HTTP/1.1" and "Host: [::1]:8443" in lines
    assert "User-Agent: ua/1" in lines and raw.endswith(b"\r\n\r\n")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'u:p').decode()}" in lines
    bare = connect_request(parse_proxy("http://proxy:1"), uri, user_agent=None).decode()
    assert "User-Agent" not in bare and "Proxy-Authorization" not in bare


def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    plain = parse_client_uri("ws://example.com/").uri
    secure = parse_client_uri("wss://example.com/").uri
    assert proxy_from_environment(plain) is None
    monkeypatch.setenv("all_proxy", "http://all:1")
    assert proxy_from_environment(plain) == proxy_from_environment(secure) == "http://all:1"
    monkeypatch.setenv("http_proxy", "http://plain:1")
    assert proxy_from_environment(plain) == "http://plain:1"
    assert proxy_from_environment(secure) == "http://all:1"      # http_proxy: ws:// only
    monkeypatch.setenv("https_proxy", "http://tls:1")
    assert proxy_from_environment(plain) == proxy_from_environment(secure) == "http://tls:1"
    monkeypatch.setenv("wss_proxy", "http://wss:1")
    assert proxy_from_environment(secure) == "http://wss:1"
    monkeypatch.setenv("no_proxy", ".example.com,localhost")
    assert proxy_from_environment(secure) is None and proxy_from_environment(plain) is None
    monkeypatch.setenv("no_proxy", "*")
    assert proxy_from_environment(parse_client_uri("ws://10.0.0.1/").uri) is None
