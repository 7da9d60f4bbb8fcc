"""Prometheus metrics for fastsock servers (``pip install fastsock[metrics]``).

Nothing here runs per message. The counters live where the work happens:
the per-message ones are C fields of each connection's compiled core
(``fastsock/websocket/_core.pxd``; int attributes in the pure twin), the rest
are plain ints a :class:`~fastsock.server.ServerState` bumps on cold paths
(a handshake, a close, a ping, a broadcast). :class:`FastsockCollector` is a
prometheus_client custom collector that reads them all when Prometheus
scrapes (``server.stats()``), so no prometheus_client object is touched on
the hot path.

Exposition, on the server's own port or on a separate one, is always
answered on the server's own event loop thread, so a scrape never races the
connections it counts::

    metrics = Metrics()
    server = fastsock.server.serve(Echo, port=8765, reactor=reactor,
                                   http_handler=metrics.http_handler("/metrics"))
    metrics.add_server(server)
    # or a port of its own: metrics.listen(reactor, metrics.bind("127.0.0.1", 9100))

The metric set, types, labels and the measured cost are in docs/metrics.md.
Next to the scrape path, ``<path>/connections`` answers one JSON row per
live connection (fastsock.connections), which ``python -m fastsock stat
--server`` merges into the kernel's connection table.
"""
from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Union

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from .connections import connections_path, connections_snapshot
from .server import ServerState, default_http_handler
from .websocket.handshake import Request, Response

__all__ = ["DEFAULT_PATH", "LOOP_COUNTERS", "NAMESPACE", "FastsockCollector", "LabelledCollector",
           "Metrics", "merge_stats"]

NAMESPACE = "fastsock"
DEFAULT_PATH = "/metrics"
LISTEN_BACKLOG = 64          # a metrics port serves a few scrapers, not clients

HttpHandler = Callable[[Request], Optional[Response]]

# fastsock's reactor's ``stats`` keys, exported as fastsock_loop_<key>_total.
LOOP_COUNTERS = {
    "iterations": "Turns of the event loop.",
    "io_events": "I/O readiness events the loop dispatched.",
    "callbacks": "Callbacks the loop ran (call_soon and I/O).",
    "timers": "Timer callbacks the loop ran (call_later/call_at).",
    "callback_errors": "Callbacks that raised (handed to the exception handler).",
    "stale_fd_rebuilds": "Times the loop rebuilt its epoll set after a stale descriptor.",
}


class _HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


# Anything with stats() (fastsock.server.WebSocketServer, the asyncio
# adapter's server), or a ServerState itself.
StatsSource = Union[_HasStats, ServerState]


def merge_stats(a: Any, b: Any) -> Any:
    """Two ``server.stats()`` results as one: counts add up, ``*_max_*`` and
    ``*_peak_*`` gauges take the larger, histogram buckets add bucket by bucket."""
    if isinstance(a, dict):
        out = dict(a)
        for key, value in b.items():
            if key not in out:
                out[key] = value
            elif "_max_" in key or "_peak_" in key:
                out[key] = max(out[key], value)
            else:
                out[key] = merge_stats(out[key], value)
        return out
    if isinstance(a, list):      # histogram buckets: [(le, cumulative count), ...]
        return [(le, n + m) for (le, n), (_, m) in zip(a, b)]
    if a is None or b is None:   # emfile where one server cannot count it
        return b if a is None else a
    return a + b


def _le(bound: Union[float, str]) -> str:
    # a bucket bound as Prometheus reads it: "0.0005", "1e-05", "1.0", "+Inf"
    return bound if isinstance(bound, str) else repr(float(bound))


def _histogram(name: str, doc: str, snap: dict[str, Any]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=[(_le(le), n) for le, n in snap["buckets"]],
                                 sum_value=snap["sum"])


def _labelled(family: Union[CounterMetricFamily, GaugeMetricFamily],
              values: dict[str, int]) -> Union[CounterMetricFamily, GaugeMetricFamily]:
    for label, value in values.items():
        family.add_metric([label], value)
    return family


# The hub's counters (fastsock.pubsub): snapshot key -> help text. A key the
# hub in use does not keep (the in-process hub has no Redis) is left out.
HUB_COUNTERS = {
    "published": "Messages published through the hub (publish calls in this process).",
    "delivered": "Frames the hub wrote to this process's connections.",
    "sent_to": "send_to calls (one connection, in any process).",
    "received": "Messages received from the broker (other processes' publishes and send_to).",
    "redis_published": "Messages this process sent to the broker.",
    "dropped": "Publishes dropped while the broker was unreachable (the queue was full).",
    "resent": "Messages sent again after a broken connection (may arrive twice).",
    "reconnects": "Reconnections to the broker.",
}
HUB_GAUGES = {
    "topics": "Topics held by this process's connections.",
    "subscriptions": "Topic subscriptions of this process's connections.",
    "queued": "Publishes waiting for the broker.",
    "connected": "1 while the hub is connected to its broker.",
}


def _hub_families(snap: dict[str, Any]) -> Iterator[Metric]:
    n = NAMESPACE
    for key, doc in HUB_COUNTERS.items():
        if key in snap:
            yield CounterMetricFamily(f"{n}_pubsub_{key}", doc, value=snap[key])
    for key, doc in HUB_GAUGES.items():
        if key in snap:
            yield GaugeMetricFamily(f"{n}_pubsub_{key}", doc, value=int(snap[key]))
    if "lag_seconds" in snap:
        yield _histogram(f"{n}_pubsub_lag_seconds",
                         "From publish in another process (its wall clock) to delivery here.",
                         snap["lag_seconds"])


class FastsockCollector(Collector):
    """Reads the counters of WebSocket servers and UDP endpoints at scrape time.

    Several servers in one process are added up (labels stay the metric's own);
    UDP endpoints are labelled ``endpoint`` with the name given to :meth:`add_udp`.
    """

    def __init__(self, servers: Iterable[StatsSource] = (),
                 udp: Iterable[tuple[str, Any]] = ()) -> None:
        self._servers: list[StatsSource] = list(servers)
        self._udp: list[tuple[str, Any]] = list(udp)
        self._loops: list[Any] = []
        self._hubs: list[Any] = []

    def add_loop(self, loop: Any) -> None:
        """Export the event loop's counters (fastsock's reactor keeps them in
        ``loop.stats``; other loops have none and are ignored)."""
        if isinstance(getattr(loop, "stats", None), dict) and loop not in self._loops:
            self._loops.append(loop)

    def add_server(self, server: StatsSource) -> None:
        """Export a server's numbers (and its loop's, see :meth:`add_loop`)."""
        self._servers.append(server)
        state = server if isinstance(server, ServerState) else getattr(server, "state", None)
        if state is not None:
            self.add_loop(state.loop)

    def add_udp(self, transport: Any, name: str = "udp") -> None:
        """Export a UDP transport's ``stats`` (fastsock's UDPTransport) as ``endpoint=name``."""
        self._udp.append((name, transport))

    def add_hub(self, hub: Any) -> None:
        """Export a pub/sub hub's counters (``fastsock.pubsub``; ``hub.snapshot()``)
        and, for the Redis hub, the pub/sub lag histogram."""
        if hub not in self._hubs:
            self._hubs.append(hub)

    def describe(self) -> Iterable[Metric]:
        # The same families as a scrape; lets a registry reject duplicate names.
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        stats: Optional[dict[str, Any]] = None
        for server in self._servers:
            snap = server.snapshot() if isinstance(server, ServerState) else server.stats()
            stats = snap if stats is None else merge_stats(stats, snap)
        if stats is not None:
            yield from self._websocket(stats)
        if self._udp:
            yield from self._udp_families()
        if self._loops:
            totals: dict[str, int] = {}
            for loop in self._loops:
                for key, value in loop.stats.items():
                    totals[key] = totals.get(key, 0) + value
            for key, doc in LOOP_COUNTERS.items():
                if key in totals:
                    yield CounterMetricFamily(f"{NAMESPACE}_loop_{key}", doc, value=totals[key])
        for hub in self._hubs:
            yield from _hub_families(hub.snapshot())

    def _websocket(self, s: dict[str, Any]) -> Iterator[Metric]:
        n = NAMESPACE
        yield _labelled(GaugeMetricFamily(
            f"{n}_connections", "WebSocket connections by state (connecting: in the HTTP handshake).",
            labels=["state"]), s["connections"])
        yield CounterMetricFamily(f"{n}_accepts", "TCP connections accepted by the WebSocket server.",
                                  value=s["accepts"])
        yield CounterMetricFamily(f"{n}_handshakes", "WebSocket opening handshakes completed.",
                                  value=s["handshakes"])
        yield CounterMetricFamily(f"{n}_http_requests",
                                  "Plain HTTP requests (no Upgrade) answered; scrapes on the server's port too.",
                                  value=s["http_requests"])
        yield _labelled(CounterMetricFamily(
            f"{n}_handshake_failures", "Opening handshakes refused, by reason.",
            labels=["reason"]), s["handshake_failures"])
        if s["emfile"] is not None:
            yield CounterMetricFamily(
                f"{n}_emfile", "accept() failures for lack of descriptors (EMFILE/ENFILE/ENOBUFS/"
                "ENOMEM); accepting pauses and retries.", value=s["emfile"])
        for direction, word in (("in", "received"), ("out", "sent")):
            yield _labelled(CounterMetricFamily(
                f"{n}_{word}_messages", f"Whole WebSocket messages and control frames {word}, by type.",
                labels=["type"]), s[f"messages_{direction}"])
            yield _labelled(CounterMetricFamily(
                f"{n}_{word}_bytes", f"Payload bytes of the messages {word}, by type (text: UTF-8).",
                labels=["type"]), s[f"bytes_{direction}"])
        yield _labelled(CounterMetricFamily(
            f"{n}_close_codes_sent", "Ended connections by the close code we sent (1006: none sent).",
            labels=["code"]), s["close_codes_sent"])
        yield _labelled(CounterMetricFamily(
            f"{n}_close_codes_received",
            "Ended connections by the close code the peer sent (1005: empty close; 1006: none).",
            labels=["code"]), s["close_codes_received"])
        yield _histogram(f"{n}_ping_rtt_seconds", "Round-trip time of answered pings.",
                         s["ping_rtt_seconds"])
        yield CounterMetricFamily(f"{n}_broadcasts", "Broadcasts (one message to many connections).",
                                  value=s["broadcasts"])
        yield CounterMetricFamily(f"{n}_broadcast_deliveries",
                                  "Connections a broadcast queued its frame on.",
                                  value=s["broadcast_deliveries"])
        yield _histogram(f"{n}_broadcast_duration_seconds",
                         "Time a broadcast took to queue its frame on every connection.",
                         s["broadcast_seconds"])
        yield _labelled(CounterMetricFamily(
            f"{n}_slow_peer_actions",
            "Write buffers that crossed write_limit, by the slow-peer policy applied.",
            labels=["action"]), s["slow_peer_actions"])
        yield CounterMetricFamily(f"{n}_dropped_messages",
                                  "Messages not sent to a slow peer (slow_peer drop/disconnect).",
                                  value=s["messages_dropped"])
        yield GaugeMetricFamily(f"{n}_write_buffer_bytes",
                                "Bytes queued for all connections, not yet taken by the kernel.",
                                value=s["write_buffer_bytes"])
        yield GaugeMetricFamily(f"{n}_write_buffer_max_bytes",
                                "The largest write buffer of one connection now.",
                                value=s["write_buffer_max_bytes"])
        yield GaugeMetricFamily(f"{n}_write_buffer_peak_bytes",
                                "The largest write buffer of one connection seen since start "
                                "(measured at each write_limit crossing and each scrape).",
                                value=s["write_buffer_peak_bytes"])

    def _udp_families(self) -> Iterator[Metric]:
        n = NAMESPACE
        datagrams = CounterMetricFamily(f"{n}_udp_datagrams", "UDP datagrams, by direction.",
                                        labels=["endpoint", "direction"])
        sizes = CounterMetricFamily(f"{n}_udp_bytes", "UDP payload bytes, by direction.",
                                    labels=["endpoint", "direction"])
        drops = CounterMetricFamily(
            f"{n}_udp_drops", "UDP datagrams lost: queue (we dropped, send queue full or closing), "
            "truncated (received cut short), oversized (EMSGSIZE), kernel (receive queue full).",
            labels=["endpoint", "reason"])
        errors = CounterMetricFamily(f"{n}_udp_errors", "Errors reported to error_received.",
                                     labels=["endpoint"])
        for name, transport in self._udp:
            st = transport.stats
            datagrams.add_metric([name, "in"], st["datagrams_in"])
            datagrams.add_metric([name, "out"], st["datagrams_out"])
            sizes.add_metric([name, "in"], st["bytes_in"])
            sizes.add_metric([name, "out"], st["bytes_out"])
            drops.add_metric([name, "queue"], st["dropped_out"])
            drops.add_metric([name, "truncated"], st["truncated_in"])
            drops.add_metric([name, "oversized"], st["oversized_out"])
            if st.get("kernel_drops", -1) >= 0:     # -1: not known on this platform
                drops.add_metric([name, "kernel"], st["kernel_drops"])
            errors.add_metric([name], st["errors"])
        yield from (datagrams, sizes, drops, errors)


class LabelledCollector(Collector):
    """Another collector's metrics with constant labels added to every sample,
    e.g. ``worker="2"`` in a worker process, so that each worker's counters
    are series of their own and never seem to go backwards."""

    def __init__(self, inner: Collector, labels: dict[str, str]) -> None:
        self.inner = inner
        self.labels = dict(labels)

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():
            metric.samples = [s._replace(labels={**s.labels, **self.labels})
                              for s in metric.samples]
            yield metric


class Metrics:
    """A registry with fastsock's collector (and the process's CPU, memory and
    descriptors), plus the two ways to serve it: :meth:`http_handler` on a
    WebSocket server's own port, or :meth:`listen` on a port of its own.

    ``registry``: register into an existing one (e.g. prometheus_client's
    global ``REGISTRY``) instead of a private one; ``process``: add the
    ``process_*`` metrics (skip it when the registry already has them);
    ``labels``: constant labels on every sample (``{"worker": "0"}``).
    """

    def __init__(self, registry: Optional[CollectorRegistry] = None, *,
                 process: bool = True, labels: Optional[dict[str, str]] = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = FastsockCollector()
        collectors: list[Collector] = [self.collector]
        if process:
            collectors.append(ProcessCollector(registry=None))
        for collector in collectors:
            self.registry.register(LabelledCollector(collector, labels) if labels else collector)
        self._listeners: list[Any] = []

    def add_server(self, server: StatsSource) -> None:
        self.collector.add_server(server)

    def add_udp(self, transport: Any, name: str = "udp") -> None:
        self.collector.add_udp(transport, name)

    def add_hub(self, hub: Any) -> None:
        self.collector.add_hub(hub)

    def add_loop(self, loop: Any) -> None:
        self.collector.add_loop(loop)

    def render(self, accept: Optional[str] = None) -> tuple[bytes, str]:
        """One scrape: the body and its Content-Type (OpenMetrics if ``accept`` asks)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def connections(self, limit: Optional[int] = None) -> dict[str, Any]:
        """Every live connection of the servers added, one row each (what
        ``python -m fastsock stat --server`` merges into the kernel's table;
        fastsock.connections.connections_snapshot)."""
        return connections_snapshot(self.collector._servers, limit=limit)

    def http_handler(self, path: str = DEFAULT_PATH,
                     fallback: Optional[HttpHandler] = default_http_handler) -> HttpHandler:
        """A server ``http_handler`` that answers ``GET path`` with a scrape,
        ``GET path/connections[?limit=N]`` with :meth:`connections` as JSON,
        and hands every other plain-HTTP request to ``fallback``."""
        table_path = connections_path(path)

        def handle(request: Request) -> Optional[Response]:
            if request.path == path or request.path == table_path:
                if request.method not in ("GET", "HEAD"):
                    return Response(405, [("Allow", "GET, HEAD")], "405 Method Not Allowed\n")
                if request.path == table_path:
                    return _connections_response(self, request.query)
                body, content_type = self.render(request.headers.get("Accept"))
                return Response(200, [("Content-Type", content_type)], body)
            return fallback(request) if fallback is not None else None

        return handle

    @staticmethod
    def bind(host: str, port: int) -> socket.socket:
        """A listening socket for :meth:`listen`. Binding first, before any
        loop runs, lets a command line report a port in use as one line."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def listen(self, loop: Any, sock: socket.socket, path: str = DEFAULT_PATH) -> ServerState:
        """Serve scrapes on ``sock`` (see :meth:`bind`) from ``loop``: fastsock's
        reactor or an asyncio/uvloop loop. It is a WebSocket server with no
        WebSocket routes: the same bounded HTTP parsing and timeouts, and
        404 for any other path. Closed with :meth:`close`."""
        state = ServerState({}, loop, http_handler=self.http_handler(path, _not_found))
        from .reactor import Reactor

        if isinstance(loop, Reactor):   # its own listener: accept batching, EMFILE back-off
            from .transports.tcp import create_tcp_server
            self._listeners.append(create_tcp_server(loop, state.protocol_factory, sock=sock,
                                                     backlog=LISTEN_BACKLOG))
        else:
            async def start() -> None:
                self._listeners.append(await loop.create_server(state.protocol_factory, sock=sock))
            self._listeners.append(asyncio.ensure_future(start(), loop=loop))
        return state

    def close(self) -> None:
        """Stop the listeners :meth:`listen` started."""
        for listener in self._listeners:
            if isinstance(listener, asyncio.Future):
                listener.cancel()
            else:
                listener.close()
        self._listeners.clear()


def _connections_response(metrics: Metrics, query: str) -> Response:
    limit: Optional[int] = None
    for key, value in urllib.parse.parse_qsl(query):
        if key == "limit":
            if not value.isdigit():
                return Response(400, [], "400 Bad Request: limit is a number of rows\n")
            limit = int(value)
    body = json.dumps(metrics.connections(limit), separators=(",", ":")).encode()
    return Response(200, [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                    body)


def _not_found(request: Request) -> Response:
    return Response(404, [], "404 Not Found\n")
