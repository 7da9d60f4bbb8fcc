"""fastsock's compiled TLS record path (fastsock/transports/_tls.pyx).

asyncio's SSLProtocol is the behavioural reference (test_tls_loop.py and
asyncio's own test_ssl/test_sslproto run on it through the loop); these
tests check what the compiled subclass adds: the records an application
writes while handling one read leave with one write to the socket.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

import fastsock
from fastsock import _switch
from fastsock.reactor import loop as loop_module

trustme = pytest.importorskip("trustme")

REPLIES_PER_READ = 3


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class ThreeReplies(asyncio.Protocol):
    """Answers every read with three separate writes, and counts the writes
    that reach the raw socket transport under TLS."""

    raw_writes: list[int] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        raw = transport._ssl_protocol._transport
        self.protocol_class = type(transport._ssl_protocol)
        original = raw.write

        def counting_write(data: Any) -> None:
            ThreeReplies.raw_writes.append(len(data))
            original(data)

        raw.write = counting_write

    def data_received(self, data: bytes) -> None:
        ThreeReplies.raw_writes.clear()
        for i in range(REPLIES_PER_READ):
            self.transport.write(b"%d:" % i + data)


def _serve_and_ask(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[bytes, list[int], type]:
    server_ctx, client_ctx = contexts
    protocols: list[ThreeReplies] = []
    seen: list[int] = []

    async def main() -> bytes:
        loop = asyncio.get_running_loop()

        def factory() -> ThreeReplies:
            protocols.append(ThreeReplies())
            return protocols[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        writer.write(b"ping")
        expected = b"".join(b"%d:ping" % i for i in range(REPLIES_PER_READ))
        answer = await asyncio.wait_for(reader.readexactly(len(expected)), 10)
        seen.extend(ThreeReplies.raw_writes)  # before the close adds its close_notify
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return answer

    answer = fastsock.run(main())
    return answer, seen, protocols[0].protocol_class


@pytest.mark.timeout(30)
def test_a_reads_replies_leave_in_one_write(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    answer, raw_writes, protocol_class = _serve_and_ask(contexts)
    assert answer == b"0:ping1:ping2:ping"
    if protocol_class.__module__ != "fastsock.transports._tls":
        pytest.skip("the compiled TLS protocol is not built (or FASTSOCK_PURE=1)")
    # three application writes, three TLS records, one write to the socket
    assert len(raw_writes) == 1, raw_writes


@pytest.mark.timeout(30)
def test_asyncios_record_path_sends_each_write(contexts: tuple[ssl.SSLContext, ssl.SSLContext],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The same exchange on asyncio's SSLProtocol: one socket write per
    application write (what the compiled path improves on)."""
    import asyncio.sslproto
    monkeypatch.setattr(loop_module, "_SSLProtocol", asyncio.sslproto.SSLProtocol)
    answer, raw_writes, protocol_class = _serve_and_ask(contexts)
    assert answer == b"0:ping1:ping2:ping"
    assert protocol_class is asyncio.sslproto.SSLProtocol
    assert len(raw_writes) == REPLIES_PER_READ, raw_writes


def test_the_compiled_tls_protocol_is_the_loops_unless_switched_off() -> None:
    built = _switch.compiled("fastsock.transports._tls") is not None
    expected = "fastsock.transports._tls" if built else "fastsock.transports._tls_py"
    assert loop_module._SSLProtocol.__module__ == expected
