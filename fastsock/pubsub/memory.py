"""The hub's local half, and the in-process hub.

:class:`Hub` keeps who is subscribed to what in this process and delivers
to local subscribers; a backend (``redis.py``) adds the other processes by
overriding the ``_remote_*`` hooks. :class:`MemoryHub` is the hub with no
other process: the default.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
from typing import Any, Callable, Optional, Union

from ..websocket.protocol import WebSocketHandler, encode_message, frame_message
from .fanout import broadcast, offer_frame

__all__ = ["Hub", "Listener", "MemoryHub", "Message"]

log = logging.getLogger("fastsock.pubsub")

Message = Union[str, bytes, bytearray, memoryview]
NODE_ID_BYTES = 8     # random id of this hub (process): routes send_to, skips own echoes
LISTEN_QUEUE = 1_000  # messages a listener's iterator keeps before dropping the oldest


class Listener:
    """A topic's messages for code that is not a connection (``hub.listen(topic)``).

    Without a callback it is an async iterator (``async for message in
    listener``) over a queue of up to ``maxsize`` messages: the hub never
    waits for it, so when the queue is full the OLDEST message is dropped and
    counted in ``dropped`` (and the hub's ``stats["listen_dropped"]``). With a
    callback, ``callback(message)`` runs on the loop for each message, at
    once; an exception it raises is logged and delivery goes on.
    ``close()`` (or leaving ``async with``) stops it; an iteration then ends.
    """

    __slots__ = ("hub", "topic", "dropped", "closed", "_callback", "_queue", "_maxsize",
                 "_waiter")

    def __init__(self, hub: "Hub", topic: str, callback: Optional[Callable[[Any], Any]],
                 maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.hub = hub
        self.topic = topic
        self.dropped = 0
        self.closed = False
        self._callback = callback
        self._queue: collections.deque[Union[str, bytes]] = collections.deque()
        self._maxsize = maxsize
        self._waiter: Optional[asyncio.Future[None]] = None

    def _put(self, message: Union[str, bytes]) -> None:
        """From the hub: never waits."""
        if self._callback is not None:
            try:
                self._callback(message)
            except Exception:
                log.exception("pubsub: listener of %r failed", self.topic)
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
            self.hub.stats["listen_dropped"] += 1
        self._queue.append(message)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Union[str, bytes]:
        """The next message; raises StopAsyncIteration once closed and drained."""
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            if self._callback is not None:
                raise RuntimeError("a listener with a callback has no queue to read")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> "Listener":
        return self

    async def __anext__(self) -> Union[str, bytes]:
        return await self.get()

    def close(self) -> None:
        """Stop receiving (what is queued can still be read)."""
        if not self.closed:
            self.closed = True
            self.hub._unlisten(self)
            self._wake()

    async def __aenter__(self) -> "Listener":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Listener {self.topic!r} queued={len(self._queue)} dropped={self.dropped}>"


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
        self._listeners: dict[str, list[Listener]] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.stats: dict[str, int] = {"published": 0, "delivered": 0, "sent_to": 0,
                                      "listened": 0, "listen_dropped": 0}

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
        if len(members) == 1 and topic not in self._listeners:
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
            if topic not in self._listeners:
                self._remote_topic_removed(topic)
        self._remote_presence_changed(topic)

    # -- listeners (code that is not a connection) ----------------------------------------
    def listen(self, topic: str, callback: Optional[Callable[[Any], Any]] = None, *,
               maxsize: int = LISTEN_QUEUE) -> Listener:
        """Receive ``topic``'s messages (str or bytes, as published) in this
        process, from local publishes and from other processes, without a
        connection: ``async for message in hub.listen(topic)``, or
        ``hub.listen(topic, callback)``. See :class:`Listener`. A listener
        makes this process subscribe to the topic in the backend like a
        connection does; it is not counted by :meth:`presence`."""
        listener = Listener(self, topic, callback, maxsize)
        listeners = self._listeners.get(topic)
        if listeners is None:
            self._listeners[topic] = [listener]
            if topic not in self._topics:
                self._remote_topic_added(topic)
        else:
            listeners.append(listener)
        return listener

    def _unlisten(self, listener: Listener) -> None:
        listeners = self._listeners.get(listener.topic)
        if listeners is None or listener not in listeners:
            return
        listeners.remove(listener)
        if not listeners:
            del self._listeners[listener.topic]
            if listener.topic not in self._topics:
                self._remote_topic_removed(listener.topic)

    def _notify(self, topic: str, message: Union[str, bytes]) -> None:
        for listener in tuple(self._listeners[topic]):   # a callback may close one
            listener._put(message)
            self.stats["listened"] += 1

    def topics(self, connection: Any = None) -> frozenset[str]:
        """The topics of ``connection``, or every topic with a local subscriber
        (a connection or a listener)."""
        if connection is None:
            return frozenset(self._topics.keys() | self._listeners.keys())
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
        if topic in self._listeners:
            self._notify(topic, message if isinstance(message, (str, bytes)) else bytes(message))
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
        if offer_frame(connection, frame):
            self.stats["delivered"] += 1
            return True
        return False

    def _deliver(self, topic: str, frame: bytes) -> None:
        """A frame published on ``topic`` by another process: write it as it is."""
        members = self._topics.get(topic)
        if members:
            self.stats["delivered"] += broadcast(members, frame=frame)
        if topic in self._listeners:
            self._notify(topic, frame_message(frame))   # decoded once for all listeners

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
