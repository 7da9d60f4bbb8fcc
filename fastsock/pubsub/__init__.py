"""The hub: topics across connections, processes and hosts.

::

    hub = fastsock.pubsub.create_hub("redis://127.0.0.1:6379")   # or None: in-process
    hub.start(loop)                       # on the loop the connections run on

    hub.subscribe(ws, "room:42")          # in on_open or on_message
    hub.publish("room:42", "hello")       # every subscriber, in every process
    hub.send_to(other_id, "psst")         # one connection, wherever it is
    n = await hub.presence("room:42")     # subscribers in every process
    hub.unsubscribe(ws)                   # in on_close: every topic, and its id
    async for message in hub.listen("room:42"):   # code that is not a connection
        ...

The same calls work from the callback API (``WebSocketHandler``) and from
coroutines: ``subscribe``/``publish``/``send_to`` never block, ``presence``
is a coroutine. Delivery to local subscribers goes through
:func:`fastsock.pubsub.fanout.broadcast` with one frame encoded once per
publish; a message from another process arrives as that already encoded
frame and is written as it is.

Backends: :class:`~fastsock.pubsub.memory.MemoryHub` (the default, one
process), :class:`~fastsock.pubsub.redis.RedisHub` (``redis://`` or
``rediss://``) and :class:`~fastsock.pubsub.redis_cluster.RedisClusterHub`
(``redis+cluster://``: Redis 7 sharded pub/sub); Redis needs
``pip install fastsock[redis]``. See docs/pubsub.md.
"""
from __future__ import annotations

from typing import Any, Optional

from .memory import Hub, Listener, MemoryHub

__all__ = ["Hub", "Listener", "MemoryHub", "create_hub"]


def create_hub(url: Optional[str] = None, **options: Any) -> Hub:
    """A hub for ``url``: None or ``memory://`` → :class:`MemoryHub`;
    ``redis://host:port[/db]`` or ``rediss://`` → :class:`~fastsock.pubsub.redis.RedisHub`;
    ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://``) → a Redis
    Cluster through sharded pub/sub, :class:`~fastsock.pubsub.redis_cluster.RedisClusterHub`
    (``options`` go to either: ``max_queue``, ``prefix``, ...)."""
    if url is None or url == "memory://":
        return MemoryHub(**options)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .redis_cluster import RedisClusterHub
        return RedisClusterHub(url, **options)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisHub
        return RedisHub(url, **options)
    raise ValueError(f"unknown pub/sub URL {url!r}: use redis://host:port, "
                     f"redis+cluster://host:port[,host:port...] or memory://")
