"""TLS through the event loop (``ssl=``, ``start_tls``) on asyncio's loop, uvloop and fastsock's.

Certificates come from a trustme CA made for the test session (the ``tls``
fixture in tests/conftest.py). Every test runs on the three loops (the
``aio`` fixture); asyncio's and uvloop's legs are the reference behaviour.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import pytest

MiB = 1024 * 1024
HANDSHAKE_TIMEOUT = 0.5       # seconds: short, so a stalled handshake ends quickly
SLOW_BOUND = 10.0             # seconds: what "quickly" must beat even on a busy machine
ALPN_OFFERED = ["h2", "http/1.1"]
MANY_CONNECTIONS = 1000
CONNECT_CONCURRENCY = 100     # handshakes in flight at once while opening MANY_CONNECTIONS
FDS_PER_CONNECTION = 2        # client and server ends live in this process
FD_HEADROOM = 256             # the interpreter, the loop, pytest
LARGE = 4 * MiB
SMALL_SOCKET_BUFFER = 64 * 1024   # so the kernel cannot swallow LARGE and back-pressure must act
CLIENT_READ_STALL = 0.3           # seconds the large-transfer client does not read
WRITE_CHUNK = 64 * 1024           # the large-transfer client's write size
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"   # a TLS record header promising 512 bytes, then nothing
PLAIN_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


# ------------------------------------------------------------------ helpers

@dataclass
class EchoServer:
    """A line echo server over TLS; counts the connections its handler saw."""

    server: asyncio.Server
    handled: int = 0
    active: int = 0
    max_active: int = 0
    sni: list[str | None] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


async def start_echo_server(ctx: ssl.SSLContext, host: str = "127.0.0.1", **kwargs: Any) -> EchoServer:
    state: EchoServer

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.handled += 1
        state.active += 1
        state.max_active = max(state.max_active, state.active)
        ssl_object = writer.get_extra_info("ssl_object")
        state.alpn.append(ssl_object.selected_alpn_protocol() if ssl_object else None)
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass   # a peer that aborts is not this server's failure
        finally:
            state.active -= 1
            writer.close()

    server = await asyncio.start_server(handle, host, 0, ssl=ctx, **kwargs)
    state = EchoServer(server)
    return state


async def open_tls(port: int, ctx: ssl.SSLContext, server_hostname: str | None = "localhost",
                   host: str = "127.0.0.1", **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_hostname, **kwargs)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str) -> None:
    line = text.encode() + b"\n"
    writer.write(line)
    await writer.drain()
    assert await reader.readline() == line


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the peer sent before it closed; a reset counts as closed."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


def san_dns_names(peercert: dict[str, Any]) -> set[str]:
    return {value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"}


# ------------------------------------------------------------------- basics

def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.timeout(30)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tls_echo_and_connection_info(aio: Any, tls: Any, host: str) -> None:
    if host == "::1" and not _ipv6_available():
        pytest.skip("this machine has no IPv6 loopback")
    client_ctx = tls.client_context()

    async def main() -> None:
        server = await start_echo_server(tls.server_context(), host=host)
        async with server.server:
            reader, writer = await open_tls(server.port, client_ctx, host=host)
            await echo(reader, writer, "hello over TLS")
            ssl_object = writer.get_extra_info("ssl_object")
            assert ssl_object is not None
            assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            assert writer.get_extra_info("sslcontext") is client_ctx
            assert writer.get_extra_info("cipher") is not None
            peercert = writer.get_extra_info("peercert")
            assert "localhost" in san_dns_names(peercert)
            # the TCP facts pass through the TLS transport
            assert writer.get_extra_info("peername")[:2] == (host, server.port)
            assert writer.get_extra_info("socket") is not None
            if aio.kind == "fastsock":
                # TLS runs over fastsock's own stream transport, not asyncio's
                # (the TLS layer's transport is asyncio's private _ssl_protocol._transport)
                under = writer.transport._ssl_protocol._transport   # type: ignore[attr-defined]
                assert type(under).__module__.startswith("fastsock."), type(under)
            # the IP itself was the name checked (no server_hostname given)
            reader2, writer2 = await open_tls(server.port, client_ctx, server_hostname=None, host=host)
            await echo(reader2, writer2, "checked by IP")
            await close(writer2)
            await close(writer)
        assert server.handled == 2

    aio.run(main(), timeout=20)


# ------------------------------------------------- failures, each one alone

def _bad_client_context(tls: Any, kind: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    (tls.other_ca if kind == "untrusted_ca" else tls.ca).configure_trust(ctx)
    return ctx


async def _attempt_bad_connection(kind: str, port: int, tls: Any) -> None:
    """Make one failing connection of the given kind and check its error."""
    loop = asyncio.get_running_loop()
    if kind in ("untrusted_ca", "hostname_mismatch"):
        hostname = "wrong.fastsock.test" if kind == "hostname_mismatch" else "localhost"
        with pytest.raises(ssl.SSLCertVerificationError) as failed:
            await open_tls(port, _bad_client_context(tls, kind), server_hostname=hostname)
        message = failed.value.verify_message.lower()
        if kind == "untrusted_ca":
            assert "issuer" in message or "self-signed" in message, message
        else:
            assert "hostname mismatch" in message, message
    elif kind == "plain_client":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PLAIN_REQUEST)
        # the server gives up on the handshake and closes: never an echo
        answer = await read_until_closed(reader)
        assert PLAIN_REQUEST not in answer
        await close(writer)
    elif kind == "stalled_handshake":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PARTIAL_CLIENT_HELLO)
        started = loop.time()
        assert await read_until_closed(reader) == b""
        waited = loop.time() - started
        assert HANDSHAKE_TIMEOUT * 0.8 <= waited < SLOW_BOUND, waited
        await close(writer)
    else:
        raise AssertionError(kind)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["untrusted_ca", "hostname_mismatch", "plain_client", "stalled_handshake"])
def test_bad_connection_fails_alone(aio: Any, tls: Any, kind: str) -> None:
    """One bad connection fails with its own error; the server's others carry on."""
    aio.tolerate_handshake_failures()
    client_ctx = tls.client_context()

    async def main() -> None:
        server = await start_echo_server(tls.server_context(), ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        async with server.server:
            before = await open_tls(server.port, client_ctx)
            await echo(*before, "before")
            bad = asyncio.ensure_future(_attempt_bad_connection(kind, server.port, tls))
            # while the bad one is failing, the open connection still echoes
            for i in range(5):
                await echo(*before, f"during {i}")
                await asyncio.sleep(HANDSHAKE_TIMEOUT / 5)
            await bad
            await echo(*before, "after")
            after = await open_tls(server.port, client_ctx)
            await echo(*after, "new connection")
            await close(before[1])
            await close(after[1])
        # the handler ran for the two good connections only
        assert server.handled == 2

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_client_handshake_timeout(aio: Any, tls: Any) -> None:
    """A client whose server never answers the ClientHello gives up after ssl_handshake_timeout."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent: list[asyncio.StreamWriter] = []

        async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            silent.append(writer)

        server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            started = loop.time()
            with pytest.raises((ConnectionAbortedError, TimeoutError)) as failed:
                await open_tls(port, tls.client_context(), ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            waited = loop.time() - started
            assert HANDSHAKE_TIMEOUT * 0.8 <= waited < SLOW_BOUND, waited
            assert "handshake" in str(failed.value).lower(), failed.value
            for writer in silent:
                writer.close()

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_cancelled_handshake_releases_the_connection(aio: Any, tls: Any) -> None:
    """A client cancelled mid-handshake (wait_for) closes its socket: the server sees EOF."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[bytes] = loop.create_future()

        async def accept_and_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await read_until_closed(reader)   # the ClientHello, then the end
            if not ended.done():
                ended.set_result(data)
            writer.close()

        server = await asyncio.start_server(accept_and_wait, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(open_tls(port, tls.client_context()), HANDSHAKE_TIMEOUT)
            hello = await asyncio.wait_for(ended, SLOW_BOUND)
            assert hello[:1] == b"\x16"   # it was a TLS handshake record that got cut off

    aio.run(main(), timeout=20)


async def _refused_without_certificate(port: int, ctx: ssl.SSLContext) -> str:
    """How a server that requires a client certificate turned away a client without one."""
    try:
        reader, writer = await open_tls(port, ctx)
    except ssl.SSLError as exc:   # TLS 1.2: during the handshake
        return f"handshake: {exc}"
    # TLS 1.3: the client's handshake ends before the server checks its
    # certificate; the server then closes (asyncio and uvloop show an EOF)
    writer.write(b"no certificate\n")
    try:
        line = await reader.readline()
    except (ssl.SSLError, ConnectionError) as exc:
        return f"first read: {exc}"
    finally:
        await close(writer)
    assert line == b"", f"a client without a certificate got an answer: {line!r}"
    return "closed before any answer"


@pytest.mark.timeout(30)
def test_client_certificates_required_by_the_server(aio: Any, tls: Any) -> None:
    """Mutual TLS: a client without a certificate is refused; one with a certificate is seen."""
    aio.tolerate_handshake_failures()
    server_ctx = tls.server_context()
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls.ca.configure_trust(server_ctx)
    client_cert = tls.ca.issue_cert("client@fastsock.test")
    with_cert = tls.client_context()
    client_cert.configure_cert(with_cert)
    peer_certs: list[dict[str, Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_certs.append(writer.get_extra_info("peercert"))
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await _refused_without_certificate(port, tls.client_context())
            reader, writer = await open_tls(port, with_cert)
            await echo(reader, writer, "with certificate")
            await close(writer)
        assert len(peer_certs) == 1   # the handler never ran for the refused client
        assert ("email", "client@fastsock.test") in peer_certs[0]["subjectAltName"]

    aio.run(main(), timeout=20)


# ---------------------------------------------- names: SNI and verification

@pytest.mark.timeout(30)
def test_sni_server_sees_name_and_callback_selects_context(aio: Any, tls: Any) -> None:
    client_ctx = tls.client_context()
    alt_ctx = tls.server_context(tls.alt_cert)
    seen: list[str | None] = []

    def pick(ssl_object: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(server_name)
        if server_name == "alt.fastsock.test":
            ssl_object.context = alt_ctx

    server_ctx = tls.server_context()
    server_ctx.sni_callback = pick

    async def main() -> None:
        server = await start_echo_server(server_ctx)
        async with server.server:
            for name, expected_sni in (("localhost", "localhost"),
                                       ("alt.fastsock.test", "alt.fastsock.test"),
                                       (None, None)):   # by IP: no SNI is sent
                reader, writer = await open_tls(server.port, client_ctx, server_hostname=name)
                await echo(reader, writer, f"via {name}")
                assert seen[-1] == expected_sni
                names = san_dns_names(writer.get_extra_info("peercert"))
                assert names == ({"alt.fastsock.test"} if name == "alt.fastsock.test" else {"localhost"})
                await close(writer)
        assert seen == ["localhost", "alt.fastsock.test", None]

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_client_verifies_hostname_by_default(aio: Any, tls: Any) -> None:
    """With no server_hostname the host is checked; ssl=True uses the system CAs."""
    aio.tolerate_handshake_failures()

    async def main() -> None:
        # a server whose only name is alt.fastsock.test
        server = await start_echo_server(tls.server_context(tls.alt_cert))
        async with server.server:
            with pytest.raises(ssl.SSLCertVerificationError) as mismatch:
                await asyncio.open_connection("127.0.0.1", server.port, ssl=tls.client_context())
            assert "mismatch" in mismatch.value.verify_message.lower()
            # ssl=True: a default context, which does not trust the test CA
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection("127.0.0.1", server.port, ssl=True,
                                              server_hostname="alt.fastsock.test")
            # the right name passes
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=tls.client_context(), server_hostname="alt.fastsock.test")
            await echo(reader, writer, "named right")
            await close(writer)
            with pytest.raises(ValueError):
                await asyncio.open_connection("127.0.0.1", server.port, server_hostname="x")
        assert server.handled == 1
        # by name: "localhost" is resolved (::1 may come first and be refused),
        # sent as SNI and checked against the certificate
        server = await start_echo_server(tls.server_context())
        async with server.server:
            reader, writer = await asyncio.open_connection("localhost", server.port, ssl=tls.client_context())
            await echo(reader, writer, "by name")
            assert "localhost" in san_dns_names(writer.get_extra_info("peercert"))
            await close(writer)

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_alpn_negotiation(aio: Any, tls: Any) -> None:
    server_ctx = tls.server_context()
    server_ctx.set_alpn_protocols(ALPN_OFFERED)

    async def main() -> None:
        server = await start_echo_server(server_ctx)
        async with server.server:
            results = []
            for offer in (["http/1.1"], ["spdy/1", "h2"], ["nothing-in-common"]):
                ctx = tls.client_context()
                ctx.set_alpn_protocols(offer)
                reader, writer = await open_tls(server.port, ctx)
                await echo(reader, writer, "alpn")
                results.append(writer.get_extra_info("ssl_object").selected_alpn_protocol())
                await close(writer)
        assert results == ["http/1.1", "h2", None]
        assert server.alpn == results   # the server agreed on the same

    aio.run(main(), timeout=20)


# ------------------------------------------------------------- start_tls

@pytest.mark.timeout(30)
def test_start_tls_upgrades_a_plain_connection_on_both_sides(aio: Any, tls: Any) -> None:
    client_ctx = tls.client_context()
    server_ctx = tls.server_context()
    server_saw: list[Any] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        assert writer.get_extra_info("ssl_object") is None
        writer.write(b"GO\n")
        await writer.start_tls(server_ctx)
        ssl_object = writer.get_extra_info("ssl_object")
        server_saw.append(ssl_object.version() if ssl_object else None)
        line = await reader.readline()
        writer.write(b"secure " + line)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            assert writer.get_extra_info("ssl_object") is None
            await writer.start_tls(client_ctx, server_hostname="localhost")
            assert writer.get_extra_info("ssl_object") is not None
            assert "localhost" in san_dns_names(writer.get_extra_info("peercert"))
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.readline() == b"secure ping\n"
            assert await read_until_closed(reader) == b""
            await close(writer)
        assert len(server_saw) == 1 and server_saw[0] in ("TLSv1.2", "TLSv1.3")

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_loop_start_tls_on_protocols(aio: Any, tls: Any) -> None:
    """loop.start_tls at the protocol level: the new transport carries the old protocol."""
    client_ctx = tls.client_context()
    server_ctx = tls.server_context()

    class Recorder(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.got: asyncio.Event = asyncio.Event()
            self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def data_received(self, data: bytes) -> None:
            self.data += data
            self.got.set()

        def connection_lost(self, exc: BaseException | None) -> None:
            if not self.lost.done():
                self.lost.set_result(exc)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_protocols: list[Recorder] = []

        def factory() -> Recorder:
            server_protocols.append(Recorder())
            return server_protocols[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            transport, client = await loop.create_connection(Recorder, "127.0.0.1", port)
            await asyncio.sleep(0)
            while not server_protocols:
                await asyncio.sleep(0.01)
            peer = server_protocols[0]
            # both ends upgrade at once: the server side waits for the ClientHello
            server_upgrade = asyncio.ensure_future(
                loop.start_tls(peer.transport, peer, server_ctx, server_side=True))
            await asyncio.sleep(0)
            client_tls = await loop.start_tls(transport, client, client_ctx, server_hostname="localhost")
            server_tls = await server_upgrade
            assert client_tls is not None and server_tls is not None
            assert client_tls is not transport and client_tls.get_extra_info("ssl_object") is not None
            client_tls.write(b"over tls")
            await asyncio.wait_for(peer.got.wait(), 5)
            assert bytes(peer.data) == b"over tls"
            server_tls.write(b"reply")
            await asyncio.wait_for(client.got.wait(), 5)
            assert bytes(client.data) == b"reply"
            client_tls.close()
            assert await asyncio.wait_for(client.lost, 5) is None
            assert await asyncio.wait_for(peer.lost, 5) is None

    aio.run(main(), timeout=20)


# ------------------------------------------------------- shutdown and close

class Collector(asyncio.Protocol):
    """Records what a TLS peer saw, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = bytearray()
        self.made = asyncio.Event()
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.events.append("made")
        self.made.set()

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("closer", ["client", "server"])
def test_tls_close_flushes_and_the_peer_sees_a_clean_eof(aio: Any, tls: Any, closer: str) -> None:
    """close() sends what was written, then close_notify: the peer gets all of it, EOF, no error."""
    payload = os.urandom(MiB)
    client_ctx = tls.client_context()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers: list[Collector] = []

        def factory() -> Collector:
            servers.append(Collector())
            return servers[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=tls.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            transport, client = await loop.create_connection(
                Collector, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
            while not servers:   # the protocol exists at accept, is made after the handshake
                await asyncio.sleep(0.01)
            await asyncio.wait_for(servers[0].made.wait(), 5)
            sender, receiver = (client, servers[0]) if closer == "client" else (servers[0], client)
            assert not sender.transport.can_write_eof()   # TLS has no half-close
            sender.transport.write(payload)
            sender.transport.close()        # right away: the write must still arrive
            assert sender.transport.is_closing()
            assert await asyncio.wait_for(sender.lost, 10) is None
            assert await asyncio.wait_for(receiver.lost, 10) is None
            assert bytes(receiver.data) == payload
            assert receiver.events == ["made", "data", "eof", "lost"]
            assert sender.events[0] == "made" and sender.events[-1] == "lost"

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_tls_abort_ends_the_peer(aio: Any, tls: Any) -> None:
    """abort() drops the connection with no close_notify: the peer's connection ends anyway."""

    async def main() -> None:
        server = await start_echo_server(tls.server_context())
        async with server.server:
            reader, writer = await open_tls(server.port, tls.client_context())
            await echo(reader, writer, "then abort")
            writer.transport.abort()
            assert writer.transport.is_closing()
            for _ in range(int(SLOW_BOUND / 0.01)):
                if server.active == 0:
                    break
                await asyncio.sleep(0.01)
            assert server.active == 0, "the server handler did not see the abort"
            # and the server still serves
            reader, writer = await open_tls(server.port, tls.client_context())
            await echo(reader, writer, "still here")
            await close(writer)

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_tls_shutdown_times_out_when_the_peer_never_answers(aio: Any, tls: Any) -> None:
    """close() waits for the peer's close_notify at most ssl_shutdown_timeout, then drops the connection."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers: list[Collector] = []

        def factory() -> Collector:
            servers.append(Collector())
            return servers[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=tls.server_context(),
                                          ssl_shutdown_timeout=HANDSHAKE_TIMEOUT)
        port = server.sockets[0].getsockname()[1]
        async with server:
            transport, client = await loop.create_connection(
                Collector, "127.0.0.1", port, ssl=tls.client_context(), server_hostname="localhost")
            while not servers:
                await asyncio.sleep(0.01)
            peer = servers[0]
            await asyncio.wait_for(peer.made.wait(), 5)
            # only now: paused in connection_made, the client would hold back its last handshake flight
            transport.pause_reading()   # so it never reads, nor answers, close_notify
            started = loop.time()
            peer.transport.close()
            exc = await asyncio.wait_for(peer.lost, SLOW_BOUND)
            waited = loop.time() - started
            assert HANDSHAKE_TIMEOUT * 0.8 <= waited < SLOW_BOUND, waited
            assert isinstance(exc, TimeoutError), exc
            # once the client reads again it finds the connection gone
            transport.resume_reading()
            await asyncio.wait_for(client.lost, SLOW_BOUND)
            transport.close()

    aio.run(main(), timeout=20)


@pytest.mark.timeout(30)
def test_closed_tls_connection_frees_its_tls_state_without_gc(aio: Any, tls: Any) -> None:
    """Once a TLS connection is closed nothing keeps its TLS state alive: no
    reference cycle through the transport holds the SSL protocol (and its
    256 KiB read buffer, its context, the application's protocol) until the
    cyclic GC happens to run. CPython's test_ssl checks the same
    (test_create_connection_memory_leak)."""
    import gc
    import weakref

    server_ctx = tls.server_context()
    client_ctx = tls.client_context()
    context_ref = weakref.ref(client_ctx)

    async def main(ctx: ssl.SSLContext) -> None:
        server = await start_echo_server(server_ctx)
        async with server.server:
            reader, writer = await open_tls(server.port, ctx)
            await echo(reader, writer, "then close")
            await close(writer)
        await asyncio.sleep(0.05)   # connection_lost callbacks have run

    enabled = gc.isenabled()
    gc.disable()
    try:
        aio.run(main(client_ctx), timeout=20)
        del client_ctx
        assert context_ref() is None, "the closed connection's TLS state is still referenced"
    finally:
        if enabled:
            gc.enable()


# ------------------------------------------------------------------- load

def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors this test needs")
    # raised for this process only; the test is about TLS, not about limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_thousand_concurrent_tls_connections_echo(aio: Any, tls: Any) -> None:
    _raise_nofile(MANY_CONNECTIONS * FDS_PER_CONNECTION + FD_HEADROOM)
    client_ctx = tls.client_context()

    async def main() -> None:
        server = await start_echo_server(tls.server_context(), backlog=MANY_CONNECTIONS)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await open_tls(server.port, client_ctx)

        async with server.server:
            connections = await asyncio.gather(*(connect() for _ in range(MANY_CONNECTIONS)))
            # all open at once, then every one echoes its own line
            await asyncio.gather(*(echo(r, w, f"connection {i}") for i, (r, w) in enumerate(connections)))
            assert server.max_active == MANY_CONNECTIONS
            await asyncio.gather(*(close(w) for _, w in connections))
            for _ in range(int(SLOW_BOUND / 0.01)):
                if server.active == 0:
                    break
                await asyncio.sleep(0.01)
        assert server.handled == MANY_CONNECTIONS
        assert server.active == 0

    aio.run(main(), timeout=150)


def _small_buffer_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


class FlowEcho(asyncio.Protocol):
    """Server side: echoes, and stops reading while its own writes are paused."""

    def __init__(self) -> None:
        self.pauses = 0
        self.max_buffered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.max_buffered = max(self.max_buffered, self.transport.get_write_buffer_size())

    def pause_writing(self) -> None:
        self.pauses += 1
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class LargeClient(asyncio.Protocol):
    """Client side: a producer that writes while it may, reads nothing for a while, then all.

    It writes in chunks and stops on pause_writing, as a well-behaved producer
    does (one huge write is encrypted at once and handed down whole, so the
    TLS layer never sees its own buffer grow).
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.sent = 0
        self.paused = False
        self.received = bytearray()
        self.pauses = 0
        self.resumes = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        transport.pause_reading()   # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(CLIENT_READ_STALL, transport.resume_reading)  # type: ignore[attr-defined]
        self._produce()

    def _produce(self) -> None:
        while self.sent < len(self.payload) and not self.paused:
            self.transport.write(self.payload[self.sent:self.sent + WRITE_CHUNK])
            self.sent += WRITE_CHUNK

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(self.payload) and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.pauses += 1
        self.paused = True

    def resume_writing(self) -> None:
        self.resumes += 1
        self.paused = False
        self._produce()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the echo finished"))


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_large_transfer_each_way_with_back_pressure(aio: Any, tls: Any) -> None:
    """4 MiB up and 4 MiB back through TLS; both ends pause and the server's buffer stays bounded."""
    payload = os.urandom(LARGE)
    client_ctx = tls.client_context()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers: list[FlowEcho] = []

        def factory() -> FlowEcho:
            servers.append(FlowEcho())
            return servers[-1]

        # small kernel buffers on every socket (accepted ones inherit the listener's)
        listener = _small_buffer_socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = await loop.create_server(factory, sock=listener, ssl=tls.server_context())
        port = listener.getsockname()[1]
        async with server:
            sock = _small_buffer_socket()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            transport, client = await loop.create_connection(
                lambda: LargeClient(payload), sock=sock, ssl=client_ctx, server_hostname="localhost")
            await asyncio.wait_for(client.done, 40)
            assert len(client.received) == LARGE
            assert hashlib.sha256(client.received).digest() == hashlib.sha256(payload).digest()
            transport.close()
        echo_server = servers[0]
        # the client's writes went over the high-water mark and came back under it
        assert client.pauses >= 1 and client.resumes == client.pauses
        # the server was told to stop writing and, by pausing its reads, kept its buffer bounded
        assert echo_server.pauses >= 1
        assert echo_server.max_buffered < LARGE // 2, echo_server.max_buffered

    aio.run(main(), timeout=50)


# ------------------------------------------- fastsock's graceful shutdown

SHUTDOWN_PAYLOAD = 2 * MiB    # more than the socket buffers: some waits in the TLS layer
SHUTDOWN_DEADLINE = 5.0       # seconds Reactor.shutdown() may take
CLIENT_SOCKET_TIMEOUT = 10.0  # a blocking client never waits longer than this


@pytest.mark.timeout(30)
def test_fastsock_graceful_shutdown_ends_tls_connections_cleanly(tls: Any) -> None:
    """Reactor.shutdown() flushes a TLS connection and ends it with close_notify.

    fastsock only: shutdown() is fastsock's API. Its peer is a blocking
    ``ssl`` socket in a thread with ``suppress_ragged_eofs=False``, so a
    connection that ends without close_notify raises SSLEOFError there
    (a truncation attack, as far as the peer can tell).
    """
    import threading

    import fastsock

    payload = os.urandom(SHUTDOWN_PAYLOAD)
    client_ctx = tls.client_context()
    go = threading.Event()          # set by the shutdown hook: read only from then on
    outcome: dict[str, Any] = {}

    def client(port: int, connected: threading.Event) -> None:
        received = bytearray()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_SOCKET_TIMEOUT) as raw:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_SOCKET_BUFFER)
                with client_ctx.wrap_socket(raw, server_hostname="localhost",
                                            suppress_ragged_eofs=False) as conn:
                    conn.sendall(b"send\n")
                    connected.set()
                    go.wait(CLIENT_SOCKET_TIMEOUT)
                    while chunk := conn.recv(256 * 1024):
                        received += chunk
                    outcome["end"] = "close_notify"
                    conn.unwrap()   # answer it, so the server's TLS shutdown completes
        except (OSError, ssl.SSLError) as exc:
            outcome["end"] = repr(exc)
        finally:
            outcome["received"] = bytes(received)
            connected.set()

    loop = fastsock.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SOCKET_BUFFER)
        await reader.readline()
        # Written in pieces: once the TCP transport's buffer is full the rest
        # waits in the TLS layer. No drain: shutdown must flush it all.
        for start in range(0, len(payload), WRITE_CHUNK):
            writer.write(payload[start:start + WRITE_CHUNK])
        # in the same turn, as a SIGTERM handler (install_shutdown_signals) may
        loop.shutdown(timeout=SHUTDOWN_DEADLINE)
        try:
            await reader.read()    # until shutdown ends the connection
        except (ConnectionError, ssl.SSLError):
            pass

    try:
        async def start() -> threading.Thread:
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.server_context())

            def on_shutdown(deadline: float) -> None:
                server.close()
                go.set()

            loop.add_shutdown_hook(on_shutdown)
            connected = threading.Event()
            thread = threading.Thread(target=client, args=(server.sockets[0].getsockname()[1], connected))
            thread.start()
            return thread

        thread = loop.run_until_complete(start())
        loop.run_forever()         # until shutdown() stops it, by its deadline at the latest
        thread.join(CLIENT_SOCKET_TIMEOUT)
        assert not thread.is_alive()
    finally:
        loop.run_until_complete(asyncio.sleep(0.05))   # handlers see their connection end
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert len(outcome["received"]) == SHUTDOWN_PAYLOAD, f"{len(outcome['received'])} bytes, then {outcome['end']}"
    assert outcome["received"] == payload
    assert outcome["end"] == "close_notify"
