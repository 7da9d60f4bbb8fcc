"""``--pubsub URL`` for the apps that publish (broadcast, chat, demo).

Without it an app uses the in-process hub; with ``redis://host:port`` (or
``redis+cluster://host:port,...`` for a Redis Cluster) its topics span every
process started with the same URL (``--workers`` on one machine, or several
machines).
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from fastsock.apps._common import EXIT_USAGE, AppError
from fastsock.pubsub import Hub, create_hub

__all__ = ["add_pubsub_arguments", "hub_from", "start_hub"]

log = logging.getLogger("fastsock.serve")

DEFAULT_QUEUE = 10_000   # fastsock.pubsub.redis.DEFAULT_MAX_QUEUE, without importing redis-py


def _queue(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of messages, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_pubsub_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pub/sub (Redis needs: pip install fastsock[redis])")
    group.add_argument("--pubsub", metavar="URL", default=None,
                       help="share topics with every process using this broker, e.g. "
                            "redis://127.0.0.1:6379, or a Redis Cluster through sharded "
                            "pub/sub: redis+cluster://HOST:PORT[,HOST:PORT...] "
                            "(default: within this process only)")
    group.add_argument("--pubsub-queue", type=_queue, default=DEFAULT_QUEUE, metavar="N",
                       help="messages kept while the broker is unreachable; beyond that the "
                            "oldest are dropped and counted (default: %(default)s)")


def hub_from(args: argparse.Namespace) -> Hub:
    """The hub ``--pubsub`` asks for; one-line errors for a bad URL or no redis-py."""
    url = getattr(args, "pubsub", None)
    if url is None:
        return create_hub()
    try:
        return create_hub(url, max_queue=args.pubsub_queue)
    except ValueError as exc:
        raise AppError(f"--pubsub: {exc}", EXIT_USAGE) from None
    except ImportError as exc:
        raise AppError(f"--pubsub {url}: {exc}") from None


def start_hub(hub: Hub, server: Any) -> None:
    """Start ``hub`` on the server's loop. Pass ``on_shutdown=hub.aclose`` to
    ``serve_ws`` too: it closes the hub's connections at the end."""
    loop = server.state.loop
    hub.start(loop)
    add_hook = getattr(loop, "add_shutdown_hook", None)   # fastsock's reactor
    if add_hook is not None:
        # stop reconnecting while the connections drain (aclose comes after)
        add_hook(lambda deadline: hub.close())
    url = getattr(hub, "url", None)
    if url is not None:
        log.info("pub/sub through %s (this process: %s)", url, hub.node_id)
