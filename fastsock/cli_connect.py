"""``python -m fastsock connect URL``: an interactive WebSocket client.

Each line typed on stdin is sent as a text message; each message received
is printed on stdout (text as it is, binary as ``[binary N bytes] <hex>``).
Status lines (connected, closed) go to stderr, so stdout carries only the
messages. At the end of input (Ctrl-D, or the end of a pipe) it waits
for the answers (a ping's pong, then ``--linger`` seconds without a
message), closes the connection with 1000 and exits 0; a close by the server exits 0 for 1000
or 1001, else 1. A bad argument or a failed opening is one line on stderr
(``fastsock: error: ...``) with exit code 2 (usage) or 1 (runtime).

It runs on fastsock's loop through :func:`fastsock.connect`: redirects,
Basic auth from ``ws://user:password@host``, the proxy from the environment
(or ``--proxy``/``--no-proxy``), wss:// verified against the system CAs,
``--cafile`` or not at all (``--insecure``).
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import threading
from typing import Optional, Union

from .apps._common import EXIT_RUNTIME, EXIT_USAGE, AppError

__all__ = ["add_arguments", "run", "DESCRIPTION"]

DESCRIPTION = ("an interactive WebSocket client: sends each line typed on stdin, prints each "
               "message received on stdout")
# Hex digits of a binary message shown before it is cut short.
_BINARY_SHOWN = 64
_NORMAL_CLOSES = (1000, 1001)
# Seconds to wait for the pong at the end of input, on top of --linger.
_PONG_TIMEOUT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="ws://[user:password@]host[:port]/path "
                                                   "or wss://...")
    parser.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                        help="an extra request header (repeatable)")
    parser.add_argument("--subprotocol", action="append", default=[], metavar="NAME",
                        help="offer this subprotocol (repeatable, in order of preference)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--cafile", metavar="FILE",
                     help="wss://: trust the CA certificates in FILE (PEM) instead of the system's")
    tls.add_argument("--insecure", action="store_true",
                     help="wss://: do not verify the server's certificate or host name")
    proxy = parser.add_mutually_exclusive_group()
    proxy.add_argument("--proxy", metavar="URL",
                       help="an http:// proxy (default: from https_proxy/http_proxy/all_proxy)")
    proxy.add_argument("--no-proxy", action="store_true", help="connect directly")
    parser.add_argument("--linger", type=_seconds, default=0.5, metavar="SECONDS",
                        help="at the end of input, keep printing messages until none came for "
                             "SECONDS, then close (default 0.5)")
    parser.add_argument("--open-timeout", type=_seconds, default=10.0, metavar="SECONDS",
                        help="limit for proxy, TCP, TLS, handshake and redirects (default 10)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SECONDS must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"SECONDS must be > 0, got {text}")
    return value


def _headers(raw: list[str]) -> list[tuple[str, str]]:
    headers = []
    for item in raw:
        name, colon, value = item.partition(":")
        if not colon or not name.strip() or any(c in item for c in "\r\n"):
            raise AppError(f"--header takes 'NAME: VALUE', got {item!r}", EXIT_USAGE)
        headers.append((name.strip(), value.strip()))
    return headers


def _ssl_context(args: argparse.Namespace) -> Optional[ssl.SSLContext]:
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if args.cafile:
        try:
            return ssl.create_default_context(cafile=args.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise AppError(f"--cafile {args.cafile}: {exc}", EXIT_USAGE) from None
    return None


def _show(message: Union[str, bytes]) -> str:
    if isinstance(message, str):
        return message
    shown = message.hex()
    cut = "..." if len(shown) > _BINARY_SHOWN else ""
    return f"[binary {len(message)} bytes] {shown[:_BINARY_SHOWN]}{cut}"


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: "asyncio.Queue[Optional[str]]") -> None:
    """In a daemon thread: stdin lines into the queue, then None at the end.
    A thread works for every kind of stdin (terminal, pipe, regular file)."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)
    except RuntimeError:
        pass        # the loop is closed: the server ended the session first


async def _session(args: argparse.Namespace) -> int:
    import fastsock
    from .exceptions import ConnectionClosed, HandshakeError
    from .proxy import InvalidProxy
    from .websocket.client_handshake import InvalidURI

    headers = _headers(args.header)
    context = _ssl_context(args)
    proxy: Union[str, bool, None] = None if args.no_proxy else (args.proxy or True)
    try:
        ws = await fastsock.connect(args.url, ssl=context, headers=headers,
                                    subprotocols=args.subprotocol, proxy=proxy,
                                    open_timeout=args.open_timeout)
    except (InvalidURI, InvalidProxy) as exc:
        raise AppError(str(exc), EXIT_USAGE) from None
    except (HandshakeError, OSError) as exc:
        raise AppError(f"cannot connect to {args.url}: {exc}") from None
    sys.stderr.write(f"fastsock: connected to {args.url}"
                     + (f" (subprotocol {ws.subprotocol})" if ws.subprotocol else "") + "\n")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Optional[str]] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True,
                     name="fastsock-connect-stdin").start()

    last_message = loop.time()

    async def receive() -> None:
        nonlocal last_message
        try:
            async for message in ws:
                last_message = loop.time()
                sys.stdout.write(_show(message) + "\n")
                sys.stdout.flush()
        except ConnectionClosed:
            pass

    async def send() -> None:
        while (line := await lines.get()) is not None:
            try:
                await ws.send(line)
            except ConnectionClosed:
                return
        # End of input. Our close would make the peer's later messages be
        # ignored, so first let the answers to what we sent arrive: a pong
        # (it follows what the server wrote before it), then --linger
        # seconds without a message.
        try:
            async with asyncio.timeout(args.linger + _PONG_TIMEOUT):
                await ws.ping()
        except (TimeoutError, ConnectionClosed):
            pass
        while (quiet := loop.time() - last_message) < args.linger:
            await asyncio.sleep(args.linger - quiet)
        await ws.close(1000)

    receiving = asyncio.ensure_future(receive())
    sending = asyncio.ensure_future(send())
    await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
    if receiving.done():               # the server closed first
        sending.cancel()
    await asyncio.gather(receiving, sending, return_exceptions=True)
    await ws.wait_closed()
    code = ws.close_code
    sys.stderr.write(f"fastsock: connection closed: {code} {ws.close_reason}".rstrip() + "\n")
    return 0 if code in _NORMAL_CLOSES else EXIT_RUNTIME


def run(args: argparse.Namespace) -> int:
    import fastsock

    return int(fastsock.run(_session(args)))
