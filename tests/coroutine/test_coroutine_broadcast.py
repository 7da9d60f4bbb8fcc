"""``fastsock.broadcast`` for both APIs: coroutine ``Connection``s,
``WebSocketHandler``s, and lists mixing them, over real sockets on
127.0.0.1 with the ``websockets`` client as the peer, on asyncio's loop,
uvloop and fastsock's (the ``aio`` fixture).
"""
from __future__ import annotations

import asyncio
from typing import Any, Union

import pytest
import websockets

import fastsock
from fastsock.adapters import aio as aio_adapter
from fastsock.coroutine import Connection
from fastsock.websocket import WebSocketHandler, WebSocketOptions

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 20.0     # seconds for one test's coroutine
WAIT_STEP = 0.01       # seconds between looks at a condition
WAIT_STEPS = 1000      # looks before giving up


async def _until(condition: Any) -> None:
    for _ in range(WAIT_STEPS):
        if condition():
            return
        await asyncio.sleep(WAIT_STEP)
    raise AssertionError("condition not met in time")


def test_broadcast_takes_connections_handlers_and_a_mix(aio: Any) -> None:
    room: list[Union[Connection, WebSocketHandler]] = []

    async def coroutine_handler(ws: Connection) -> None:
        room.append(ws)
        await ws.wait_closed()

    class CallbackHandler(WebSocketHandler):
        def on_open(self) -> None:
            room.append(self)

    async def main() -> None:
        async with fastsock.serve(coroutine_handler, "127.0.0.1", 0) as co_server:
            cb_server = await aio_adapter.serve(CallbackHandler, "127.0.0.1", 0)
            try:
                co_clients = [await websockets.connect(f"ws://127.0.0.1:{co_server.port}/")
                              for _ in range(2)]
                cb_clients = [await websockets.connect(f"ws://127.0.0.1:{cb_server.port}/")
                              for _ in range(2)]
                clients = co_clients + cb_clients
                await _until(lambda: len(room) == 4)
                assert sum(isinstance(c, Connection) for c in room) == 2

                # only Connections, only handlers, then both
                connections = [c for c in room if isinstance(c, Connection)]
                handlers = [c for c in room if isinstance(c, WebSocketHandler)]
                assert fastsock.broadcast(connections, "to coroutines") == 2
                assert fastsock.broadcast(handlers, b"to callbacks") == 2
                assert fastsock.broadcast(room, "to all") == 4
                for client in co_clients:
                    assert await client.recv() == "to coroutines"
                for client in cb_clients:
                    assert await client.recv() == b"to callbacks"
                for client in clients:
                    assert await client.recv() == "to all"

                # a closed Connection is skipped (the slow path goes through its core)
                await co_clients[0].close()
                closed = connections[0]
                assert isinstance(closed, Connection)
                await closed.wait_closed()
                assert fastsock.broadcast(room, "after a close") == 3
                for client in clients[1:]:
                    assert await client.recv() == "after a close"
                # the metrics of the last connection's server count the broadcast
                assert co_server.stats()["broadcasts"] >= 1 or cb_server.stats()["broadcasts"] >= 1
                for client in clients[1:]:
                    await client.close()
            finally:
                cb_server.close()
                await cb_server.wait_closed(5.0)

    aio.run(main(), RUN_TIMEOUT)


def test_broadcast_to_a_client_connection_masks_through_its_core(aio: Any) -> None:
    received: list[Any] = []

    async def collect(ws: Connection) -> None:
        async for message in ws:
            received.append(message)

    async def main() -> None:
        async with fastsock.serve(collect, "127.0.0.1", 0) as server:
            async with fastsock.connect(f"ws://127.0.0.1:{server.port}/") as client:
                # a client-side Connection: not the fast path, its own masked send
                assert fastsock.broadcast([client], "from a client") == 1
                assert fastsock.broadcast([client], frame=fastsock.encode_message(b"\x01")) == 1
                await _until(lambda: len(received) == 2)
        assert received == ["from a client", b"\x01"]

    aio.run(main(), RUN_TIMEOUT)


def test_broadcast_to_a_paused_connection_follows_slow_peer(aio: Any) -> None:
    holders: list[Connection] = []

    async def hold(ws: Connection) -> None:
        holders.append(ws)
        await ws.wait_closed()

    async def main() -> None:
        options = WebSocketOptions(slow_peer="drop")
        async with fastsock.serve(hold, "127.0.0.1", 0, options=options) as server:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/") as client:
                await _until(lambda: len(holders) == 1)
                ws = holders[0]
                ws.core.pause_writing()          # as the transport does over write_limit
                assert fastsock.broadcast(holders, "dropped") == 0
                assert ws.core.messages_dropped == 1
                ws.core.resume_writing()
                assert fastsock.broadcast(holders, "delivered") == 1
                assert await client.recv() == "delivered"

    aio.run(main(), RUN_TIMEOUT)
