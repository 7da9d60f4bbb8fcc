"""fastsock.pubsub.redis: two fastsock processes (tests/pubsub/hub_app.py, on
fastsock's reactor, each on its own port) share topics through a real
redis-server started on a free port; a Redis restart mid-test."""
from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

pytest.importorskip("redis")
import redis  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("hub_app.py")
RECV = 5.0
START_TIMEOUT = 20.0


class HubProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def client(self, stack: contextlib.ExitStack) -> ClientConnection:
        return stack.enter_context(connect(f"ws://127.0.0.1:{self.port}/"))

    def stats(self, ws: ClientConnection) -> dict[str, Any]:
        reply = ask(ws, "stats")
        assert reply.startswith("stats ")
        return dict(json.loads(reply[6:]))


@contextlib.contextmanager
def hub_process(url: str, *extra: str) -> Iterator[HubProcess]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, str(APP), url, *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().strip() if sel.select(START_TIMEOUT) else ""
        sel.close()
        m = re.fullmatch(r"ready (\d+)", line)
        assert m, f"no ready line: {line!r}"
        yield HubProcess(proc, int(m.group(1)))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def ask(ws: ClientConnection, command: str) -> Any:
    ws.send(command)
    return ws.recv(timeout=RECV)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s: {what}")
        time.sleep(0.02)


def numsub(r: "redis.Redis[bytes]", topic: str) -> int:
    return int(dict(r.pubsub_numsub(f"fastsock:t:{topic}"))[f"fastsock:t:{topic}".encode()])


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_two_processes_share_topics_routed_one_message_per_process(redis_process: Any) -> None:
    r = redis.Redis(port=redis_process.port)
    with hub_process(redis_process.url) as a, hub_process(redis_process.url) as b, \
            contextlib.ExitStack() as stack:
        a_clients = [a.client(stack) for _ in range(3)]
        b_clients = [b.client(stack) for _ in range(5)]
        for ws in a_clients + b_clients:
            assert ask(ws, "sub room") == "subscribed room"
        only_a = a.client(stack)
        assert ask(only_a, "sub a-only") == "subscribed a-only"
        # Routed: one Redis subscription per process holding the topic, not per connection;
        # b never subscribes to a topic none of its connections holds.
        wait_until(lambda: numsub(r, "room") == 2 and numsub(r, "a-only") == 1, 5,
                   "each process subscribed once")
        assert numsub(r, "nobody") == 0
        b_before = b.stats(b_clients[0])
        publisher = a.client(stack)                  # not subscribed itself
        assert ask(publisher, "pub room hello") == "published 3"
        for ws in a_clients + b_clients:
            assert ws.recv(timeout=RECV) == "hello"
        assert ask(publisher, "pubbin room \x00\x01") == "published 3"
        for ws in a_clients + b_clients:
            assert ws.recv(timeout=RECV) == b"\x00\x01"
        b_after = b.stats(b_clients[0])
        assert b_after["hiredis"] is True          # replies parsed by hiredis (the redis extra)
        # One Redis message per publish reached b, written to its 5 connections.
        assert b_after["received"] - b_before["received"] == 2
        assert b_after["delivered"] - b_before["delivered"] == 2 * 5
        # a delivered its 3 at once, and skips its own two messages when Redis echoes them.
        wait_until(lambda: a.stats(publisher)["own_skipped"] == 2, 5, "a skipped its echoes")
        assert ask(publisher, "sub room") == "subscribed room"
        wait_until(lambda: numsub(r, "room") == 2, 5, "still 2 subscriptions")
        assert ask(publisher, "pub room once") == "once"      # delivered before the reply
        assert publisher.recv(timeout=RECV) == "published 4"
        for ws in a_clients + b_clients:
            assert ws.recv(timeout=RECV) == "once"
        wait_until(lambda: a.stats(publisher)["own_skipped"] == 3, 5, "a skipped its echo")
        assert a.stats(publisher)["redis_published"] >= 3
        # presence counts every process's subscribers (each process writes its own
        # count one round trip after a change: poll)
        wait_until(lambda: ask(only_a, "presence room") == "presence room 9", 5, "presence 9")
        assert ask(b_clients[0], "presence a-only") == "presence a-only 1"
        # send_to reaches a connection held by the other process
        target = ask(b_clients[4], "id").split()[1]
        assert ask(only_a, f"to {target} direct") == "sent True"
        assert b_clients[4].recv(timeout=RECV) == "direct"
        # When b's last subscriber leaves, b unsubscribes in Redis
        for ws in b_clients:
            assert ask(ws, "unsub-all") == "unsubscribed all"
        wait_until(lambda: numsub(r, "room") == 1, 5, "b unsubscribed")
        wait_until(lambda: ask(only_a, "presence room") == "presence room 4", 5, "presence 4")


@pytest.mark.needs_redis
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_redis_restart_resubscribes_and_counts_what_was_dropped(redis_process: Any) -> None:
    queue = 3
    with hub_process(redis_process.url, "--max-queue", str(queue)) as a, \
            hub_process(redis_process.url) as b, contextlib.ExitStack() as stack:
        pub, local = a.client(stack), a.client(stack)
        remote = b.client(stack)
        assert ask(local, "sub t") == "subscribed t"
        assert ask(remote, "sub t") == "subscribed t"
        r = redis.Redis(port=redis_process.port)
        wait_until(lambda: numsub(r, "t") == 2, 5, "both subscribed")
        assert ask(pub, "pub t before") == "published 1"
        assert local.recv(timeout=RECV) == "before" and remote.recv(timeout=RECV) == "before"

        redis_process.stop()
        wait_until(lambda: not a.stats(pub)["connected"] and not b.stats(remote)["connected"],
                   15, "both processes saw the outage")
        during = [f"during-{i}" for i in range(5)]
        for text in during:                        # local delivery goes on
            assert ask(pub, f"pub t {text}") == "published 1"
            assert local.recv(timeout=RECV) == text
        stats = a.stats(pub)
        assert stats["dropped"] == len(during) - queue   # the oldest beyond the bound
        assert stats["queued"] == queue

        redis_process.start()                      # same port, empty: no subscriptions
        wait_until(lambda: numsub(r, "t") == 2, 20, "both re-subscribed")
        # the queued (newest) ones arrive, in order; the dropped ones never do
        got = [remote.recv(timeout=15) for _ in range(queue)]
        assert got == during[-queue:]
        assert ask(pub, "pub t after") == "published 1"
        assert local.recv(timeout=RECV) == "after" and remote.recv(timeout=RECV) == "after"
        with pytest.raises(TimeoutError):
            remote.recv(timeout=0.5)
        assert a.stats(pub)["dropped"] == len(during) - queue
        assert b.stats(remote)["reconnects"] >= 1
        wait_until(lambda: ask(pub, "presence t") == "presence t 2", 10,
                   "presence re-written into the new Redis")
        for process in (a, b):
            process.proc.terminate()
            process.proc.wait(10)
        assert a.proc.stderr is not None and b.proc.stderr is not None
        a_log, b_log = a.proc.stderr.read(), b.proc.stderr.read()
    # the outage is logged once per connection and per process, with what was dropped
    assert re.search(r"publisher lost Redis at redis://127\.0\.0\.1:\d+", a_log), a_log
    assert "publish queue full (3 messages)" in a_log
    assert re.search(r"publisher reconnected to Redis .*: 3 queued messages to send, "
                     r"2 dropped during the outage", a_log), a_log
    assert re.search(r"subscriber reconnected to Redis .*: re-subscribed to 1 topics", b_log), b_log
    assert "Traceback" not in a_log + b_log


COROUTINE_APP = Path(__file__).with_name("coroutine_hub_app.py")


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_a_coroutine_api_process_and_a_callback_api_process_share_a_topic(redis_process: Any) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, str(COROUTINE_APP), redis_process.url], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().strip() if sel.select(START_TIMEOUT) else ""
        sel.close()
        m = re.fullmatch(r"ready (\d+)", line)
        assert m, line
        r = redis.Redis(port=redis_process.port)
        with hub_process(redis_process.url) as callback_side, contextlib.ExitStack() as stack:
            cb = callback_side.client(stack)
            assert ask(cb, "sub room") == "subscribed room"
            co = stack.enter_context(connect(f"ws://127.0.0.1:{m.group(1)}/"))
            wait_until(lambda: numsub(r, "room") == 2, 5, "both processes subscribed")
            co.send("from the coroutine side")
            assert co.recv(timeout=RECV) == "from the coroutine side"   # its own subscriber too
            assert cb.recv(timeout=RECV) == "from the coroutine side"
            assert ask(cb, "pubbin room \x01\x02") == b"\x01\x02"   # delivered before the reply
            assert cb.recv(timeout=RECV) == "published 1"
            assert co.recv(timeout=RECV) == b"\x01\x02"
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
def test_listen_receives_another_processes_publishes_through_redis(redis_process: Any) -> None:
    r = redis.Redis(port=redis_process.port)
    with hub_process(redis_process.url) as a, hub_process(redis_process.url) as b, \
            contextlib.ExitStack() as stack:
        pub, listening = a.client(stack), b.client(stack)
        assert ask(listening, "listen feed") == "listening feed"
        # a listener alone makes b subscribe in Redis (and a, with none, does not)
        wait_until(lambda: numsub(r, "feed") == 1, 5, "b subscribed for its listener")
        big = "x" * 70_000                         # the frame's 8-byte length form
        assert ask(pub, "pub feed hello") == "published 0"
        assert ask(pub, "pubbin feed \x00\x01") == "published 0"
        assert ask(pub, f"pub feed {big}") == "published 0"
        assert listening.recv(timeout=RECV) == "heard feed hello"
        assert listening.recv(timeout=RECV) == "heard feed bytes 0001"
        assert listening.recv(timeout=RECV) == f"heard feed {big}"
        stats = b.stats(listening)
        assert stats["received"] == 3 and stats["listened"] == 3
        assert ask(listening, "unlisten feed") == "unlistened feed"
        wait_until(lambda: numsub(r, "feed") == 0, 5, "b unsubscribed")
