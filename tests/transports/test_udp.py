"""UDP endpoints on the reactor, over loopback (IPv4 and IPv6), on both I/O
paths: recvmmsg/sendmmsg (Cython) and the recvfrom_into fallback."""
from __future__ import annotations

import asyncio
import errno
import importlib.util
import socket
import sys
from typing import Any

import pytest

from fastsock.transports import udp
from fastsock.transports.base import DatagramProtocol

TIMEOUT = 10.0  # generous upper bound for run_until on a loaded machine


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HOSTS = ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(
    not _has_ipv6(), reason="no IPv6 loopback on this machine"))]


@pytest.fixture(params=["mmsg", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the batched path and on the fallback."""
    if request.param == "mmsg":
        if udp._mmsg_ext is None:
            pytest.fail("fastsock.transports._mmsg is not built (make build)")
        if not udp._mmsg_ext.AVAILABLE:
            pytest.skip("recvmmsg/sendmmsg exist only on Linux")
        monkeypatch.setattr(udp, "_mmsg", udp._mmsg_ext)
    else:
        monkeypatch.setattr(udp, "_mmsg", None)
    return str(request.param)


class Recorder(DatagramProtocol):
    """Records every callback; echoes when ``echo`` is set."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: Any = None
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self.made = 0
        self.lost: list[Exception | None] = []
        self.pauses = 0
        self.resumes = 0

    def connection_made(self, transport: Any) -> None:
        self.made += 1
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def pause_writing(self) -> None:
        self.pauses += 1

    def resume_writing(self) -> None:
        self.resumes += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def _server(reactor: Any, host: str, **kw: Any) -> tuple[Any, Recorder]:
    return udp.create_udp_endpoint(reactor, lambda: Recorder(echo=True), local_addr=(host, 0), **kw)


def _run(reactor: Any, predicate: Any) -> bool:
    return bool(reactor.run_until(predicate, timeout=TIMEOUT))


# ------------------------------------------------------------------ echo

@pytest.mark.parametrize("host", HOSTS)
def test_echo_connected_client(reactor: Any, impl: str, host: str) -> None:
    server, sproto = _server(reactor, host)
    addr = server.get_extra_info("sockname")
    client, cproto = udp.create_udp_endpoint(reactor, Recorder, remote_addr=addr[:2])
    assert server.implementation == client.implementation == impl
    assert client.get_extra_info("peername")[:2] == addr[:2]
    payloads = [bytes([i]) * (i * 7) for i in range(100)]  # 0..693 bytes, one empty
    _run(reactor, lambda: cproto.made == 1)
    for p in payloads:
        client.sendto(p)
    assert _run(reactor, lambda: len(cproto.datagrams) == len(payloads))
    assert sorted(d for d, _ in cproto.datagrams) == sorted(payloads)
    assert all(a[:2] == addr[:2] for _, a in cproto.datagrams)
    caddr = client.get_extra_info("sockname")
    assert {a[:2] for _, a in sproto.datagrams} == {caddr[:2]}
    stats = server.stats
    assert stats["datagrams_in"] == stats["datagrams_out"] == len(payloads)
    assert stats["bytes_in"] == stats["bytes_out"] == sum(map(len, payloads))
    assert stats["errors"] == stats["dropped_out"] == 0
    assert cproto.errors == sproto.errors == []


@pytest.mark.parametrize("host", HOSTS)
def test_unconnected_client_and_address_checks(reactor: Any, impl: str, host: str) -> None:
    server, _ = _server(reactor, host)
    addr = server.get_extra_info("sockname")
    client, cproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=(host, 0))
    client.sendto(bytearray(b"from a bytearray"), addr)
    client.sendto(memoryview(b"xfrom a memoryview")[1:], addr[:2])
    assert _run(reactor, lambda: len(cproto.datagrams) == 2)
    assert sorted(d for d, _ in cproto.datagrams) == [b"from a bytearray", b"from a memoryview"]
    with pytest.raises(ValueError, match="not connected"):
        client.sendto(b"x")
    with pytest.raises(TypeError):
        client.sendto("text", addr)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.sendto(b"x", f"{host}:{addr[1]}")
    connected, _ = udp.create_udp_endpoint(reactor, Recorder, remote_addr=addr[:2])
    with pytest.raises(ValueError, match="invalid address"):
        connected.sendto(b"x", (host, addr[1] + 1 if addr[1] < 65535 else 1))
    connected.sendto(b"same peer is fine", addr[:2])


def test_hostname_goes_through_the_slow_path(reactor: Any, impl: str) -> None:
    # "localhost" is no numeric address: the batched path hands it to the socket module.
    server, sproto = udp.create_udp_endpoint(
        reactor, lambda: Recorder(), local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    port = server.get_extra_info("sockname")[1]

    class Forward(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data, ("localhost", port))  # queued (corked), then flushed

    relay, _ = udp.create_udp_endpoint(reactor, Forward, local_addr=("127.0.0.1", 0),
                                       family=socket.AF_INET)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"via localhost", relay.get_extra_info("sockname"))
        assert _run(reactor, lambda: len(sproto.datagrams) == 1)
    assert sproto.datagrams[0][0] == b"via localhost"


# -------------------------------------------------------------- batching

def test_many_senders_are_batched(reactor: Any, impl: str) -> None:
    # 200 small datagrams fit a default receive buffer (no kernel drops)
    senders, per_sender = 50, 4
    server, sproto = _server(reactor, "127.0.0.1", rcvbuf=1 << 20, batch=64)
    addr = server.get_extra_info("sockname")
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(senders)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        # Everything is queued in the kernel before the reactor runs, so one
        # readiness event finds many datagrams waiting.
        for i in range(per_sender):
            for n, s in enumerate(socks):
                s.sendto(b"%d:%d" % (n, i), addr)
        total = senders * per_sender
        assert _run(reactor, lambda: server.stats["datagrams_out"] == total)
        for n, s in enumerate(socks):
            s.settimeout(TIMEOUT)
            got = sorted(s.recv(100) for _ in range(per_sender))
            assert got == sorted(b"%d:%d" % (n, i) for i in range(per_sender))
    finally:
        for s in socks:
            s.close()
    stats = server.stats
    assert stats["datagrams_in"] == total
    if impl == "mmsg":
        # several datagrams per system call, both ways
        assert stats["max_recv_batch"] == 64
        assert stats["recv_calls"] <= total // 8
        assert stats["send_calls"] <= total // 8
    else:
        # the fallback is honest about its one call per datagram
        assert stats["recv_calls"] > total
        assert stats["send_calls"] >= total


def test_pause_reading_inside_a_batch_holds_the_rest(reactor: Any, impl: str) -> None:
    class PauseFirst(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if len(self.datagrams) == 1:
                self.transport.pause_reading()

    server, proto = udp.create_udp_endpoint(reactor, PauseFirst, local_addr=("127.0.0.1", 0),
                                            batch=16)
    addr = server.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(10):
            s.sendto(b"%d" % i, addr)
        assert _run(reactor, lambda: len(proto.datagrams) >= 1)
        reactor.run_until(timeout=0.05)
        assert len(proto.datagrams) == 1
        assert not server.is_reading()
        server.resume_reading()
        assert _run(reactor, lambda: len(proto.datagrams) == 10)
    assert [d for d, _ in proto.datagrams] == [b"%d" % i for i in range(10)]


# ---------------------------------------------------------- back-pressure

def test_backpressure_queue_watermarks_and_drops(reactor: Any, impl: str) -> None:
    # Loopback UDP never says EAGAIN (the kernel hands the datagram over or
    # drops it), so a unix datagram pair stands in for a full send buffer:
    # it blocks the sender while the peer does not read.
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        peer.setblocking(False)
        transport, proto = udp.create_udp_endpoint(
            reactor, Recorder, sock=ours, max_write_buffer_size=32 * 1024)
        assert transport.implementation == impl  # the batched path too
        transport.set_write_buffer_limits(high=8 * 1024, low=2 * 1024)
        assert transport.get_write_buffer_limits() == (2 * 1024, 8 * 1024)
        _run(reactor, lambda: proto.made == 1)
        payload = b"p" * 1000
        sent = 0
        while transport.get_write_buffer_size() == 0 and sent < 100_000:
            transport.sendto(payload)
            sent += 1
        assert transport.get_write_buffer_size() > 0, "the kernel never pushed back"
        accepted_by_kernel = sent - 1
        for _ in range(200):  # far past the 32 KiB cap
            transport.sendto(payload)
        stats = transport.stats
        assert proto.pauses == 1 and proto.resumes == 0
        assert stats["dropped_out"] > 0
        assert transport.get_write_buffer_size() <= 32 * 1024
        queued = stats["queued"]
        assert queued + stats["dropped_out"] == 200 + 1
        # The peer reads: the queue drains through the writer, resume_writing fires.
        received = 0

        def drain() -> bool:
            nonlocal received
            while True:
                try:
                    peer.recv(2048)
                except BlockingIOError:
                    break
                received += 1
            return transport.get_write_buffer_size() == 0 and \
                received == accepted_by_kernel + queued
        assert _run(reactor, drain)
        assert proto.resumes == 1
        assert transport.stats["datagrams_out"] == accepted_by_kernel + queued
    finally:
        peer.close()


def test_close_flushes_queue_abort_drops_it(reactor: Any, impl: str) -> None:
    for how in ("close", "abort"):
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            peer.setblocking(False)
            transport, proto = udp.create_udp_endpoint(reactor, Recorder, sock=ours)
            assert transport.implementation == impl
            n = 0
            while transport.get_write_buffer_size() == 0 and n < 100_000:
                transport.sendto(b"q" * 500)
                n += 1
            for _ in range(5):
                transport.sendto(b"q" * 500)
            getattr(transport, how)()
            assert transport.is_closing()
            transport.sendto(b"after close")  # dropped and counted, no error
            got = 0

            def done() -> bool:
                nonlocal got
                while True:
                    try:
                        peer.recv(1024)
                    except BlockingIOError:
                        break
                    got += 1
                return bool(proto.lost)
            assert _run(reactor, done)
            assert proto.lost == [None]
            if how == "close":
                assert got == n + 5
                assert transport.stats["dropped_out"] == 1
            else:
                assert got == n - 1
                assert transport.stats["dropped_out"] == 6 + 1
            assert ours.fileno() == -1
        finally:
            peer.close()


def test_unix_datagram_addresses(reactor: Any, impl: str, tmp_path: Any) -> None:
    server_path = str(tmp_path / "server.sock")
    ours = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.bind(server_path)
    transport, proto = udp.create_udp_endpoint(reactor, lambda: Recorder(echo=True), sock=ours)
    assert transport.implementation == impl
    named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unnamed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        named.bind(str(tmp_path / "client.sock"))
        named.settimeout(TIMEOUT)
        named.sendto(b"named", server_path)
        unnamed.sendto(b"unnamed", server_path)  # no address to answer to
        assert _run(reactor, lambda: len(proto.datagrams) == 2)
        assert named.recv(100) == b"named"  # the reply went through the socket module
    finally:
        named.close()
        unnamed.close()
    assert proto.datagrams[0] == (b"named", str(tmp_path / "client.sock"))
    assert proto.datagrams[1] == (b"unnamed", None)
    # replying to None on an unconnected socket is refused at the call
    assert any(isinstance(c["exception"], ValueError) for c in reactor.errors)
    reactor.errors.clear()


# ----------------------------------------------------------- error paths

def test_port_unreachable_reaches_error_received(reactor: Any, impl: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
    # nobody listens on `dead` now: the kernel answers with ICMP port unreachable
    client, proto = udp.create_udp_endpoint(reactor, Recorder, remote_addr=dead)
    _run(reactor, lambda: proto.made == 1)
    for i in range(3):
        client.sendto(b"anyone?")
        assert _run(reactor, lambda: len(proto.errors) > i)
    assert all(isinstance(e, ConnectionRefusedError) for e in proto.errors)
    assert client.stats["errors"] == len(proto.errors)
    assert not client.is_closing() and proto.lost == []


@pytest.mark.parametrize("host", HOSTS)
def test_unconnected_endpoint_reports_unreachable_peers(reactor: Any, impl: str, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        dead = s.getsockname()
    echo, _ = _server(reactor, host)
    live = echo.get_extra_info("sockname")
    plain, pproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=(host, 0))
    watcher, wproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=(host, 0),
                                              report_unreachable=True)
    _run(reactor, lambda: wproto.made == 1 and pproto.made == 1)
    for transport in (plain, watcher):
        # The ICMP error for `dead` is pending when the second datagram is
        # sent: it must still reach `live` (the kernel fails the next send
        # with the pending error; the transport reads it and retries).
        transport.sendto(b"to nobody", dead[:2])
        transport.sendto(b"to the echo", live[:2])
    assert _run(reactor, lambda: len(pproto.datagrams) == 1 and len(wproto.datagrams) == 1
                and len(wproto.errors) == 1)
    assert pproto.errors == []  # Linux keeps ICMP errors from unconnected sockets...
    exc = wproto.errors[0]      # ...unless asked, and then it names the peer
    assert isinstance(exc, ConnectionRefusedError)
    assert exc.address[:2] == dead[:2]  # type: ignore[attr-defined]
    assert watcher.stats["unreachable"] == 1
    assert wproto.datagrams[0][0] == b"to the echo"
    assert not watcher.is_closing()


def test_oversized_datagram_is_reported_and_counted(reactor: Any, impl: str) -> None:
    class BigReply(Recorder):
        # the reply to b"big" is larger than UDP allows; the rest is echoed
        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(b"x" * 70_000 if data == b"big" else data, addr)

    server, sproto = udp.create_udp_endpoint(reactor, BigReply, local_addr=("127.0.0.1", 0))
    addr = server.get_extra_info("sockname")
    client, cproto = udp.create_udp_endpoint(reactor, Recorder, remote_addr=addr)
    _run(reactor, lambda: cproto.made == 1)
    client.sendto(b"y" * 70_000)  # direct send path
    assert _run(reactor, lambda: len(cproto.errors) == 1)
    assert cproto.errors[0].errno == errno.EMSGSIZE
    assert client.stats["oversized_out"] == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # queued (batched) send path: one bad reply amid good ones
        for d in (b"a", b"big", b"b"):
            s.sendto(d, addr)
        s.settimeout(TIMEOUT)
        assert _run(reactor, lambda: server.stats["datagrams_in"] == 3)
        assert sorted([s.recv(100), s.recv(100)]) == [b"a", b"b"]
    assert [e.errno for e in sproto.errors] == [errno.EMSGSIZE]
    assert server.stats["oversized_out"] == 1 and server.stats["datagrams_out"] == 2
    # still serving
    client.sendto(b"still there")
    assert _run(reactor, lambda: len(cproto.datagrams) == 1)


def test_truncated_datagram_is_dropped_and_reported(reactor: Any, impl: str) -> None:
    server, sproto = _server(reactor, "127.0.0.1", max_datagram_size=100)
    addr = server.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"L" * 101, addr)
        s.sendto(b"S" * 100, addr)
        s.settimeout(TIMEOUT)
        assert _run(reactor, lambda: server.stats["datagrams_in"] == 1 and sproto.errors)
        assert s.recv(200) == b"S" * 100
    assert server.stats["truncated_in"] == 1
    assert sproto.errors[0].errno == errno.EMSGSIZE
    assert "longer than max_datagram_size=100" in str(sproto.errors[0])
    assert [d for d, _ in sproto.datagrams] == [b"S" * 100]


def test_failing_callback_does_not_lose_the_batch(reactor: Any, impl: str) -> None:
    class Flaky(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"boom":
                raise RuntimeError("handler bug")

    server, proto = udp.create_udp_endpoint(reactor, Flaky, local_addr=("127.0.0.1", 0))
    addr = server.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in (b"1", b"boom", b"2"):
            s.sendto(d, addr)
        assert _run(reactor, lambda: len(proto.datagrams) == 3)
    assert [d for d, _ in proto.datagrams] == [b"1", b"boom", b"2"]
    assert [type(c["exception"]) for c in reactor.errors] == [RuntimeError]
    assert not server.is_closing()


def test_bad_arguments(reactor: Any) -> None:
    factory = Recorder
    with pytest.raises(ValueError, match="batch"):
        udp.create_udp_endpoint(reactor, factory, local_addr=("127.0.0.1", 0), batch=0)
    with pytest.raises(ValueError, match="max_datagram_size"):
        udp.create_udp_endpoint(reactor, factory, local_addr=("127.0.0.1", 0),
                                max_datagram_size=70_000)
    with pytest.raises(ValueError, match="rcvbuf"):
        udp.create_udp_endpoint(reactor, factory, local_addr=("127.0.0.1", 0), rcvbuf=-1)
    with pytest.raises(ValueError, match="local_addr, remote_addr"):
        udp.create_udp_endpoint(reactor, factory)
    with pytest.raises(TypeError):
        udp.create_udp_endpoint(reactor, factory, local_addr="127.0.0.1:0")
    with pytest.raises(OSError, match="cannot resolve"):
        udp.create_udp_endpoint(reactor, factory, remote_addr=("no-such-host.invalid", 9))
    with pytest.raises(ValueError, match="no address family in common"):
        udp.create_udp_endpoint(reactor, factory, local_addr=("127.0.0.1", 0),
                                remote_addr=("::1", 9))
    transport, _ = udp.create_udp_endpoint(reactor, factory, local_addr=("127.0.0.1", 0))
    with pytest.raises(ValueError, match="not a multicast address"):
        transport.join_group("10.1.2.3")
    with pytest.raises(ValueError, match="IPv6 group"):
        transport.join_group("ff02::1")
    with pytest.raises(ValueError, match="ttl"):
        transport.set_multicast_ttl(300)
    assert reactor.transports == {transport}  # failed attempts leaked nothing


def test_kernel_drops_are_counted(reactor: Any, impl: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("kernel drop counts come from Linux's /proc/net/udp")
    # The smallest receive buffer, and nobody reading: the kernel must drop.
    server, proto = udp.create_udp_endpoint(reactor, Recorder, local_addr=("127.0.0.1", 0),
                                            rcvbuf=1024)
    addr = server.get_extra_info("sockname")
    _run(reactor, lambda: proto.made == 1)
    server.pause_reading()
    assert server.stats["kernel_drops"] == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(200):
            s.sendto(b"d" * 1000, addr)
    drops = server.stats["kernel_drops"]
    assert 0 < drops < 200
    server.resume_reading()
    assert _run(reactor, lambda: len(proto.datagrams) == 200 - drops)


# -------------------------------------------------------- socket options

def test_buffer_sizes_report_what_the_kernel_granted(reactor: Any) -> None:
    transport, _ = udp.create_udp_endpoint(reactor, Recorder, local_addr=("127.0.0.1", 0),
                                           rcvbuf=100_000, sndbuf=50_000)
    sock = transport.get_extra_info("socket")
    rcv = transport.get_extra_info("rcvbuf")
    snd = transport.get_extra_info("sndbuf")
    assert rcv == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert snd == sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    if sys.platform == "linux":
        # Linux doubles the request (bookkeeping overhead), capped by rmem_max/wmem_max
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        assert rcv == 2 * min(100_000, rmem_max)


def test_reuse_port_and_broadcast(reactor: Any) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("SO_REUSEPORT is not available on this platform")
    first, _ = udp.create_udp_endpoint(reactor, Recorder, local_addr=("127.0.0.1", 0),
                                       reuse_port=True, allow_broadcast=True)
    addr = first.get_extra_info("sockname")
    second, _ = udp.create_udp_endpoint(reactor, Recorder, local_addr=addr, reuse_port=True)
    assert second.get_extra_info("sockname") == addr
    with pytest.raises(OSError) as info:
        udp.create_udp_endpoint(reactor, Recorder, local_addr=addr)
    assert info.value.errno == errno.EADDRINUSE
    sock = first.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_multicast_on_loopback(reactor: Any, impl: str) -> None:
    group = "239.255.42.99"
    receiver, rproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=("0.0.0.0", 0),
                                               reuse_address=True)
    port = receiver.get_extra_info("sockname")[1]
    try:
        receiver.join_group(group, "127.0.0.1")
    except OSError as exc:
        pytest.skip(f"the kernel refuses multicast membership on loopback: {exc}")
    sender, sproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=("127.0.0.1", 0))
    sender.set_multicast_interface("127.0.0.1")
    sender.set_multicast_loopback(True)
    sender.set_multicast_ttl(0)  # never leaves the host
    sender.sendto(b"to the group", (group, port))
    if not reactor.run_until(lambda: bool(rproto.datagrams or sproto.errors), timeout=3.0):
        pytest.skip("multicast on loopback is not routed on this machine (nothing arrived)")
    if sproto.errors:
        pytest.skip(f"the kernel refuses multicast on loopback: {sproto.errors[0]}")
    assert rproto.datagrams[0][0] == b"to the group"
    assert rproto.datagrams[0][1] == sender.get_extra_info("sockname")
    receiver.leave_group(group, "127.0.0.1")
    with pytest.raises(OSError):
        receiver.leave_group(group, "127.0.0.1")  # not a member any more


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")
def test_ipv6_multicast_on_loopback(reactor: Any, impl: str) -> None:
    group = "ff12::4242"  # transient, link-local scope
    receiver, rproto = udp.create_udp_endpoint(reactor, Recorder, local_addr=("::", 0),
                                               reuse_address=True)
    port = receiver.get_extra_info("sockname")[1]
    try:
        receiver.join_group(group, "lo")
    except (OSError, ValueError) as exc:
        pytest.skip(f"the kernel refuses IPv6 multicast membership on lo: {exc}")
    sender, sproto = udp.create_udp_endpoint(reactor, Recorder, family=socket.AF_INET6)
    sender.set_multicast_interface("lo")
    sender.set_multicast_loopback(True)
    sender.set_multicast_ttl(1)
    sender.sendto(b"to the v6 group", (group, port, 0, socket.if_nametoindex("lo")))
    reactor.run_until(lambda: bool(rproto.datagrams or sproto.errors), timeout=3.0)
    delivered = list(rproto.datagrams)
    # membership bookkeeping works either way: leaving twice fails the second time
    receiver.leave_group(group, "lo")
    with pytest.raises(OSError):
        receiver.leave_group(group, "lo")
    if not delivered:
        reason = sproto.errors[0] if sproto.errors else "nothing arrived"
        pytest.skip(f"IPv6 multicast is not routed on loopback here ({reason})")
    assert delivered[0][0] == b"to the v6 group"


# ----------------------------------------------- same protocol on asyncio

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("host", HOSTS)
def test_same_protocol_runs_on_asyncio_loops(loop_name: str, host: str) -> None:
    """Recorder (a fastsock DatagramProtocol) on asyncio/uvloop, fed by a
    fastsock-shaped client: the contract is asyncio's."""
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def main() -> tuple[list[bytes], int]:
        server, _ = await loop.create_datagram_endpoint(lambda: Recorder(echo=True),
                                                        local_addr=(host, 0))
        addr = server.get_extra_info("sockname")
        client, cproto = await loop.create_datagram_endpoint(Recorder, remote_addr=addr[:2])
        for i in range(20):
            client.sendto(b"m%d" % i)
        for _ in range(int(TIMEOUT / 0.01)):
            if len(cproto.datagrams) == 20:
                break
            await asyncio.sleep(0.01)
        client.close()
        server.close()
        await asyncio.sleep(0)
        return [d for d, _ in cproto.datagrams], len(cproto.lost)

    try:
        got, lost = loop.run_until_complete(main())
    finally:
        loop.close()
    assert sorted(got) == sorted(b"m%d" % i for i in range(20))
    assert lost == 1


def test_graceful_shutdown_closes_endpoints(reactor: Any, impl: str) -> None:
    transport, proto = udp.create_udp_endpoint(reactor, Recorder, local_addr=("127.0.0.1", 0))
    assert transport in reactor.transports
    reactor.shutdown(timeout=TIMEOUT)
    assert proto.lost == [None]
    assert transport not in reactor.transports


def test_stub_matches_the_extension() -> None:
    if udp._mmsg_ext is None:
        pytest.fail("fastsock.transports._mmsg is not built (make build)")
    import ast
    import pathlib
    stub = pathlib.Path(udp.__file__).with_name("_mmsg.pyi")
    tree = ast.parse(stub.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            cls = getattr(udp._mmsg_ext, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    assert callable(getattr(cls, item.name)), (node.name, item.name)
                elif isinstance(item, ast.AnnAssign):
                    assert hasattr(cls, item.target.id), (node.name, item.target.id)  # type: ignore[union-attr]
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)  # type: ignore[union-attr]
    public = {n for n in dir(udp._mmsg_ext) if not n.startswith("_")}
    assert names == public


def test_fastsock_pure_selects_the_fallback() -> None:
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "from fastsock.transports import udp; print(udp.IMPLEMENTATION)"
    env = dict(os.environ, PYTHONPATH=root)
    out = {}
    for pure in ("1", "0"):
        env["FASTSOCK_PURE"] = pure
        out[pure] = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   env=env, timeout=60, check=True).stdout.strip()
    assert out["1"] == "python"
    assert out["0"] == ("mmsg" if udp._mmsg_ext is not None and udp._mmsg_ext.AVAILABLE
                        else "python")


def test_result_codes_match_the_extension() -> None:
    if udp._mmsg_ext is None:
        pytest.fail("fastsock.transports._mmsg is not built (make build)")
    assert (udp.WOULD_BLOCK, udp.SLOW_PATH) == (udp._mmsg_ext.WOULD_BLOCK, udp._mmsg_ext.SLOW_PATH)
