"""fastsock's direct TLS record layer (``_Records`` in fastsock/transports/_tls.pyx).

Once a connection is WRAPPED, its records are decrypted and encrypted by
OpenSSL's C API on the SSL object Python's ssl module made. These tests run
on fastsock's loop over real loopback sockets and check that the direct path
is the one in use, that it moves bytes exactly (small, 1 MiB each way), that
close_notify goes both ways, and that a connection that fails (a bad
certificate, a corrupt record) fails alone. test_tls_loop.py runs the rest
of TLS's behaviour on the same code; FASTSOCK_TLS_DIRECT=0 is checked here
to fall back to the ssl module's path.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fastsock import _switch

_tls_module = _switch.compiled("fastsock.transports._tls")
if _tls_module is None:
    pytest.skip("the compiled TLS module is switched off (FASTSOCK_PURE=1) or not built",
                allow_module_level=True)

from loop_runner import LoopRunner  # noqa: E402

_tls: Any = _tls_module

MiB = 1024 * 1024
LARGE = MiB
LARGE_WRITES = 3
ROOT = Path(__file__).resolve().parents[2]
SIZES = (1, 64, 1024, 16 * 1024 - 1, 16 * 1024 + 1, 100_000)
# an application-data record header (TLS 1.2 framing, which TLS 1.3 keeps)
# promising 32 bytes, and 32 bytes no key decrypts: the record's tag fails
CORRUPT_RECORD = b"\x17\x03\x03\x00\x20" + bytes(range(32))
DURING = 5           # echoes on the good connection while the bad one fails
SOCKET_TIMEOUT = 10  # seconds, for the blocking clients in threads


@pytest.fixture
def fs() -> Any:
    runner = LoopRunner("fastsock")
    try:
        yield runner
    finally:
        runner.close()


class Server:
    """A TLS echo server (exact byte counts) that remembers each connection's
    TLS protocol and how each handler ended."""

    def __init__(self) -> None:
        self.protocols: list[Any] = []
        self.endings: list[BaseException | None] = []
        self.server: asyncio.Server | None = None

    async def start(self, ctx: ssl.SSLContext) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocols.append(writer.transport._ssl_protocol)  # type: ignore[attr-defined]
            ending: BaseException | None = None
            try:
                while data := await reader.read(256 * 1024):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError) as exc:
                ending = exc
            finally:
                self.endings.append(ending)
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        return int(self.server.sockets[0].getsockname()[1])


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    assert await reader.readexactly(len(data)) == data


def test_the_direct_path_passed_its_import_checks() -> None:
    # this machine's Python links the system OpenSSL it was built with
    assert _tls.DIRECT is True, _tls.DIRECT_REASON
    assert _tls.DIRECT_REASON == "ok"


@pytest.mark.timeout(30)
def test_echo_runs_on_the_direct_path_with_the_ssl_modules_info(fs: LoopRunner, tls: Any) -> None:
    server = Server()

    async def main() -> None:
        port = await server.start(tls.server_context())
        async with server.server:  # type: ignore[union-attr]
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls.client_context(),
                                                           server_hostname="localhost")
            client_protocol = writer.transport._ssl_protocol  # type: ignore[attr-defined]
            for size in SIZES:
                await _echo(reader, writer, os.urandom(size))
            # both ends' records went through _Records
            assert type(client_protocol._rec).__name__ == "_Records"
            assert type(server.protocols[0]._rec).__name__ == "_Records"
            # what the ssl module knows is still there
            ssl_object = writer.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            assert ssl_object.version() == "TLSv1.3"
            cipher = ssl_object.cipher()
            assert cipher is not None and writer.get_extra_info("cipher")[0] == cipher[0]
            peercert = writer.get_extra_info("peercert")
            assert ("DNS", "localhost") in peercert["subjectAltName"]
            writer.close()
            await writer.wait_closed()
            # leaving WRAPPED hands the connection back to asyncio's state machine
            assert client_protocol._rec is None

    fs.run(main(), timeout=20)
    assert server.endings == [None]


@pytest.mark.timeout(30)
def test_tls12_records_on_the_direct_path(fs: LoopRunner, tls: Any) -> None:
    """TLS 1.2 frames records differently (explicit nonce, no inner content
    type); the direct path moves them the same."""
    server = Server()
    client_ctx = tls.client_context()
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    async def main() -> None:
        port = await server.start(tls.server_context())
        async with server.server:  # type: ignore[union-attr]
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                           server_hostname="localhost")
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
            for size in SIZES:
                await _echo(reader, writer, os.urandom(size))
            assert type(server.protocols[0]._rec).__name__ == "_Records"
            writer.close()
            await writer.wait_closed()

    fs.run(main(), timeout=20)
    assert server.endings == [None]


@pytest.mark.timeout(60)
def test_megabyte_writes_each_way_arrive_intact(fs: LoopRunner, tls: Any) -> None:
    server = Server()
    blobs = [os.urandom(LARGE) for _ in range(LARGE_WRITES)]

    async def main() -> None:
        port = await server.start(tls.server_context())
        async with server.server:  # type: ignore[union-attr]
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls.client_context(),
                                                           server_hostname="localhost")

            async def send() -> None:
                for blob in blobs:
                    writer.write(blob)  # one 1 MiB write each
                    await writer.drain()

            sender = asyncio.ensure_future(send())
            echoed = await reader.readexactly(LARGE * LARGE_WRITES)
            await sender
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(b"".join(blobs)).digest()
            assert type(server.protocols[0]._rec).__name__ == "_Records"
            writer.close()
            await writer.wait_closed()

    fs.run(main(), timeout=50)
    assert server.endings == [None]


def _blocking_client(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    # suppress_ragged_eofs=False: a TCP close without close_notify raises
    return ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


@pytest.mark.timeout(30)
def test_close_notify_both_ways(fs: LoopRunner, tls: Any) -> None:
    """The server's close sends close_notify (the client's recv returns b'',
    which a bare TCP close would turn into SSLEOFError); the client's
    close_notify ends the server's reading cleanly."""
    server = Server()
    client_ctx = tls.client_context()

    def client_closes(port: int) -> bytes:
        with _blocking_client(port, client_ctx) as s:
            s.sendall(b"bye")
            got = b""
            while len(got) < 3:
                got += s.recv(3)
            s.unwrap()   # sends close_notify and waits for the server's
            return got

    async def main() -> None:
        loop = asyncio.get_running_loop()
        port = await server.start(tls.server_context())
        async with server.server:  # type: ignore[union-attr]
            # 1. the server closes
            got = []
            done = threading.Event()

            def first() -> None:
                with _blocking_client(port, client_ctx) as s:
                    s.sendall(b"hello")
                    data = b""
                    while len(data) < 5:
                        data += s.recv(5)
                    got.append(data)
                    done.set()
                    got.append(s.recv(100))   # b"" only after close_notify
            fut = loop.run_in_executor(None, first)
            while not done.is_set():
                await asyncio.sleep(0.01)
            assert server.protocols[0]._rec is not None
            server.protocols[0]._app_transport.close()
            await fut
            assert got == [b"hello", b""]
            # 2. the client closes (unwrap waits for the server's close_notify)
            assert await loop.run_in_executor(None, client_closes, port) == b"bye"
            for _ in range(200):
                if len(server.endings) == 2:
                    break
                await asyncio.sleep(0.01)

    fs.run(main(), timeout=20)
    assert server.endings == [None, None]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["untrusted_certificate", "corrupt_record"])
def test_a_failing_connection_fails_alone(fs: LoopRunner, tls: Any, kind: str) -> None:
    """A client that rejects the server's certificate, or one that sends a
    record no key decrypts once the direct path runs: that connection ends
    with its TLS error while another keeps echoing."""
    fs.tolerate_handshake_failures()
    server = Server()

    def bad_client(port: int) -> type[BaseException] | None:
        if kind == "untrusted_certificate":
            ctx = ssl.create_default_context()
            tls.other_ca.configure_trust(ctx)   # not the CA that signed the server
            try:
                _blocking_client(port, ctx).close()
            except ssl.SSLCertVerificationError as exc:
                return type(exc)
            return None
        with _blocking_client(port, tls.client_context()) as s:
            s.sendall(b"ok")
            assert s.recv(2) == b"ok"
            with socket.socket(fileno=os.dup(s.fileno())) as raw:
                raw.sendall(CORRUPT_RECORD)
            try:
                s.recv(10)
            except (ssl.SSLError, ConnectionError) as exc:
                return type(exc)
            return None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        port = await server.start(tls.server_context())
        async with server.server:  # type: ignore[union-attr]
            good = await asyncio.open_connection("127.0.0.1", port, ssl=tls.client_context(),
                                                 server_hostname="localhost")
            await _echo(*good, b"before")
            bad = loop.run_in_executor(None, bad_client, port)
            for i in range(DURING):
                await _echo(*good, b"during %d" % i)
                await asyncio.sleep(0.02)
            failure = await bad
            assert failure is not None and issubclass(failure, (ssl.SSLError, ConnectionError))
            await _echo(*good, b"after")
            assert type(server.protocols[0]._rec).__name__ == "_Records"
            good[1].close()
            await good[1].wait_closed()
            for _ in range(200):
                if len(server.endings) == len(server.protocols):
                    break
                await asyncio.sleep(0.01)

    fs.run(main(), timeout=20)
    if kind == "corrupt_record":
        # the handler of the corrupted connection saw the ssl module's error
        # for a record that does not decrypt; the good one ended cleanly
        # (the bad one ends first)
        assert len(server.endings) == 2 and server.endings[1] is None, server.endings
        assert isinstance(server.endings[0], ssl.SSLError), server.endings
        assert "BAD_RECORD_MAC" in str(server.endings[0]), server.endings
    else:
        assert server.endings == [None]   # the handler never saw the bad client


def test_fastsock_tls_direct_0_keeps_the_ssl_module_path(tls: Any, tmp_path: Path) -> None:
    script = (
        "import asyncio, ssl, sys, trustme, fastsock\n"
        "from fastsock.transports import _tls\n"
        "assert _tls.DIRECT is False and _tls.DIRECT_REASON == 'FASTSOCK_TLS_DIRECT=0'\n"
        "ca = trustme.CA(); server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        "ca.issue_cert('localhost').configure_cert(server_ctx)\n"
        "client_ctx = ssl.create_default_context(); ca.configure_trust(client_ctx)\n"
        "async def main():\n"
        "    async def handle(r, w):\n"
        "        assert w.transport._ssl_protocol._rec is None\n"
        "        w.write(await r.readexactly(5)); await w.drain(); w.close()\n"
        "    srv = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=server_ctx)\n"
        "    port = srv.sockets[0].getsockname()[1]\n"
        "    r, w = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx, server_hostname='localhost')\n"
        "    w.write(b'hello'); assert await r.readexactly(5) == b'hello'\n"
        "    w.close(); srv.close(); await srv.wait_closed()\n"
        "with asyncio.Runner(loop_factory=fastsock.new_event_loop) as runner:\n"
        "    runner.run(asyncio.wait_for(main(), 10))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, FASTSOCK_TLS_DIRECT="0")
    env.pop("FASTSOCK_PURE", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
