"""fastsock's loop as asyncio sees it: the entry points, and bad input.

asyncio's own test-suite runs in test_asyncio_suite.py; these are the parts
the issue names that it does not cover: uvloop-style entry points, the
compiled handles behaving as asyncio's, and what happens on misuse.
"""
from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import warnings
from typing import Any

import pytest

import fastsock
from fastsock.reactor import Reactor
from fastsock.reactor import loop as loop_module


async def _running_loop() -> asyncio.AbstractEventLoop:
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


def test_run_uses_a_fresh_fastsock_loop_and_closes_it() -> None:
    loop = fastsock.run(_running_loop())
    assert isinstance(loop, Reactor)
    assert loop.is_closed()


def test_run_rejects_what_is_not_a_coroutine() -> None:
    with pytest.raises(ValueError, match="coroutine was expected"):
        fastsock.run(asyncio.sleep)  # type: ignore[arg-type]


def test_runner_with_the_loop_factory() -> None:
    with asyncio.Runner(loop_factory=fastsock.new_event_loop) as runner:
        assert isinstance(runner.run(_running_loop()), Reactor)


def test_install_and_the_policy_make_asyncio_use_fastsock() -> None:
    old = asyncio.get_event_loop_policy()
    try:
        fastsock.install()
        assert isinstance(asyncio.get_event_loop_policy(), fastsock.EventLoopPolicy)
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, Reactor)
        finally:
            loop.close()
        assert isinstance(asyncio.run(_running_loop()), Reactor)
    finally:
        asyncio.set_event_loop_policy(old)


def test_the_loop_is_an_abstract_event_loop() -> None:
    loop = fastsock.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_handles_run_in_their_context_and_cancel_like_asyncio(reactor: Reactor) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")
    seen: list[str] = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    reactor.call_soon(lambda: seen.append(var.get()), context=ctx)
    reactor.call_soon(lambda: seen.append(var.get()))
    dropped = reactor.call_soon(seen.append, "cancelled")
    dropped.cancel()
    assert dropped.cancelled()
    timer = reactor.call_later(0.01, seen.append, "timer")
    assert timer.when() > reactor.time() - 1
    assert "when=" in repr(timer)
    assert reactor.run_until(lambda: "timer" in seen, timeout=5)
    assert seen == ["inner", "outer", "timer"]


def test_a_raising_callback_reaches_the_handler_and_the_loop_serves_on(reactor: Reactor) -> None:
    seen: list[int] = []

    def bad() -> None:
        raise ZeroDivisionError("in a callback")

    reactor.call_soon(bad)
    reactor.call_later(0.001, bad)
    reactor.call_later(0.002, seen.append, 1)
    assert reactor.run_until(lambda: seen, timeout=5)
    errors = reactor.errors  # type: ignore[attr-defined]
    assert [type(c["exception"]) for c in errors] == [ZeroDivisionError] * 2
    assert all("Exception in callback" in c["message"] and "handle" in c for c in errors)
    assert reactor.stats["callback_errors"] == 2


def test_the_selector_view_is_read_only_and_says_what_to_use(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    try:
        reactor.add_reader(a, lambda: None)
        key = reactor._selector.get_key(a.fileno())
        assert key.events & 1  # EVENT_READ
        with pytest.raises(NotImplementedError, match="add_reader"):
            reactor._selector.register(b, 1)
        reactor.remove_reader(a)
        with pytest.raises(KeyError):
            reactor._selector.get_key(a.fileno())
    finally:
        a.close()
        b.close()


def test_add_reader_on_a_transports_socket_is_refused() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(sock.fileno(), lambda: None)
        transport.close()
        server.close()
        await server.wait_closed()

    fastsock.run(main())


def test_closing_the_loop_under_an_open_transport_warns() -> None:
    """asyncio's behaviour: the transport left open says so when collected."""
    loop = fastsock.new_event_loop()
    server: Any = None

    async def open_one() -> Any:
        nonlocal server
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        return transport

    transport = loop.run_until_complete(open_one())
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del transport
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "unclosed transport" in str(w.message)
               for w in caught), [str(w.message) for w in caught]


def test_a_closed_loop_refuses_work() -> None:
    loop = fastsock.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_later(1, print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()


def test_the_compiled_core_is_in_use_unless_switched_off() -> None:
    # The switch is fastsock/_switch.py; the pure core is tested through the
    # whole suite with FASTSOCK_PURE=1 (tests/reactor/test_reactor_loop.py runs both backends).
    from fastsock import _switch
    expected = "python" if _switch.PURE or _switch.compiled("fastsock.reactor._loopc") is None else "cython"
    assert loop_module.IMPLEMENTATION == expected


def test_debug_mode_warns_about_slow_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import time as _time

    loop = fastsock.new_event_loop()
    try:
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01

        def slow() -> None:
            _time.sleep(0.05)

        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(slow)
            loop.call_soon(loop.stop)
            loop.run_forever()
        assert any("Executing" in r.getMessage() and "slow" in r.getMessage()
                   and "took" in r.getMessage() for r in caplog.records), caplog.records
    finally:
        loop.close()


def test_debug_mode_refuses_call_soon_from_another_thread() -> None:
    import threading

    loop = fastsock.new_event_loop()
    errors: list[BaseException] = []
    try:
        loop.set_debug(True)

        def from_thread() -> None:
            try:
                loop.call_soon(print)
            except RuntimeError as exc:
                errors.append(exc)

        def in_loop() -> None:
            t = threading.Thread(target=from_thread)
            t.start()
            t.join()
            loop.stop()

        loop.call_soon(in_loop)
        loop.run_forever()
        assert errors and "thread" in str(errors[0])
    finally:
        loop.close()


def test_create_task_names_contexts_and_the_task_factory() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")

    async def report() -> tuple[str, str]:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name(), var.get()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "inner")
        results: list[Any] = [await loop.create_task(report(), name="named"),
                              await loop.create_task(report(), context=ctx)]
        made: list[dict[str, Any]] = []

        def factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        results.append(await loop.create_task(report(), name="by factory"))
        results.append(await loop.create_task(report(), context=ctx))
        loop.set_task_factory(None)
        results.append(made)
        return results

    named, in_ctx, by_factory, factory_ctx, made = fastsock.run(main())
    assert named[0] == "named" and in_ctx[1] == "inner"
    assert by_factory[0] == "by factory" and factory_ctx[1] == "inner"
    assert made == [{}, {"context": made[1]["context"]}]
