"""TCP transports over loopback: server, client, back-pressure, half-close, errors."""
from __future__ import annotations

import asyncio
import errno
import socket
import struct

import pytest

from fastsock.exceptions import ConnectTimeoutError
from fastsock.transports import BufferedProtocol, Protocol
from fastsock.transports import stream as tcp_module  # the transport and its I/O switch
from fastsock.transports.tcp import TCPTransport, create_tcp_connection, create_tcp_server


@pytest.fixture(autouse=True, params=["cython", "python"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the compiled socket I/O and with its pure-Python twin."""
    if request.param == "cython":
        if tcp_module._SockIO is None:
            pytest.skip("fastsock/transports/_sockio.pyx is not built (or FASTSOCK_PURE=1)")
    else:
        monkeypatch.setattr(tcp_module, "_SockIO", None)
    return str(request.param)


class Recorder(Protocol):
    """Records every callback; optionally echoes."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: TCPTransport | None = None
        self.events: list[str] = []
        self.data = bytearray()
        self.lost: list[BaseException | None] = []
        self.keep_open_on_eof = False

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.append(exc)


def serve(reactor, factory, host="127.0.0.1", **kw):
    server = create_tcp_server(reactor, factory, host, 0, **kw)
    return server, server.addresses[0]


def connect(reactor, factory, addr, **kw):
    return reactor.run_until_complete(create_tcp_connection(reactor, factory, addr[0], addr[1], **kw), timeout=10)


def test_echo_roundtrip_and_extra_info(any_reactor):
    reactor = any_reactor
    server_protos = []

    def factory():
        p = Recorder(echo=True)
        server_protos.append(p)
        return p

    server, addr = serve(reactor, factory)
    transport, client = connect(reactor, Recorder, addr)
    assert client.events == ["made"]
    transport.write(b"hello ")
    transport.write(bytearray(b"world"))
    transport.write(memoryview(b"!!"))
    assert reactor.run_until(lambda: bytes(client.data) == b"hello world!!", timeout=10)
    assert transport.get_extra_info("peername") == addr
    assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
    # asyncio's TransportSocket: options and names, no I/O behind the loop's back
    assert isinstance(transport.get_extra_info("socket"), asyncio.trsock.TransportSocket)
    assert transport.get_extra_info("nope", 7) == 7
    st = server_protos[0].transport
    assert st.get_extra_info("peername") == transport.get_extra_info("sockname")
    assert st.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert transport.stats["bytes_sent"] == 13 and st.bytes_received == 13
    transport.close()
    assert reactor.run_until(lambda: "lost" in client.events and server_protos[0].lost, timeout=10)
    assert client.events == ["made", "lost"] and client.lost == [None]
    # the server's side saw EOF, then closed itself (eof_received returned False)
    assert server_protos[0].events == ["made", "eof", "lost"]
    assert server.stats["accepted"] == 1 and server.stats["active"] == 0
    server.close()
    assert not server.is_serving()


def test_writelines_gathers_in_order(reactor):
    server, addr = serve(reactor, lambda: Recorder(echo=True))
    transport, client = connect(reactor, Recorder, addr)
    parts = [b"a" * 10, bytearray(b"b" * 5), memoryview(b"c" * 3), b"", b"d"]
    transport.writelines(parts)
    assert reactor.run_until(lambda: len(client.data) == 19, timeout=10)
    assert bytes(client.data) == b"a" * 10 + b"b" * 5 + b"c" * 3 + b"d"


def test_write_rejects_non_bytes(reactor):
    server, addr = serve(reactor, Recorder)
    transport, _ = connect(reactor, Recorder, addr)
    with pytest.raises(TypeError, match="bytes-like"):
        transport.write("text")
    with pytest.raises(TypeError):
        transport.writelines(["text"])


class Sink(Protocol):
    """Server side that reads nothing until told to."""

    def connection_made(self, transport):
        self.transport = transport
        transport.pause_reading()
        self.received = 0

    def data_received(self, data):
        self.received += len(data)


def test_large_write_with_backpressure_arrives_intact(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Sink()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    payload = bytes(range(256)) * (32 * 1024 * 1024 // 256)   # 32 MiB
    transport.write(payload)
    # the kernel cannot take 32 MiB from a peer that is not reading
    assert transport.get_write_buffer_size() > 64 * 1024
    assert client.events == ["made", "pause"]
    assert reactor.run_until(lambda: sinks and sinks[0].transport is not None, timeout=10)
    sink = sinks[0]
    assert not sink.transport.is_reading()
    reactor.run_until(timeout=0.05)
    assert sink.received == 0
    received = bytearray()
    sink.data_received = received.extend
    sink.transport.set_protocol(sink)  # re-binds data_received
    sink.transport.resume_reading()
    assert reactor.run_until(lambda: len(received) == len(payload), timeout=60)
    assert received == payload
    assert client.events == ["made", "pause", "resume"]
    assert transport.get_write_buffer_size() == 0


def test_set_write_buffer_limits(reactor):
    server, addr = serve(reactor, Sink)
    transport, client = connect(reactor, Recorder, addr)
    transport.set_write_buffer_limits(high=100)
    assert transport.get_write_buffer_limits() == (25, 100)
    transport.set_write_buffer_limits(low=10)
    assert transport.get_write_buffer_limits() == (10, 40)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=1, low=2)


def test_pause_reading_stops_data_received(reactor):
    server_protos = []
    server, addr = serve(reactor, lambda: server_protos.append(Recorder()) or server_protos[-1])
    transport, client = connect(reactor, Recorder, addr)
    assert reactor.run_until(lambda: server_protos and server_protos[0].transport, timeout=10)
    st = server_protos[0].transport
    st.pause_reading()
    st.pause_reading()  # idempotent
    assert not st.is_reading()
    transport.write(b"x" * 1000)
    reactor.run_until(timeout=0.05)
    assert server_protos[0].data == b""
    st.resume_reading()
    assert st.is_reading()
    assert reactor.run_until(lambda: len(server_protos[0].data) == 1000, timeout=10)


def test_half_close_peer_sees_eof_and_can_still_answer(reactor):
    class Answer(Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.got = b""

        def data_received(self, data):
            self.got += data

        def eof_received(self):
            self.transport.write(b"answer:" + self.got)
            return False  # close after the answer is flushed

    server, addr = serve(reactor, Answer)
    transport, client = connect(reactor, Recorder, addr)
    client.keep_open_on_eof = True
    assert transport.can_write_eof()
    transport.write(b"question")
    transport.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        transport.write(b"more")
    assert reactor.run_until(lambda: "eof" in client.events, timeout=10)
    assert bytes(client.data) == b"answer:question"
    # eof_received returned True: the transport stays open until closed (asyncio's rule)
    assert not transport.is_closing() and not transport.is_reading()
    transport.close()
    assert reactor.run_until(lambda: "lost" in client.events, timeout=10)
    assert client.events == ["made", "eof", "lost"]


def test_write_eof_waits_for_buffered_data(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    big = b"y" * (8 * 1024 * 1024)
    transport.write(big)
    transport.write_eof()
    assert transport.get_write_buffer_size() > 0
    assert reactor.run_until(lambda: sinks and "eof" in sinks[0].events, timeout=30)
    assert len(sinks[0].data) == len(big)


def test_close_flushes_buffer_then_closes(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    big = b"z" * (4 * 1024 * 1024)
    transport.write(big)
    transport.close()
    assert transport.is_closing()
    assert reactor.run_until(lambda: sinks and "lost" in sinks[0].events, timeout=30)
    assert len(sinks[0].data) == len(big)
    assert client.lost == [None]


def test_abort_drops_buffer_and_peer_sees_close(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    transport.write(b"q" * (8 * 1024 * 1024))
    transport.abort()
    assert transport.get_write_buffer_size() == 0
    assert reactor.run_until(lambda: sinks and "lost" in sinks[0].events, timeout=10)
    assert client.events == ["made", "pause", "lost"] and client.lost == [None]
    assert len(sinks[0].data) < 8 * 1024 * 1024
    transport.write(b"after abort is ignored")


def test_peer_reset_reports_connection_reset(reactor):
    server_protos = []
    server, addr = serve(reactor, lambda: server_protos.append(Recorder()) or server_protos[-1])
    raw = socket.create_connection(addr)
    try:
        assert reactor.run_until(lambda: server_protos and server_protos[0].transport, timeout=10)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        raw.close()  # linger 0: RST instead of FIN
    assert reactor.run_until(lambda: server_protos[0].lost, timeout=10)
    assert isinstance(server_protos[0].lost[0], ConnectionResetError)
    assert server_protos[0].events == ["made", "lost"]


def test_exception_in_data_received_aborts_only_that_connection(reactor):
    class Bad(Recorder):
        def data_received(self, data):
            raise ValueError("handler bug")

    bad_server, bad_addr = serve(reactor, Bad)
    good_server, good_addr = serve(reactor, lambda: Recorder(echo=True))
    bt, bc = connect(reactor, Recorder, bad_addr)
    gt, gc = connect(reactor, Recorder, good_addr)
    bt.write(b"boom")
    assert reactor.run_until(lambda: "lost" in bc.events, timeout=10)
    assert any(isinstance(c.get("exception"), ValueError) for c in reactor.errors)
    gt.write(b"fine")
    assert reactor.run_until(lambda: gc.data == b"fine", timeout=10)


class BufferedEcho(BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(7)  # small on purpose: many reads per message
        self.chunks: list[bytes] = []
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        data = bytes(self.buf[:nbytes])
        self.chunks.append(data)
        self.transport.write(data)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = True


def test_buffered_protocol_reads_into_its_own_buffer(any_reactor):
    reactor = any_reactor
    protos = []
    server, addr = serve(reactor, lambda: protos.append(BufferedEcho()) or protos[-1])
    transport, client = connect(reactor, Recorder, addr)
    msg = bytes(range(100))
    transport.write(msg)
    assert reactor.run_until(lambda: bytes(client.data) == msg, timeout=10)
    assert all(len(c) <= 7 for c in protos[0].chunks)
    assert b"".join(protos[0].chunks) == msg


class BrokenBuffered(BufferedProtocol):
    """A BufferedProtocol that fails the way it is told: in get_buffer, with
    an empty buffer, or in buffer_updated."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.buf = bytearray(16)
        self.lost: list[BaseException | None] = []

    def get_buffer(self, sizehint):
        if self.how == "get_buffer":
            raise ValueError("no buffer today")
        return bytearray() if self.how == "empty" else self.buf

    def buffer_updated(self, nbytes):
        raise KeyError("cannot take it")

    def connection_lost(self, exc):
        self.lost.append(exc)


@pytest.mark.parametrize("how,error", [("get_buffer", ValueError), ("empty", RuntimeError),
                                       ("updated", KeyError)])
def test_a_failing_buffered_protocol_aborts_its_connection_only(reactor, how, error):
    broken: list[BrokenBuffered] = []
    bad_server, bad_addr = serve(reactor, lambda: broken.append(BrokenBuffered(how)) or broken[-1])
    good_server, good_addr = serve(reactor, lambda: BufferedEcho())
    bt, bc = connect(reactor, Recorder, bad_addr)
    gt, gc = connect(reactor, Recorder, good_addr)
    bt.write(b"boom")
    # the error reaches the handler and the connection is aborted...
    assert reactor.run_until(lambda: "lost" in bc.events, timeout=10)
    assert len(broken[0].lost) == 1 and isinstance(broken[0].lost[0], error)
    assert any(isinstance(c.get("exception"), error) for c in reactor.errors)
    # ...while the other server's connection goes on
    gt.write(b"fine")
    assert reactor.run_until(lambda: bytes(gc.data) == b"fine", timeout=10)


def test_many_connections(reactor):
    server, addr = serve(reactor, lambda: Recorder(echo=True), backlog=1024)
    n = 500
    futures = [create_tcp_connection(reactor, Recorder, *addr) for _ in range(n)]
    assert reactor.run_until(lambda: all(f.done() for f in futures), timeout=60)
    pairs = [f.result() for f in futures]
    for i, (t, _) in enumerate(pairs):
        t.write(b"%d;" % i)
    assert reactor.run_until(lambda: all(p.data.endswith(b";") for _, p in pairs), timeout=60)
    assert [bytes(p.data) for _, p in pairs] == [b"%d;" % i for i in range(n)]
    assert server.stats["active"] == n == len(server.connections)
    for t, _ in pairs:
        t.close()
    assert reactor.run_until(lambda: server.stats["active"] == 0, timeout=60)
    assert server.stats["accepted"] == n


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6(reactor):
    server, addr = serve(reactor, lambda: Recorder(echo=True), host="::1")
    assert server.sockets[0].family == socket.AF_INET6
    transport, client = connect(reactor, Recorder, addr)
    transport.write(b"v6")
    assert reactor.run_until(lambda: client.data == b"v6", timeout=10)
    assert transport.get_extra_info("peername")[:2] == ("::1", addr[1])


def test_all_interfaces_and_existing_socket(reactor):
    server = create_tcp_server(reactor, Recorder, None, 0)
    families = {s.family for s in server.sockets}
    assert socket.AF_INET in families
    server.close()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    server = create_tcp_server(reactor, lambda: Recorder(echo=True), sock=lsock)
    transport, client = connect(reactor, Recorder, lsock.getsockname())
    transport.write(b"s")
    assert reactor.run_until(lambda: client.data == b"s", timeout=10)


def test_server_close_keeps_accepted_connections(reactor):
    server, addr = serve(reactor, lambda: Recorder(echo=True))
    transport, client = connect(reactor, Recorder, addr)
    server.close()
    with pytest.raises(ConnectionRefusedError):
        connect(reactor, Recorder, addr)
    transport.write(b"still")
    assert reactor.run_until(lambda: client.data == b"still", timeout=10)
    server.close(close_connections=True)
    assert reactor.run_until(lambda: "lost" in client.events, timeout=10)


def test_port_in_use_is_a_clear_error(reactor):
    server, addr = serve(reactor, Recorder)
    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+") as info:
        create_tcp_server(reactor, Recorder, "127.0.0.1", addr[1], reuse_address=False)
    assert info.value.errno == errno.EADDRINUSE


def test_bad_arguments(reactor):
    with pytest.raises(ValueError, match="port"):
        create_tcp_server(reactor, Recorder, "127.0.0.1", 70000)
    with pytest.raises(ValueError, match="port"):
        create_tcp_connection(reactor, Recorder, "127.0.0.1", "http")
    with pytest.raises(ValueError, match="host"):
        create_tcp_connection(reactor, Recorder, "", 80)
    with pytest.raises(OSError, match="no-such-host.invalid"):
        create_tcp_server(reactor, Recorder, "no-such-host.invalid", 0)


def test_connect_refused(reactor):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        fut = create_tcp_connection(reactor, Recorder, "127.0.0.1", port)
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            reactor.run_until_complete(fut, timeout=10)


def test_connect_timeout():
    """A listener whose accept queue is full drops SYNs: connect cannot finish."""
    from fastsock.reactor import Reactor

    reactor = Reactor()
    lsock = socket.socket()
    fillers = []
    try:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        addr = lsock.getsockname()
        for _ in range(4):  # fill the accept queue (and the SYN queue) without accepting
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(addr)
            fillers.append(s)
        fut = create_tcp_connection(reactor, Recorder, *addr, timeout=0.3)
        with pytest.raises(ConnectTimeoutError, match=r"timed out after 0\.3 s") as info:
            reactor.run_until_complete(fut, timeout=10)
        assert isinstance(info.value, TimeoutError)
        assert len(reactor._fds) == 1  # the attempt was unregistered and closed
    finally:
        for s in fillers:
            s.close()
        lsock.close()
        reactor.close()


def test_connect_by_name_resolves_off_thread(reactor):
    server, addr = serve(reactor, lambda: Recorder(echo=True))
    transport, client = connect(reactor, Recorder, ("localhost", addr[1]))
    transport.write(b"name")
    assert reactor.run_until(lambda: client.data == b"name", timeout=10)


def test_unresolvable_name_names_the_host(reactor):
    fut = create_tcp_connection(reactor, Recorder, "no-such-host.invalid", 80)
    with pytest.raises(OSError, match="no-such-host.invalid"):
        reactor.run_until_complete(fut, timeout=30)


def test_connection_made_failure_fails_the_connect_future(reactor):
    class Broken(Recorder):
        def connection_made(self, transport):
            raise RuntimeError("no")

    server, addr = serve(reactor, Recorder)
    with pytest.raises(RuntimeError, match="no"):
        connect(reactor, Broken, addr)


def test_server_reports_descriptors_to_the_limits_watch(reactor):
    from fastsock.limits import default_watch

    watch = default_watch()
    server, addr = serve(reactor, lambda: Recorder(echo=True))
    before = watch.in_use
    transport, client = connect(reactor, Recorder, addr)
    assert reactor.run_until(lambda: server.stats["active"] == 1, timeout=10)
    assert watch.in_use == before + 1
    transport.close()
    assert reactor.run_until(lambda: server.stats["active"] == 0, timeout=10)
    assert watch.in_use == before


def test_sockio_errors_match_the_socket_module(implementation):
    if implementation != "cython":
        pytest.skip("SockIO is the compiled half")
    a, b = socket.socketpair()
    a.setblocking(False)
    io = tcp_module._SockIO(a.fileno())
    buf = bytearray(16)
    try:
        with pytest.raises(BlockingIOError):
            io.recv_bytes(buf)
        with pytest.raises(BlockingIOError):
            io.recv_into(buf)
        b.send(b"abc")
        assert io.recv_bytes(buf) == b"abc"
        b.send(b"de")
        assert io.recv_into(memoryview(buf)[4:]) == 2 and buf[4:6] == b"de"
        assert io.send(memoryview(b"xyz")[1:]) == 2 and b.recv(10) == b"yz"
        with pytest.raises((TypeError, BufferError)):
            io.recv_into(b"read-only")
        b.close()
        assert io.recv_bytes(buf) == b""  # EOF
        with pytest.raises(BrokenPipeError):
            io.send(b"to nobody")
    finally:
        a.close()
        b.close()


# ------------------------------------------------ compiled per-message path
def test_write_takes_the_compiled_path_only_when_built(reactor, implementation):
    server, addr = serve(reactor, Recorder)
    transport, _ = connect(reactor, Recorder, addr)
    compiled = getattr(transport.write, "__func__", None) is not TCPTransport.write
    assert compiled == (implementation == "cython")


def test_writes_queued_behind_a_partial_send_keep_their_order(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    big = bytes(range(256)) * (16 * 1024)          # 4 MiB: the kernel takes part of it
    transport.write(big)
    assert transport.get_write_buffer_size() > 0
    transport.write(b"tail-1")                      # bytes, queue not empty: queued
    transport.write(bytearray(b"tail-2"))
    transport.write(memoryview(b"xxtail-3")[2:])
    total = len(big) + 18
    assert reactor.run_until(lambda: sinks and len(sinks[0].data) == total, timeout=30)
    assert bytes(sinks[0].data) == big + b"tail-1tail-2tail-3"
    assert transport.bytes_sent == total and sinks[0].transport.bytes_received == total
    assert transport.get_write_buffer_size() == 0
    transport.write(b"again")                       # queue drained: sent at once
    assert reactor.run_until(lambda: len(sinks[0].data) == total + 5, timeout=10)
    assert transport.stats["bytes_sent"] == total + 5


def test_write_after_write_eof_or_close(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    transport.write(b"before")
    transport.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        transport.write(b"after eof")
    assert reactor.run_until(lambda: sinks and "eof" in sinks[0].events, timeout=10)
    assert bytes(sinks[0].data) == b"before"
    other, _ = connect(reactor, Recorder, addr)
    other.close()
    other.write(b"dropped")                         # closing, nothing queued: dropped
    assert other.bytes_sent == 0 and other.get_write_buffer_size() == 0


def test_a_subclass_overriding_write_is_called(reactor):
    calls = []

    class Counting(TCPTransport):
        def write(self, data):
            calls.append(bytes(data))
            super().write(data)

    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    raw = socket.create_connection(addr)
    raw.setblocking(False)
    client = Recorder()
    transport = Counting(reactor, raw, client)
    assert reactor.run_until(lambda: client.transport is transport, timeout=10)
    transport.write(b"via the subclass")
    assert reactor.run_until(lambda: sinks and bytes(sinks[0].data) == b"via the subclass", timeout=10)
    assert calls == [b"via the subclass"]


def test_write_to_a_reset_peer_reports_the_error(reactor):
    server_protos = []
    server, addr = serve(reactor, lambda: server_protos.append(Recorder()) or server_protos[-1])
    raw = socket.create_connection(addr)
    try:
        assert reactor.run_until(lambda: server_protos and server_protos[0].transport, timeout=10)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        raw.close()  # RST, processed by the kernel at once on loopback
    st = server_protos[0].transport
    st.write(b"to a peer that reset")    # before the loop sees the reset
    assert reactor.run_until(lambda: server_protos[0].lost, timeout=10)
    assert isinstance(server_protos[0].lost[0], (ConnectionResetError, BrokenPipeError))
    assert st.bytes_sent == 0
    st.write(b"after the loss is ignored")


def test_writelines_partial_sends_fallbacks_and_order(reactor):
    sinks = []
    server, addr = serve(reactor, lambda: sinks.append(Recorder()) or sinks[-1])
    transport, client = connect(reactor, Recorder, addr)
    big = bytes(range(256)) * (8 * 1024)              # 2 MiB per part: a partial send
    expected = bytearray()

    def send(parts, wrap=list):
        transport.writelines(wrap(parts))
        for p in parts:
            expected.extend(p)

    send([])
    send([b"", b""])
    send([b"head-", big, b"-mid-", big])               # all bytes: gathered in C
    send([b"queued-", bytearray(b"behind")])           # queue not empty: Python
    assert reactor.run_until(lambda: sinks and len(sinks[0].data) == len(expected), timeout=30)
    assert transport.get_write_buffer_size() == 0
    send([b"a", bytearray(b"b"), memoryview(b"c")])    # mixed types: Python path
    send([bytes([i]) for i in range(200)])             # more than the C gather limit
    send([b"from ", b"an iterator"], iter)
    send([b"from ", b"a tuple"], tuple)
    assert reactor.run_until(lambda: len(sinks[0].data) == len(expected), timeout=30)
    assert sinks[0].data == expected
    assert transport.bytes_sent == len(expected) == sinks[0].transport.bytes_received
    transport.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        transport.writelines([b"after eof"])
