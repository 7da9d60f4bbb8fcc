"""The coroutine API's per-message paths (fastsock/coroutine/_hotpath.pyx and
its twin _hotpath_py.py): the Receiver (an awaitable) with the Waiter a Task
holds while it waits, and the Sender behind ``Connection.send``.

The first half drives both implementations directly on a real asyncio loop
(the compiled one only if it is built); the second half runs over real
sockets on asyncio's loop, uvloop and fastsock's (the ``aio`` fixture).
"""
from __future__ import annotations

import asyncio
import contextvars
from typing import Any, AsyncIterator, Optional

import pytest

from fastsock.coroutine import Connection, Server, connect, serve
from fastsock.coroutine import _hotpath_py
from fastsock.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

try:
    from fastsock.coroutine import _hotpath as _compiled
except ImportError:      # not built: only the twin runs (FASTSOCK_PURE=1 CI builds nothing)
    _compiled = None     # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

RUN_TIMEOUT = 20.0
IMPLS = [pytest.param(_hotpath_py, id="python")] + (
    [pytest.param(_compiled, id="compiled")] if _compiled is not None else [])


class Owner:
    """What a Receiver asks of its connection core."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.full = 0
        self.low = 0
        self.error: ConnectionClosed = ConnectionClosedOK(1000, "bye")

    def _queue_full(self) -> None:
        self.full += 1

    def _queue_low(self) -> None:
        self.low += 1

    def _closed_error(self) -> ConnectionClosed:
        return self.error


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, RUN_TIMEOUT))


# ------------------------------------------------------------ Receiver, both implementations


@pytest.mark.parametrize("impl", IMPLS)
def test_queued_messages_are_taken_without_suspending(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        for i in range(10):
            rx.push(f"m{i}")

        async def take(n: int) -> list[Any]:
            return [await rx.wait() for _ in range(n)]

        coro = take(10)
        with pytest.raises(StopIteration) as done:     # one step, no yield to the loop
            coro.send(None)
        assert done.value.value == [f"m{i}" for i in range(10)]

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_a_waiting_task_is_resumed_by_push_within_the_call(impl: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        owner = Owner(loop)
        rx = impl.Receiver(owner, 16, 4)
        got: list[Any] = []
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="loop's")
        tasks: list[Optional[asyncio.Task[Any]]] = []

        async def consumer() -> None:
            var.set("consumer's")
            async for message in rx:
                # the task's own context and the task itself, though push()
                # ran outside any task
                got.append((message, var.get(), asyncio.current_task() is task))
                tasks.append(asyncio.current_task())

        task = asyncio.ensure_future(consumer())
        await asyncio.sleep(0)                 # parks on the empty queue
        pushed = asyncio.Event()

        def from_a_callback() -> None:         # as a transport callback does
            for i in range(3):
                rx.push(i)
                assert got[-1][0] == i         # handled before push returned
            pushed.set()

        loop.call_soon(from_a_callback)
        await pushed.wait()
        assert got == [(0, "consumer's", True), (1, "consumer's", True), (2, "consumer's", True)]
        assert var.get() == "loop's"
        rx.mark_closed()                        # 1000: async for ends
        await task

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_push_from_inside_another_task_wakes_on_a_later_turn(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        got: list[Any] = []

        async def consumer() -> None:
            got.append(await rx.wait())

        task = asyncio.ensure_future(consumer())
        await asyncio.sleep(0)
        rx.push("x")                  # this task is running: no nested task step
        assert got == []
        await task
        assert got == ["x"]

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_push_from_inside_the_waiters_own_context_wakes_on_a_later_turn(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)

        async def one() -> Any:
            return await rx.wait()

        coro = one()
        waiter = coro.send(None)               # parked, as under a Task
        calls: list[Any] = []
        ctx = contextvars.copy_context()
        waiter.add_done_callback(calls.append, context=ctx)
        seen: list[int] = []

        def from_a_callback() -> None:         # outside any task, as a transport callback
            ctx.run(rx.push, "x")              # the context cannot be entered twice...
            seen.append(len(calls))            # ...so the wake-up did not run here

        asyncio.get_running_loop().call_soon(from_a_callback)
        for _ in range(3):
            await asyncio.sleep(0)
        assert seen == [0]
        assert len(calls) == 1 and calls[0].done() and calls[0].result() is None
        with pytest.raises(StopIteration) as done:
            coro.send(None)                    # what the wake-up's task step does
        assert done.value.value == "x"

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_cancelling_the_waiting_task_loses_nothing(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        events: list[str] = []

        async def consumer() -> None:
            try:
                await rx.wait()
            except asyncio.CancelledError as error:
                events.append(f"cancelled {error.args}")
            events.append(await rx.wait())       # the message pushed after the cancel
            events.append(await rx.wait())

        task = asyncio.ensure_future(consumer())
        await asyncio.sleep(0)
        assert task.cancel("why")
        rx.push("after cancel")                  # before the task has run again
        rx.push("next")
        await task
        assert events == ["cancelled ('why',)", "after cancel", "next"]

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_timeouts_inside_the_task_and_wait_for(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rx.wait(), 0.01)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(rx), 0.01)     # wrapped in a task like a coroutine
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await rx.wait()
        rx.push("still here")
        assert await rx.wait() == "still here"
        rx.push("via gather")
        assert list(await asyncio.gather(anext(rx))) == ["via gather"]

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_a_second_waiter_is_refused_and_a_closed_coroutine_frees_the_receiver(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        first = asyncio.ensure_future(rx.wait())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already waiting"):
            await rx.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

        async def one() -> Any:
            return await rx.wait()

        coro = one()
        waiter = coro.send(None)               # what a Task would be given
        assert waiter._asyncio_future_blocking and not asyncio.isfuture(rx)
        coro.close()                           # closes what it awaits
        rx.push("free")
        assert await rx.wait() == "free"

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_full_queue_pauses_and_taking_resumes(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 8, 2)
        for i in range(12):                    # reading does not stop at once
            rx.push(i)
        assert (owner.full, rx.paused) == (1, True)
        got = [await rx.wait() for _ in range(9)]
        assert (owner.low, rx.paused) == (0, True)        # 3 left > 2
        got.append(await rx.wait())
        assert (owner.low, rx.paused) == (1, False)
        got += [await rx.wait() for _ in range(2)]
        assert got == list(range(12))
        assert owner.full == 1 and owner.low == 1

    run(main())


@pytest.mark.parametrize("impl", IMPLS)
def test_after_the_close_queued_messages_come_first_then_the_error(impl: Any) -> None:
    async def main() -> None:
        owner = Owner(asyncio.get_running_loop())
        rx = impl.Receiver(owner, 16, 4)
        waiter = asyncio.ensure_future(rx.wait())
        await asyncio.sleep(0)
        owner.error = ConnectionClosedError(1006)
        rx.mark_closed()
        with pytest.raises(ConnectionClosedError):
            await waiter
        rx2 = impl.Receiver(owner, 16, 4)
        rx2.push("last")
        rx2.mark_closed()
        owner.error = ConnectionClosedOK(1000)
        assert [m async for m in rx2] == ["last"]         # 1000 ends async for
        with pytest.raises(ConnectionClosedOK):
            await rx2.wait()                              # and recv raises it

    run(main())


# ------------------------------------------------------------ over real sockets, three loops


def uri(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def test_many_pipelined_messages_with_a_small_queue_arrive_in_order(aio: Any) -> None:
    count = 2000
    paused: list[bool] = []

    async def handler(ws: Connection) -> None:
        await asyncio.sleep(0.2)               # let the queue fill and reading pause
        paused.append(ws.core.queue_paused)
        n = 0
        async for message in ws:
            assert message == f"m{n}"
            n += 1
            if n == count:
                await ws.send(str(n))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_queue=4) as server:
            async with connect(uri(server)) as ws:
                for i in range(count):
                    await ws.send(f"m{i}")
                assert await asyncio.wait_for(ws.recv(), 10) == str(count)
        assert paused == [True]

    aio.run(main(), RUN_TIMEOUT)


def test_handler_context_task_and_timeouts_across_messages(aio: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")

    async def handler(ws: Connection) -> None:
        var.set(str(ws.id))
        me = asyncio.current_task()
        try:
            async with asyncio.timeout(0.05):       # cancels this very task at the await
                await ws.recv()
        except TimeoutError:
            await ws.send("timed out")
        async for message in ws:
            same = var.get() == str(ws.id) and asyncio.current_task() is me
            await ws.send(f"{message!s} {same}")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as a, connect(uri(server)) as b:
                assert await a.recv() == "timed out"
                assert await b.recv() == "timed out"
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(anext(a), 0.01)
                for i in range(20):
                    await a.send(f"a{i}")
                    await b.send(f"b{i}")
                for i in range(20):
                    assert await a.recv() == f"a{i} True"
                    assert await b.recv() == f"b{i} True"

    aio.run(main(), RUN_TIMEOUT)


def test_send_results_are_coroutines_and_raise_when_awaited(aio: Any) -> None:
    async def handler(ws: Connection) -> None:
        await asyncio.create_task(ws.send("from a task"))
        await asyncio.gather(ws.send("g1"), ws.send(b"g2"))
        await ws.send(bytearray(b"bytearray"))        # the coroutine path
        await ws.close()
        pending = ws.send("too late")                  # no error yet...
        with pytest.raises(ConnectionClosed):
            await pending                              # ...but at the await

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                got = [m async for m in ws]
        assert got == ["from a task", "g1", b"g2", b"bytearray"]

    aio.run(main(), RUN_TIMEOUT)


def test_a_message_sent_during_a_fragmented_one_waits_for_it(aio: Any) -> None:
    async def handler(ws: Connection) -> None:
        started = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            for part in ("one ", "two ", "three"):
                started.set()
                await asyncio.sleep(0.01)
                yield part

        task = asyncio.ensure_future(ws.send(fragments()))
        await started.wait()
        await ws.send("single")                    # must not land inside the fragments
        await task

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                assert [m async for m in ws] == ["one two three", "single"]

    aio.run(main(), RUN_TIMEOUT)
