"""Real asyncio libraries, unchanged, on asyncio's loop, uvloop and fastsock's loop.

Each test runs once per loop (the ``aio`` fixture in tests/conftest.py):
redis-py's asyncio client against a real redis-server (plain and TLS),
aiohttp's client against an aiohttp server (HTTP and HTTPS, WebSocket),
the ``websockets`` library's server and client (ws and wss), and an
``asyncio.start_server`` streams echo over IPv4 and IPv6. The libraries drive
the loop through its public API only, so a gap in fastsock's loop shows up
as the same test passing on the two reference loops and failing on fastsock.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import uuid
from typing import Any

import pytest

MiB = 1024 * 1024
CONCURRENT_REQUESTS = 50     # requests in flight at once on one client
CONCURRENT_CLIENTS = 20      # stream / WebSocket clients at once
PUBSUB_MESSAGES = 20
BLPOP_DELAY = 0.2            # seconds before the push that wakes a blocked BLPOP


def _running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def _assert_on_loop(kind: str) -> None:
    """The code runs on the loop the test asked for (not a policy's default)."""
    module = _running_loop_module()
    expected = {"asyncio": "asyncio.", "uvloop": "uvloop", "fastsock": "fastsock."}[kind]
    assert module.startswith(expected), f"running on {module}, expected the {kind} loop"


def _payload(size: int) -> bytes:
    return os.urandom(size)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ----------------------------------------------------------------- redis-py

@pytest.mark.needs_redis
@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_redis_commands_pipeline_and_concurrency(aio: Any, redis_server: Any, use_tls: bool) -> None:
    import redis.asyncio as aioredis

    prefix = f"fastsock-test:{aio.kind}:{uuid.uuid4().hex}:"
    big = _payload(MiB)

    async def main() -> None:
        _assert_on_loop(aio.kind)
        if use_tls:
            client = aioredis.Redis(host=redis_server.host, port=redis_server.tls_port, ssl=True,
                                    ssl_ca_certs=str(redis_server.ca_path), ssl_check_hostname=True)
        else:
            client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        try:
            assert await client.ping() is True
            await client.set(prefix + "k", b"value")
            assert await client.get(prefix + "k") == b"value"
            await client.set(prefix + "big", big)
            assert await client.get(prefix + "big") == big
            # many commands at once: the pool opens several connections
            await asyncio.gather(*(client.incr(prefix + "n") for _ in range(CONCURRENT_REQUESTS)))
            assert await client.get(prefix + "n") == str(CONCURRENT_REQUESTS).encode()
            async with client.pipeline(transaction=True) as pipe:
                pipe.rpush(prefix + "list", *range(10))
                pipe.lrange(prefix + "list", 0, -1)
                pushed, items = await pipe.execute()
            assert pushed == 10
            assert items == [str(i).encode() for i in range(10)]
            info = await client.info("server")
            assert info["tcp_port"] == redis_server.port
        finally:
            await client.delete(prefix + "k", prefix + "big", prefix + "n", prefix + "list")
            await client.aclose()

    aio.run(main(), timeout=45)


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_redis_pubsub_and_blocking_pop(aio: Any, redis_server: Any) -> None:
    import redis.asyncio as aioredis

    channel = f"fastsock-test:{aio.kind}:{uuid.uuid4().hex}"
    key = channel + ":queue"

    async def main() -> None:
        client = aioredis.Redis(host=redis_server.host, port=redis_server.port)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            confirm = await pubsub.get_message(timeout=5)
            assert confirm is not None and confirm["type"] == "subscribe"
            for i in range(PUBSUB_MESSAGES):
                assert await client.publish(channel, f"m{i}") == 1
            received: list[bytes] = []
            while len(received) < PUBSUB_MESSAGES:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                assert msg is not None, f"only {len(received)} of {PUBSUB_MESSAGES} messages arrived"
                received.append(msg["data"])
            assert received == [f"m{i}".encode() for i in range(PUBSUB_MESSAGES)]

            # a connection blocked in BLPOP is woken by a push from another one
            async def push_later() -> None:
                await asyncio.sleep(BLPOP_DELAY)
                await client.rpush(key, b"wake")

            loop = asyncio.get_running_loop()
            started = loop.time()
            popped, _ = await asyncio.gather(client.blpop([key], timeout=10), push_later())
            assert popped == (key.encode(), b"wake")
            assert loop.time() - started >= BLPOP_DELAY * 0.9
        finally:
            await pubsub.unsubscribe(channel)
            await pubsub.aclose()
            await client.delete(key)
            await client.aclose()

    aio.run(main(), timeout=45)


# ------------------------------------------------------------------ aiohttp

@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_aiohttp_client_and_server(aio: Any, tls: Any, scheme: str) -> None:
    import aiohttp
    from aiohttp import web

    body = _payload(2 * MiB)
    stream_chunks, chunk = 64, 64 * 1024

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"loop": _running_loop_module(), "q": request.query.get("q")})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(stream_chunks):
            await response.write(bytes([i % 256]) * chunk)
        await response.write_eof()
        return response

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "close":
                await ws.close(code=4001, message=b"asked")
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def main() -> None:
        app = web.Application(client_max_size=4 * MiB)
        app.router.add_get("/hello", hello)
        app.router.add_post("/echo", echo)
        app.router.add_get("/stream", stream)
        app.router.add_get("/ws", ws_echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0,
                           ssl_context=tls.server_context() if scheme == "https" else None)
        await site.start()
        port = runner.addresses[0][1]
        base = f"{scheme}://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(ssl=tls.client_context() if scheme == "https" else False)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{base}/hello", params={"q": "x y"}) as r:
                    assert r.status == 200
                    data = await r.json()
                assert data["q"] == "x y"
                _assert_on_loop(aio.kind)
                assert data["loop"] == _running_loop_module()   # the server runs on it too

                async with session.post(f"{base}/echo", data=body) as r:
                    assert r.status == 200
                    assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(body).digest()

                received = bytearray()
                async with session.get(f"{base}/stream") as r:
                    async for piece in r.content.iter_chunked(chunk):
                        received += piece
                assert len(received) == stream_chunks * chunk
                assert received[::chunk] == bytes(i % 256 for i in range(stream_chunks))

                async def one(i: int) -> str:
                    async with session.get(f"{base}/hello", params={"q": str(i)}) as r:
                        return str((await r.json())["q"])
                answers = await asyncio.gather(*(one(i) for i in range(CONCURRENT_REQUESTS)))
                assert answers == [str(i) for i in range(CONCURRENT_REQUESTS)]

                async with session.ws_connect(f"{base}/ws") as ws:
                    await ws.send_str("héllo")
                    assert await ws.receive_str() == "héllo"
                    await ws.send_bytes(body[:MiB])
                    assert await ws.receive_bytes() == body[:MiB]
                    await ws.send_str("close")
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.CLOSE
                    assert ws.close_code == 4001
        finally:
            await runner.cleanup()

    aio.run(main(), timeout=45)


# --------------------------------------------------------------- websockets

@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_websockets_library_server_and_client(aio: Any, tls: Any, scheme: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    big = _payload(MiB)

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "close":
                await ws.close(4001, "asked")
                return   # iterating on would raise: 4001 is not a normal closure
            else:
                await ws.send(message)

    async def main() -> None:
        server_ssl = tls.server_context() if scheme == "wss" else None
        client_ssl = tls.client_context() if scheme == "wss" else None
        async with serve(handler, "127.0.0.1", 0, ssl=server_ssl, max_size=2 * MiB) as server:
            port = server.sockets[0].getsockname()[1]
            uri = f"{scheme}://127.0.0.1:{port}"
            async with connect(uri, ssl=client_ssl, max_size=2 * MiB) as ws:
                _assert_on_loop(aio.kind)
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(big)
                assert await ws.recv() == big
                latency = await asyncio.wait_for(await ws.ping(), 5)
                assert latency >= 0
                await ws.send("close")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

            async def client(i: int) -> list[str]:
                async with connect(uri, ssl=client_ssl) as ws:
                    out = []
                    for j in range(5):
                        await ws.send(f"{i}:{j}")
                        out.append(str(await ws.recv()))
                    return out

            results = await asyncio.gather(*(client(i) for i in range(CONCURRENT_CLIENTS)))
            assert results == [[f"{i}:{j}" for j in range(5)] for i in range(CONCURRENT_CLIENTS)]

    aio.run(main(), timeout=45)


# ------------------------------------------------------------ asyncio streams

@pytest.mark.timeout(60)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_start_server_streams_echo(aio: Any, host: str) -> None:
    if host == "::1" and not _ipv6_available():
        pytest.skip("this machine has no IPv6 loopback")
    big = _payload(8 * MiB)
    lines = 100

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while True:
            line = await reader.readline()
            if not line:       # the client half-closed
                break
            total += len(line)
            writer.write(line)
            await writer.drain()
        writer.write(f"total={total}\n".encode())   # answer after EOF, then close
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port: int, i: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        if aio.kind == "fastsock":
            # the loop keeps fastsock's compiled TCP transport under streams
            assert type(writer.transport).__module__.startswith("fastsock."), type(writer.transport)
        sent = 0
        for j in range(lines):
            line = f"client {i} line {j}\n".encode()
            writer.write(line)
            sent += len(line)
            assert await reader.readline() == line
        assert writer.can_write_eof()
        writer.write_eof()
        assert await reader.read() == f"total={sent}\n".encode()
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()

    async def bulk(port: int) -> None:
        # 8 MiB in one write: more than the socket buffers, so drain() must wait
        reader, writer = await asyncio.open_connection(host, port)
        payload = big.replace(b"\n", b"\0") + b"\n"

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        async def receive() -> bytes:
            return await reader.read()

        _, echoed = await asyncio.gather(send(), receive())
        assert echoed == payload + f"total={len(payload)}\n".encode()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        _assert_on_loop(aio.kind)
        # one line can be 8 MiB: raise the reader's limit above it
        server = await asyncio.start_server(handle, host, 0, limit=16 * MiB)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await asyncio.gather(*(client(port, i) for i in range(CONCURRENT_CLIENTS)), bulk(port))
        assert not server.is_serving()

    aio.run(main(), timeout=45)


# ------------------------------------------------------------------ example

@pytest.mark.timeout(60)
@pytest.mark.parametrize("with_trustme", [True, False], ids=["tls", "plain"])
def test_example_asyncio_on_fastsock(with_trustme: bool) -> None:
    """examples/asyncio_on_fastsock.py runs on fastsock.run(): TLS with trustme, plain without."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "asyncio_on_fastsock.py"
    # sys.modules[name] = None makes "import trustme" raise ImportError
    hide = "" if with_trustme else "sys.modules['trustme'] = None; "
    code = f"import runpy, sys; {hide}runpy.run_path({str(example)!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=45)
    assert done.returncode == 0, done.stderr
    first, *echoed = done.stdout.splitlines()
    assert first.startswith("loop: fastsock.")
    assert ("TLSv1." in first) == with_trustme, first
    assert echoed == ["echoed: hello", "echoed: from asyncio", "echoed: on fastsock"]
