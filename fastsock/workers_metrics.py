"""Totals across workers: the supervisor answers scrapes for all of them.

With ``--workers N --metrics-port PORT`` the supervisor binds the metrics
port. On each scrape it asks every current worker, over the control socket
pair it holds with each (:meth:`fastsock.workers.Supervisor.ask`), for that
worker's own scrape, and answers with the sum:

- every sample of the same name and labels is added up over the workers
  (counters, gauges, histogram buckets, sums and counts); the per-worker
  ``worker`` label is dropped; ``*_max_*``/``*_peak_*`` gauges take the
  largest, ``process_start_time_seconds`` the earliest;
- a worker that is gone (reload, crash) keeps its last scraped counters and
  histograms in the totals, so they never go backwards across a reload;
- ``fastsock_workers`` (slots), ``fastsock_workers_reporting`` (workers that
  answered this scrape), ``fastsock_workers_restarts_total``,
  ``fastsock_workers_reloads_total`` and ``fastsock_workers_descriptor_room``
  (more descriptors the workers may open, in total) come from the
  supervisor itself.

``PATH/connections`` (what ``python -m fastsock stat --server URL`` reads)
answers every worker's connection rows in one snapshot, each row with its
``worker`` slot.

Why not prometheus_client's multiprocess mode: fastsock's numbers are read
live from the servers at scrape time by a custom collector, which that mode
does not aggregate (it sums only metrics written to its mmap files), and it
needs a shared directory cleaned on every restart. Asking the workers keeps
one source of truth, costs nothing between scrapes, and a worker that does
not answer within the deadline is left out of that scrape (and counted by
``fastsock_workers_reporting``) instead of stalling it.

The scrapes are served by a thread of the supervisor (``http.server``), so
the supervisor's own loop (signals, restarts, reloads) never waits for one.
"""
from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .connections import SNAPSHOT_VERSION, connections_path

__all__ = ["ASK_TIMEOUT", "Totals", "WorkerTotals", "WorkersMetricsServer", "merge_expositions",
           "worker_answer"]

log = logging.getLogger("fastsock.workers")

ASK_TIMEOUT = 2.0              # seconds a scrape waits for the workers' answers
WORKER_LABEL = "worker"
_EARLIEST = ("process_start_time_seconds",)     # a sum of these means nothing
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_MONOTONIC = ("counter", "histogram", "summary")
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class Totals:
    """Prometheus text scrapes added up sample by sample: the ``worker`` label
    dropped; ``*_max_*``/``*_peak_*`` gauges and ``process_max_fds`` take the
    largest and ``process_start_time_seconds`` the earliest (a sum of those
    means nothing); ``*_created`` samples are left out."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}
        self.values: dict[str, dict[SampleKey, float]] = {}

    def add(self, text: bytes, *, monotonic_only: bool = False) -> None:
        """Add one scrape; ``monotonic_only``: only its counters and histograms
        (what a worker that is gone keeps contributing to the totals)."""
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            if monotonic_only and family.type not in _MONOTONIC:
                continue
            table = self._table(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                      if k != WORKER_LABEL))
                self._put(table, (sample.name, labels), sample.value)

    def add_totals(self, other: "Totals") -> None:
        for name, family in other.families.items():
            table = self._table(name, family.documentation, family.type, family.unit)
            for key, value in other.values[name].items():
                self._put(table, key, value)

    def _table(self, name: str, doc: str, kind: str, unit: str) -> dict[SampleKey, float]:
        if name not in self.families:
            self.families[name] = Metric(name, doc, kind, unit)
            self.values[name] = {}
        return self.values[name]

    @staticmethod
    def _put(table: dict[SampleKey, float], key: SampleKey, value: float) -> None:
        old = table.get(key)
        name = key[0]
        if old is None:
            table[key] = value
        elif name in _EARLIEST:
            table[key] = min(old, value)
        elif "_max_" in name or "_peak_" in name or name.endswith("_max_fds"):
            table[key] = max(old, value)
        else:
            table[key] = old + value

    def metrics(self) -> list[Metric]:
        out = []
        for name, family in self.families.items():
            metric = Metric(name, family.documentation, family.type, family.unit)
            for (sample_name, labels), value in self.values[name].items():
                metric.add_sample(sample_name, dict(labels), value)
            out.append(metric)
        return out


def merge_expositions(texts: list[bytes]) -> list[Metric]:
    """The families of several Prometheus text scrapes, summed (see :class:`Totals`)."""
    totals = Totals()
    for text in texts:
        totals.add(text)
    return totals.metrics()


class _Families:
    """A collector that yields fixed families (for generate_latest)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _supervisor_families(supervisor: Any, reporting: int) -> list[Metric]:
    out = []

    def gauge(name: str, doc: str, value: float, kind: str = "gauge") -> None:
        metric = Metric(name, doc, kind)
        metric.add_sample(name + ("_total" if kind == "counter" else ""), {}, value)
        out.append(metric)

    gauge("fastsock_workers", "Worker slots of the supervisor", supervisor.count)
    gauge("fastsock_workers_reporting", "Workers whose numbers are in this scrape", reporting)
    gauge("fastsock_workers_restarts", "Workers restarted after a crash", supervisor.restarts,
          "counter")
    gauge("fastsock_workers_reloads", "Rolling reloads (SIGHUP)", supervisor.reloads, "counter")
    try:
        room = supervisor.report().get("room")
    except OSError:
        room = None
    if room is not None:
        gauge("fastsock_workers_descriptor_room",
              "More descriptors the workers may open before RLIMIT_NOFILE, in total", room)
    return out


class WorkerTotals:
    """The totals across workers over time: a worker that is gone (reloaded,
    crashed) keeps its last scraped counters and histograms in the totals, so
    they do not go backwards when a worker is replaced (what it counted after
    its last scrape is lost)."""

    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor
        self.retired = Totals()
        self.last: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def scrape(self, timeout: float = ASK_TIMEOUT) -> bytes:
        """One scrape of every worker, summed, plus the supervisor's own gauges."""
        with self.lock:
            answers = self.supervisor.ask("metrics", timeout)
            current = set(self.supervisor.pids())
            for pid in [p for p in self.last if p not in current]:
                self.retired.add(self.last.pop(pid), monotonic_only=True)
            totals = Totals()
            totals.add_totals(self.retired)
            reporting = 0
            for _, pid, body in answers:
                if body is not None:
                    reporting += 1
                    self.last[pid] = body
                    totals.add(body)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Families(totals.metrics()
                                        + _supervisor_families(self.supervisor, reporting)))
            return bytes(generate_latest(registry))


def merged_connections(supervisor: Any, limit: Optional[int],
                       timeout: float = ASK_TIMEOUT) -> dict[str, Any]:
    """Every worker's connections snapshot as one (rows carry their ``worker``)."""
    request = "connections" if limit is None else f"connections {limit}"
    rows: list[dict[str, Any]] = []
    listening: list[str] = []
    handshakes = count = truncated = 0
    workers = []
    for slot, pid, body in supervisor.ask(request, timeout):
        entry: dict[str, Any] = {"worker": slot, "pid": pid, "answered": body is not None}
        workers.append(entry)
        if body is None:
            continue
        snap = json.loads(body)
        entry["count"] = snap.get("count", 0)
        for address in snap.get("listening", []):
            if address not in listening:
                listening.append(address)
        handshakes += snap.get("handshakes", 0)
        count += snap.get("count", 0)
        truncated += snap.get("truncated", 0)
        for row in snap.get("connections", []):
            row["worker"] = slot
            rows.append(row)
    if limit is not None and len(rows) > limit:
        truncated += len(rows) - limit
        rows = rows[:limit]
    return {"version": SNAPSHOT_VERSION, "pid": supervisor.pid, "time": round(time.time(), 3),
            "listening": listening, "handshakes": handshakes, "count": count,
            "truncated": truncated, "workers": workers, "connections": rows}


class WorkersMetricsServer:
    """Serves the totals on ``sock`` (a bound, listening TCP socket) from a
    daemon thread: ``GET path`` and ``GET path/connections[?limit=N]``."""

    def __init__(self, supervisor: Any, sock: socket.socket, path: str,
                 timeout: float = ASK_TIMEOUT) -> None:
        self.supervisor = supervisor
        self.totals = WorkerTotals(supervisor)
        self.path = path
        self.table_path = connections_path(path)
        self.timeout = timeout
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass               # scrapes are not news

        sock.setblocking(True)
        self.httpd = http.server.ThreadingHTTPServer(sock.getsockname()[:2], Handler,
                                                     bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fastsock-metrics",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(request.path)
        try:
            if parts.path == self.path:
                body, content_type, status = self.totals.scrape(self.timeout), CONTENT_TYPE, 200
            elif parts.path == self.table_path:
                limit: Optional[int] = None
                for key, value in urllib.parse.parse_qsl(parts.query):
                    if key == "limit" and value.isdigit():
                        limit = int(value)
                body = json.dumps(merged_connections(self.supervisor, limit, self.timeout),
                                  separators=(",", ":")).encode()
                content_type, status = "application/json", 200
            else:
                body, content_type, status = b"404 Not Found\n", "text/plain", 404
        except Exception:           # a scrape must never take the supervisor down
            log.exception("supervisor: answering %s failed", parts.path)
            body, content_type, status = b"500 Internal Server Error\n", "text/plain", 500
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(body)


def worker_answer(metrics: Any) -> Callable[[str], bytes]:
    """What a worker answers its supervisor's requests with (``Worker.serve_requests``):
    ``metrics`` → its scrape in the text format, ``connections [N]`` → its
    connections snapshot as JSON."""
    def answer(request: str) -> bytes:
        word, _, arg = request.partition(" ")
        if word == "metrics":
            return bytes(generate_latest(metrics.registry))
        if word == "connections":
            limit = int(arg) if arg.isdigit() else None
            return json.dumps(metrics.connections(limit), separators=(",", ":")).encode()
        return b""
    return answer
