"""A TLS failure on one connection never disturbs the others (issue 14), on
the coroutine server over wss:// on asyncio's loop, uvloop and fastsock's
(the ``aio`` fixture).

While a websockets client keeps an open wss:// connection, other clients
fail in three ways: plain HTTP on the TLS port, a client that does not
trust the certificate (it aborts the handshake), and bytes that are not
TLS. Each of those is closed; the open connection keeps working and no
handler ran for them. On fastsock's loop the plain-HTTP request is also
logged (``fastsock.tls``); asyncio's and uvloop's TLS log nothing outside
debug mode, so there it is only closed.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest
import websockets

from fastsock.coroutine import Connection, serve

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 30.0     # seconds for one test's coroutine
READ_TIMEOUT = 10.0    # seconds for a failed client to see its connection closed


async def _closed_after(port: int, data: bytes) -> bytes:
    """Send ``data`` on a raw TCP connection; what came back before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), READ_TIMEOUT)
    finally:
        writer.close()


def test_tls_failures_leave_the_open_connection_alone(aio: Any, tls: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    paths: list[str] = []

    async def echo(ws: Connection) -> None:
        paths.append(ws.request.path)
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        aio.tolerate_handshake_failures()
        async with serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
            async with websockets.connect(f"wss://localhost:{server.port}/kept",
                                          ssl=tls.client_context()) as kept:
                await kept.send("before")
                assert await kept.recv() == "before"

                # plain HTTP on the TLS port: closed without an HTTP answer
                answer = await _closed_after(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert not answer.startswith(b"HTTP/")
                # a client that does not trust the certificate gives up
                distrustful = ssl.create_default_context()      # the system CAs only
                with pytest.raises(ssl.SSLCertVerificationError):
                    await websockets.connect(f"wss://localhost:{server.port}/refused",
                                             ssl=distrustful)
                # bytes that are not TLS at all
                await _closed_after(server.port, b"\x00" * 64)

                await kept.send("after")
                assert await kept.recv() == "after"
                assert len(server.connections) == 1
        assert paths == ["/kept"]

    caplog.set_level(logging.WARNING, logger="fastsock.tls")
    aio.run(main(), RUN_TIMEOUT)
    if aio.kind == "fastsock":
        assert any("plain HTTP on a TLS port" in r.getMessage() for r in caplog.records)
