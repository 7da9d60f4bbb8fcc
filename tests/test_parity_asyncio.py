"""One protocol class, unchanged, on fastsock's reactor, asyncio's loop and uvloop's loop.

The server and client protocols below only use what asyncio's protocol API
offers (``loop.call_later``, ``loop.call_soon``, transport methods). Each
loop runs the same conversation; what the protocols saw -- bytes and the
order of callbacks, including ``eof_received``, ``pause_writing``,
``resume_writing`` and ``connection_lost`` -- must be identical.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from fastsock.reactor import Reactor
from fastsock.transports.tcp import create_tcp_connection, create_tcp_server

BIG = 16 * 1024 * 1024   # more than loopback socket buffers hold: forces pause_writing


def squash(events: list[str]) -> list[str]:
    """Collapse repeats so chunking (how many data_received calls) does not matter."""
    out: list[str] = []
    for e in events:
        if not out or out[-1] != e:
            out.append(e)
    return out


class ServerSide:
    """Upper-cases lines; 'big' sends BIG bytes; on EOF says bye after a timer."""

    def __init__(self, loop: Any, log: list[str]) -> None:
        self.loop = loop
        self.log = log
        self.buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.log.append("made")

    def data_received(self, data: bytes) -> None:
        self.log.append("data")
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line == b"big":
                self.transport.write(b"b" * BIG)
            else:
                self.transport.write(line.upper() + b"\n")

    def pause_writing(self) -> None:
        self.log.append("pause")

    def resume_writing(self) -> None:
        self.log.append("resume")

    def eof_received(self) -> bool:
        self.log.append("eof")
        # answer after the peer half-closed, from a timer, then close
        self.loop.call_later(0.01, self._bye)
        return True

    def _bye(self) -> None:
        self.transport.writelines([b"bye", b"\n"])
        self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.log.append(f"lost:{exc!r}")


class ClientSide:
    def __init__(self, loop: Any, log: list[str], done: Callable[[], None]) -> None:
        self.loop = loop
        self.log = log
        self.done = done
        self.received = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.log.append("made")
        transport.write(b"hello\nwor")
        self.loop.call_soon(transport.write, b"ld\nbig\n")

    def data_received(self, data: bytes) -> None:
        self.log.append("data")
        self.received += data
        if len(self.received) == len(b"HELLO\nWORLD\n") + BIG:
            self.transport.write_eof()

    def eof_received(self) -> bool:
        self.log.append("eof")
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.log.append(f"lost:{exc!r}")
        self.done()


def run_on_fastsock() -> dict[str, Any]:
    reactor = Reactor()
    server_log: list[str] = []
    client_log: list[str] = []
    finished: list[bool] = []
    client: list[ClientSide] = []
    try:
        server = create_tcp_server(reactor, lambda: ServerSide(reactor, server_log), "127.0.0.1", 0)
        host, port = server.addresses[0]

        def make_client() -> ClientSide:
            client.append(ClientSide(reactor, client_log, lambda: finished.append(True)))
            return client[0]

        reactor.run_until_complete(create_tcp_connection(reactor, make_client, host, port), timeout=10)
        assert reactor.run_until(lambda: finished and "lost:None" in server_log, timeout=60)
        server.close()
    finally:
        reactor.close()
    return {"server": squash(server_log), "client": squash(client_log), "received": bytes(client[0].received)}


def run_on_asyncio(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    server_log: list[str] = []
    client_log: list[str] = []
    client: list[ClientSide] = []

    async def main() -> None:
        finished = loop.create_future()
        server = await loop.create_server(lambda: ServerSide(loop, server_log), "127.0.0.1", 0)
        host, port = server.sockets[0].getsockname()[:2]

        def make_client() -> ClientSide:
            client.append(ClientSide(loop, client_log, lambda: finished.set_result(None)))
            return client[0]

        await loop.create_connection(make_client, host, port)
        await asyncio.wait_for(finished, 60)
        for _ in range(1000):  # the server side's connection_lost comes a turn later
            if "lost:None" in server_log:
                break
            await asyncio.sleep(0.005)
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return {"server": squash(server_log), "client": squash(client_log), "received": bytes(client[0].received)}


def _uvloop() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop()


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return run_on_fastsock()


def test_fastsock_conversation_is_what_the_protocols_expect(reference):
    assert reference["received"] == b"HELLO\nWORLD\n" + b"b" * BIG + b"bye\n"
    server = reference["server"]
    assert [e for e in server if e not in ("pause", "resume")] == ["made", "data", "eof", "lost:None"]
    assert server.index("data") < server.index("pause") < server.index("resume") < server.index("eof")
    assert reference["client"] == ["made", "data", "eof", "lost:None"]


@pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, _uvloop], ids=["asyncio", "uvloop"])
def test_same_protocol_same_observations(reference, make_loop):
    other = run_on_asyncio(make_loop())
    assert other["received"] == reference["received"]
    assert other["client"] == reference["client"]
    # pause/resume may alternate a different number of times (kernel buffer
    # timing); the order of everything else must match exactly.
    assert squash([e for e in other["server"] if e not in ("pause", "resume")]) == \
        squash([e for e in reference["server"] if e not in ("pause", "resume")])
    assert other["server"].index("pause") < other["server"].index("resume")
    assert reference["server"].index("pause") < reference["server"].index("resume")
