"""``python -m fastsock serve udp-echo``: send every datagram back to its sender.

:class:`EchoProtocol` has asyncio's DatagramProtocol shape, so the same class
runs on fastsock's reactor (batched recvmmsg/sendmmsg), asyncio's loop and
uvloop's loop (``--loop``); the UDP benchmark compares exactly that.

Back-pressure: while the transport says ``pause_writing`` the echo is skipped
and counted, so memory stays bounded on every loop (asyncio's datagram
transport never drops by itself). UDP is lossy anyway; the client sees a loss.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from typing import Any

from fastsock.apps._common import (
    EXIT_USAGE, AppError, add_common_arguments, bind_error, prepare, ready, resolve_host)
from fastsock.apps._metrics import MetricsSetup, add_metrics_arguments, check_metrics_arguments
from fastsock.apps._workers import add_worker_arguments, listen_socket

__all__ = ["DEFAULT_PORT", "DESCRIPTION", "EchoProtocol", "add_arguments", "run"]

DESCRIPTION = "UDP echo server: sends every datagram back to its sender"
DEFAULT_PORT = 9000

log = logging.getLogger("fastsock.serve")


class EchoProtocol(asyncio.DatagramProtocol):
    """UDP echo for any loop with asyncio's datagram protocol shape."""

    __slots__ = ("transport", "paused", "skipped", "errors")

    def __init__(self) -> None:
        self.transport: Any = None
        self.paused = False
        self.skipped = 0   # echoes not sent while the transport was paused
        self.errors = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.paused:
            self.skipped += 1
            return
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Typically ICMP port unreachable: a client went away. Keep serving.
        self.errors += 1
        log.debug("udp-echo: %s", exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _batch(text: str) -> int:
    value = _positive_int(text)
    if value > 1024:
        raise argparse.ArgumentTypeError(f"batch must be in 1..1024, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, DEFAULT_PORT)
    group = parser.add_argument_group("UDP options")
    group.add_argument("--batch", type=_batch, default=64,
                       help="datagrams per recvmmsg/sendmmsg on the fastsock loop "
                            "(default: %(default)s)")
    group.add_argument("--rcvbuf", type=_positive_int, default=None, metavar="BYTES",
                       help="request SO_RCVBUF (the kernel doubles it and caps it at "
                            "net.core.rmem_max; the granted size is logged)")
    group.add_argument("--sndbuf", type=_positive_int, default=None, metavar="BYTES",
                       help="request SO_SNDBUF (capped at net.core.wmem_max)")
    group.add_argument("--reuse-port", action="store_true",
                       help="set SO_REUSEPORT so several processes can share the port")
    add_metrics_arguments(parser, same_port=False)
    add_worker_arguments(parser, udp=True)


def run(args: argparse.Namespace) -> int:
    check_metrics_arguments(args, same_port=False)
    if args.metrics_port is not None and args.loop != "fastsock":
        # The UDP counters are those of fastsock's transport.
        raise AppError("--metrics-port needs --loop fastsock (asyncio's datagram "
                       "transport keeps no counters)", EXIT_USAGE)
    prepare(args)
    app = getattr(args, "app", "udp-echo")
    family, host = resolve_host(args.host, args.port)
    if args.loop == "fastsock":
        return _run_fastsock(app, args, host)
    return _run_asyncio(app, args, host, family)


def _run_fastsock(app: str, args: argparse.Namespace, host: str) -> int:
    try:
        from fastsock.reactor import Reactor
        from fastsock.transports.udp import create_udp_endpoint
    except ImportError as exc:
        raise AppError(f"the fastsock loop is not available here ({exc}); "
                       f"use --loop asyncio or --loop uvloop") from None
    metrics = MetricsSetup(args, host, same_port=False)
    reactor = Reactor()
    worker_sock = listen_socket()   # --workers: this worker's socket of the port's group
    try:
        try:
            if worker_sock is not None:
                transport, _ = create_udp_endpoint(
                    reactor, EchoProtocol, sock=worker_sock, batch=args.batch,
                    rcvbuf=args.rcvbuf, sndbuf=args.sndbuf)
            else:
                transport, _ = create_udp_endpoint(
                    reactor, EchoProtocol, local_addr=(host, args.port), batch=args.batch,
                    rcvbuf=args.rcvbuf, sndbuf=args.sndbuf, reuse_port=args.reuse_port)
        except OSError as exc:
            raise bind_error(exc, host, args.port) from None
        sockname = transport.get_extra_info("sockname")
        log.info("%s: %s I/O, batch %d, SO_RCVBUF %d, SO_SNDBUF %d granted", app,
                 transport.implementation, args.batch, transport.get_extra_info("rcvbuf"),
                 transport.get_extra_info("sndbuf"))
        reactor.install_shutdown_signals(args.shutdown_timeout)
        if metrics.metrics is not None:
            metrics.metrics.add_udp(transport, app)
            metrics.start(app, reactor, sockname[:2])
        ready(app, "udp", sockname[0], sockname[1])
        reactor.run_forever()
        stats = transport.stats
        transport.abort()
        log.info("%s stopped: %s", app, " ".join(f"{k}={v}" for k, v in stats.items()))
    finally:
        metrics.close()
        reactor.close()
    return 0


def _run_asyncio(app: str, args: argparse.Namespace, host: str,
                 family: socket.AddressFamily) -> int:
    loop: asyncio.AbstractEventLoop
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise AppError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def main() -> int:
        running = asyncio.get_running_loop()
        worker_sock = listen_socket()
        if worker_sock is not None:       # --workers: already bound, SO_REUSEPORT
            for option, size in ((socket.SO_RCVBUF, args.rcvbuf), (socket.SO_SNDBUF, args.sndbuf)):
                if size:
                    worker_sock.setsockopt(socket.SOL_SOCKET, option, size)
            return await serve(worker_sock)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if args.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if args.rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
            if args.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
            sock.bind((host, args.port))
        except OSError as exc:
            sock.close()
            raise bind_error(exc, host, args.port) from None
        return await serve(sock)

    async def serve(sock: socket.socket) -> int:
        running = asyncio.get_running_loop()
        transport, _ = await running.create_datagram_endpoint(EchoProtocol, sock=sock)
        stop = running.create_future()
        def on_signal() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(sig, on_signal)
        sockname = transport.get_extra_info("sockname")
        ready(app, "udp", sockname[0], sockname[1])
        await stop
        transport.close()
        await asyncio.sleep(0)
        return 0

    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    log.info("%s stopped", app)
    return code
