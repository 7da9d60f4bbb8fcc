"""fastsock.pubsub's in-process hub, over real WebSocket connections on
127.0.0.1 (fastsock's reactor and asyncio's loop)."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

import fastsock.pubsub.memory as memory
from fastsock.pubsub import MemoryHub, create_hub
from hub_app import Commands
from test_websocket_helpers import ServerThread

RECV = 5.0


@contextlib.contextmanager
def hub_server(loop: str = "fastsock") -> Iterator[tuple[ServerThread, MemoryHub]]:
    hub = MemoryHub()
    with ServerThread(lambda: Commands(hub), loop=loop) as srv:
        srv.call(hub.start, srv.loop)
        yield srv, hub


def client(srv: ServerThread, stack: contextlib.ExitStack) -> ClientConnection:
    return stack.enter_context(connect(f"ws://127.0.0.1:{srv.port}/"))


def ask(ws: ClientConnection, command: str) -> Any:
    ws.send(command)
    return ws.recv(timeout=RECV)


def nothing_pending(ws: ClientConnection) -> bool:
    with contextlib.suppress(TimeoutError):
        ws.recv(timeout=0.2)
        return False
    return True


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_topics_publish_unsubscribe_presence_and_close(loop: str) -> None:
    with hub_server(loop) as (srv, hub), contextlib.ExitStack() as stack:
        a, b, c = (client(srv, stack) for _ in range(3))
        assert ask(a, "sub news") == "subscribed news"
        assert ask(b, "sub news") == "subscribed news"
        assert ask(c, "sub sport") == "subscribed sport"
        assert ask(c, "presence news") == "presence news 2"
        c.send("pub news hello")                      # c is not subscribed: it gets only the reply
        assert c.recv(timeout=RECV) == "published 2"
        assert a.recv(timeout=RECV) == "hello" and b.recv(timeout=RECV) == "hello"
        c.send("pubbin news raw")                     # the type is kept
        assert c.recv(timeout=RECV) == "published 2"
        assert a.recv(timeout=RECV) == b"raw" and b.recv(timeout=RECV) == b"raw"
        assert ask(b, "unsub news") == "unsubscribed news"
        c.send("pub news again")
        assert c.recv(timeout=RECV) == "published 1"
        assert a.recv(timeout=RECV) == "again"
        assert nothing_pending(b)
        a.close()                                     # on_close: unsubscribe(self)
        deadline = time.monotonic() + RECV
        while srv.call(hub.local_presence, "news") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ask(c, "presence news") == "presence news 0"
        assert srv.call(hub.topics) == frozenset({"sport"})


def test_send_to_one_connection_by_id() -> None:
    with hub_server() as (srv, hub), contextlib.ExitStack() as stack:
        a, b = client(srv, stack), client(srv, stack)
        b_id = ask(b, "id").split()[1]
        assert b_id.startswith(hub.node_id + "-")
        assert ask(a, f"to {b_id} psst") == "sent True"
        assert b.recv(timeout=RECV) == "psst"
        assert nothing_pending(a)
        b.close()
        deadline = time.monotonic() + RECV
        while ask(a, f"to {b_id} late") != "sent False":   # its id is forgotten on close
            assert time.monotonic() < deadline


def test_a_publish_encodes_the_frame_once_for_every_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = memory.encode_message

    def counting(message: Any) -> bytes:
        calls.append(message)
        return real(message)

    monkeypatch.setattr(memory, "encode_message", counting)
    n = 20
    with hub_server() as (srv, hub), contextlib.ExitStack() as stack:
        clients = [client(srv, stack) for _ in range(n)]
        for ws in clients:
            assert ask(ws, "sub all") == "subscribed all"
        calls.clear()
        assert srv.call(hub.publish, "all", "x" * 300) == n
        assert calls == ["x" * 300]
        for ws in clients:
            assert ws.recv(timeout=RECV) == "x" * 300
        snap = srv.call(hub.snapshot)
        assert snap["delivered"] == n and snap["subscriptions"] == n and snap["topics"] == 1


def test_create_hub_urls() -> None:
    assert type(create_hub()) is MemoryHub
    assert type(create_hub("memory://")) is MemoryHub
    from fastsock.pubsub.redis import RedisHub
    assert isinstance(create_hub("redis://127.0.0.1:1"), RedisHub)
    with pytest.raises(ValueError, match="unknown pub/sub URL"):
        create_hub("kafka://x")
    with pytest.raises(ValueError, match="not a connection id"):
        MemoryHub().send_to("abc-def", "x")


@pytest.mark.timeout(60)
def test_a_subscriber_that_does_not_read_falls_under_its_slow_peer_policy() -> None:
    """Publishing to a topic never grows a stalled subscriber's buffer without
    bound: with slow_peer="drop" its messages are dropped and counted, and the
    subscribers that read get every message."""
    import socket

    from fastsock.websocket import WebSocketOptions
    from test_websocket_helpers import recv_head, status_of, upgrade_request

    hub = MemoryHub()
    options = WebSocketOptions(ping_interval=None, write_limit=64 << 10, slow_peer="drop")
    with ServerThread(lambda: Commands(hub), options=options) as srv, contextlib.ExitStack() as stack:
        srv.call(hub.start, srv.loop)
        reader = client(srv, stack)
        assert ask(reader, "sub feed") == "subscribed feed"
        stalled = stack.enter_context(socket.socket())
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # before connect: small window
        stalled.settimeout(RECV)
        stalled.connect(("127.0.0.1", srv.port))
        stalled.sendall(upgrade_request("/"))
        assert status_of(recv_head(stalled)[0]) == 101
        stalled.sendall(b"\x81\x88" + b"\x00\x00\x00\x00" + b"sub feed")   # masked text frame
        deadline = time.monotonic() + RECV
        while srv.call(hub.local_presence, "feed") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        chunk = "x" * 16_000
        total = 200                                  # 3.2 MB: far over what the socket buffers hold
        for i in range(total):
            srv.call(hub.publish, "feed", f"{i:04d}{chunk}")
            assert reader.recv(timeout=RECV) == f"{i:04d}{chunk}"
        handlers = srv.call(lambda: [h for h in srv.state.handlers if h is not None])
        dropped = srv.call(lambda: max(h.messages_dropped for h in handlers))
        buffered = srv.call(lambda: max(h.buffered_amount for h in handlers))
        assert dropped > 0                           # the stalled one's, counted
        assert buffered < 64 << 10 + 2 * 16_100      # bounded by write_limit (plus one message)


def test_one_connection_in_several_topics() -> None:
    with hub_server() as (srv, hub), contextlib.ExitStack() as stack:
        a, b = client(srv, stack), client(srv, stack)
        for topic in ("t1", "t2", "t3"):
            assert ask(a, f"sub {topic}") == f"subscribed {topic}"
        assert ask(b, "sub t2") == "subscribed t2"
        assert ask(a, "sub t2") == "subscribed t2"           # twice: no change
        assert srv.call(lambda: sorted(sorted(hub.topics(h)) for h in srv.state.handlers)) == [
            ["t1", "t2", "t3"], ["t2"]]
        assert ask(a, "unsub t2") == "unsubscribed t2"
        assert ask(a, "unsub t9") == "unsubscribed t9"       # not subscribed: nothing happens
        assert ask(b, "pub t2 x") == "x"                     # b is the only subscriber left
        assert b.recv(timeout=RECV) == "published 1"
        assert ask(b, "unsub t2") == "unsubscribed t2"
        assert srv.call(hub.topics) == frozenset({"t1", "t3"})
        assert ask(a, "unsub-all") == "unsubscribed all"
        assert srv.call(hub.topics) == frozenset()
        assert srv.call(hub.snapshot)["subscriptions"] == 0


@pytest.mark.parametrize("loop_kind", ["fastsock", "asyncio", "uvloop"])
@pytest.mark.timeout(60)
def test_coroutine_api_handlers_use_the_hub(loop_kind: str) -> None:
    """``async def handler(ws)`` subscribes its Connection, publishes what it
    receives, and unsubscribes in ``finally``; send_to reaches a Connection."""
    import asyncio
    import threading

    import fastsock

    hub = MemoryHub()
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def handler(ws: Any) -> None:
        hub.subscribe(ws, "room")
        try:
            async for message in ws:
                if message == "id":
                    await ws.send("id " + hub.connection_id(ws))
                elif message.startswith("to "):
                    _, target, text = message.split(" ", 2)
                    hub.send_to(target, text)
                else:
                    hub.publish("room", message)
        finally:
            hub.unsubscribe(ws)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hub.start(loop)
        async with fastsock.serve(handler, "127.0.0.1", 0) as server:
            box["port"], box["loop"], box["stop"] = server.port, loop, loop.create_future()
            ready.set()
            await box["stop"]

    def run() -> None:
        if loop_kind == "fastsock":
            fastsock.run(main())
        elif loop_kind == "uvloop":
            import uvloop
            uvloop.run(main())
        else:
            asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with contextlib.ExitStack() as stack:
            a, b = (stack.enter_context(connect(f"ws://127.0.0.1:{box['port']}/")) for _ in range(2))
            b_id = ask(b, "id").split()[1]
            deadline = time.monotonic() + RECV
            while hub.local_presence("room") < 2:       # read-only peek from this thread
                assert time.monotonic() < deadline
                time.sleep(0.01)
            a.send("hello")
            assert a.recv(timeout=RECV) == "hello" and b.recv(timeout=RECV) == "hello"
            a.send(f"to {b_id} just you")
            assert b.recv(timeout=RECV) == "just you"
            with pytest.raises(TimeoutError):
                a.recv(timeout=0.3)
        deadline = time.monotonic() + RECV
        while hub.local_presence("room"):               # the handlers' finally ran
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set_result, None)
        thread.join(10)


# -- hub.listen(topic): code that is not a connection ------------------------------------

@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_listen_iterator_and_callback_receive_local_publishes(loop: str) -> None:
    with hub_server(loop) as (srv, hub), contextlib.ExitStack() as stack:
        it, cb, pub = client(srv, stack), client(srv, stack), client(srv, stack)
        assert ask(it, "listen news") == "listening news"
        assert ask(cb, "listen-cb news") == "listening news"
        assert srv.call(hub.topics) == frozenset({"news"})   # a listener holds the topic
        assert srv.call(hub.local_presence, "news") == 0     # but is not a subscriber
        assert ask(pub, "pub news hello") == "published 0"
        assert it.recv(timeout=RECV) == "heard news hello"
        assert cb.recv(timeout=RECV) == "heard news hello"
        assert ask(pub, "pubbin news \x00\x01") == "published 0"
        assert it.recv(timeout=RECV) == "heard news bytes 0001"
        assert cb.recv(timeout=RECV) == "heard news bytes 0001"
        assert ask(it, "unlisten news") == "unlistened news"
        assert ask(pub, "pub news after") == "published 0"
        assert cb.recv(timeout=RECV) == "heard news after"
        assert nothing_pending(it)
        assert ask(cb, "unlisten news") == "unlistened news"
        assert srv.call(hub.topics) == frozenset()
        assert srv.call(lambda: hub.snapshot()["listened"]) == 5


def test_listen_queue_is_bounded_drops_the_oldest_and_ends_on_close() -> None:
    async def main() -> None:
        hub = MemoryHub()
        hub.start(asyncio.get_running_loop())
        listener = hub.listen("t", maxsize=3)
        for i in range(5):                 # nobody reads: the hub must not wait
            hub.publish("t", f"m{i}")
        assert listener.dropped == 2 and hub.snapshot()["listen_dropped"] == 2
        assert [await listener.get() for _ in range(3)] == ["m2", "m3", "m4"]
        got: list[Any] = []

        async def consume() -> None:
            async for message in listener:
                got.append(message)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        hub.publish("t", b"\x07")
        await asyncio.sleep(0)
        listener.close()                   # the iteration ends after what was queued
        await asyncio.wait_for(task, RECV)
        assert got == [b"\x07"]
        assert hub.topics() == frozenset()

    asyncio.run(main())


def test_a_failing_listener_callback_is_logged_and_delivery_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    hub = MemoryHub()
    heard: list[Any] = []

    def bad(message: Any) -> None:
        raise RuntimeError("boom")

    hub.listen("t", bad)
    hub.listen("t", heard.append)
    with caplog.at_level("ERROR", logger="fastsock.pubsub"):
        hub.publish("t", "x")
        hub.publish("t", "y")
    assert heard == ["x", "y"]
    assert caplog.text.count("listener of 't' failed") == 2


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frame_message_reads_back_what_encode_message_made(size: int) -> None:
    from fastsock.websocket.protocol import encode_message
    text = "é" * (size // 2) + "x" * (size % 2)
    assert memory.frame_message(encode_message(text)) == text
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert memory.frame_message(encode_message(data)) == data
