"""Pieces every ``python -m fastsock serve APP`` shares.

- :func:`add_common_arguments`: ``--host``, ``--port``, ``--loop``, ``--backlog``,
  ``--raise-nofile``, ``--shutdown-timeout``, ``--quiet``.
- :func:`ready`: the one stdout line tools wait for,
  ``fastsock <app> listening on <scheme>://<host>:<port>``.
- :func:`serve_tcp`: run a protocol factory as a TCP server on the chosen
  loop (fastsock's reactor, asyncio or uvloop) until SIGINT/SIGTERM, then
  stop gracefully: stop accepting, close every connection (buffered writes
  drain up to the deadline), exit 0.
- :func:`add_tls_arguments` / :func:`server_ssl_context`: ``--certfile`` and
  ``--keyfile`` (wss:// and TLS servers).
- :class:`AppError`: a bad-input or runtime failure the CLI reports as ONE
  line on stderr with exit code 2 (usage) or 1 (runtime), no traceback.
"""
from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import ssl
import sys
from typing import Any, Callable, Protocol as _TypingProtocol

from fastsock.limits import DescriptorWatch, default_watch, log_summary, raise_nofile

__all__ = [
    "AppError",
    "Connections",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "LOOPS",
    "add_common_arguments",
    "add_tls_arguments",
    "bind_error",
    "format_address",
    "port",
    "prepare",
    "ready",
    "resolve_host",
    "serve_tcp",
    "server_ssl_context",
]

log = logging.getLogger("fastsock.serve")

EXIT_USAGE = 2
EXIT_RUNTIME = 1
LOOPS = ("fastsock", "asyncio", "uvloop")


class AppError(Exception):
    """A problem to report as one line: ``fastsock: error: <message>``."""

    def __init__(self, message: str, exit_code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- arguments ----------------------------------------------------------------

def port(text: str) -> int:
    """argparse type for a TCP/UDP port: an integer in 0..65535 (0 = any free port)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _host(text: str) -> str:
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError(
            "host must not be empty (use 0.0.0.0 or :: to listen on every interface)")
    if host.startswith("[") and host.endswith("]"):  # accept the URL form [::1]
        host = host[1:-1]
    return host


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _backlog(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"backlog must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"backlog must be a positive integer, got {value}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """Add the options every server app takes."""
    group = parser.add_argument_group("server options")
    group.add_argument("--host", type=_host, default="127.0.0.1",
                       help="address or name to listen on (default: %(default)s; "
                            "0.0.0.0 or :: for every interface)")
    group.add_argument("--port", type=port, default=default_port,
                       help="port to listen on, 0 for any free port (default: %(default)s)")
    group.add_argument("--loop", choices=LOOPS, default="fastsock",
                       help="event loop to run on (default: %(default)s)")
    group.add_argument("--backlog", type=_backlog, default=1024,
                       help="listen() backlog; the kernel caps it at net.core.somaxconn "
                            "(default: %(default)s)")
    group.add_argument("--raise-nofile", action="store_true",
                       help="raise the soft descriptor limit (RLIMIT_NOFILE) to the hard one first")
    group.add_argument("--shutdown-timeout", type=_positive_float, default=5.0, metavar="SECONDS",
                       help="on SIGINT/SIGTERM, how long buffered writes may drain before "
                            "connections are cut (default: %(default)s)")
    group.add_argument("--quiet", action="store_true",
                       help="log only warnings and errors (the ready line is still printed)")


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--certfile`` and ``--keyfile``: serve over TLS (wss://)."""
    group = parser.add_argument_group("TLS options")
    group.add_argument("--certfile", metavar="FILE",
                       help="PEM certificate chain: serve over TLS (wss://) with it")
    group.add_argument("--keyfile", metavar="FILE",
                       help="PEM private key of --certfile (default: read from --certfile)")


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from ``--certfile``/``--keyfile``, or None
    without them; a missing or unusable file is an :class:`AppError`."""
    certfile = getattr(args, "certfile", None)
    keyfile = getattr(args, "keyfile", None)
    if certfile is None:
        if keyfile is not None:
            raise AppError("--keyfile needs --certfile", EXIT_USAGE)
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise AppError(f"cannot load the TLS certificate {certfile}"
                       f"{f' / key {keyfile}' if keyfile else ''}: {exc}", EXIT_USAGE) from None
    return ctx


# -- addresses ----------------------------------------------------------------

def resolve_host(host: str, port_: int) -> tuple[socket.AddressFamily, str]:
    """Resolve ``host`` to one numeric address to listen on.

    Resolving once here makes every loop bind the same single address (a name
    such as ``localhost`` would otherwise bind ::1 and 127.0.0.1, each on its
    own port when ``--port 0``) and turns a bad name into a clear usage error.
    """
    try:
        infos = socket.getaddrinfo(host, port_, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AppError(f"bad host {host!r}: {exc.strerror}", EXIT_USAGE) from None
    except UnicodeError:
        raise AppError(f"bad host {host!r}: not a valid host name", EXIT_USAGE) from None
    # Prefer IPv4 when a name resolves to both: it is what clients try first
    # on most machines, and it keeps the ready line predictable.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return socket.AddressFamily(family), str(sockaddr[0])


def format_address(host: str, port_: int) -> str:
    """``host:port`` with an IPv6 host in brackets."""
    return f"[{host}]:{port_}" if ":" in host else f"{host}:{port_}"


def ready(app: str, scheme: str, host: str, port_: int) -> None:
    """Print the one line that tells tools the server accepts connections
    (a worker sends it to its supervisor, which prints it once for all)."""
    from fastsock.workers import current
    worker = current()
    if worker is not None:
        worker.ready(f"fastsock {app} listening on {scheme}://{format_address(host, port_)}")
        return
    sys.stdout.write(f"fastsock {app} listening on {scheme}://{format_address(host, port_)}\n")
    sys.stdout.flush()


def bind_error(exc: OSError, host: str, port_: int) -> AppError:
    """Turn a listen/bind failure into one clear line."""
    where = format_address(host, port_)
    code = exc.errno
    if code == errno.EADDRINUSE:
        return AppError(f"cannot listen on {where}: the port is already in use")
    if code in (errno.EACCES, errno.EPERM):
        return AppError(
            f"cannot listen on {where}: permission denied (ports below 1024 need root or "
            f"CAP_NET_BIND_SERVICE; pick a port >= 1024)")
    if code == errno.EADDRNOTAVAIL:
        return AppError(f"cannot listen on {where}: {host} is not an address of this machine")
    if code in (errno.EMFILE, errno.ENFILE):
        return AppError(f"cannot listen on {where}: out of file descriptors "
                        f"(see: python -m fastsock limits)")
    reason = exc.strerror or str(exc)
    return AppError(f"cannot listen on {where}: {reason}")


# -- start-up -----------------------------------------------------------------

def prepare(args: argparse.Namespace) -> None:
    """Check the host, then set up logging, the optional descriptor raise and
    the limits summary (all on stderr)."""
    if hasattr(args, "host") and hasattr(args, "port"):
        resolve_host(args.host, args.port)  # a bad host fails before anything is logged
    root = logging.getLogger("fastsock")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    if getattr(args, "raise_nofile", False):
        try:
            raise_nofile()
        except OSError as exc:
            log.warning("cannot raise the descriptor limit: %s", exc)
    # Once per process: fastsock's TCP server makes the same call at its
    # first start, which is then a no-op, so the summary appears before binding.
    log_summary(logging.getLogger("fastsock.limits"))


class ProtocolFactory(_TypingProtocol):
    def __call__(self) -> Any: ...


class Connections:
    """The live transports of a server, so a graceful stop can close them.

    A protocol calls ``add(transport)`` in ``connection_made`` and
    ``discard(transport)`` in ``connection_lost``: two set operations per
    connection, nothing per message. With a ``watch`` (set by
    :func:`serve_tcp` on the asyncio/uvloop loops, whose servers do not count
    descriptors themselves) each connection is also counted in the
    :class:`~fastsock.limits.DescriptorWatch`, which warns before the
    process runs out.
    """

    __slots__ = ("_live", "watch")

    def __init__(self, watch: DescriptorWatch | None = None) -> None:
        self._live: set[Any] = set()
        self.watch = watch

    def add(self, transport: Any) -> None:
        self._live.add(transport)
        if self.watch is not None:
            self.watch.opened()

    def discard(self, transport: Any) -> None:
        if transport in self._live:
            self._live.discard(transport)
            if self.watch is not None:
                self.watch.closed()

    def __len__(self) -> int:
        return len(self._live)

    def close_all(self) -> None:
        """Close every connection: buffered data is flushed first."""
        for transport in list(self._live):
            transport.close()

    def abort_all(self) -> None:
        """Cut every remaining connection at once (each is discarded when
        its ``connection_lost`` runs)."""
        for transport in list(self._live):
            transport.abort()


# -- serving ------------------------------------------------------------------

def serve_tcp(app: str, protocol_factory: ProtocolFactory, args: argparse.Namespace, *,
              connections: Connections | None = None, scheme: str = "tcp") -> int:
    """Run ``protocol_factory`` as a TCP server on ``args.loop`` until
    SIGINT/SIGTERM; print the ready line once listening. Returns 0 after a
    graceful stop; raises :class:`AppError` for bad input or a bind failure."""
    _, host = resolve_host(args.host, args.port)
    if args.loop == "fastsock":  # its TCP server counts descriptors itself
        return _serve_fastsock(app, protocol_factory, args, host, connections, scheme)
    if connections is not None and connections.watch is None:
        connections.watch = default_watch()
    return _serve_asyncio(app, protocol_factory, args, host, connections, scheme)


def _serve_fastsock(app: str, factory: ProtocolFactory, args: argparse.Namespace, host: str,
                    connections: Connections | None, scheme: str) -> int:
    try:
        from fastsock.reactor import Reactor
        from fastsock.transports.tcp import create_tcp_server
    except ImportError as exc:
        raise AppError(f"the fastsock loop is not available here ({exc}); "
                       f"use --loop asyncio or --loop uvloop") from None
    reactor = Reactor()
    try:
        try:
            from fastsock.apps._workers import listen_socket
            server = create_tcp_server(reactor, factory, host, args.port, backlog=args.backlog,
                                       sock=listen_socket())
        except OSError as exc:
            raise bind_error(exc, host, args.port) from None
        bound_host, bound_port = server.addresses[0][:2]

        def stop_serving(deadline: float) -> None:
            server.close()
            if connections is not None:
                connections.close_all()

        reactor.add_shutdown_hook(stop_serving)
        reactor.install_shutdown_signals(args.shutdown_timeout)
        ready(app, scheme, bound_host, bound_port)
        reactor.run_forever()
        if connections is not None:
            connections.abort_all()  # whatever did not drain before the deadline
        server.close()
    finally:
        reactor.close()
    log.info("%s stopped", app)
    return 0


def _serve_asyncio(app: str, factory: ProtocolFactory, args: argparse.Namespace, host: str,
                   connections: Connections | None, scheme: str) -> int:
    import asyncio

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise AppError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop

    async def main() -> int:
        loop = asyncio.get_running_loop()
        from fastsock.apps._workers import listen_socket
        sock = listen_socket()
        try:
            if sock is not None:    # a worker: its supervisor's listener
                server = await loop.create_server(factory, sock=sock, backlog=args.backlog)
            else:
                server = await loop.create_server(factory, host, args.port, backlog=args.backlog,
                                                  reuse_address=True)
        except OSError as exc:
            raise bind_error(exc, host, args.port) from None
        if connections is not None and connections.watch is not None:
            connections.watch.resync()  # count the loop's and the listener's descriptors
        stop = loop.create_future()

        def on_signal(signum: int) -> None:
            if not stop.done():
                log.info("%s: %s received, stopping", app, signal.Signals(signum).name)
                stop.set_result(signum)
            elif connections is not None:  # a second signal: stop waiting
                connections.abort_all()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        sockname = server.sockets[0].getsockname()
        ready(app, scheme, sockname[0], sockname[1])
        await stop
        server.close()
        if connections is not None:
            connections.close_all()
            deadline = loop.time() + args.shutdown_timeout
            while len(connections) and loop.time() < deadline:
                await asyncio.sleep(0.01)
            connections.abort_all()
            await asyncio.sleep(0)  # let the aborts run connection_lost
        await server.wait_closed()
        return 0

    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    log.info("%s stopped", app)
    return code

