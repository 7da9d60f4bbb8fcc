"""Per-connection bookkeeping of a running server, read on request.

``python -m fastsock stat --server URL`` merges these rows into the kernel's
connection table (docs/stat.md, "A fastsock server's own bookkeeping"): for
every live WebSocket connection, its addresses, WebSocket state, age, the
core's message counters, the bytes buffered for it, subprotocol,
extensions and path.

Nothing here runs until asked: :func:`connections_snapshot` walks the live
connections once (like a Prometheus scrape, on the server's own loop
thread), so its cost grows with the connections and is paid per request
only; ``limit`` bounds the rows it builds. ``fastsock.metrics.Metrics``
answers it as JSON at ``<metrics path>/connections``. No prometheus_client
import here: the snapshot works without the ``metrics`` extra.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable, Optional

from .server import ServerState
from .websocket.protocol import WebSocketHandler

__all__ = ["CONNECTIONS_SUFFIX", "SNAPSHOT_VERSION", "connection_row", "connections_path",
           "connections_snapshot"]

#: Appended to the metrics path: ``/metrics`` -> ``/metrics/connections``.
CONNECTIONS_SUFFIX = "/connections"
#: ``version`` of the JSON; bumped when a field changes meaning or goes away.
SNAPSHOT_VERSION = 1


def connections_path(metrics_path: str) -> str:
    """Where the snapshot is answered, next to the metrics at ``metrics_path``."""
    return metrics_path.rstrip("/") + CONNECTIONS_SUFFIX


def _state_of(server: Any) -> Optional[ServerState]:
    if isinstance(server, ServerState):
        return server
    state = getattr(server, "state", None)
    return state if isinstance(state, ServerState) else None


def _address(info: Any) -> tuple[Optional[str], Optional[int]]:
    # (host, port[, flowinfo, scope_id]) as sockets give it; anything else: unknown
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None, None


def _endpoint(host: Optional[str], port: Optional[int]) -> Optional[str]:
    if host is None:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connection_row(handler: WebSocketHandler, now: Optional[float] = None) -> dict[str, Any]:
    """One connection as a JSON-ready dict (see docs/stat.md for the fields).

    ``bytes_*`` are payload bytes of whole text and binary messages, as the
    metrics count them (text as UTF-8; before compression out, after
    decompression in); pings and pongs are counted per server, not here.
    """
    if now is None:
        now = time.monotonic()
    transport = handler.transport
    sockname = peername = None
    if transport is not None:
        sockname = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
    local_host, local_port = _address(sockname)
    peer_host, peer_port = _address(peername)
    c = handler.counters
    opened = getattr(handler, "opened_at", 0.0)
    try:
        buffered = handler.buffered_amount
    except Exception:          # a transport already torn down
        buffered = 0
    extensions = getattr(handler, "_extensions", ())
    return {
        "local": _endpoint(local_host, local_port),
        "local_host": local_host, "local_port": local_port,
        "peer": _endpoint(peer_host, peer_port),
        "peer_host": peer_host, "peer_port": peer_port,
        "path": handler.path,
        "state": handler.state.name,
        "age_seconds": round(now - opened, 3) if opened else None,
        "messages_in": c["rx_text"] + c["rx_binary"],
        "bytes_in": c["rx_text_bytes"] + c["rx_binary_bytes"],
        "messages_out": c["tx_text"] + c["tx_binary"],
        "bytes_out": c["tx_text_bytes"] + c["tx_binary_bytes"],
        "counters": c,
        "buffered_amount": buffered,
        "writing_paused": handler.writing_paused,
        "messages_dropped": handler.messages_dropped,
        "latency_seconds": handler.latency,
        "subprotocol": handler.subprotocol,
        "extensions": [str(getattr(ext, "name", type(ext).__name__)) for ext in extensions],
    }


def _listening(server: Any) -> list[str]:
    """The server's listening addresses, where the server object tells them."""
    try:
        addresses = getattr(server, "addresses", None)
        if addresses is None:
            sockets = getattr(server, "sockets", None) or ()
            addresses = [s.getsockname() for s in sockets]
        return [e for e in (_endpoint(*_address(a)) for a in addresses) if e is not None]
    except (OSError, AttributeError, TypeError, ValueError):
        return []


def connections_snapshot(servers: Iterable[Any], *, limit: Optional[int] = None) -> dict[str, Any]:
    """Every live WebSocket connection of ``servers`` (``WebSocketServer``,
    the asyncio adapter's server, the coroutine ``Server`` or a
    ``ServerState``), as one JSON-ready dict:

    ``version``, ``pid``, ``time`` (Unix seconds), ``listening`` (addresses),
    ``handshakes`` (connections still in the HTTP handshake, not listed),
    ``count`` (live WebSocket connections), ``truncated`` (rows left out by
    ``limit``) and ``connections`` (one :func:`connection_row` each, oldest
    first).
    """
    now = time.monotonic()
    rows: list[dict[str, Any]] = []
    listening: list[str] = []
    handshakes = count = 0
    for server in servers:
        listening += _listening(server)
        state = _state_of(server)
        if state is None:
            continue
        live = sorted(state.handlers, key=lambda h: getattr(h, "opened_at", 0.0))
        handshakes += len(state.handshakes)
        count += len(live)
        room = len(live) if limit is None else max(0, limit - len(rows))
        rows += [connection_row(h, now) for h in live[:room]]
    return {"version": SNAPSHOT_VERSION, "pid": os.getpid(), "time": round(time.time(), 3),
            "listening": listening, "handshakes": handshakes, "count": count,
            "truncated": count - len(rows), "connections": rows}
