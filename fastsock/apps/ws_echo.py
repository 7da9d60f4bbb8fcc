"""``python -m fastsock serve echo``: a WebSocket echo server on any path.

Every message goes back to its sender with its type (text stays text). As a
conformance and benchmark target it accepts messages up to 64 MiB in any
number of fragments and sends no keep-alive pings by default; the library's
own defaults (1 MiB messages, pings every 20 s) stay safe. ``--api async``
runs the same echo through the coroutine API (:func:`echo`);
``--certfile``/``--keyfile`` serve wss://. This module also holds what the
other WebSocket apps share: :func:`add_ws_arguments` and :func:`serve_ws`.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any, Callable, Optional

from fastsock.apps._common import (
    AppError, add_common_arguments, add_tls_arguments, bind_error, prepare, ready, resolve_host,
    server_ssl_context,
)
from fastsock.apps._metrics import MetricsSetup, add_metrics_arguments
from fastsock.apps._workers import add_worker_arguments, listen_socket
from fastsock.websocket import WebSocketHandler, WebSocketOptions

__all__ = ["APIS", "DEFAULT_PORT", "DESCRIPTION", "EchoHandler", "add_arguments",
           "add_ws_arguments", "echo", "options_from", "run", "serve_ws"]

log = logging.getLogger("fastsock.serve")

DESCRIPTION = "WebSocket echo server: every message goes back with its type, on any path"
DEFAULT_PORT = 8765


class EchoHandler(WebSocketHandler):
    """``send`` keeps the type (str → text, bytes → binary), so it *is* the echo."""

    __slots__ = ()
    # send() accepts a superset of what on_message receives; binding it
    # directly saves one Python call per message.
    on_message = WebSocketHandler.send  # type: ignore[assignment]


async def echo(ws: Any) -> None:
    """The echo for the coroutine API (``--api async``): each message back, same type."""
    async for message in ws:
        await ws.send(message)


# --api: the callback handler (the fastest path) or the coroutine one
APIS = ("callback", "async")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 65536, 64k or 64M, got {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def add_ws_arguments(parser: argparse.ArgumentParser, default_port: int = DEFAULT_PORT, *,
                     max_message_size: int = 64 << 20, ping_interval: float = 0.0) -> None:
    """The common server options plus the WebSocket limits."""
    add_common_arguments(parser, default_port)
    group = parser.add_argument_group("WebSocket options")
    group.add_argument("--max-message-size", type=_size, default=max_message_size, metavar="BYTES",
                       help="largest message accepted, e.g. 1M; bigger ones close with 1009 "
                            "(default: %(default)s)")
    group.add_argument("--ping-interval", type=_seconds, default=ping_interval, metavar="SECONDS",
                       help="keep-alive ping period, 0 = off (default: %(default)s)")
    group.add_argument("--ping-timeout", type=_seconds, default=20.0, metavar="SECONDS",
                       help="close a peer whose pong is this late (default: %(default)s)")
    group.add_argument("--close-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                       help="how long to wait for the peer's close (default: %(default)s)")
    group.add_argument("--handshake-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                       help="drop a client that has not finished its handshake by then "
                            "(default: %(default)s)")
    group.add_argument("--write-limit", type=_size, default=1 << 20, metavar="BYTES",
                       help="per-connection write buffer where back-pressure starts "
                            "(default: %(default)s)")
    group.add_argument("--slow-peer", choices=("pause", "drop", "disconnect"), default="pause",
                       help="what to do with a peer over --write-limit (default: %(default)s)")
    group.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                       help="permessage-deflate: accept it when a client offers it, or never "
                            "(default: %(default)s; docs/compression.md)")
    add_tls_arguments(parser)
    add_metrics_arguments(parser)
    add_worker_arguments(parser)


def options_from(args: argparse.Namespace) -> WebSocketOptions:
    return WebSocketOptions(max_message_size=args.max_message_size or None,
                            ping_interval=args.ping_interval or None,
                            ping_timeout=args.ping_timeout or None,
                            close_timeout=args.close_timeout, write_limit=args.write_limit,
                            slow_peer=args.slow_peer)


def serve_ws(app: str, handler: Any, args: argparse.Namespace, *,
             on_start: Optional[Callable[[Any], None]] = None, hub: Any = None,
             **kwargs: Any) -> int:
    """Run a WebSocket server for an app on ``args.loop`` until SIGINT/SIGTERM;
    print the ready line; close every connection with 1001 on the way out.
    ``on_start(server)`` runs once it listens (e.g. to start a hub on its loop);
    ``hub``'s counters join the metrics (``--metrics``)."""
    prepare(args)
    _, host = resolve_host(args.host, args.port)
    ssl_context = server_ssl_context(args)
    kwargs.setdefault("options", options_from(args))
    kwargs.setdefault("handshake_timeout", args.handshake_timeout)
    kwargs.setdefault("compression", None if getattr(args, "compression", "deflate") == "none"
                      else "deflate")
    metrics = MetricsSetup(args, host)
    if metrics.metrics is not None:
        from fastsock.server import default_http_handler
        kwargs["http_handler"] = metrics.http_handler(kwargs.get("http_handler", default_http_handler))
    from fastsock.coroutine import is_coroutine_handler
    if ssl_context is not None or is_coroutine_handler(handler):
        try:
            return _serve_on_loop(app, handler, args, host, ssl_context, metrics, on_start, kwargs,
                                  hub)
        finally:
            metrics.close()

    def on_ready(server: Any) -> None:
        if args.loop == "fastsock":
            bound_host, bound_port = server.addresses[0][:2]
        else:
            bound_host, bound_port = server.sockets[0].getsockname()[:2]
        if metrics.metrics is not None:
            metrics.metrics.add_server(server)
            if hub is not None:
                metrics.metrics.add_hub(hub)
            metrics.start(app, server.state.loop, (bound_host, bound_port))
        if on_start is not None:
            on_start(server)
        ready(app, "ws", bound_host, bound_port)

    try:
        if args.loop == "fastsock":
            from fastsock.server import run
            return run(handler, host, args.port, on_ready=on_ready, backlog=args.backlog,
                       shutdown_timeout=args.shutdown_timeout, sock=listen_socket(), **kwargs)
        from fastsock.adapters.aio import run as aio_run
        if args.loop == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise AppError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return aio_run(handler, host, args.port, loop=args.loop, on_ready=on_ready,
                       backlog=args.backlog, shutdown_timeout=args.shutdown_timeout,
                       sock=listen_socket(), **kwargs)
    except OSError as exc:
        raise bind_error(exc, host, args.port) from None
    finally:
        metrics.close()


def _serve_on_loop(app: str, handler: Any, args: argparse.Namespace, host: str,
                   ssl_context: Any, metrics: MetricsSetup,
                   on_start: Optional[Callable[[Any], None]], kwargs: dict[str, Any],
                   hub: Any = None) -> int:
    """Serve through the loop's ``create_server`` (fastsock's, asyncio's or
    uvloop's): the path of coroutine handlers and of TLS. Stops like the
    others: SIGINT/SIGTERM, 1001 to every client, ``--shutdown-timeout``."""
    from fastsock.adapters import aio
    from fastsock.coroutine import Server, is_coroutine_handler

    async def main() -> int:
        loop = asyncio.get_running_loop()
        server: Any
        try:
            if is_coroutine_handler(handler):
                server = await Server(handler, host, args.port, ssl=ssl_context,
                                      backlog=args.backlog, sock=listen_socket(), **kwargs).start()
            else:
                server = await aio.serve(handler, host, args.port, ssl=ssl_context,
                                         backlog=args.backlog, sock=listen_socket(), **kwargs)
        except OSError as exc:
            raise bind_error(exc, host, args.port) from None
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        if metrics.metrics is not None:
            metrics.metrics.add_server(server)
            if hub is not None:
                metrics.metrics.add_hub(hub)
            metrics.start(app, loop, (bound_host, bound_port))
        if on_start is not None:
            on_start(server)
        stop = loop.create_future()

        def on_signal(signum: int) -> None:
            if not stop.done():
                log.info("%s: %s received, stopping", app, signal.Signals(signum).name)
                stop.set_result(signum)
            else:                      # a second signal: stop waiting
                server.state.abort_all()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        ready(app, "wss" if ssl_context is not None else "ws", bound_host, bound_port)
        await stop
        server.close()
        await server.wait_closed(args.shutdown_timeout)
        return 0

    if args.loop == "fastsock":
        import fastsock
        event_loop: asyncio.AbstractEventLoop = fastsock.new_event_loop()
    else:
        if args.loop == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise AppError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        event_loop = aio.new_loop(args.loop)
    try:
        asyncio.set_event_loop(event_loop)
        code: int = event_loop.run_until_complete(main())
        return code
    finally:
        asyncio.set_event_loop(None)
        event_loop.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ws_arguments(parser)
    parser.add_argument("--api", choices=APIS, default="callback",
                        help="callback: a WebSocketHandler (the fastest path); async: "
                             "`async def handler(ws)` through the coroutine API "
                             "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    handler: Any = echo if getattr(args, "api", "callback") == "async" else EchoHandler
    return serve_ws(getattr(args, "app", "echo"), handler, args)
