"""One frame to many connections, and the slow-peer policy: the hub's delivery.

:func:`broadcast` writes one encoded frame to many connections;
:func:`offer_frame` is the one place where a connection's ``slow_peer``
policy (``WebSocketOptions.slow_peer``) decides whether a frame offered to
a connection whose write buffer is over ``write_limit`` is queued
(``"pause"``), dropped (``"drop"``) or costs the connection
(``"disconnect"``). The hub (:mod:`fastsock.pubsub.memory`) delivers every
publish and ``send_to`` through them.

The common case -- an open server connection without extensions and under
its write limit -- is decided in the compiled core, in one C loop over the
connections (``offer_all`` in ``fastsock/websocket/_core.pyx``); only the
others come back here.

This module sits above the WebSocket core: it imports
:mod:`fastsock.websocket`, never the other way round.
"""
from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol, Union

from ..websocket import State, WebSocketHandler, encode_message
from ..websocket._core_py import frame_header as _header
from ..websocket.protocol import frame_message, frame_payload

Data = Union[str, bytes, bytearray, memoryview]
OPEN = State.OPEN


def _offer_all() -> Callable[[Iterable[Any], bytes, list[Any]], tuple[int, Any]]:
    # offer_all from the module of the HandlerCore that WebSocketHandler
    # extends (the compiled core, or its twin under FASTSOCK_PURE=1): its
    # isinstance() check must see the same class.
    for base in WebSocketHandler.__mro__:
        if base.__name__ == "HandlerCore":
            fn: Callable[[Iterable[Any], bytes, list[Any]], tuple[int, Any]]
            fn = importlib.import_module(base.__module__).offer_all
            return fn
    raise ImportError("WebSocketHandler does not extend a HandlerCore")


if TYPE_CHECKING:
    from ..websocket._core_py import offer_all
else:
    offer_all = _offer_all()

__all__ = ["Wrapped", "admit", "broadcast", "frame_payload", "offer_frame"]


class Wrapped(Protocol):
    """What :func:`broadcast` takes besides a :class:`WebSocketHandler`: an
    object over one (a coroutine ``fastsock.coroutine.Connection``)."""

    @property
    def core(self) -> WebSocketHandler: ...

    @property
    def server(self) -> Any: ...


def _encoded_frame(conn: WebSocketHandler, frame: bytes,
                   shared: dict[Any, bytes]) -> bytes:
    """``frame`` (from :func:`encode_message`) as ``conn``'s extensions send it.

    An extension that encodes a message the same way on every connection
    (permessage-deflate without server context takeover: the shared
    compressor starts each message from an empty window) names that in
    ``broadcast_key``; one broadcast then encodes once per key, kept in
    ``shared``. Any other extension (context takeover: each connection's
    compressor has its own history) encodes per connection, in order with
    that connection's other messages.
    """
    exts = conn._extensions
    key = None
    if len(exts) == 1:
        key = getattr(exts[0], "broadcast_key", None)
        if key is not None:
            cached = shared.get(key)
            if cached is not None:
                return cached
    payload = frame_payload(frame)
    b0 = frame[0]
    for ext in exts:
        rsv, payload = ext.encode(b0 & 0x0F, payload)
        b0 |= rsv
    out = _header(b0, len(payload)) + payload
    if key is not None:
        shared[key] = out
    return out


def admit(handler: WebSocketHandler) -> bool:
    """May a frame be queued on ``handler`` now? The slow-peer policy, in one place.

    No for a connection that is not open. For one whose transport asked it
    to stop writing (its write buffer passed ``write_limit``), its
    ``slow_peer`` policy decides: ``"pause"`` admits the frame (reading
    from that peer is paused until its buffer drains, so the peer that does
    not read stops being read); ``"drop"`` refuses it, counted in
    ``messages_dropped``; ``"disconnect"`` counts it the same way and
    aborts the connection.
    """
    if handler._state is not OPEN:
        return False
    if handler._writing_paused:
        policy = handler._options.slow_peer
        if policy == "drop":
            handler._dropped()
            return False
        if policy == "disconnect":
            handler._dropped()
            handler.abort()
            return False
    return True


def offer_frame(handler: WebSocketHandler, frame: bytes,
                shared: Optional[dict[Any, bytes]] = None) -> bool:
    """Offer one encoded server frame (from :func:`encode_message`) to
    ``handler``: queued for this loop turn's write (one write per connection
    per turn) if :func:`admit` lets it, as the connection's extensions
    encode it (``shared``: the frames already encoded by this broadcast, see
    :func:`_encoded_frame`). A client-side connection masks each frame, so
    it gets the message through its own ``send``. Returns True if it was
    queued.

    The policy is applied before any extension encodes the frame: a frame
    dropped after a compressor with context takeover took it in would
    leave the peer's decompressor out of step."""
    if handler._client:
        if handler._state is not OPEN:
            return False
        handler.send(frame_message(frame))
        return True
    if not admit(handler):
        return False
    out = frame
    if handler._extensions:
        out = _encoded_frame(handler, frame, {} if shared is None else shared)
    handler._count_frame_out(frame)     # payload bytes before compression (metrics)
    handler._queue_frame(out)
    return True


def _handler_of(conn: Union[WebSocketHandler, Wrapped]) -> WebSocketHandler:
    if isinstance(conn, WebSocketHandler):
        return conn
    return conn.core        # a coroutine Connection: look through it


def _offer_rest(rest: list[Any], message: Optional[Data], frame: bytes) -> int:
    # The connections offer_all left to Python; how many got the frame.
    sent = 0
    shared: Optional[dict[Any, bytes]] = None    # extension-encoded frames (compressed once)
    for conn in rest:
        handler = _handler_of(conn)
        if handler._state is not OPEN:
            continue
        if handler._client:
            handler.send(message if message is not None else frame_message(frame))
            sent += 1
            continue
        if handler._extensions and shared is None:
            shared = {}
        if offer_frame(handler, frame, shared):
            sent += 1
    return sent


def broadcast(connections: Iterable[Union[WebSocketHandler, Wrapped]],
              message: Optional[Data] = None, *, frame: Optional[bytes] = None) -> int:
    """Encode ``message`` once and write the same frame to every open
    server-side connection. With ``frame`` (the output of
    :func:`encode_message`, e.g. received from another process by
    :mod:`fastsock.pubsub`) that frame is written as it is and ``message``
    may be omitted: nothing is decoded or encoded again. Connections whose write buffer is over
    ``write_limit`` follow their ``slow_peer`` policy (a dropped message is
    counted in their ``messages_dropped``). Client-side connections must mask
    each frame, so they get their own ``send``. Returns how many got it.
    Coroutine ``Connection`` objects may be passed too, mixed with handlers:
    they take the same fast path through their core.

    The frame is queued, not written: every connection that got frames in
    this loop turn is written once at the end of the turn by its
    :class:`TurnFlush` (one send per connection per turn, however many
    broadcasts), so broadcasting to N connections costs N list appends, not
    N scheduled callbacks.
    """
    started = time.perf_counter()
    if frame is None:
        if message is None:
            raise TypeError("broadcast() needs a message or a frame")
        frame = encode_message(message)
    rest: list[Any] = []
    # The common case in one C loop; the connections it does not take
    # (closed, client-side, with extensions, over the write limit) come back
    # in ``rest``, in order. ``last`` is the last connection seen (for its server).
    try:
        sent, last = offer_all(connections, frame, rest)
    except BaseException:
        _offer_rest(rest, message, frame)   # those taken before the iterable failed
        raise
    sent += _offer_rest(rest, message, frame)
    # Recorded on the server of the connections (the last one's: a
    # broadcast spans one server's connections).
    if last is not None and last.server is not None:
        last.server._broadcast_done(time.perf_counter() - started, sent)
    return sent
