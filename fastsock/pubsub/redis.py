"""The hub across processes and hosts, through Redis pub/sub (redis-py's asyncio
client with hiredis, on whatever loop the hub runs on: fastsock's reactor too).

Routing and wire format (``prefix`` defaults to ``fastsock:``):

- ``{prefix}t:{topic}``: a process SUBSCRIBEs only while one of its own
  connections holds the topic. A publish is ONE Redis message, whatever the
  number of subscribers: ``node (8 bytes) + sent at (8 bytes, the
  publisher's wall clock, a big-endian double) + frame``, where ``frame`` is
  the WebSocket frame encoded once by the publisher; the receiver's clock
  minus "sent at" is the pub/sub lag (``lag``, a histogram; across hosts it
  includes their clock difference). A receiving process writes
  that frame as it is to its local subscribers (no decoding, no
  re-encoding); its own messages come back from Redis and are skipped by
  the node prefix (it delivered locally at once).
- ``{prefix}n:{node}``: each process's own channel for :meth:`send_to`:
  ``connection number (8 bytes, big-endian) + frame``.
- ``{prefix}p:{topic}``: a hash, node → local subscriber count;
  ``{prefix}alive:{node}`` expires unless the process refreshes it, so the
  counts of a dead process stop counting.

Publishes are batched without waiting: whatever was published while the
previous batch was on the wire goes out as one pipeline (one write, one
round trip).

Failure: when Redis is unreachable both connections retry with a doubling
back-off (``reconnect_min`` .. ``reconnect_max``) and re-subscribe to every
topic. Meanwhile publishes are queued up to ``max_queue`` messages; beyond
that the OLDEST is dropped and counted (``stats["dropped"]``), with one
warning per outage and a summary when Redis is back. Queued messages are
sent ``resume_delay`` seconds after reconnecting, so that other processes
have re-subscribed by then (Redis pub/sub keeps nothing for a process that
is not subscribed at the moment of the publish). A batch that was on the
wire when the connection broke is sent again (``stats["resent"]``): if
Redis had processed part of it, those messages arrive twice. Local delivery
never waits for Redis and goes on during an outage.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from typing import Any, Callable, Optional

from ..server import Histogram
from .memory import NODE_ID_BYTES, Hub

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.utils import HIREDIS_AVAILABLE
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastsock.pubsub.redis needs redis-py: pip install 'fastsock[redis]'") from exc

__all__ = ["RedisHub"]

log = logging.getLogger("fastsock.pubsub")

DEFAULT_PREFIX = "fastsock:"
# A topic message: node id, the publisher's time.time() as a big-endian double, the frame.
_SENT_AT = struct.Struct(">d")
_FRAME_AT = NODE_ID_BYTES + _SENT_AT.size
# Histogram bounds (seconds) of the pub/sub lag: a Redis round trip is about
# a tenth of a millisecond on one host; an outage's queue drains in seconds.
PUBSUB_LAG_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                      0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DEFAULT_MAX_QUEUE = 10_000     # messages kept while Redis is unreachable
BATCH_MAX = 1_000              # commands in one pipeline
RECONNECT_MIN = 0.1            # seconds before the first reconnect attempt
RECONNECT_MAX = 2.0            # cap of the doubling back-off
RESUME_DELAY = RECONNECT_MAX   # after an outage, wait for the others to re-subscribe
PING_INTERVAL = 5.0            # a silent subscriber connection is PINGed after this
ALIVE_TTL = 30                 # seconds a process's presence counts without a refresh
ALIVE_REFRESH = ALIVE_TTL / 3
CONNECT_TIMEOUT = 2.0
CLEANUP_ATTEMPTS = 2           # aclose(): removing our presence from Redis
COMMAND_TIMEOUT = 5.0
_NETWORK_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


async def _aclose_quietly(pubsub: Any) -> None:
    """Close a pub/sub connection that may already be broken."""
    try:
        await pubsub.aclose()
    except _NETWORK_ERRORS:
        pass


class RedisHub(Hub):
    """A hub whose topics span every process connected to the same Redis."""

    _PUBLISH = "publish"      # the pipeline method that publishes (SPUBLISH for a cluster)

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX,
                 max_queue: int = DEFAULT_MAX_QUEUE, reconnect_min: float = RECONNECT_MIN,
                 reconnect_max: float = RECONNECT_MAX, resume_delay: float = RESUME_DELAY,
                 ping_interval: float = PING_INTERVAL) -> None:
        super().__init__()
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.url = url
        self.prefix = prefix
        self.max_queue = max_queue
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.resume_delay = resume_delay
        self.ping_interval = ping_interval
        self._node_channel = f"{prefix}n:{self.node_id}".encode()
        self.lag = Histogram(PUBSUB_LAG_BUCKETS)   # publish (other process) -> delivery here
        self._alive_key = f"{prefix}alive:{self.node_id}"
        self._queue: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._presence_dirty: set[str] = set()
        self._presence_written: set[str] = set()     # topics with our count in Redis
        self._wanted: set[bytes] = set()              # topic channels we need
        self._subscribed: set[bytes] = set()          # topic channels Redis has from us
        self._channel_topic: dict[bytes, str] = {}
        self._wake = asyncio.Event()                  # publisher: something to send
        self._resync = asyncio.Event()                # subscriber: wanted != subscribed
        self._pubsub: Any = None
        self._closing_pubsub: Any = None              # the subscriber's, when it was cancelled
        self._pub: Any = None
        self._sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pub_down_since: Optional[float] = None
        self._sub_down_since: Optional[float] = None
        self._dropped_in_outage = 0
        self._alive_due = 0.0
        self.stats.update({"redis_published": 0, "batches": 0, "received": 0, "own_skipped": 0,
                           "dropped": 0, "resent": 0, "reconnects": 0,
                           "subscribes": 0, "unsubscribes": 0})

    # -- life -----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        super().start(loop)
        # No retries inside redis-py: this hub owns reconnection and accounting.
        common: dict[str, Any] = {"retry": Retry(NoBackoff(), 0),
                                  "socket_connect_timeout": CONNECT_TIMEOUT}
        self._pub = aioredis.Redis.from_url(self.url, socket_timeout=COMMAND_TIMEOUT, **common)
        self._sub = aioredis.Redis.from_url(self.url, socket_timeout=None, **common)
        self._tasks = [loop.create_task(self._publisher(), name="fastsock-pubsub-publisher"),
                       loop.create_task(self._subscriber(), name="fastsock-pubsub-subscriber"),
                       loop.create_task(self._syncer(), name="fastsock-pubsub-sync")]

    def close(self) -> None:
        """Cancel the hub's tasks; each ends in its next step without awaiting
        anything, so a loop that stops right after has no pending task. Their
        Redis connections are closed by the loop's shutdown (fastsock's
        reactor) or by :meth:`aclose`."""
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Stop, and take this process's presence out of Redis (best effort)."""
        self.close()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, *_NETWORK_ERRORS):
                pass
        self._tasks = []
        pubsub, self._closing_pubsub = self._closing_pubsub or self._pubsub, None
        if pubsub is not None:
            await _aclose_quietly(pubsub)
        # Two tries: a loop's shutdown may have closed the pooled connection
        # under redis-py, which notices on the first use and reconnects.
        for _ in range(CLEANUP_ATTEMPTS if self._pub is not None else 0):
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    pipe = self._pub.pipeline(transaction=False)
                    # the connections are gone by now: remove every count we wrote
                    for topic in self._presence_written | set(self._topics):
                        pipe.hdel(self._presence_key(topic), self.node_id)
                    pipe.delete(self._alive_key)
                    await pipe.execute()
                self._presence_written.clear()
                break
            except _NETWORK_ERRORS:
                continue
        for client in (self._pub, self._sub):
            if client is not None:
                await client.aclose()

    # -- hooks from Hub -------------------------------------------------------------------
    def _topic_channel(self, topic: str) -> bytes:
        return f"{self.prefix}t:{topic}".encode()

    def _presence_key(self, topic: str) -> str:
        return f"{self.prefix}p:{topic}"

    def _remote_topic_added(self, topic: str) -> None:
        channel = self._topic_channel(topic)
        self._wanted.add(channel)
        self._channel_topic[channel] = topic
        self._resync.set()

    def _remote_topic_removed(self, topic: str) -> None:
        self._wanted.discard(self._topic_channel(topic))
        self._resync.set()

    def _remote_presence_changed(self, topic: str) -> None:
        self._presence_dirty.add(topic)
        self._wake.set()

    def _remote_publish(self, topic: str, frame: bytes) -> None:
        self._enqueue(self._topic_channel(topic), self.node + _SENT_AT.pack(time.time()) + frame)

    def _remote_send(self, node: str, number: int, frame: bytes) -> bool:
        self._enqueue(f"{self.prefix}n:{node}".encode(), number.to_bytes(8, "big") + frame)
        return True

    def _enqueue(self, channel: bytes, payload: bytes) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            queue.popleft()
            self._count_drop(1)
        queue.append((channel, payload))
        self._wake.set()

    def _count_drop(self, n: int) -> None:
        self.stats["dropped"] += n
        if self._dropped_in_outage == 0:
            log.warning("pubsub: publish queue full (%d messages) while Redis at %s is "
                        "unreachable: dropping the oldest", self.max_queue, self.url)
        self._dropped_in_outage += n

    # -- hooks for a cluster (redis_cluster.py) --------------------------------------------
    async def _reachable(self) -> None:
        """Raise unless Redis answers (the publisher's test before it resumes)."""
        await self._pub.ping()

    async def _get_many(self, keys: list[str]) -> list[Optional[bytes]]:
        return list(await self._pub.mget(keys))

    # -- presence -------------------------------------------------------------------------
    async def presence(self, topic: str) -> int:
        """Subscribers in every live process; this process's own count when Redis
        is unreachable."""
        local = self.local_presence(topic)
        if self._pub is None:
            return local
        try:
            key = self._presence_key(topic)
            fields = await self._pub.hgetall(key)
            others = [node for node in fields if node.decode() != self.node_id]
            if not others:
                return local
            alive = await self._get_many([f"{self.prefix}alive:{n.decode()}" for n in others])
            total, dead = local, []
            for node, flag in zip(others, alive):
                if flag is None:
                    dead.append(node)
                else:
                    total += int(fields[node])
            if dead:                      # a process that died without cleaning up
                await self._pub.hdel(key, *dead)
            return total
        except _NETWORK_ERRORS:
            return local

    # -- publisher ------------------------------------------------------------------------
    async def _publisher(self) -> None:
        backoff = self.reconnect_min
        while True:
            if not (self._queue or self._presence_dirty):
                try:
                    async with asyncio.timeout(max(0.0, self._alive_due - time.monotonic())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            try:
                if self._pub_down_since is not None:
                    await self._reachable()
                    self._presence_dirty |= set(self._topics)   # Redis may have restarted empty
                    self._alive_due = 0.0
                    await asyncio.sleep(self.resume_delay)
                    self._back("publisher", self._pub_down_since,
                               f"{len(self._queue)} queued messages to send, "
                               f"{self._dropped_in_outage} dropped during the outage")
                    self._pub_down_since = None
                    self._dropped_in_outage = 0
                await self._flush()
                backoff = self.reconnect_min
            except asyncio.CancelledError:
                raise
            except Exception as exc:      # network errors; and a bug must not end publishing
                if not isinstance(exc, _NETWORK_ERRORS):
                    log.exception("pubsub: publisher failed; retrying")
                if self._pub_down_since is None:
                    self._pub_down_since = time.monotonic()
                    self._lost("publisher", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.reconnect_max)

    async def _flush(self) -> None:
        """Send everything queued, in pipelines of up to BATCH_MAX commands."""
        queue = self._queue
        while queue or self._presence_dirty or time.monotonic() >= self._alive_due:
            pipe = self._pub.pipeline(transaction=False)
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH_MAX))]
            publish = getattr(pipe, self._PUBLISH)
            for channel, payload in batch:
                publish(channel, payload)
            dirty, self._presence_dirty = self._presence_dirty, set()
            removed = []
            for topic in dirty:
                count = self.local_presence(topic)
                if count:
                    pipe.hset(self._presence_key(topic), self.node_id, count)
                    # before the reply: a count may be in Redis once the command is sent
                    self._presence_written.add(topic)
                else:
                    pipe.hdel(self._presence_key(topic), self.node_id)
                    removed.append(topic)
            refresh = time.monotonic() >= self._alive_due
            if refresh:
                pipe.set(self._alive_key, b"1", ex=ALIVE_TTL)
            try:
                await pipe.execute()
            except BaseException:
                # Its fate is unknown: send it again after reconnecting (first, in order).
                self.stats["resent"] += len(batch)
                room = self.max_queue - len(queue)
                if len(batch) > room:
                    self._count_drop(len(batch) - room)
                    batch = batch[len(batch) - room:] if room > 0 else []
                queue.extendleft(reversed(batch))
                self._presence_dirty |= dirty
                raise
            # only now: an HDEL that never ran must be retried by aclose()
            self._presence_written.difference_update(removed)
            if refresh:
                self._alive_due = time.monotonic() + ALIVE_REFRESH
            if batch:
                self.stats["batches"] += 1
                self.stats["redis_published"] += len(batch)

    # -- subscriber -----------------------------------------------------------------------
    async def _subscriber(self) -> None:
        backoff = self.reconnect_min
        while True:
            pubsub = self._sub.pubsub()
            try:
                wanted = set(self._wanted)
                await pubsub.subscribe(self._node_channel, *wanted)
                self._subscribed = wanted
                self._pubsub = pubsub
                self.stats["subscribes"] += len(wanted)
                if self._sub_down_since is not None:
                    self._resubscribed("subscriber", self._sub_down_since,
                                       f"re-subscribed to {len(wanted)} topics")
                    self._sub_down_since = None
                backoff = self.reconnect_min
                self._resync.set()       # topics added or removed meanwhile
                await self._read(pubsub, self._on_pubsub_message)
            except asyncio.CancelledError:
                # Stopping: end at once, awaiting nothing, so the task is done
                # before the loop stops (aclose() closes the connection).
                self._closing_pubsub = pubsub
                self._pubsub = None
                raise
            except _NETWORK_ERRORS as exc:
                if self._sub_down_since is None:
                    self._sub_down_since = time.monotonic()
                    self._lost("subscriber", exc)
            except Exception:             # a bug must not end delivery: log, reconnect
                log.exception("pubsub: subscriber failed; reconnecting")
                if self._sub_down_since is None:
                    self._sub_down_since = time.monotonic()
            self._pubsub = None
            self._subscribed = set()
            backoff = await self._retry_after(pubsub, backoff)

    def _on_pubsub_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "message":
            self._on_message(msg["channel"], msg["data"])

    # -- shared by the subscriber loops (redis_cluster.py runs one per primary) -----------
    def _resubscribed(self, which: str, since: float, what: str) -> None:
        """A subscriber is back after an outage. Redis may have restarted empty:
        write our presence again."""
        self._presence_dirty |= set(self._topics)
        self._alive_due = 0.0
        self._wake.set()
        self.stats["reconnects"] += 1
        self._back(which, since, what)

    async def _read(self, pubsub: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        """Pass each message of ``pubsub`` to ``handle`` until the connection
        fails; a silent connection is PINGed, and fails if no answer comes."""
        waiting_pong = False
        while True:
            msg = await pubsub.get_message(timeout=self.ping_interval)
            if msg is None:
                if waiting_pong:
                    raise ConnectionError(f"no answer to PING in {self.ping_interval}s")
                await pubsub.ping()
                waiting_pong = True
                continue
            waiting_pong = False
            handle(msg)

    async def _retry_after(self, pubsub: Any, backoff: float) -> float:
        """Close a failed subscriber connection, wait ``backoff`` seconds and
        return the next (doubled, capped) back-off."""
        await _aclose_quietly(pubsub)
        await asyncio.sleep(backoff)
        return min(backoff * 2, self.reconnect_max)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        """A message from Redis on one of our channels: write its frame as it is."""
        self.stats["received"] += 1
        if channel == self._node_channel:
            self._deliver_to(int.from_bytes(data[:8], "big"), data[8:])
            return
        topic = self._channel_topic.get(channel)
        if topic is None:
            return
        if data.startswith(self.node):
            self.stats["own_skipped"] += 1   # delivered locally when published
            return
        (sent_at,) = _SENT_AT.unpack_from(data, NODE_ID_BYTES)
        self.lag.observe(max(0.0, time.time() - sent_at))
        self._deliver(topic, data[_FRAME_AT:])

    async def _syncer(self) -> None:
        """Bring Redis's subscriptions in line with the topics local connections hold."""
        while True:
            await self._resync.wait()
            self._resync.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue          # the subscriber subscribes to all on (re)connect
            add = self._wanted - self._subscribed
            remove = self._subscribed - self._wanted
            try:
                if add:
                    await pubsub.subscribe(*add)
                    self._subscribed |= add
                    self.stats["subscribes"] += len(add)
                if remove:
                    await pubsub.unsubscribe(*remove)
                    self._subscribed -= remove
                    self.stats["unsubscribes"] += len(remove)
                    for channel in remove:
                        if channel not in self._wanted:
                            self._channel_topic.pop(channel, None)
            except _NETWORK_ERRORS:
                pass              # the reader sees the broken connection and reconnects
            except Exception:
                log.exception("pubsub: changing subscriptions failed")

    # -- logging --------------------------------------------------------------------------
    def _lost(self, which: str, exc: BaseException) -> None:
        log.warning("pubsub: %s lost Redis at %s (%s); reconnecting with back-off up to "
                    "%.1fs; publishes are queued up to %d messages", which, self.url,
                    exc or type(exc).__name__, self.reconnect_max, self.max_queue)

    def _back(self, which: str, since: float, what: str) -> None:
        log.warning("pubsub: %s reconnected to Redis at %s after %.1fs: %s", which, self.url,
                    time.monotonic() - since, what)

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["queued"] = len(self._queue)
        out["lag_seconds"] = self.lag.snapshot()
        out["hiredis"] = bool(HIREDIS_AVAILABLE)   # redis-py parses replies with hiredis (C)
        out["connected"] = self._pub_down_since is None and self._sub_down_since is None \
            and self._pubsub is not None
        return out
