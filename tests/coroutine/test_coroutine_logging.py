"""Logging of the coroutine API on the standard ``logging`` module.

INFO on open and close (id, peer, close code), DEBUG per frame in and out
(from the connection core, on the same logger) only when the logger was
enabled for DEBUG at open; a
``logger=`` argument taking a Logger or a name. Real sockets on 127.0.0.1,
on asyncio's loop, uvloop and fastsock's (the ``aio`` fixture).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import websockets

from fastsock.coroutine import Connection, Server, connect, serve

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 20.0   # seconds for one test's coroutine


async def _handlers_done(server: Server) -> None:
    """Until every handler returned and its connection closed (the close line is written)."""
    for _ in range(int(RUN_TIMEOUT / 0.01)):
        if not server.connections:
            return
        await asyncio.sleep(0.01)


def _lines(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == level]


def test_info_on_open_and_close_with_id_peer_and_code(aio: Any, caplog: pytest.LogCaptureFixture) -> None:
    ids: list[str] = []
    peers: list[str] = []

    async def handler(ws: Connection) -> None:
        ids.append(str(ws.id))
        host, port = ws.remote_address[:2]
        peers.append(f"{host}:{port}")
        await ws.recv()
        await ws.close(4001, "bye now")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/room?x=1") as client:
                await client.send("hi")
                await client.wait_closed()
            await _handlers_done(server)

    caplog.set_level(logging.INFO, logger="fastsock.server")
    aio.run(main(), RUN_TIMEOUT)
    info = _lines(caplog, "fastsock.server", logging.INFO)
    assert len(ids) == 1
    assert f"connection open id={ids[0]} peer={peers[0]} path=/room subprotocol=None" in info
    # our close frame (4001) answered by the peer's echo: the code of the peer's frame
    closed = [line for line in info if line.startswith("connection closed")]
    assert closed == [f"connection closed id={ids[0]} peer={peers[0]} code=4001 reason='bye now'"]
    assert not _lines(caplog, "fastsock.server", logging.DEBUG)


def test_logger_argument_takes_a_name_or_a_logger_and_client_side_too(
        aio: Any, caplog: pytest.LogCaptureFixture) -> None:
    mine = logging.getLogger("test.mine")

    async def echo(ws: Connection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, logger="test.by_name") as server:
            core = (await connect(f"ws://127.0.0.1:{server.port}/")).core
            # how the client hands its logger= on: the Connection made over its core
            ws = Connection(core, logger=mine)
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close()
            await _handlers_done(server)

    caplog.set_level(logging.INFO)
    aio.run(main(), RUN_TIMEOUT)
    server_lines = _lines(caplog, "test.by_name", logging.INFO)
    assert [line.split(" ")[1] for line in server_lines] == ["open", "closed"]
    assert server_lines[1].endswith("code=1000 reason=''")
    client_lines = _lines(caplog, "test.mine", logging.INFO)
    assert client_lines[0].startswith("connection open id=")
    assert client_lines[-1].startswith("connection closed id=")
    assert client_lines[-1].endswith("code=1000 reason=''")
    assert not _lines(caplog, "fastsock.server", logging.INFO)


def test_debug_lines_per_frame_only_when_enabled_at_open(aio: Any, caplog: pytest.LogCaptureFixture) -> None:
    logs: list[bool] = []      # did each connection decide to log its frames?

    async def handler(ws: Connection) -> None:
        logs.append(ws.core._frame_log is not None)
        async for message in ws:
            await ws.send(message)

    async def fragments(ws: Connection) -> None:
        logs.append(ws.core._frame_log is not None)
        await ws.recv()
        await ws.send(["frag", "ment"])
        await ws.ping()

    async def main() -> None:
        async with serve({"/echo": handler, "/frag": fragments}, "127.0.0.1", 0,
                         logger="test.debug") as server:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/echo") as client:
                await client.send("hello")
                assert await client.recv() == "hello"
                await client.send(b"\x01\x02")
                assert await client.recv() == b"\x01\x02"
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/frag") as client:
                await client.send("go")
                assert await client.recv() == "fragment"
                await client.wait_closed()

    logger = logging.getLogger("test.debug")
    # INFO only: the connections keep the fast paths, no DEBUG line
    caplog.set_level(logging.INFO, logger="test.debug")
    aio.run(main(), RUN_TIMEOUT)
    assert logs == [False, False]
    assert not _lines(caplog, "test.debug", logging.DEBUG)

    logs.clear()
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="test.debug")
    assert logger.isEnabledFor(logging.DEBUG)
    aio.run(main(), RUN_TIMEOUT)
    assert logs == [True, True]
    debug = [line.split(" ", 1)[1] for line in _lines(caplog, "test.debug", logging.DEBUG)]
    # websockets compresses everything: its frames are shown decompressed with
    # RSV1 noted; ours stay plain under the compression threshold (32 B)
    assert "< TEXT 'hello' [5 bytes, rsv=100]" in debug
    assert "> TEXT 'hello' [5 bytes]" in debug
    assert "< BINARY 01 02 [2 bytes, rsv=100]" in debug
    assert "> BINARY 01 02 [2 bytes]" in debug
    assert "> TEXT 'frag' [4 bytes, continued]" in debug
    assert "> CONT 6d 65 6e 74 [4 bytes]" in debug
    pings = [line for line in debug if line.startswith("> PING ")]
    pongs = [line for line in debug if line.startswith("< PONG ")]
    assert len(pings) == 1 and pings[0].endswith("[4 bytes]")
    assert pongs and pongs[0].split(" ", 2)[2] == pings[0].split(" ", 2)[2]   # same payload back
    assert "> CLOSE 1000 '' [2 bytes]" in debug        # the handler returned


def test_client_connect_logs_on_its_logger(aio: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def echo(ws: Connection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> str:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/c", logger="test.client") as ws:
                assert ws.core._frame_log is not None        # DEBUG was on at open
                await ws.send("ping me")
                assert await ws.recv() == "ping me"
                return str(ws.id)

    caplog.set_level(logging.DEBUG, logger="test.client")
    conn_id = aio.run(main(), RUN_TIMEOUT)
    info = _lines(caplog, "test.client", logging.INFO)
    assert info[0].startswith(f"connection open id={conn_id} peer=127.0.0.1:")
    assert info[-1].startswith(f"connection closed id={conn_id}") and info[-1].endswith("code=1000 reason=''")
    debug = _lines(caplog, "test.client", logging.DEBUG)
    assert f"{conn_id} > TEXT 'ping me' [7 bytes]" in debug
    assert f"{conn_id} < TEXT 'ping me' [7 bytes]" in debug
    assert f"{conn_id} > CLOSE 1000 '' [2 bytes]" in debug
