"""``--workers N`` for the TCP and WebSocket apps (see :mod:`fastsock.workers`).

The CLI calls :func:`run_app_workers` when ``--workers`` is given. In the
supervisor it prints the app's ready line once every worker accepts; in a
worker it runs the app itself, which then serves on the worker's inherited
listener (:func:`listen_socket`) and reports ready through the worker
(``_common.ready`` does that) instead of printing.
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any, Optional

from fastsock.apps._common import AppError, format_address, prepare, resolve_host
from fastsock.workers import Supervisor, current, run_workers

__all__ = ["add_worker_arguments", "listen_socket", "run_app_workers"]

log = logging.getLogger("fastsock.serve")


def _workers(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workers must be a number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"workers must be >= 0 (0 = one per core), got {value}")
    return value


def add_worker_arguments(parser: argparse.ArgumentParser, *, udp: bool = False) -> None:
    """``--workers N``; ``udp``: each worker gets a bound UDP socket of the port
    (the app reads :func:`listen_socket`)."""
    group = parser.add_argument_group("workers")
    group.add_argument("--workers", type=_workers, default=None, metavar="N",
                       help="run N worker processes on the port (SO_REUSEPORT), 0 = one per "
                            "core; SIGHUP reloads them one by one (default: one process)")
    parser.set_defaults(worker_socket_type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)


def listen_socket() -> Optional[socket.socket]:
    """The listener (or, for UDP, the bound socket) this process must serve on
    when it is a worker, else None."""
    worker = current()
    return None if worker is None else worker.socket


def run_app_workers(args: argparse.Namespace) -> int:
    """Run ``args._run(args)`` in ``args.workers`` processes (the CLI's ``--workers``)."""
    metrics_sock = None
    if current() is None:
        prepare(args)  # logging for the supervisor (each worker sets up its own)
        if getattr(args, "pubsub", None) is not None:
            from fastsock.apps._pubsub import hub_from
            hub_from(args)   # a bad URL is one usage error here, not N failing workers
        if hasattr(args, "pubsub") and args.pubsub is None and args.workers != 1:
            log.warning("each worker has its own in-process hub, so messages reach only the "
                        "clients of the worker they arrive at; share them with "
                        "--pubsub redis://HOST:PORT")
    _, host = resolve_host(args.host, args.port)
    metrics_port = getattr(args, "metrics_port", None)
    if current() is None and metrics_port is not None:
        # The supervisor serves the metrics port: the totals across workers.
        try:
            from fastsock.metrics import Metrics
            from fastsock.workers_metrics import WorkersMetricsServer
        except ImportError as exc:
            raise AppError(f"--metrics-port needs prometheus-client ({exc}): "
                           f"pip install 'fastsock[metrics]'") from None
        from fastsock.apps._common import bind_error
        from fastsock.apps._metrics import DEFAULT_METRICS_PATH
        try:
            metrics_sock = Metrics.bind(host, metrics_port)
        except OSError as exc:
            raise bind_error(exc, host, metrics_port) from None
    servers: list[Any] = []

    def announce(supervisor: Supervisor) -> None:
        if metrics_sock is not None:
            path = getattr(args, "metrics", None) or DEFAULT_METRICS_PATH
            server = WorkersMetricsServer(supervisor, metrics_sock, path)
            server.start()
            servers.append(server)
            where = metrics_sock.getsockname()
            log.info("supervisor: Prometheus metrics of all workers (totals) on http://%s%s",
                     format_address(where[0], where[1]), path)
        sys.stdout.write(supervisor.ready_line + "\n")
        sys.stdout.flush()

    try:
        code = run_workers(lambda worker: int(args._run(args)), args.workers, host=host,
                           port=args.port, backlog=args.backlog,
                           shutdown_timeout=args.shutdown_timeout, on_ready=announce,
                           type=getattr(args, "worker_socket_type", socket.SOCK_STREAM))
    except OSError as exc:
        from fastsock.apps._common import bind_error
        raise bind_error(exc, host, args.port) from None
    finally:
        for server in servers:
            server.close()
        if metrics_sock is not None:
            metrics_sock.close()
    if code != 0 and current() is None:
        raise AppError("the workers failed to start (their errors are logged above)")
    return code
