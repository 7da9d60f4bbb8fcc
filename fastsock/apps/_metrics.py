"""``--metrics PATH`` and ``--metrics-port PORT`` for the server apps.

prometheus_client is imported only when one of them is given, so the apps
run without the ``metrics`` extra. The metrics port is bound before the
server starts (a port in use is a one-line error, like ``--port``) and is
served by the server's own loop (fastsock.metrics.Metrics.listen).
"""
from __future__ import annotations

import argparse
import logging
import socket
from typing import Any, Optional

from fastsock.apps._common import EXIT_USAGE, AppError, bind_error, format_address, port

__all__ = ["DEFAULT_METRICS_PATH", "MetricsSetup", "add_metrics_arguments",
           "check_metrics_arguments"]

DEFAULT_METRICS_PATH = "/metrics"   # fastsock.metrics.DEFAULT_PATH, without importing it

log = logging.getLogger("fastsock.serve")


def _metrics_path(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"a path starts with '/', got {text!r}")
    return text


def add_metrics_arguments(parser: argparse.ArgumentParser, *, same_port: bool = True) -> None:
    """Add ``--metrics`` and ``--metrics-port``. ``same_port``: the app can
    answer plain HTTP on its own port (the WebSocket apps can, UDP cannot)."""
    group = parser.add_argument_group("metrics (needs: pip install 'fastsock[metrics]')")
    if same_port:
        path_help = ("answer Prometheus scrapes at GET PATH (e.g. /metrics) on the server's "
                     "own port, or on --metrics-port")
    else:
        path_help = f"the path of the scrapes on --metrics-port (default {DEFAULT_METRICS_PATH})"
    group.add_argument("--metrics", metavar="PATH", type=_metrics_path, default=None,
                       help=path_help)
    group.add_argument("--metrics-port", metavar="PORT", type=port, default=None,
                       help="serve Prometheus scrapes on this port of --host"
                            + ("" if not same_port else
                               f" instead (path: --metrics, default {DEFAULT_METRICS_PATH})"))


def check_metrics_arguments(args: argparse.Namespace, *, same_port: bool = True) -> None:
    """Usage errors, before the app logs anything."""
    if (getattr(args, "metrics", None) is not None and getattr(args, "metrics_port", None) is None
            and not same_port):
        raise AppError("--metrics needs --metrics-port here (this app speaks no HTTP)", EXIT_USAGE)


class MetricsSetup:
    """What ``--metrics``/``--metrics-port`` asked for: ``metrics`` (a
    fastsock.metrics.Metrics, or None when neither was given) and ``sock``,
    the metrics port's listening socket, bound at construction."""

    def __init__(self, args: argparse.Namespace, host: str, *, same_port: bool = True) -> None:
        self.path: str = getattr(args, "metrics", None) or DEFAULT_METRICS_PATH
        self.metrics: Any = None
        self.sock: Optional[socket.socket] = None
        self.worker: Any = None
        self.on_server_port = True        # scrapes at the path on the server's own port
        metrics_port = getattr(args, "metrics_port", None)
        if getattr(args, "metrics", None) is None and metrics_port is None:
            return
        check_metrics_arguments(args, same_port=same_port)
        try:
            from fastsock.metrics import Metrics
        except ImportError as exc:
            raise AppError(f"--metrics needs prometheus-client ({exc}): "
                           f"pip install 'fastsock[metrics]'") from None
        from fastsock.workers import current
        worker = self.worker = current()
        # In a worker (--workers N) a scrape reaches whichever worker the
        # kernel picks: label its numbers so each worker's are series of
        # their own (docs/metrics.md, "Several processes").
        self.metrics = Metrics(labels=None if worker is None else {"worker": str(worker.index)})
        if worker is not None and metrics_port is not None:
            metrics_port = None   # the supervisor serves it, with the totals (workers_metrics)
            self.on_server_port = False
        if metrics_port is not None:
            try:
                self.sock = Metrics.bind(host, metrics_port)
            except OSError as exc:
                raise bind_error(exc, host, metrics_port) from None

    def http_handler(self, fallback: Any) -> Any:
        """The server's http_handler: scrapes at the path on the server's own
        port when there is no metrics port, else ``fallback`` unchanged."""
        if self.metrics is None or self.sock is not None or not self.on_server_port:
            return fallback
        return self.metrics.http_handler(self.path, fallback)

    def start(self, app: str, loop: Any, where: tuple[str, int]) -> None:
        """Serve the metrics port from ``loop`` (if any) and log where scrapes go;
        ``where`` is the server's own address."""
        if self.metrics is None:
            return
        self.metrics.add_loop(loop)
        if self.worker is not None:       # answer the supervisor's scrapes for the totals
            from fastsock.workers_metrics import worker_answer
            self.worker.serve_requests(loop, worker_answer(self.metrics))
            if not self.on_server_port:
                return            # the supervisor logs where its scrapes go
        if self.sock is not None:
            self.metrics.listen(loop, self.sock, self.path)
            where = self.sock.getsockname()[:2]
        log.info("%s: Prometheus metrics on http://%s%s", app, format_address(*where), self.path)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.sock is not None:
            self.sock.close()
