"""The compiled epoll poller (``_epollc.EpollPoller``) and its pure-Python twin
(``select.epoll.poll`` + ``loop._dispatch``) behave the same."""
from __future__ import annotations

import os
import select
import signal
import socket
import threading
from typing import Any, Iterator

import pytest

from fastsock.reactor import Reactor
from fastsock.reactor import _epoll

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")


@pytest.fixture(params=["compiled", "python"])
def reactor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reactor]:
    if request.param == "compiled":
        if _epoll._EpollPoller is None:
            pytest.skip("fastsock/reactor/_epollc.pyx is not built (or FASTSOCK_PURE=1)")
    else:
        monkeypatch.setattr(_epoll, "_EpollPoller", None)
    r = Reactor(backend="epoll")
    errors: list[dict[str, Any]] = []
    r.set_exception_handler(lambda loop, ctx: errors.append(ctx))
    r.errors = errors  # type: ignore[attr-defined]
    assert (r._poll_dispatch is not None) == (request.param == "compiled")
    yield r
    r.close()


def test_readers_writers_and_a_failing_callback(reactor):
    pairs = [socket.socketpair() for _ in range(4)]
    got: list[tuple[int, bytes]] = []
    writable: list[int] = []
    try:
        def bad(sock: socket.socket) -> None:
            sock.recv(10)
            raise RuntimeError("reader failed")

        def good(i: int, sock: socket.socket) -> None:
            got.append((i, sock.recv(10)))

        reactor.add_reader(pairs[0][1], bad, pairs[0][1])
        for i, (_, b) in enumerate(pairs[1:], 1):
            reactor.add_reader(b, good, i, b)
        reactor.add_writer(pairs[1][1], lambda: writable.append(1) or reactor.remove_writer(pairs[1][1]))
        for a, _ in pairs:
            a.send(b"x")
        assert reactor.run_until(lambda: len(got) == 3 and writable, timeout=5)
        assert sorted(got) == [(1, b"x"), (2, b"x"), (3, b"x")]
        assert [type(c["exception"]) for c in reactor.errors] == [RuntimeError]
        assert reactor.stats["io_events"] >= 4
    finally:
        for a, b in pairs:
            reactor.remove_reader(b)
            a.close()
            b.close()


def test_keyboard_interrupt_in_a_reader_propagates(reactor):
    a, b = socket.socketpair()
    try:
        def interrupt() -> None:
            b.recv(10)
            raise KeyboardInterrupt

        reactor.add_reader(b, interrupt)
        a.send(b"x")
        with pytest.raises(KeyboardInterrupt):
            reactor.run_forever()
        reactor.remove_reader(b)
    finally:
        a.close()
        b.close()


def test_stale_fd_rebuilds_the_poller_once(reactor):
    a, b = socket.socketpair()
    dup = b.dup()
    try:
        reactor.add_reader(b, lambda: None)
        del reactor._fds[b.fileno()]   # forget it without telling the kernel
        b.close()
        a.send(b"data")                # readable through the dup
        before = reactor.stats["iterations"]
        reactor.run_until(timeout=0.1)
        assert reactor.stats["stale_fd_rebuilds"] == 1
        assert reactor.stats["iterations"] - before < 20
        # the rebuilt poller still serves new registrations
        c, d = socket.socketpair()
        seen: list[bytes] = []
        try:
            reactor.add_reader(d, lambda: seen.append(d.recv(10)))
            c.send(b"ok")
            assert reactor.run_until(lambda: seen, timeout=5) and seen == [b"ok"]
            reactor.remove_reader(d)
        finally:
            c.close()
            d.close()
    finally:
        a.close()
        dup.close()


def test_a_python_signal_handler_interrupting_the_wait_runs_and_may_raise(reactor):
    class Stop(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Stop

    old = signal.signal(signal.SIGUSR2, handler)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
    try:
        timer.start()
        with pytest.raises(Stop):
            reactor.run_until(timeout=10)   # blocked in epoll_wait: EINTR
    finally:
        timer.join()
        signal.signal(signal.SIGUSR2, old)


def test_a_sub_millisecond_timer_does_not_spin(reactor):
    fired: list[int] = []
    before = reactor.stats["iterations"]
    reactor.call_later(0.0004, fired.append, 1)
    assert reactor.run_until(lambda: fired, timeout=5)
    # rounded up to 1 ms, like select.epoll.poll: a few turns, not thousands
    assert reactor.stats["iterations"] - before < 50


def test_more_ready_fds_than_maxevents_are_all_served():
    if _epoll._EpollPoller is None:
        pytest.skip("fastsock/reactor/_epollc.pyx is not built (or FASTSOCK_PURE=1)")
    with pytest.raises(ValueError):
        _epoll._EpollPoller(select.epoll(), 0)
    ep = select.epoll()
    poller = _epoll._EpollPoller(ep, 2)
    pairs = [socket.socketpair() for _ in range(5)]
    fds: dict[int, list[Any]] = {}
    served: list[int] = []
    try:
        for i, (a, b) in enumerate(pairs):
            def read(i: int = i, b: socket.socket = b) -> None:
                b.recv(10)
                served.append(i)
            fds[b.fileno()] = [read, None, None, None]
            ep.register(b.fileno(), select.EPOLLIN)
            a.send(b"x")
        counts = [poller.poll_dispatch(0.0, fds, pytest.fail, pytest.fail) for _ in range(3)]
        assert counts == [2, 2, 1]
        assert sorted(served) == [0, 1, 2, 3, 4]
        assert poller.poll_dispatch(0.0, fds, pytest.fail, pytest.fail) == 0
    finally:
        ep.close()
        for a, b in pairs:
            a.close()
            b.close()
