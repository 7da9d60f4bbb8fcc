"""The hub's local half, and the in-process hub.

:class:`Hub` keeps who is subscribed to what in this process and delivers
to local subscribers; a backend (``redis.py``) adds the other processes by
overriding the ``_remote_*`` hooks. :class:`MemoryHub` is the hub with no
other process: the default.
"""
from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Optional, Union

from ..websocket.protocol import WebSocketHandler, broadcast, encode_message

__all__ = ["Hub", "MemoryHub", "Message"]

Message = Union[str, bytes, bytearray, memoryview]
NODE_ID_BYTES = 8     # random id of this hub (process): routes send_to, skips own echoes


def _handler(connection: Any) -> WebSocketHandler:
    """The callback-API object of ``connection``: itself, or the ``core`` of a
    coroutine-API :class:`fastsock.coroutine.Connection`."""
    if isinstance(connection, WebSocketHandler):
        return connection
    core = getattr(connection, "core", None)
    if isinstance(core, WebSocketHandler):
        return core
    raise TypeError(f"not a WebSocket connection: {connection!r}")


def _as_set(held: Union[str, set[str], None]) -> set[str]:
    if held is None:
        return set()
    return {held} if isinstance(held, str) else set(held)


class Hub:
    """Topics of this process's connections (see :mod:`fastsock.pubsub`).

    ``stats`` counts: ``published`` (publish calls), ``delivered`` (frames
    queued to local connections), ``sent_to`` (send_to calls), plus the
    backend's own counters.
    """

    def __init__(self) -> None:
        self.node = os.urandom(NODE_ID_BYTES)
        self.node_id = self.node.hex()
        self._topics: dict[str, set[WebSocketHandler]] = {}
        # A connection's topics: one str while it has one (the common case: no
        # set object per connection), a set from its second topic on.
        self._subscriptions: dict[WebSocketHandler, Union[str, set[str]]] = {}
        self._ids: dict[WebSocketHandler, int] = {}
        self._by_id: dict[int, WebSocketHandler] = {}
        self._next_id = itertools.count(1)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.stats: dict[str, int] = {"published": 0, "delivered": 0, "sent_to": 0}

    # -- life -----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the hub to the loop its connections run on (fastsock's reactor,
        asyncio or uvloop); a backend starts its connections there."""
        self.loop = loop

    async def aclose(self) -> None:
        """Stop the backend's tasks and connections (local state stays)."""

    def close(self) -> None:
        """Like :meth:`aclose`, without waiting (e.g. from a shutdown hook)."""

    # -- connections ----------------------------------------------------------------------
    def connection_id(self, connection: Any) -> str:
        """A string that names ``connection`` in every process (for :meth:`send_to`)."""
        connection = _handler(connection)
        number = self._ids.get(connection)
        if number is None:
            number = next(self._next_id)
            self._ids[connection] = number
            self._by_id[number] = connection
        return f"{self.node_id}-{number}"

    def subscribe(self, connection: Any, topic: str) -> None:
        """Deliver what is published on ``topic`` to ``connection`` from now on.
        ``connection``: a :class:`~fastsock.websocket.WebSocketHandler` or a
        coroutine-API :class:`fastsock.coroutine.Connection`."""
        connection = _handler(connection)
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = set()
        elif connection in members:
            return
        members.add(connection)
        held = self._subscriptions.get(connection)
        if held is None:
            self._subscriptions[connection] = topic
        elif isinstance(held, str):
            self._subscriptions[connection] = {held, topic}
        else:
            held.add(topic)
        if len(members) == 1:
            self._remote_topic_added(topic)
        self._remote_presence_changed(topic)

    def unsubscribe(self, connection: Any, topic: Optional[str] = None) -> None:
        """Stop delivering ``topic`` to ``connection``; with no topic, every topic,
        and forget its id (call this in ``on_close``, or in a ``finally`` of a
        coroutine handler)."""
        connection = _handler(connection)
        held = self._subscriptions.get(connection)
        if topic is None:
            self._subscriptions.pop(connection, None)
            for t in _as_set(held):
                self._leave(connection, t)
            number = self._ids.pop(connection, None)
            if number is not None:
                del self._by_id[number]
        elif held == topic:
            del self._subscriptions[connection]
            self._leave(connection, topic)
        elif isinstance(held, set) and topic in held:
            held.discard(topic)
            self._leave(connection, topic)

    def _leave(self, connection: WebSocketHandler, topic: str) -> None:
        members = self._topics.get(topic)
        if members is None or connection not in members:
            return
        members.discard(connection)
        if not members:
            del self._topics[topic]
            self._remote_topic_removed(topic)
        self._remote_presence_changed(topic)

    def topics(self, connection: Any = None) -> frozenset[str]:
        """The topics of ``connection``, or every topic with a local subscriber."""
        if connection is None:
            return frozenset(self._topics)
        return frozenset(_as_set(self._subscriptions.get(_handler(connection))))

    def local_presence(self, topic: str) -> int:
        """Subscribers of ``topic`` in this process."""
        members = self._topics.get(topic)
        return 0 if members is None else len(members)

    async def presence(self, topic: str) -> int:
        """Subscribers of ``topic`` in every process."""
        return self.local_presence(topic)

    # -- messages -------------------------------------------------------------------------
    def publish(self, topic: str, message: Message) -> int:
        """Send ``message`` (str → text, bytes → binary) to every subscriber of
        ``topic``; returns how many local connections got it (the other
        processes deliver theirs). Never blocks."""
        self.stats["published"] += 1
        frame = encode_message(message)
        members = self._topics.get(topic)
        delivered = broadcast(members, frame=frame) if members else 0
        self.stats["delivered"] += delivered
        self._remote_publish(topic, frame)
        return delivered

    def send_to(self, connection_id: str, message: Message) -> bool:
        """Send ``message`` to one connection by its :meth:`connection_id`, in
        whichever process holds it. True if it was queued here or handed to
        the backend; False for a local id that is gone or a foreign id
        without a backend."""
        self.stats["sent_to"] += 1
        node, _, number_text = connection_id.rpartition("-")
        try:
            number = int(number_text)
        except ValueError:
            raise ValueError(f"not a connection id: {connection_id!r}") from None
        frame = encode_message(message)
        if node == self.node_id:
            return self._deliver_to(number, frame)
        return self._remote_send(node, number, frame)

    def _deliver_to(self, number: int, frame: bytes) -> bool:
        connection = self._by_id.get(number)
        if connection is None:
            return False
        delivered = broadcast((connection,), frame=frame)
        self.stats["delivered"] += delivered
        return delivered == 1

    def _deliver(self, topic: str, frame: bytes) -> None:
        """A frame published on ``topic`` by another process: write it as it is."""
        members = self._topics.get(topic)
        if members:
            self.stats["delivered"] += broadcast(members, frame=frame)

    # -- backend hooks (no other process here) --------------------------------------------
    def _remote_topic_added(self, topic: str) -> None:
        pass

    def _remote_topic_removed(self, topic: str) -> None:
        pass

    def _remote_presence_changed(self, topic: str) -> None:
        pass

    def _remote_publish(self, topic: str, frame: bytes) -> None:
        pass

    def _remote_send(self, node: str, number: int, frame: bytes) -> bool:
        return False

    def snapshot(self) -> dict[str, Any]:
        """Counters and sizes, read now."""
        out: dict[str, Any] = dict(self.stats)
        out["topics"] = len(self._topics)
        out["subscriptions"] = sum(len(m) for m in self._topics.values())
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node_id} topics={len(self._topics)}>"


class MemoryHub(Hub):
    """The hub of one process: no service, nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
