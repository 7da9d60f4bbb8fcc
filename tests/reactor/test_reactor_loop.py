"""The reactor: callbacks, timers, I/O readiness, futures, errors, signals."""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import pytest

from asyncio import InvalidStateError

from fastsock.exceptions import ReactorClosedError
from fastsock.reactor import CancelledError, Future, Reactor


# ------------------------------------------------------------------ callbacks
def test_call_soon_runs_in_fifo_order_with_args(reactor):
    seen = []
    for i in range(5):
        reactor.call_soon(seen.append, i)
    assert reactor.run_until(lambda: len(seen) == 5, timeout=5)
    assert seen == [0, 1, 2, 3, 4]


def test_call_soon_scheduled_from_a_callback_runs_next_turn(reactor):
    seen = []

    def first():
        seen.append("first")
        reactor.call_soon(seen.append, "nested")

    reactor.call_soon(first)
    reactor.call_soon(seen.append, "second")
    assert reactor.run_until(lambda: len(seen) == 3, timeout=5)
    assert seen == ["first", "second", "nested"]


def test_cancelled_handle_does_not_run(reactor):
    seen = []
    handle = reactor.call_soon(seen.append, "no")
    reactor.call_soon(seen.append, "yes")
    handle.cancel()
    assert handle.cancelled()
    assert reactor.run_until(lambda: seen, timeout=5)
    reactor.run_until(timeout=0.02)
    assert seen == ["yes"]


# --------------------------------------------------------------------- timers
def test_timers_fire_in_deadline_order_not_insertion_order(reactor):
    seen = []
    for delay, name in [(0.05, "c"), (0.01, "a"), (0.03, "b"), (0.0, "zero")]:
        reactor.call_later(delay, seen.append, name)
    assert reactor.run_until(lambda: len(seen) == 4, timeout=5)
    assert seen == ["zero", "a", "b", "c"]


def test_timers_with_equal_deadline_keep_insertion_order(reactor):
    seen = []
    when = reactor.time() + 0.01
    for i in range(10):
        reactor.call_at(when, seen.append, i)
    assert reactor.run_until(lambda: len(seen) == 10, timeout=5)
    assert seen == list(range(10))


def test_timer_does_not_fire_early(reactor):
    fired = []
    start = reactor.time()
    handle = reactor.call_later(0.05, lambda: fired.append(reactor.time()))
    assert handle.when() == pytest.approx(start + 0.05, abs=0.01)
    assert reactor.run_until(lambda: fired, timeout=5)
    assert fired[0] >= handle.when()


def test_cancelled_timer_does_not_fire(reactor):
    seen = []
    keep = reactor.call_later(0.02, seen.append, "keep")
    drop = reactor.call_later(0.01, seen.append, "drop")
    drop.cancel()
    assert reactor.run_until(lambda: seen, timeout=5)
    assert seen == ["keep"]
    assert not keep.cancelled()


def test_many_cancelled_timers_are_compacted(reactor):
    handles = [reactor.call_later(100 + i, lambda: None) for i in range(1000)]
    for h in handles[:900]:
        h.cancel()
    # lazy deletion with compaction at the next turn (as asyncio does): the
    # heap does not keep 900 dead entries
    reactor.call_soon(reactor.stop)
    reactor.run_forever()
    assert len(reactor._timers) < 500
    assert sum(1 for t in reactor._timers if not t[2].cancelled()) == 100
    seen = []
    reactor.call_later(0.001, seen.append, 1)
    assert reactor.run_until(lambda: seen, timeout=5)


def test_timer_cancelled_after_firing_is_harmless(reactor):
    seen = []
    h = reactor.call_later(0, seen.append, 1)
    assert reactor.run_until(lambda: seen, timeout=5)
    before = reactor._cancelled_timers
    h.cancel()  # no longer in the heap: must not count as a dead heap entry
    assert reactor._cancelled_timers == before


# ----------------------------------------------------------------- run modes
def test_run_until_times_out_and_returns_false(reactor):
    start = time.monotonic()
    assert reactor.run_until(lambda: False, timeout=0.05) is False
    assert time.monotonic() - start >= 0.05
    assert not reactor.is_running()


def test_run_until_true_predicate_returns_at_once(reactor):
    assert reactor.run_until(lambda: True, timeout=5) is True


def test_stop_ends_run_forever_after_ready_callbacks(reactor):
    seen = []
    reactor.call_soon(reactor.stop)
    reactor.call_soon(seen.append, "after-stop-same-turn")
    reactor.run_forever()
    assert seen == ["after-stop-same-turn"]
    assert not reactor.is_running()
    # the reactor can run again
    reactor.call_soon(seen.append, "again")
    assert reactor.run_until(lambda: len(seen) == 2, timeout=5)


def test_run_forever_is_not_reentrant(reactor):
    errors = []

    def nested():
        try:
            reactor.run_forever()
        except RuntimeError as exc:
            errors.append(exc)
        reactor.stop()

    reactor.call_soon(nested)
    reactor.run_forever()
    assert errors and "already running" in str(errors[0])


def test_run_until_complete_returns_result_and_raises_errors(reactor):
    fut = reactor.create_future()
    reactor.call_later(0.01, fut.set_result, 42)
    assert reactor.run_until_complete(fut, timeout=5) == 42

    bad = reactor.create_future()
    reactor.call_soon(bad.set_exception, ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        reactor.run_until_complete(bad, timeout=5)

    never = reactor.create_future()
    with pytest.raises(TimeoutError):
        reactor.run_until_complete(never, timeout=0.02)


def test_closed_reactor_refuses_work():
    r = Reactor()
    r.close()
    assert r.is_closed()
    with pytest.raises(ReactorClosedError):
        r.call_soon(print)
    with pytest.raises(ReactorClosedError):
        r.call_later(1, print)
    with pytest.raises(ReactorClosedError):
        r.run_forever()
    r.close()  # idempotent


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown reactor backend"):
        Reactor(backend="kqueue-on-linux")


# -------------------------------------------------------------- exceptions
def test_exception_in_callback_is_reported_and_loop_keeps_going(reactor):
    seen = []

    def bad():
        raise ZeroDivisionError("bad callback")

    reactor.call_soon(bad)
    reactor.call_soon(seen.append, "still-running")
    reactor.call_later(0.01, bad)
    reactor.call_later(0.02, seen.append, "timer-after")
    assert reactor.run_until(lambda: len(seen) == 2, timeout=5)
    assert seen == ["still-running", "timer-after"]
    assert [type(c["exception"]) for c in reactor.errors] == [ZeroDivisionError] * 2
    assert "bad" in reactor.errors[0]["message"]


def test_default_exception_handler_logs_traceback(caplog):
    r = Reactor()
    try:
        def bad():
            raise KeyError("logged")
        r.call_soon(bad)
        # asyncio's default handler, on asyncio's logger (as on any asyncio loop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            r.run_until(timeout=0.01)
        records = [rec for rec in caplog.records if rec.name == "asyncio"]
        assert records and records[0].exc_info[0] is KeyError
        assert "Exception in callback" in records[0].getMessage()
    finally:
        r.close()


def test_failing_exception_handler_does_not_stop_the_loop(caplog):
    r = Reactor()
    try:
        r.set_exception_handler(lambda loop, ctx: 1 / 0)
        seen = []
        r.call_soon(lambda: [][1])
        r.call_soon(seen.append, 1)
        with caplog.at_level(logging.ERROR, logger="fastsock.reactor"):
            assert r.run_until(lambda: seen, timeout=5)
        assert any("exception handler" in rec.getMessage() for rec in caplog.records)
    finally:
        r.close()


def test_exception_in_reader_callback_keeps_serving_other_fds(any_reactor):
    reactor = any_reactor
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    got = []
    try:
        def bad():
            b1.recv(100)
            raise RuntimeError("reader failed")

        def good():
            got.append(b2.recv(100))

        reactor.add_reader(b1, bad)
        reactor.add_reader(b2.fileno(), good)
        a1.send(b"x")
        a2.send(b"y")
        assert reactor.run_until(lambda: got, timeout=5)
        assert got == [b"y"]
        assert any(isinstance(c["exception"], RuntimeError) for c in reactor.errors)
        reactor.remove_reader(b1)
        reactor.remove_reader(b2)
    finally:
        for s in (a1, b1, a2, b2):
            s.close()


def test_keyboard_interrupt_propagates(reactor):
    def interrupt():
        raise KeyboardInterrupt

    reactor.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        reactor.run_forever()
    assert not reactor.is_running()


# --------------------------------------------------------------------- I/O
def test_reader_and_writer_on_both_backends(any_reactor):
    reactor = any_reactor
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got, wrote = [], []
    try:
        def on_writable():
            a.send(b"ping")
            wrote.append(1)
            assert reactor.remove_writer(a)

        def on_readable(tag):
            got.append((tag, b.recv(100)))

        reactor.add_writer(a, on_writable)
        reactor.add_reader(b, on_readable, "b")
        assert reactor.run_until(lambda: got, timeout=5)
        assert got == [("b", b"ping")] and wrote == [1]
        assert reactor.remove_reader(b) is True
        assert reactor.remove_reader(b) is False
        assert reactor.remove_writer(a) is False
        assert reactor._fds.keys() == {reactor._ssock.fileno()}
    finally:
        a.close()
        b.close()


def test_reader_and_writer_on_the_same_fd(any_reactor):
    reactor = any_reactor
    a, b = socket.socketpair()
    a.setblocking(False)
    events = []
    try:
        reactor.add_reader(a, lambda: (events.append("r"), a.recv(10)))
        reactor.add_writer(a, lambda: (events.append("w"), reactor.remove_writer(a)))
        b.send(b"z")
        assert reactor.run_until(lambda: "r" in events and "w" in events, timeout=5)
        reactor.remove_reader(a)
        assert a.fileno() not in reactor._fds
    finally:
        a.close()
        b.close()


def test_add_reader_rejects_bad_fds(reactor):
    with pytest.raises(ValueError):
        reactor.add_reader(-1, print)
    with pytest.raises(ValueError):
        reactor.add_reader(object(), print)


def test_fd_closed_while_registered_and_reused(reactor):
    """A new socket reusing the number of one closed while registered works."""
    a, b = socket.socketpair()
    reactor.add_reader(b, lambda: None)
    fd = b.fileno()
    b.close()  # the kernel drops the registration; our table still has it
    a.close()
    c, d = socket.socketpair()
    try:
        got = []
        target = c if c.fileno() == fd else d
        other = d if target is c else c
        reactor.add_reader(target, lambda: got.append(target.recv(10)))
        other.send(b"new")
        assert reactor.run_until(lambda: got, timeout=5)
        assert got == [b"new"]
        reactor.remove_reader(target)
    finally:
        c.close()
        d.close()


def test_stale_fd_of_a_dup_is_dropped_without_busy_loop(reactor):
    """trio's stale-fd case: fd closed while registered, its file alive via a dup."""
    a, b = socket.socketpair()
    dup = b.dup()
    calls = []
    try:
        reactor.add_reader(b, lambda: calls.append(1))
        fd = b.fileno()
        del reactor._fds[fd]   # forget it without telling the kernel, then close
        b.close()
        a.send(b"data")        # the description (alive through dup) is readable
        before = reactor.stats["iterations"]
        reactor.run_until(timeout=0.1)
        # the poller was rebuilt once; no spinning on the stale registration
        assert reactor.stats["stale_fd_rebuilds"] == 1
        assert reactor.stats["iterations"] - before < 20
        assert calls == []
    finally:
        a.close()
        dup.close()


# ------------------------------------------------------------------ futures
def test_future_callbacks_run_via_call_soon(reactor):
    fut = reactor.create_future()
    seen = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    fut.set_result("ok")
    assert seen == []  # never inline
    assert reactor.run_until(lambda: seen, timeout=5)
    assert seen == ["ok"]
    late = []
    fut.add_done_callback(lambda f: late.append(1))
    assert reactor.run_until(lambda: late, timeout=5)


def test_future_states(reactor):
    fut: Future = reactor.create_future()
    assert not fut.done()
    with pytest.raises(InvalidStateError):
        fut.result()
    assert fut.cancel()
    assert fut.cancelled() and fut.done()
    with pytest.raises(CancelledError):
        fut.result()
    assert not fut.cancel()
    with pytest.raises(InvalidStateError):
        fut.set_result(1)
    err = reactor.create_future()
    err.set_exception(ValueError)
    assert isinstance(err.exception(), ValueError)


# --------------------------------------------------------- threads, signals
def test_call_soon_threadsafe_wakes_a_sleeping_loop(reactor):
    seen = []
    t = threading.Timer(0.05, lambda: reactor.call_soon_threadsafe(seen.append, "from-thread"))
    t.start()
    try:
        assert reactor.run_until(lambda: seen, timeout=5)
    finally:
        t.join()


def test_signal_handler_runs_in_the_loop(reactor):
    seen = []
    reactor.add_signal_handler(signal.SIGUSR1, lambda tag: seen.append((tag, threading.get_ident())), "usr1")
    try:
        reactor.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
        assert reactor.run_until(lambda: seen, timeout=5)
        assert seen == [("usr1", threading.get_ident())]
    finally:
        assert reactor.remove_signal_handler(signal.SIGUSR1)
    assert not reactor.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_handler_rejects_bad_signals(reactor):
    # asyncio's errors: RuntimeError for a signal that cannot be caught
    with pytest.raises(RuntimeError, match="cannot be caught"):
        reactor.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(ValueError):
        reactor.add_signal_handler(0, print)


def test_shutdown_without_transports_runs_hooks_and_stops(reactor):
    seen = []
    reactor.add_shutdown_hook(lambda deadline: seen.append(deadline > reactor.time()))
    reactor.call_soon(reactor.shutdown, 1.0)
    start = time.monotonic()
    reactor.run_forever()
    assert seen == [True]
    assert time.monotonic() - start < 1.0  # nothing to drain: no wait for the deadline
