"""The same WebSocket handler classes on asyncio and uvloop loops."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from fastsock.adapters import aio
from fastsock.exceptions import InvalidResponseError
from fastsock.websocket import Response, WebSocketHandler, WebSocketOptions


class Echo(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data)


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.event = asyncio.Event()

    def on_message(self, data: Any) -> None:
        self.received.append(data)
        self.event.set()

    def on_close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.event.set()

    async def next(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


def run(kind: str, coro: Any) -> Any:
    loop = aio.new_loop(kind)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 60))
    finally:
        loop.close()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_our_client_and_server(kind: str) -> None:
    async def main() -> None:
        opts = WebSocketOptions(max_message_size=None, ping_interval=None)
        server = await aio.serve(Echo, "127.0.0.1", 0, options=opts)
        ws = await aio.connect(f"ws://127.0.0.1:{server.port}/", Client, options=opts)
        big = b"z" * (16 << 20)
        for message in ("text", b"bytes", big):
            ws.send(message)
            await ws.next()
        assert ws.received == ["text", b"bytes", big]
        server.close()                          # 1001 to every connection
        await ws.next()
        assert ws.closed == (1001, "server shutting down")
        await server.wait_closed(5)
        assert not server.connections

    run(kind, main())


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_websockets_peer_on_each_side(kind: str) -> None:
    async def ws_echo(conn: Any) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        # websockets client → fastsock server
        server = await aio.serve(Echo, "127.0.0.1", 0)
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as conn:
            await conn.send(["a", "b"])
            assert await conn.recv() == "ab"
        server.close()
        await server.wait_closed(5)
        # fastsock client → websockets server
        async with websockets.serve(ws_echo, "127.0.0.1", 0) as peer:
            port = peer.sockets[0].getsockname()[1]
            ws = await aio.connect(f"ws://127.0.0.1:{port}/", Client)
            ws.send("ping?")
            await ws.next()
            assert ws.received == ["ping?"]
            ws.close()
            await ws.next()
            assert ws.closed == (1000, "")

    run(kind, main())


def test_rejection_is_reported_with_its_status() -> None:
    async def main() -> None:
        server = await aio.serve(Echo, "127.0.0.1", 0,
                                 process_request=lambda req: Response(429, [], "slow down\n"))
        with pytest.raises(InvalidResponseError) as info:
            await aio.connect(f"ws://127.0.0.1:{server.port}/", Client)
        assert info.value.status == 429
        server.close()
        await server.wait_closed(5)

    run("asyncio", main())


def test_unknown_loop_kind() -> None:
    with pytest.raises(ValueError):
        aio.new_loop("tokio")
