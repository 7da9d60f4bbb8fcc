"""The hub through a Redis Cluster with Redis 7's sharded pub/sub
(``SSUBSCRIBE``/``SPUBLISH``): ``redis+cluster://host:port[,host:port...]``.

Plain ``PUBLISH`` in a cluster is copied to every node over the cluster bus,
so its cost grows with the cluster. A sharded channel lives on the one
primary that owns its hash slot: ``SPUBLISH`` goes to that primary only and
reaches the processes subscribed there. Adding primaries spreads topics, and
so publishes, across them.

Everything else is :class:`~fastsock.pubsub.redis.RedisHub`'s (same wire
format, routing, batching, bounded queue and accounting); what differs:

- Publishing goes through redis-py's asyncio ``RedisCluster``: a batch is
  one cluster pipeline of ``SPUBLISH`` (plus the presence keys), which
  redis-py splits into one pipeline per primary.
- Subscribing: one connection per primary that owns a slot of a channel this
  process needs, each with its own reader task (messages are read as they
  arrive; redis-py's ``ClusterPubSub`` instead polls every node from one
  reader in turn, splitting its wait between them). Channels are grouped by
  hash slot, one ``SSUBSCRIBE`` per slot (a command may not span slots).
  The owner of a slot comes from redis-py's slot map; a ``MOVED`` reply or
  a ``sunsubscribe`` pushed by the server (its slot migrated) refreshes the
  map and subscribes on the new owner.
- Outage: a primary's connection retries with the same doubling back-off
  and re-subscribes its channels; the other primaries' connections stay
  up. Publishing resumes once every primary answers ``PING`` (as
  Redis itself refuses commands while a slot is uncovered, with its default
  ``cluster-require-full-coverage yes``): until then publishes are queued
  within ``max_queue``, oldest dropped and counted.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional
from urllib.parse import unquote

from .memory import Hub
from .redis import (
    _NETWORK_ERRORS, COMMAND_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_MAX_QUEUE, DEFAULT_PREFIX,
    PING_INTERVAL, RECONNECT_MAX, RECONNECT_MIN, RESUME_DELAY, RedisHub, _aclose_quietly, log)

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.crc import key_slot
    from redis.exceptions import MovedError, RedisClusterException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastsock.pubsub.redis_cluster needs redis-py: "
                      "pip install 'fastsock[redis]'") from exc

__all__ = ["CLUSTER_SCHEMES", "RedisClusterHub", "parse_cluster_url"]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379
_CLUSTER_ERRORS = (*_NETWORK_ERRORS, RedisClusterException)


class _Rerouted(Exception):
    """A slot of this shard's channels moved: subscribe again where it lives now."""


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster``
    for TLS) → the startup nodes and the connection options."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL: {url!r} (redis+cluster://host:port,...)")
    rest, _, query = rest.partition("?")
    rest, _, path = rest.partition("/")
    if path not in ("", "0") or query:
        raise ValueError(f"{url!r}: a Redis Cluster has database 0 only, and takes no options")
    userinfo, _, hosts = rest.rpartition("@")
    options: dict[str, Any] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if colon:
            options["password"] = unquote(password)
        if user:
            options["username"] = unquote(user)
    if scheme.lower() == "rediss+cluster":
        options["ssl"] = True
    nodes = []
    for item in hosts.split(","):
        if item.startswith("["):                       # [::1]:7000
            host, _, tail = item[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"{url!r}: a node without a host")
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{url!r}: bad port {port_text!r}") from None
        nodes.append((host, port))
    return nodes, options


def _by_slot(channels: set[bytes]) -> list[list[bytes]]:
    groups: dict[int, list[bytes]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel), []).append(channel)
    return list(groups.values())


@dataclass(eq=False)
class _Shard:
    """This process's subscriber connection to one primary."""
    name: str                              # "host:port", redis-py's node name
    client: Any
    wanted: set[bytes] = field(default_factory=set)
    subscribed: set[bytes] = field(default_factory=set)
    pubsub: Any = None
    closing: Any = None                    # its pubsub when the task was cancelled
    down_since: Optional[float] = None
    task: Optional["asyncio.Task[None]"] = None


class RedisClusterHub(RedisHub):
    """A hub whose topics span every process connected to the same Redis Cluster,
    through sharded pub/sub (see the module docstring; options as
    :class:`~fastsock.pubsub.redis.RedisHub`)."""

    _PUBLISH = "spublish"

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX,
                 max_queue: int = DEFAULT_MAX_QUEUE, reconnect_min: float = RECONNECT_MIN,
                 reconnect_max: float = RECONNECT_MAX, resume_delay: float = RESUME_DELAY,
                 ping_interval: float = PING_INTERVAL) -> None:
        super().__init__(url, prefix=prefix, max_queue=max_queue, reconnect_min=reconnect_min,
                         reconnect_max=reconnect_max, resume_delay=resume_delay,
                         ping_interval=ping_interval)
        self._nodes, self._options = parse_cluster_url(url)
        self._shards: dict[str, _Shard] = {}
        self._topology_stale = False
        self._router_down_since: Optional[float] = None
        self.stats.update({"shards": 0, "reroutes": 0})

    # -- life -----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        Hub.start(self, loop)
        # No retries inside redis-py: this hub owns reconnection and accounting.
        self._pub = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
            retry=Retry(NoBackoff(), 0), socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT, **self._options)
        self._tasks = [loop.create_task(self._publisher(), name="fastsock-pubsub-publisher"),
                       loop.create_task(self._router(), name="fastsock-pubsub-router")]
        self._resync.set()

    async def aclose(self) -> None:
        await super().aclose()
        for shard in list(self._shards.values()):
            await self._close_shard(shard)
        self._shards.clear()

    # -- hooks from RedisHub --------------------------------------------------------------
    async def _reachable(self) -> None:
        await self._pub.ping(target_nodes=RedisCluster.PRIMARIES)

    async def _get_many(self, keys: list[str]) -> list[Optional[bytes]]:
        return list(await self._pub.mget_nonatomic(keys))

    # -- routing channels to primaries ----------------------------------------------------
    async def _router(self) -> None:
        """Keep one subscriber connection per primary that owns a slot of a
        channel this process needs, each with the channels of its slots."""
        backoff = self.reconnect_min
        while True:
            await self._resync.wait()
            self._resync.clear()
            try:
                if self._topology_stale:
                    self._topology_stale = False
                    self.stats["reroutes"] += 1
                    await self._pub.nodes_manager.initialize()
                else:
                    await self._pub.initialize()      # once; later a no-op
                await self._route()
                if self._router_down_since is not None:
                    self._back("router", self._router_down_since, "slot map read")
                    self._router_down_since = None
                backoff = self.reconnect_min
            except asyncio.CancelledError:
                raise
            except Exception as exc:      # network errors; and a bug must not end routing
                if not isinstance(exc, _CLUSTER_ERRORS):
                    log.exception("pubsub: routing channels to cluster nodes failed; retrying")
                if self._router_down_since is None:
                    self._router_down_since = time.monotonic()
                    self._lost("router", exc)
                self._topology_stale = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.reconnect_max)
                self._resync.set()

    async def _route(self) -> None:
        nodes = self._pub.nodes_manager
        by_node: dict[str, set[bytes]] = {}
        for channel in self._wanted | {self._node_channel}:
            node = nodes.get_node_from_slot(key_slot(channel))
            by_node.setdefault(node.name, set()).add(channel)
        for name, channels in by_node.items():
            shard = self._shards.get(name)
            if shard is None:
                shard = self._open_shard(name)
            shard.wanted = channels
        for name, shard in list(self._shards.items()):
            if name not in by_node:
                del self._shards[name]          # nothing of ours lives there now
                await self._close_shard(shard)
                continue
            await self._sync(shard)
        for channel in [c for c in self._channel_topic if c not in self._wanted]:
            del self._channel_topic[channel]
        self.stats["shards"] = len(self._shards)

    def _open_shard(self, name: str) -> _Shard:
        host, _, port = name.rpartition(":")
        client = aioredis.Redis(host=host, port=int(port), retry=Retry(NoBackoff(), 0),
                                socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=None,
                                **self._options)
        shard = self._shards[name] = _Shard(name, client)
        assert self.loop is not None
        shard.task = self.loop.create_task(self._subscriber_of(shard),
                                           name=f"fastsock-pubsub-subscriber-{name}")
        self._tasks.append(shard.task)
        return shard

    async def _close_shard(self, shard: _Shard) -> None:
        task = shard.task
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, *_NETWORK_ERRORS):
                pass
            if task in self._tasks:
                self._tasks.remove(task)
        pubsub = shard.closing or shard.pubsub
        shard.pubsub = shard.closing = None
        if pubsub is not None:
            await _aclose_quietly(pubsub)
        await shard.client.aclose()

    async def _sync(self, shard: _Shard) -> None:
        """(Un)subscribe ``shard``'s connection to match its wanted channels."""
        pubsub = shard.pubsub
        if pubsub is None:
            return            # its subscriber subscribes to all on (re)connect
        add = shard.wanted - shard.subscribed
        remove = shard.subscribed - shard.wanted
        try:
            for group in _by_slot(add):
                await pubsub.ssubscribe(*group)
                shard.subscribed.update(group)
                self.stats["subscribes"] += len(group)
            for group in _by_slot(remove):
                shard.subscribed.difference_update(group)   # before the server's confirmation
                await pubsub.sunsubscribe(*group)
                self.stats["unsubscribes"] += len(group)
        except _NETWORK_ERRORS:
            pass              # its reader sees the broken connection and reconnects

    # -- one primary's subscriber ---------------------------------------------------------
    async def _subscriber_of(self, shard: _Shard) -> None:
        backoff = self.reconnect_min
        while True:
            pubsub = shard.client.pubsub()
            try:
                wanted = set(shard.wanted)
                for group in _by_slot(wanted):
                    await pubsub.ssubscribe(*group)
                shard.subscribed = wanted
                shard.pubsub = pubsub
                self.stats["subscribes"] += len(wanted)
                if shard.down_since is not None:
                    self._resubscribed(f"subscriber of {shard.name}", shard.down_since,
                                       f"re-subscribed to {len(wanted)} channels")
                    shard.down_since = None
                backoff = self.reconnect_min
                self._resync.set()       # channels added or removed meanwhile
                await self._read(pubsub, partial(self._on_shard_message, shard))
            except asyncio.CancelledError:
                shard.closing = pubsub
                shard.pubsub = None
                raise
            except (_Rerouted, MovedError) as exc:
                log.info("pubsub: a slot of %s moved (%s); reading the slot map again",
                         shard.name, exc)
                self._topology_stale = True
                self._resync.set()
            except _NETWORK_ERRORS as exc:
                if shard.down_since is None:
                    shard.down_since = time.monotonic()
                    self._lost(f"subscriber of {shard.name}", exc)
                    self._topology_stale = True    # a replica may take over: ask again
                    self._resync.set()
            except Exception:             # a bug must not end delivery: log, reconnect
                log.exception("pubsub: subscriber of %s failed; reconnecting", shard.name)
                if shard.down_since is None:
                    shard.down_since = time.monotonic()
            shard.pubsub = None
            shard.subscribed = set()
            backoff = await self._retry_after(pubsub, backoff)

    def _on_shard_message(self, shard: _Shard, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "smessage":
            self._on_message(msg["channel"], msg["data"])
        elif kind == "sunsubscribe" and msg["channel"] in shard.subscribed:
            # Not ours (ours leave `subscribed` first): the server dropped
            # the channel because its slot moved to another node.
            raise _Rerouted(msg["channel"].decode(errors="replace"))

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        shards = list(self._shards.values())
        out["shards"] = len(shards)
        out["connected"] = (self._pub_down_since is None and self._router_down_since is None
                            and bool(shards) and all(s.pubsub is not None for s in shards))
        return out
