"""fastsock's client against a real ``websockets`` server: redirects, Basic auth
from the URI, User-Agent and extra headers, ``ws.response``, an HTTP CONNECT
proxy written here (``proxy=``, the environment, ``no_proxy``, 407, wss
through the tunnel), ``open_timeout`` and the reconnecting ``async for``."""
from __future__ import annotations

import asyncio
import base64
import socket
import sys
from typing import Any, Optional

import pytest
import websockets
from websockets.asyncio.server import basic_auth

import fastsock
from fastsock import __version__
from fastsock.exceptions import ConnectTimeoutError, InvalidResponseError
from fastsock.proxy import InvalidProxy, ProxyError
from fastsock.websocket.client_handshake import (
    InvalidStatus,
    InvalidURI,
    RedirectError,
    TooManyRedirects,
)

pytestmark = pytest.mark.timeout(120)

RUN_TIMEOUT = 30.0          # seconds per test body
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "no_proxy")
USER_AGENT = f"fastsock/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without proxy variables (both spellings)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


class Recorder:
    """A websockets ``process_request`` that records each request and answers
    redirects: ``/to/<path>`` -> 302 to ``/<path>``, ``/loop`` -> itself,
    ``/abs`` -> ``self.absolute``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.absolute = ""

    def __call__(self, conn: Any, request: Any) -> Any:
        self.requests.append((request.path, {k.lower(): v for k, v in request.headers.raw_items()}))
        location = None
        if request.path.startswith("/to/"):
            location = request.path[3:]
        elif request.path == "/loop":
            location = "/loop"
        elif request.path == "/abs":
            location = self.absolute
        elif request.path == "/down":
            return conn.respond(503, "down for maintenance\n")
        if location is None:
            return None
        response = conn.respond(302, "moved\n")
        response.headers["Location"] = location
        return response


class ConnectProxy:
    """A small HTTP CONNECT proxy on loopback: records each request; with
    ``credentials`` it answers 407 unless Proxy-Authorization matches; with
    ``silent`` it never answers."""

    def __init__(self, credentials: Optional[tuple[str, str]] = None, silent: bool = False) -> None:
        self.credentials = credentials
        self.silent = silent
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.server: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip()
                   for k, v in (line.split(":", 1) for line in lines[1:] if line)}
        self.requests.append((method, target, headers))
        if self.silent:
            await reader.read()           # until the client gives up
            return
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {token}":
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                             b"Content-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self.writers.append(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# ----------------------------------------------------------------- redirects


def test_redirects_relative_absolute_and_ws_to_wss(aio: Any, tls: Any) -> None:
    async def main() -> None:
        rec, secure_rec = Recorder(), Recorder()
        async with websockets.serve(echo, "127.0.0.1", 0, process_request=rec) as plain, \
                websockets.serve(echo, "127.0.0.1", 0, process_request=secure_rec,
                                 ssl=tls.server_context()) as secure:
            base = f"ws://127.0.0.1:{port_of(plain)}"
            async with fastsock.connect(base + "/to/to/landed?q=1") as ws:
                await ws.send("after two redirects")
                assert await ws.recv() == "after two redirects"
                assert ws.response.status == 101
                assert ws.response.headers.get("Upgrade", "").lower() == "websocket"
            assert [path for path, _ in rec.requests] == ["/to/to/landed?q=1", "/to/landed?q=1",
                                                          "/landed?q=1"]
            # ws:// -> wss:// on another port (another origin): allowed, verified,
            # and the Authorization header given by the caller is not carried over.
            rec.absolute = f"wss://localhost:{port_of(secure)}/secure"
            async with fastsock.connect(base + "/abs", ssl=tls.client_context(),
                                        headers=[("Authorization", "Bearer t"),
                                                 ("X-Trace", "7")]) as ws:
                await ws.send("tls")
                assert await ws.recv() == "tls"
            assert rec.requests[-1][1]["authorization"] == "Bearer t"
            (path, headers), = secure_rec.requests
            assert path == "/secure" and "authorization" not in headers
            assert headers["x-trace"] == "7"
            # wss:// -> ws://: refused, with the 302 in the exception
            secure_rec.absolute = base + "/plain"
            with pytest.raises(RedirectError, match="non-secure") as info:
                await fastsock.connect(f"wss://localhost:{port_of(secure)}/abs",
                                       ssl=tls.client_context())
            assert info.value.status == 302 and info.value.response.status == 302

    aio.run(main(), RUN_TIMEOUT)


def test_redirect_loop_is_bounded(aio: Any) -> None:
    async def main() -> None:
        rec = Recorder()
        async with websockets.serve(echo, "127.0.0.1", 0, process_request=rec) as server:
            url = f"ws://127.0.0.1:{port_of(server)}/loop"
            with pytest.raises(TooManyRedirects, match="more than 3 redirects") as info:
                await fastsock.connect(url, max_redirects=3)
            assert info.value.status == 302
            assert len(rec.requests) == 4             # the first try plus 3 redirects
            rec.requests.clear()
            with pytest.raises(TooManyRedirects, match="more than 10 redirects"):
                await fastsock.connect(url)           # websockets' default bound
            assert len(rec.requests) == 11
            rec.requests.clear()
            with pytest.raises(TooManyRedirects):
                await fastsock.connect(url.replace("/loop", "/to/x"), max_redirects=0)
            assert len(rec.requests) == 1

    aio.run(main(), RUN_TIMEOUT)


# ----------------------------------------------------- auth, headers, status


def test_basic_auth_from_the_uri(aio: Any) -> None:
    async def main() -> None:
        names: list[str] = []

        async def who(conn: Any) -> None:
            names.append(conn.username)
            await conn.send(f"hello {conn.username}")

        auth = basic_auth(realm="test", credentials=[("user", "pass"), ("us@er", "p:ss é")])
        async with websockets.serve(who, "127.0.0.1", 0, process_request=auth) as server:
            port = port_of(server)
            async with fastsock.connect(f"ws://user:pass@127.0.0.1:{port}/") as ws:
                assert await ws.recv() == "hello user"
            # percent-encoded user info is decoded before it is encoded for Basic
            async with fastsock.connect(f"ws://us%40er:p%3Ass%20%C3%A9@127.0.0.1:{port}/") as ws:
                assert await ws.recv() == "hello us@er"
            with pytest.raises(InvalidStatus) as info:
                await fastsock.connect(f"ws://user:wrong@127.0.0.1:{port}/")
            assert info.value.status == 401
            assert info.value.response.headers.get("WWW-Authenticate", "").startswith("Basic")
            with pytest.raises(InvalidStatus) as info:
                await fastsock.connect(f"ws://127.0.0.1:{port}/")
            assert info.value.status == 401
        assert names == ["user", "us@er"]

    aio.run(main(), RUN_TIMEOUT)


def test_user_agent_extra_headers_and_failing_statuses(aio: Any) -> None:
    async def main() -> None:
        rec = Recorder()
        async with websockets.serve(echo, "127.0.0.1", 0, process_request=rec) as server:
            base = f"ws://127.0.0.1:{port_of(server)}"
            async with fastsock.connect(base + "/", headers=[("X-Token", "abc")],
                                        origin="https://app.example") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            async with fastsock.connect(base + "/none", user_agent_header=None):
                pass
            async with fastsock.connect(base + "/mine", user_agent_header="probe/1.0"):
                pass
            with pytest.raises(InvalidStatus, match="HTTP 503: down for maintenance") as info:
                await fastsock.connect(base + "/down")
            assert info.value.response.status == 503
        first = rec.requests[0][1]
        assert first["user-agent"] == USER_AGENT
        assert first["x-token"] == "abc" and first["origin"] == "https://app.example"
        assert "user-agent" not in rec.requests[1][1]
        assert rec.requests[2][1]["user-agent"] == "probe/1.0"

    aio.run(main(), RUN_TIMEOUT)


@pytest.mark.parametrize("url", ["http://x/", "ws://", "ws://h/#frag", "ws://user@h/",
                                 "ws://h:99999/"])
def test_invalid_uris_fail_at_once(url: str) -> None:
    with pytest.raises(InvalidURI) as info:
        fastsock.connect(url)
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------- proxies


def test_proxy_argument_env_no_proxy_and_none(aio: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        proxy = ConnectProxy()
        proxy_url = await proxy.start()
        try:
            async with websockets.serve(echo, "127.0.0.1", 0) as server:
                port = port_of(server)
                url = f"ws://127.0.0.1:{port}/p"
                async with fastsock.connect(url, proxy=proxy_url) as ws:
                    await ws.send("through the tunnel")
                    assert await ws.recv() == "through the tunnel"
                (method, target, headers), = proxy.requests
                assert (method, target) == ("CONNECT", f"127.0.0.1:{port}")
                assert headers["host"] == f"127.0.0.1:{port}"
                assert headers["user-agent"] == USER_AGENT

                monkeypatch.setenv("http_proxy", proxy_url)     # from the environment
                async with fastsock.connect(url) as ws:
                    await ws.send("env")
                    assert await ws.recv() == "env"
                assert len(proxy.requests) == 2
                async with fastsock.connect(url, proxy=None) as ws:    # proxy=None: direct
                    await ws.send("direct")
                    assert await ws.recv() == "direct"
                monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")  # bypassed
                async with fastsock.connect(url) as ws:
                    await ws.send("bypass")
                    assert await ws.recv() == "bypass"
                assert len(proxy.requests) == 2
                monkeypatch.delenv("no_proxy")
                monkeypatch.delenv("http_proxy")
                monkeypatch.setenv("all_proxy", proxy_url)
                async with fastsock.connect(url):
                    pass
                assert len(proxy.requests) == 3
                monkeypatch.setenv("all_proxy", "socks5h://127.0.0.1:1080")
                with pytest.raises(InvalidProxy, match="only http://"):
                    await fastsock.connect(url)
        finally:
            await proxy.close()

    aio.run(main(), RUN_TIMEOUT)


def test_proxy_authentication_and_407(aio: Any) -> None:
    async def main() -> None:
        proxy = ConnectProxy(credentials=("pu", "pw"))
        proxy_url = await proxy.start()
        try:
            async with websockets.serve(echo, "127.0.0.1", 0) as server:
                url = f"ws://127.0.0.1:{port_of(server)}/"
                with pytest.raises(ProxyError, match="407") as info:
                    await fastsock.connect(url, proxy=proxy_url)
                assert info.value.status == 407 and info.value.response is not None
                authed = proxy_url.replace("http://", "http://pu:pw@")
                async with fastsock.connect(url, proxy=authed) as ws:
                    await ws.send("authorized")
                    assert await ws.recv() == "authorized"
                assert "proxy-authorization" not in proxy.requests[0][2]
                token = base64.b64encode(b"pu:pw").decode()
                assert proxy.requests[1][2]["proxy-authorization"] == f"Basic {token}"
        finally:
            await proxy.close()

    aio.run(main(), RUN_TIMEOUT)


def test_wss_through_the_proxy_verifies_the_target(aio: Any, tls: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        proxy = ConnectProxy()
        proxy_url = await proxy.start()
        try:
            async with websockets.serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
                port = port_of(server)
                monkeypatch.setenv("https_proxy", proxy_url)     # used for wss:// too
                async with fastsock.connect(f"wss://localhost:{port}/s",
                                            ssl=tls.client_context()) as ws:
                    await ws.send("secret" * 1000)
                    assert await ws.recv() == "secret" * 1000
                    assert ws.transport.get_extra_info("ssl_object").server_hostname == "localhost"
                assert proxy.requests[0][1] == f"localhost:{port}"
                # the certificate is the target's: an untrusting context refuses it
                with pytest.raises(Exception) as info:
                    await fastsock.connect(f"wss://localhost:{port}/s")
                assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
        finally:
            await proxy.close()

    aio.run(main(), RUN_TIMEOUT)


def test_open_timeout_covers_a_silent_proxy(aio: Any) -> None:
    async def main() -> None:
        proxy = ConnectProxy(silent=True)
        proxy_url = await proxy.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ConnectTimeoutError) as info:
                await fastsock.connect("ws://127.0.0.1:9/", proxy=proxy_url, open_timeout=0.3)
            assert isinstance(info.value, TimeoutError)
            assert loop.time() - started < 5
            assert proxy.requests and proxy.requests[0][0] == "CONNECT"
        finally:
            await proxy.close()

    aio.run(main(), RUN_TIMEOUT)


# ----------------------------------------------------------- reconnecting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FAST_BACKOFF = dict(backoff_initial=0.05, backoff_min=0.05, backoff_max=0.2, backoff_factor=2.0)


def test_reconnecting_iterator_across_a_server_restart(aio: Any) -> None:
    async def main() -> None:
        port = free_port()
        generation = 0

        async def greet(conn: Any) -> None:
            await conn.send(f"generation {generation}")
            await conn.wait_closed()

        seen: list[str] = []
        restarted = asyncio.Event()

        async def restart(server: Any) -> None:
            nonlocal generation
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.4)             # the client retries while nobody listens
            generation += 1
            servers.append(await websockets.serve(greet, "127.0.0.1", port))
            restarted.set()

        server = await websockets.serve(greet, "127.0.0.1", port)
        servers: list[Any] = []
        restarter: Optional[asyncio.Task[None]] = None
        async for ws in fastsock.connect(f"ws://127.0.0.1:{port}/", max_retries=40,
                                         **FAST_BACKOFF):  # type: ignore[arg-type]
            seen.append(str(await ws.recv()))
            if len(seen) == 1:
                restarter = asyncio.ensure_future(restart(server))
                with pytest.raises(fastsock.ConnectionClosed):
                    await ws.recv()             # the server went away
                continue
            break
        assert seen == ["generation 0", "generation 1"]
        assert restarted.is_set() and restarter is not None and restarter.done()
        for new in servers:
            new.close()
            await new.wait_closed()

    aio.run(main(), RUN_TIMEOUT)


def test_reconnecting_gives_up_on_4xx_and_after_max_retries(aio: Any) -> None:
    async def main() -> None:
        rec = Recorder()
        async with websockets.serve(echo, "127.0.0.1", 0,
                                    process_request=lambda c, r: c.respond(403, "no\n")) as server:
            with pytest.raises(InvalidStatus) as info:
                async for _ in fastsock.connect(f"ws://127.0.0.1:{port_of(server)}/",
                                                **FAST_BACKOFF):  # type: ignore[arg-type]
                    pytest.fail("a 403 must not give a connection")
            assert info.value.status == 403
        async with websockets.serve(echo, "127.0.0.1", 0, process_request=rec) as server:
            # 503 is retried, up to max_retries failed attempts in a row
            with pytest.raises(InvalidStatus) as info:
                async for _ in fastsock.connect(f"ws://127.0.0.1:{port_of(server)}/down",
                                                max_retries=2,
                                                **FAST_BACKOFF):  # type: ignore[arg-type]
                    pytest.fail("a 503 must not give a connection")
            assert info.value.status == 503 and len(rec.requests) == 3
        with pytest.raises(ConnectionRefusedError):
            async for _ in fastsock.connect(f"ws://127.0.0.1:{free_port()}/", max_retries=3,
                                            **FAST_BACKOFF):  # type: ignore[arg-type]
                pytest.fail("nobody listens")

    aio.run(main(), RUN_TIMEOUT)


def test_malformed_answer_is_an_invalid_response(aio: Any) -> None:
    async def main() -> None:
        async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(liar, "127.0.0.1", 0)
        try:
            with pytest.raises(InvalidResponseError, match="malformed"):
                await fastsock.connect(f"ws://127.0.0.1:{port_of(server)}/")
        finally:
            server.close()

    aio.run(main(), RUN_TIMEOUT)


def test_retry_decisions_on_real_failures(aio: Any) -> None:
    from fastsock.coroutine.client import retryable

    async def main() -> None:
        answers = [b"", b"NOT HTTP AT ALL\r\n\r\n"]    # close at once; then garbage

        async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answers.pop(0))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(flaky, "127.0.0.1", 0)
        try:
            url = f"ws://127.0.0.1:{port_of(server)}/"
            with pytest.raises(InvalidResponseError, match="closed the connection") as closed:
                await fastsock.connect(url)
            assert closed.value.status == 0 and retryable(closed.value) is None
            with pytest.raises(InvalidResponseError, match="malformed") as garbage:
                await fastsock.connect(url)
            assert retryable(garbage.value) is garbage.value
        finally:
            server.close()
        async with websockets.serve(echo, "127.0.0.1", 0,
                                    process_request=Recorder()) as ws_server:
            with pytest.raises(InvalidStatus) as down:
                await fastsock.connect(f"ws://127.0.0.1:{port_of(ws_server)}/down")
            assert retryable(down.value) is None           # 503: retried
        with pytest.raises(OSError) as refused:
            await fastsock.connect(f"ws://127.0.0.1:{free_port()}/")
        assert retryable(refused.value) is None
        try:
            with pytest.raises(ProxyError) as proxy_closed:
                await fastsock.connect("ws://127.0.0.1:9/", proxy=await closing_proxy())
            assert proxy_closed.value.status == 0 and retryable(proxy_closed.value) is None
        finally:
            for proxy in servers:
                proxy.close()

    async def closing_proxy() -> str:
        async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        proxy = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        servers.append(proxy)
        return f"http://127.0.0.1:{port_of(proxy)}"

    servers: list[Any] = []
    aio.run(main(), RUN_TIMEOUT)


def test_extension_factories_through_redirect_and_proxy(aio: Any) -> None:
    """permessage-deflate's client factory (name/offer()/accept()) is offered on
    every attempt and negotiated with websockets' server through a redirect
    and a proxy tunnel."""
    from fastsock.websocket.extensions.permessage_deflate import ClientPerMessageDeflate

    async def main() -> None:
        proxy = ConnectProxy()
        proxy_url = await proxy.start()
        rec = Recorder()
        try:
            async with websockets.serve(echo, "127.0.0.1", 0, process_request=rec) as server:
                url = f"ws://127.0.0.1:{port_of(server)}/to/deflate"
                async with fastsock.connect(url, proxy=proxy_url,
                                            extensions=[ClientPerMessageDeflate()]) as ws:
                    agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
                    assert agreed.startswith("permessage-deflate")
                    assert ws.core._extensions          # negotiated, in use
                    text = "compressible " * 2000
                    await ws.send(text)
                    assert await ws.recv() == text
            assert [h["sec-websocket-extensions"].split(";")[0] for _, h in rec.requests] == [
                "permessage-deflate", "permessage-deflate"]
            assert len(proxy.requests) == 2             # one tunnel per attempt
        finally:
            await proxy.close()

    aio.run(main(), RUN_TIMEOUT)
