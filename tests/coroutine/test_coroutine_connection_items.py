"""Issue 14's Connection items not covered elsewhere, over real sockets on
127.0.0.1 with the websockets library as the peer, on asyncio's loop, uvloop
and fastsock's (the ``aio`` fixture):

- ``send`` waits only while the write buffer is over its high watermark,
  and then until it is back under the low one;
- ``send`` of an iterable of fragments puts one frame per fragment on the
  wire (seen by websockets' ``recv_streaming``), joined into one message
  when an extension (permessage-deflate) is negotiated;
- ``ws.latency`` from the keep-alive's pings, ``ws.id``, ``ws.remote_address``;
- ``wait_closed`` returns once the peer closed, with its code.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator

import pytest
import websockets

from fastsock.coroutine import Connection, Server, serve
from fastsock.websocket import WebSocketOptions

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 30.0        # seconds for one test's coroutine
KiB = 1024
WRITE_LIMIT = 64 * KiB
WRITE_LOW = 16 * KiB
MESSAGE = b"w" * (256 * KiB)
MAX_SENDS = 1000          # bound on the sends before the buffer must be over the limit
WAIT_STEP = 0.01          # seconds between looks at a condition
WAIT_STEPS = 1000


async def _until(condition: Any) -> None:
    for _ in range(WAIT_STEPS):
        if condition():
            return
        await asyncio.sleep(WAIT_STEP)
    raise AssertionError("condition not met in time")


def _url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def test_send_waits_only_over_the_high_watermark(aio: Any) -> None:
    sends: list[bool] = []            # per send: done after one loop step?
    paused_at: list[bool] = []        # per send: writing paused after it?
    resumed_under: list[int] = []     # write buffer size when the waiting send returned
    go = []

    async def flood(ws: Connection) -> None:
        core = ws.core
        for _ in range(MAX_SENDS):
            task = asyncio.ensure_future(ws.send(MESSAGE))
            await asyncio.sleep(0)            # one step: the send writes, then returns or waits
            sends.append(task.done())
            paused_at.append(core.writing_paused)
            if not task.done():
                break
        else:
            raise AssertionError("the write buffer never went over write_limit")
        assert core.buffered_amount > WRITE_LIMIT
        go[0].set()                           # let the client read
        await task
        resumed_under.append(core.transport.get_write_buffer_size())
        await ws.send("end")
        await ws.wait_closed()

    async def main() -> None:
        go.append(asyncio.Event())
        options = WebSocketOptions(write_limit=WRITE_LIMIT, write_low=WRITE_LOW)
        async with serve(flood, "127.0.0.1", 0, options=options, compression=None) as server:
            # max_queue=1: the client stops reading at once, so the kernel's
            # buffers fill and then the server's write buffer
            async with websockets.connect(_url(server), max_queue=1, compression=None,
                                          max_size=None) as client:
                await asyncio.wait_for(go[0].wait(), RUN_TIMEOUT)
                count = 0
                while (await client.recv()) != "end":
                    count += 1
                assert count == len(sends)

    aio.run(main(), RUN_TIMEOUT)
    # every send that left the buffer under the limit returned without waiting;
    # the one that took it over waited, and returned once under write_low
    assert sends[:-1] == [True] * (len(sends) - 1) and sends[-1] is False
    assert paused_at == [False] * (len(sends) - 1) + [True]
    assert len(sends) >= 2
    assert resumed_under[0] <= WRITE_LOW


async def _parts(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        await asyncio.sleep(0)
        yield item


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
def test_fragments_are_frames_on_the_wire(aio: Any, compression: Any) -> None:
    async def handler(ws: Connection) -> None:
        await ws.send(["frag", "men", "ted"])
        await ws.send(_parts(b"\x00\x01", b"\x02"))
        await ws.send("whole")
        await ws.wait_closed()

    async def main() -> list[list[Any]]:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with websockets.connect(_url(server), compression=compression) as client:
                messages = []
                for _ in range(3):
                    messages.append([f async for f in client.recv_streaming()])
                return messages

    messages = aio.run(main(), RUN_TIMEOUT)
    # permessage-deflate compresses fragment by fragment (each flushed), so
    # the fragments stay frames with compression too
    assert messages == [["frag", "men", "ted"], [b"\x00\x01", b"\x02"], ["whole"]]


def test_latency_from_keepalive_id_and_remote_address(aio: Any) -> None:
    seen: list[Connection] = []
    latencies: list[float] = []

    async def handler(ws: Connection) -> None:
        seen.append(ws)
        assert ws.latency is None                  # no ping answered yet
        await _until(lambda: ws.latency is not None)   # the keep-alive's ping came back
        assert ws.latency is not None
        latencies.append(ws.latency)
        await ws.send("measured")
        await ws.wait_closed()

    async def main() -> list[tuple[str, int]]:
        options = WebSocketOptions(ping_interval=0.05, ping_timeout=5.0)
        async with serve(handler, "127.0.0.1", 0, options=options) as server:
            clients = [await websockets.connect(_url(server)) for _ in range(2)]
            for client in clients:
                assert await client.recv() == "measured"
            locals_ = [client.local_address[:2] for client in clients]
            for client in clients:
                await client.close()
            return locals_

    locals_ = aio.run(main(), RUN_TIMEOUT)
    assert len(latencies) == 2 and all(0 < lat < 5 for lat in latencies)
    assert all(isinstance(ws.id, uuid.UUID) for ws in seen)
    assert seen[0].id != seen[1].id
    assert sorted(tuple(ws.remote_address[:2]) for ws in seen) == sorted(locals_)


def test_wait_closed_returns_when_the_peer_closes(aio: Any) -> None:
    results: list[tuple[Any, Any, str]] = []

    async def handler(ws: Connection) -> None:
        await ws.send("ready")
        await ws.wait_closed()
        results.append((ws.close_code, ws.close_reason, ws.state.name))
        await ws.wait_closed()                     # again: returns at once

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with websockets.connect(_url(server)) as client:
                assert await client.recv() == "ready"
                await client.close(4002, "leaving")
            await _until(lambda: results)

    aio.run(main(), RUN_TIMEOUT)
    assert results == [(4002, "leaving", "CLOSED")]
