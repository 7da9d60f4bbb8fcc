"""The coroutine API (fastsock/coroutine/) over real sockets on 127.0.0.1.

Every test runs on asyncio's loop, uvloop and fastsock's (the ``aio``
fixture of tests/conftest.py). Real peers: the ``websockets`` library's
client and server; certificates from trustme (the ``tls`` fixture).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, AsyncIterator

import pytest
import websockets

import fastsock
from fastsock.coroutine import Connection, Server, connect, serve
from fastsock.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ConnectTimeoutError,
    InvalidResponseError,
)
from fastsock.websocket import WebSocketHandler, WebSocketOptions

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 20.0           # seconds for one test's coroutine
KiB = 1024
MiB = 1024 * KiB


async def echo(ws: Connection) -> None:
    async for message in ws:
        await ws.send(message)


def uri(server: Server, scheme: str = "ws", path: str = "/", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.port}{path}"


# ------------------------------------------------------------ real peers


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_websockets_client_against_coroutine_server(aio: Any, tls: Any, secure: bool) -> None:
    seen: list[Any] = []

    async def handler(ws: Connection) -> None:
        seen.append((ws.request.path, ws.subprotocol))
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        ssl_ctx = tls.server_context() if secure else None
        async with serve(handler, "127.0.0.1", 0, ssl=ssl_ctx, subprotocols=["chat"]) as server:
            client_ssl = tls.client_context() if secure else None
            async with websockets.connect(uri(server, "wss" if secure else "ws", "/room",
                                              "localhost" if secure else "127.0.0.1"),
                                          ssl=client_ssl, subprotocols=["chat"]) as client:
                await client.send("hello")
                assert await client.recv() == "hello"
                await client.send(b"\x00\xff" * 1000)
                assert await client.recv() == b"\x00\xff" * 1000
                big = "é" * (300 * KiB)               # several TLS records / TCP chunks
                await client.send(big)
                assert await client.recv() == big
                await client.send(["frag", "mented"])  # a fragmented message arrives joined
                assert await client.recv() == "fragmented"
            assert client.close_code == 1000
        assert seen == [("/room", "chat")]

    aio.run(main(), RUN_TIMEOUT)


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_coroutine_client_against_websockets_server(aio: Any, tls: Any, secure: bool) -> None:
    async def ws_echo(conn: Any) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        server_ssl = tls.server_context() if secure else None
        async with websockets.serve(ws_echo, "127.0.0.1", 0, ssl=server_ssl) as server:
            port = server.sockets[0].getsockname()[1]
            target = f"{'wss' if secure else 'ws'}://localhost:{port}/x?y=1"
            async with connect(target, ssl=tls.client_context() if secure else None) as ws:
                await ws.send("text")
                assert await ws.recv() == "text"
                await ws.send(b"binary")
                assert await ws.recv() == b"binary"
                await ws.send([b"a", b"b", b"c"])        # fragments from a list
                assert await ws.recv() == b"abc"

                async def parts() -> AsyncIterator[str]:
                    for p in ("x", "y", "z"):
                        await asyncio.sleep(0)
                        yield p

                await ws.send(parts())                   # fragments from an async iterator
                assert await ws.recv() == "xyz"
                latency = await ws.ping()
                assert 0 < latency < 5
                assert ws.latency is not None
            assert ws.close_code == 1000

    aio.run(main(), RUN_TIMEOUT)


def test_wss_client_verifies_the_certificate_by_default(aio: Any, tls: Any) -> None:
    async def main() -> None:
        untrusted = tls.server_context(tls.untrusted_cert)
        async with serve(echo, "127.0.0.1", 0, ssl=untrusted) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, "wss", host="localhost"), ssl=tls.client_context())
            # the default context trusts the system CAs, not the test CA
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, "wss", host="localhost"))
        sni: list[str | None] = []
        alt = tls.server_context(tls.alt_cert)
        alt.sni_callback = lambda sslobj, name, ctx: sni.append(name)
        async with serve(echo, "127.0.0.1", 0, ssl=alt) as server:
            # the name checked is the URI's host, unless server_hostname says otherwise
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(uri(server, "wss", host="localhost"), ssl=tls.client_context())
            async with connect(uri(server, "wss", host="localhost"), ssl=tls.client_context(),
                               server_hostname="alt.fastsock.test") as ws:
                await ws.send("alt")
                assert await ws.recv() == "alt"
        assert sni == ["localhost", "alt.fastsock.test"]
        async with serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
            async with connect(uri(server, "wss", host="localhost"), ssl=tls.client_context()) as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    aio.tolerate_handshake_failures()
    aio.run(main(), RUN_TIMEOUT)


# ------------------------------------------------------------ the connection


def test_async_for_ends_on_1000_and_1001_and_raises_otherwise(aio: Any) -> None:
    async def handler(ws: Connection) -> None:
        code = int(await ws.recv())
        await ws.send("bye")
        await ws.close(code, "done")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            for code in (1000, 1001):
                async with connect(uri(server)) as ws:
                    await ws.send(str(code))
                    got = [m async for m in ws]
                    assert got == ["bye"]
                    assert (ws.close_code, ws.close_reason) == (code, "done")
            async with connect(uri(server)) as ws:
                await ws.send("4000")
                got = []
                with pytest.raises(ConnectionClosedError) as info:
                    async for m in ws:
                        got.append(m)
                assert got == ["bye"]
                assert info.value.code == 4000

    aio.run(main(), RUN_TIMEOUT)


def test_recv_decode_and_json(aio: Any) -> None:
    async def handler(ws: Connection) -> None:
        obj = await ws.recv_json()
        await ws.send_json({"got": obj})
        await ws.send(b"caf\xc3\xa9")
        await ws.send("café")
        await ws.send("café")

    def dumps_bytes(obj: Any) -> bytes:       # like orjson.dumps
        import json
        return json.dumps(obj, separators=(",", ":")).encode()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server), dumps=dumps_bytes) as ws:
                await ws.send_json([1, "two"])
                assert await ws.recv(decode=False) == b'{"got": [1, "two"]}'
                assert await ws.recv(decode=True) == "café"
                assert await ws.recv(decode=False) == "café".encode()
                assert await ws.recv() == "café"

    aio.run(main(), RUN_TIMEOUT)


def test_attributes(aio: Any) -> None:
    seen: list[Connection] = []

    async def handler(ws: Connection) -> None:
        seen.append(ws)
        await ws.send(repr((ws.request.path, ws.request.query)))
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server, path="/p?q=1")) as a, connect(uri(server)) as b:
                assert await a.recv() == repr(("/p", "q=1"))
                await b.recv()
                assert a.remote_address[:2] == ("127.0.0.1", server.port)
                assert len(server.connections) == 2
                assert seen[0].id != seen[1].id
                assert seen[0].remote_address[1] in (a.transport.get_extra_info("sockname")[1],
                                                     b.transport.get_extra_info("sockname")[1])
            # the handlers waited in wait_closed, which returned
            await asyncio.sleep(0.05)
            assert server.connections == []
            assert {c.close_code for c in seen} == {1000}

    aio.run(main(), RUN_TIMEOUT)


def test_send_on_a_closed_connection_raises(aio: Any) -> None:
    server_error: list[BaseException] = []
    closed = asyncio.Event

    async def handler(ws: Connection) -> None:
        await ws.wait_closed()
        try:
            await ws.send("too late")
        except ConnectionClosed as exc:
            server_error.append(exc)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(uri(server))
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                await ws.send("x")
            with pytest.raises(ConnectionClosedOK):
                await ws.send(["a", "b"])
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            with pytest.raises(ConnectionClosedOK):
                await ws.ping()
            for _ in range(100):
                if server_error:
                    break
                await asyncio.sleep(0.01)
        assert len(server_error) == 1 and isinstance(server_error[0], ConnectionClosedOK)

    del closed
    aio.run(main(), RUN_TIMEOUT)


def test_a_raising_handler_closes_with_1011_and_is_logged(aio: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: Connection) -> None:
        await ws.recv()
        raise RuntimeError("boom in the handler")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with websockets.connect(uri(server)) as client:
                await client.send("go")
                with pytest.raises(websockets.ConnectionClosedError):
                    await client.recv()
                assert client.close_code == 1011

    with caplog.at_level(logging.ERROR, logger="fastsock.server"):
        aio.run(main(), RUN_TIMEOUT)
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and "boom in the handler" in str(failures[0].exc_info[1])


def test_a_cancelled_recv_loses_nothing(aio: Any) -> None:
    results: list[Any] = []
    timed_out: list[asyncio.Event] = []

    async def handler(ws: Connection) -> None:
        # The first fragment is in; the recv is cancelled by the timeout.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.2)
        timed_out[0].set()
        results.append(await ws.recv())
        results.append(await ws.recv())

    async def main() -> None:
        timed_out.append(asyncio.Event())
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                async def fragments() -> AsyncIterator[bytes]:
                    yield b"first half, "
                    await timed_out[0].wait()
                    yield b"second half"

                await ws.send(fragments())
                await ws.send(b"next")
                for _ in range(200):
                    if len(results) == 2:
                        break
                    await asyncio.sleep(0.01)
        assert results == [b"first half, second half", b"next"]

    aio.run(main(), RUN_TIMEOUT)


def test_a_handler_that_does_not_read_pauses_reading(aio: Any) -> None:
    max_queue = 4
    message = b"m" * (64 * KiB)
    total = 512                   # 32 MiB: far more than the kernel buffers hold
    handlers: list[Connection] = []
    start_reading = []
    received: list[int] = []

    async def handler(ws: Connection) -> None:
        handlers.append(ws)
        await start_reading[0].wait()
        async for m in ws:
            received.append(len(m))
            if len(received) == total:
                return

    async def main() -> None:
        start_reading.append(asyncio.Event())
        # Uncompressed: the test counts on 64 KiB messages filling the
        # kernel's buffers (compressed, hundreds of them fit in one read).
        async with serve(handler, "127.0.0.1", 0, max_queue=max_queue,
                         compression=None) as server:
            async with connect(uri(server), options=WebSocketOptions(write_limit=64 * KiB),
                               compression=None) as ws:
                sent = 0

                async def sender() -> None:
                    nonlocal sent
                    for _ in range(total):
                        await ws.send(message)
                        sent += 1

                task = asyncio.ensure_future(sender())
                # Until the server's queue is full (bounded: a busy machine is slow).
                for _ in range(1000):
                    if handlers and handlers[0].core.queue_paused:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)     # the kernel buffers fill up behind it
                # The server stopped reading; the sender is blocked in send().
                core = handlers[0].core
                assert core.queue_paused
                assert not core.transport.is_reading()
                assert len(core.messages) < 4 * max_queue
                assert not task.done()
                assert sent < total
                blocked_at = sent
                await asyncio.sleep(0.2)
                assert sent == blocked_at
                start_reading[0].set()
                await asyncio.wait_for(task, 15)
                for _ in range(500):
                    if len(received) == total:
                        break
                    await asyncio.sleep(0.01)
                assert received == [len(message)] * total

    aio.run(main(), RUN_TIMEOUT)


def test_server_shutdown_sends_1001(aio: Any) -> None:
    async def handler(ws: Connection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0)
        ws = await connect(uri(server))
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        assert not forever.done()
        server.close()
        await server.wait_closed()
        await asyncio.wait_for(forever, 1)
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1001

    aio.run(main(), RUN_TIMEOUT)


# ------------------------------------------------------------ opening fails


def test_each_opening_failure_has_its_exception(aio: Any) -> None:
    async def main() -> None:
        async with serve({"/only": echo}, "127.0.0.1", 0) as server:
            with pytest.raises(InvalidResponseError) as info:
                await connect(uri(server, path="/other"))
            assert info.value.status == 404
            port = server.port
        with pytest.raises(ConnectionRefusedError):
            await connect(f"ws://127.0.0.1:{port}/")
        with pytest.raises(ValueError):                 # a malformed URI, at once
            connect(f"http://127.0.0.1:{port}/")
        # a TCP server that never answers the upgrade
        silent = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            silent_port = silent.sockets[0].getsockname()[1]
            with pytest.raises(ConnectTimeoutError):
                await connect(f"ws://127.0.0.1:{silent_port}/", open_timeout=0.2)
        finally:
            silent.close()

    aio.run(main(), RUN_TIMEOUT)


# ------------------------------------------------------------ fastsock.serve / connect


def test_fastsock_serve_tells_coroutine_and_callback_handlers_apart(aio: Any, reactor: Any) -> None:
    class Echo(WebSocketHandler):
        def on_message(self, data: Any) -> None:
            self.send(("callback", data).__repr__())

    assert isinstance(fastsock.serve(echo, "127.0.0.1", 0), Server)
    # with reactor=: the callback API only
    with pytest.raises(TypeError, match="reactor="):
        fastsock.serve(echo, "127.0.0.1", 0, reactor=reactor)
    with pytest.raises(TypeError, match="reactor="):
        fastsock.serve({"/a": Echo, "/b": echo}, "127.0.0.1", 0, reactor=reactor)
    with pytest.raises(TypeError, match="neither a coroutine function"):
        fastsock.serve(42, "127.0.0.1", 0)      # type: ignore[call-overload]

    async def main() -> None:
        # on the running loop: coroutine, callback, and routes mixing them
        async with fastsock.serve(echo, "127.0.0.1", 0) as server:
            async with fastsock.connect(uri(server)) as ws:
                await ws.send("via fastsock.serve")
                assert await ws.recv() == "via fastsock.serve"
        async with fastsock.serve(Echo, "127.0.0.1", 0) as server:
            async with fastsock.connect(uri(server)) as ws:
                await ws.send("cb")
                assert await ws.recv() == repr(("callback", "cb"))
        async with fastsock.serve({"/co": echo, "/cb": Echo}, "127.0.0.1", 0) as server:
            async with fastsock.connect(uri(server, path="/co")) as co, \
                    fastsock.connect(uri(server, path="/cb")) as cb:
                await co.send("x")
                await cb.send("y")
                assert await co.recv() == "x"
                assert await cb.recv() == repr(("callback", "y"))
                assert len(server.connections) == 1          # the coroutine one
                assert len(server.handlers) == 2
                assert fastsock.broadcast(server.handlers, "both") == 2
                assert await co.recv() == "both" and await cb.recv() == "both"

    aio.run(main(), RUN_TIMEOUT)


def test_fastsock_serve_callback_form_still_works(reactor: Any) -> None:
    class Echo(WebSocketHandler):
        def on_message(self, data: Any) -> None:
            self.send(data)

    server = fastsock.serve(Echo, "127.0.0.1", 0, reactor=reactor)
    assert isinstance(server, fastsock.WebSocketServer)
    got: list[Any] = []

    async def client() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as c:
            await c.send("cb")
            got.append(await c.recv())

    reactor.run_until_complete(asyncio.wait_for(client(), RUN_TIMEOUT))
    assert got == ["cb"]
