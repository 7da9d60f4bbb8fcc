"""fastsock.pubsub.redis_cluster: two fastsock processes (tests/pubsub/hub_app.py)
share topics through a real 3-primary Redis Cluster with sharded pub/sub
(SSUBSCRIBE/SPUBLISH), started by the test; a primary restarted mid-test."""
from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

pytest.importorskip("redis")
import redis  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402
from test_hub_redis import RECV, ask, hub_process, wait_until  # noqa: E402

from fastsock.pubsub import create_hub  # noqa: E402
from fastsock.pubsub.redis_cluster import RedisClusterHub, parse_cluster_url  # noqa: E402


def channel(topic: str) -> str:
    return f"fastsock:t:{topic}"


def owner_port(cluster: Any, topic: str) -> int:
    rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cluster.nodes[0].port)])
    try:
        return int(rc.get_node_from_key(channel(topic)).port)
    finally:
        rc.close()


def shardnumsub(port: int, topic: str) -> int:
    """Subscribers of the topic's sharded channel on the node ``port``."""
    reply = redis.Redis(port=port).execute_command("PUBSUB", "SHARDNUMSUB", channel(topic))
    return int(reply[1])


def command_calls(port: int, name: str) -> int:
    stats = redis.Redis(port=port).info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def topics_on_two_nodes(cluster: Any) -> tuple[str, str]:
    """Two topics whose channels live on different primaries."""
    first = "room"
    port = owner_port(cluster, first)
    for i in range(100):
        other = f"room{i}"
        if owner_port(cluster, other) != port:
            return first, other
    raise AssertionError("every topic on one node")


def test_cluster_urls() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002") == (
        [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)], {})
    assert parse_cluster_url("rediss+cluster://me:s%40cret@h:7000/0") == (
        [("h", 7000)], {"username": "me", "password": "s@cret", "ssl": True})
    with pytest.raises(ValueError, match="database 0 only"):
        parse_cluster_url("redis+cluster://h:7000/3")
    with pytest.raises(ValueError, match="bad port"):
        parse_cluster_url("redis+cluster://h:x")
    assert isinstance(create_hub("redis+cluster://127.0.0.1:7000"), RedisClusterHub)


@pytest.mark.needs_redis
@pytest.mark.timeout(90)
def test_two_processes_share_topics_through_sharded_pubsub(redis_cluster: Any) -> None:
    room, other = topics_on_two_nodes(redis_cluster)
    room_port, other_port = owner_port(redis_cluster, room), owner_port(redis_cluster, other)
    ports = [n.port for n in redis_cluster.nodes]
    with hub_process(redis_cluster.url) as a, hub_process(redis_cluster.url) as b, \
            contextlib.ExitStack() as stack:
        a_clients = [a.client(stack) for _ in range(2)]
        b_clients = [b.client(stack) for _ in range(4)]
        for ws in a_clients + b_clients:
            assert ask(ws, f"sub {room}") == f"subscribed {room}"
        b_other = b.client(stack)
        assert ask(b_other, f"sub {other}") == f"subscribed {other}"
        # Routed and sharded: one subscription per process holding the topic, on
        # the primary that owns its slot only; a never subscribes to `other`.
        wait_until(lambda: shardnumsub(room_port, room) == 2, 10, "both processes on room")
        wait_until(lambda: shardnumsub(other_port, other) == 1, 10, "b alone on other")
        assert all(shardnumsub(p, room) == 0 for p in ports if p != room_port)
        assert shardnumsub(other_port, "nobody") == 0
        publish_before = sum(command_calls(p, "publish") for p in ports)
        b_before = b.stats(b_clients[0])
        publisher = a.client(stack)
        assert ask(publisher, f"pub {room} hello") == "published 2"
        for ws in a_clients + b_clients:
            assert ws.recv(timeout=RECV) == "hello"
        assert ask(publisher, f"pubbin {room} \x00\x01") == "published 2"
        for ws in a_clients + b_clients:
            assert ws.recv(timeout=RECV) == b"\x00\x01"
        assert ask(publisher, f"pub {other} there") == "published 0"
        assert b_other.recv(timeout=RECV) == "there"
        b_after = b.stats(b_clients[0])
        # One Redis message per publish reached b, written to its 4 connections.
        assert b_after["received"] - b_before["received"] == 3
        assert b_after["delivered"] - b_before["delivered"] == 2 * 4 + 1
        assert b_after["shards"] >= 2 and b_after["connected"] is True
        wait_until(lambda: a.stats(publisher)["own_skipped"] == 2, 5, "a skipped its echoes")
        # SPUBLISH to the owning primary, never a cluster-wide PUBLISH
        assert command_calls(room_port, "spublish") >= 2
        assert command_calls(other_port, "spublish") >= 1
        assert sum(command_calls(p, "publish") for p in ports) == publish_before
        # presence across processes (keys on several primaries), send_to across processes
        wait_until(lambda: ask(publisher, f"presence {room}") == f"presence {room} 6", 10,
                   "presence 6")
        target = ask(b_clients[3], "id").split()[1]
        assert ask(publisher, f"to {target} direct") == "sent True"
        assert b_clients[3].recv(timeout=RECV) == "direct"
        # a listener in a receives `other` from b through the cluster
        listening = a.client(stack)
        assert ask(listening, f"listen {other}") == f"listening {other}"
        wait_until(lambda: shardnumsub(other_port, other) == 2, 10, "a subscribed for its listener")
        assert ask(b_other, f"pub {other} to-listener") == "to-listener"   # b_other's own copy
        assert b_other.recv(timeout=RECV) == "published 1"
        assert listening.recv(timeout=RECV) == f"heard {other} to-listener"
        # the last subscriber in b leaves: b unsubscribes on that primary
        for ws in b_clients:
            assert ask(ws, "unsub-all") == "unsubscribed all"
        wait_until(lambda: shardnumsub(room_port, room) == 1, 10, "b left room")


@pytest.mark.needs_redis
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_primary_restart_resubscribes_and_counts_what_was_dropped(redis_cluster: Any) -> None:
    queue = 3
    topic = "t"
    port = owner_port(redis_cluster, topic)
    node = redis_cluster.node(port)
    with hub_process(redis_cluster.url, "--max-queue", str(queue)) as a, \
            hub_process(redis_cluster.url) as b, contextlib.ExitStack() as stack:
        pub, local = a.client(stack), a.client(stack)
        remote = b.client(stack)
        assert ask(local, f"sub {topic}") == f"subscribed {topic}"
        assert ask(remote, f"sub {topic}") == f"subscribed {topic}"
        wait_until(lambda: shardnumsub(port, topic) == 2, 10, "both subscribed")
        assert ask(pub, f"pub {topic} before") == "published 1"
        assert local.recv(timeout=RECV) == "before" and remote.recv(timeout=RECV) == "before"

        node.stop()                                # the primary that owns the topic's slot
        wait_until(lambda: not b.stats(remote)["connected"], 15, "b saw the outage")
        during = [f"during-{i}" for i in range(5)]
        for text in during:                        # local delivery goes on
            assert ask(pub, f"pub {topic} {text}") == "published 1"
            assert local.recv(timeout=RECV) == text
        wait_until(lambda: a.stats(pub)["queued"] == queue, 10, "a queued within its bound")
        # A batch already handed to the cluster client when the node went
        # away is counted once its send fails (it may still be retrying).
        wait_until(lambda: a.stats(pub)["dropped"] == len(during) - queue, 15,
                   "a counted what it dropped")
        assert a.stats(pub)["queued"] == queue

        node.start()                               # same port, same cluster config, no subscriptions
        redis_cluster.wait_ok()
        wait_until(lambda: shardnumsub(port, topic) == 2, 30, "both re-subscribed")
        got = [remote.recv(timeout=20) for _ in range(queue)]
        assert got == during[-queue:]              # the newest, in order; the dropped never
        assert ask(pub, f"pub {topic} after") == "published 1"
        assert local.recv(timeout=RECV) == "after" and remote.recv(timeout=RECV) == "after"
        with pytest.raises(TimeoutError):
            remote.recv(timeout=0.5)
        assert a.stats(pub)["dropped"] == len(during) - queue
        assert b.stats(remote)["reconnects"] >= 1
        wait_until(lambda: ask(pub, f"presence {topic}") == f"presence {topic} 2", 15,
                   "presence written again")
        for process in (a, b):
            process.proc.terminate()
            process.proc.wait(10)
        assert a.proc.stderr is not None and b.proc.stderr is not None
        a_log, b_log = a.proc.stderr.read(), b.proc.stderr.read()
    assert "publish queue full (3 messages)" in a_log
    assert re.search(r"publisher reconnected to Redis .*: 3 queued messages to send, "
                     r"2 dropped during the outage", a_log), a_log
    assert re.search(rf"subscriber of 127\.0\.0\.1:{port} reconnected to Redis .*: "
                     rf"re-subscribed to \d+ channels", b_log), b_log
    assert "Traceback" not in a_log + b_log


@pytest.mark.needs_redis
@pytest.mark.timeout(90)
def test_serve_broadcast_with_two_workers_through_the_cluster(redis_cluster: Any) -> None:
    """The CLI: ``serve broadcast --workers 2 --pubsub redis+cluster://...``;
    connections spread over both workers, each message reaches all of them."""
    import psutil
    from test_apps_pubsub import serve
    from websockets.sync.client import connect

    port_owner = owner_port(redis_cluster, "broadcast")
    with serve("broadcast", "--workers", "2", "--pubsub", redis_cluster.url) as (proc, port), \
            contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(12)]
        workers = {c.pid for c in psutil.Process(proc.pid).children()}
        held = {c.pid for c in psutil.net_connections("tcp")
                if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED}
        assert held == workers and len(workers) == 2
        wait_until(lambda: shardnumsub(port_owner, "broadcast") == 2, 10, "both workers subscribed")
        for i, sender in enumerate(clients[:3]):
            sender.send(f"from {i}")
            for ws in clients:
                assert ws.recv(timeout=RECV) == f"from {i}"


@pytest.mark.needs_redis
@pytest.mark.timeout(90)
def test_a_migrated_slot_moves_the_subscription_to_its_new_owner(redis_cluster: Any) -> None:
    """CLUSTER SETSLOT moves the topic's (empty) slot to another primary: the
    old owner pushes sunsubscribe, the hub re-reads the slot map and
    subscribes on the new owner, and delivery goes on."""
    from redis.crc import key_slot

    topic = "mig"
    src = owner_port(redis_cluster, topic)
    dst = next(n.port for n in redis_cluster.nodes if n.port != src)
    slot = key_slot(channel(topic).encode())
    with hub_process(redis_cluster.url) as a, hub_process(redis_cluster.url) as b, \
            contextlib.ExitStack() as stack:
        pub, remote = a.client(stack), b.client(stack)
        assert ask(remote, f"sub {topic}") == f"subscribed {topic}"
        wait_until(lambda: shardnumsub(src, topic) == 1, 10, "b subscribed on the owner")
        assert ask(pub, f"pub {topic} one") == "published 0"
        assert remote.recv(timeout=RECV) == "one"
        ids = {n.port: redis.Redis(port=n.port).execute_command("CLUSTER", "MYID").decode()
               for n in redis_cluster.nodes}
        redis.Redis(port=dst).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        redis.Redis(port=src).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        for port in (dst, src, *(p for p in ids if p not in (src, dst))):
            redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        wait_until(lambda: shardnumsub(dst, topic) == 1, 15, "b subscribed on the new owner")
        assert shardnumsub(src, topic) == 0
        assert b.stats(remote)["reroutes"] >= 1
        assert ask(pub, f"pub {topic} two") == "published 0"
        assert remote.recv(timeout=RECV) == "two"


@pytest.mark.needs_redis
@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_a_stopped_app_closes_its_cluster_hub_cleanly(redis_cluster: Any, loop: str) -> None:
    """SIGTERM: the per-primary subscriber tasks and the cluster client close
    before the loop does, and the process takes its presence and liveness
    keys out of the cluster."""
    import time

    from test_apps_pubsub import serve
    from websockets.sync.client import connect

    rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", redis_cluster.nodes[0].port)])
    try:
        with serve("chat", "--pubsub", redis_cluster.url, "--loop", loop) as (proc, port):
            with connect(f"ws://127.0.0.1:{port}/chat/room") as ws:
                assert ws.recv(timeout=RECV).endswith("joined (1 here)")
                deadline = time.monotonic() + RECV
                while not (rc.keys("fastsock:alive:*", target_nodes=RedisCluster.ALL_NODES)
                           and rc.hvals("fastsock:p:chat:room")):
                    assert time.monotonic() < deadline, "presence never written"
                    time.sleep(0.05)
                proc.send_signal(15)
                assert proc.wait(20) == 0
            assert proc.stderr is not None
            log = proc.stderr.read()
        assert "Traceback" not in log and "Task was destroyed" not in log, log
        assert rc.keys("fastsock:alive:*", target_nodes=RedisCluster.ALL_NODES) == []
        assert rc.hvals("fastsock:p:chat:room") == [], log
    finally:
        rc.close()
