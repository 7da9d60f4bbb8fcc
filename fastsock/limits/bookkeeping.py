"""A fastsock server's own per-connection bookkeeping, next to the kernel's rows.

``python -m fastsock stat --server URL`` fetches the JSON a running server
answers at ``<metrics path>/connections`` (fastsock.connections, served by
fastsock.metrics) and merges it into the connection table: a kernel row and
a server connection are the same socket when their local and peer addresses
are equal. The kernel says what TCP sees (state, queues, owner); the server
adds what only it knows (WebSocket state, age, messages and bytes in and out,
bytes buffered in user space, subprotocol, extensions, path).

This module only speaks HTTP and JSON: it imports nothing of the server, so
``stat`` stays in the OS-facts layer (DESIGN.md).
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from fastsock.limits.table import SocketRow

__all__ = ["BookkeepingError", "SERVER_HEADER", "ServerBookkeeping", "connections_url",
           "fetch_bookkeeping", "format_age"]

#: The path a bare ``http://HOST:PORT`` URL gets (fastsock.metrics.DEFAULT_PATH).
DEFAULT_METRICS_PATH = "/metrics"
SUFFIX = "/connections"          # fastsock.connections.CONNECTIONS_SUFFIX
FETCH_TIMEOUT = 5.0              # seconds; a loop that does not answer in 5 s is stuck
MAX_BODY = 256 << 20             # 256 MiB: about a million connections' rows

#: The columns ``stat --server`` adds to the table.
SERVER_HEADER = ("WebSocket", "Age", "Msgs in", "Bytes in", "Msgs out", "Bytes out", "Buffered")


class BookkeepingError(Exception):
    """The server could not be asked, or did not answer a snapshot (a runtime error)."""


def connections_url(url: str) -> str:
    """The snapshot's URL from what the user typed: the metrics URL
    (``http://127.0.0.1:8765/metrics``), the snapshot's own
    (``.../metrics/connections``) or just ``http://HOST:PORT`` (``/metrics``
    is assumed). ValueError (a usage error) when it is not an http(s) URL."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--server wants the server's metrics URL, like "
                         f"http://127.0.0.1:8765/metrics; got {url!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"--server: bad port in {url!r}") from None
    path = parts.path.rstrip("/") or DEFAULT_METRICS_PATH
    if not path.endswith(SUFFIX):
        path += SUFFIX
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch_bookkeeping(url: str, *, timeout: float = FETCH_TIMEOUT) -> "ServerBookkeeping":
    """GET the snapshot at ``url`` (see :func:`connections_url`), straight to
    the server (no proxy). BookkeepingError says, in one line, why it could not."""
    target = connections_url(url)
    parts = urllib.parse.urlsplit(target)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    own: Optional[Key] = None
    try:
        conn.connect()
        if conn.sock is not None:     # this request's own connection, to point it out
            mine, theirs = conn.sock.getsockname(), conn.sock.getpeername()
            own = _key(theirs[0], theirs[1], mine[0], mine[1])
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read(MAX_BODY + 1)
    except OSError as exc:            # refused, unreachable, timed out, reset, TLS
        text = exc.strerror or str(exc) or type(exc).__name__
        raise BookkeepingError(f"cannot reach {target}: {text}") from None
    except http.client.HTTPException as exc:
        raise BookkeepingError(f"cannot read {target}: {type(exc).__name__} {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        hint = (" (is the server started with --metrics PATH or --metrics-port, and is PATH "
                "the one in the URL?)" if 400 <= response.status < 500 else "")
        raise BookkeepingError(f"{target} answered {response.status} {response.reason}{hint}")
    if len(body) > MAX_BODY:
        raise BookkeepingError(f"{target} answered more than {MAX_BODY >> 20} MiB; "
                               f"ask for fewer rows with ?limit=N")
    try:
        snapshot = json.loads(body)
    except ValueError:
        snapshot = None
    if not (isinstance(snapshot, dict) and isinstance(snapshot.get("connections"), list)):
        raise BookkeepingError(f"{target} did not answer a fastsock connections snapshot "
                               f"(is it a fastsock server's metrics URL?)")
    return ServerBookkeeping(target, snapshot, own)


def _host(host: Any) -> str:
    """An address as the kernel's table spells it: IPv4-mapped IPv6 as IPv4
    (the table keeps /proc's spelling; both sides go through here), no scope."""
    text = str(host).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


Key = tuple[str, int, str, int]


def _key(local_host: Any, local_port: Any, peer_host: Any, peer_port: Any) -> Key:
    return (_host(local_host), int(local_port), _host(peer_host), int(peer_port))


@dataclass
class ServerBookkeeping:
    """A snapshot and its connections indexed by (local, peer) address."""

    url: str
    snapshot: dict[str, Any]
    own: Optional[Key] = None     # (server end, our end) of the request that fetched it
    by_address: dict[Key, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_address = {}
        for conn in self.connections:
            try:
                key = _key(conn["local_host"], conn["local_port"],
                           conn["peer_host"], conn["peer_port"])
            except (KeyError, TypeError, ValueError):
                continue                    # a connection with no addresses (torn down)
            self.by_address[key] = conn

    @property
    def connections(self) -> list[dict[str, Any]]:
        return [c for c in self.snapshot["connections"] if isinstance(c, dict)]

    def match(self, row: SocketRow) -> Optional[dict[str, Any]]:
        """The server's row for this kernel row, if it is one of its connections."""
        if not row.is_tcp:
            return None
        return self.by_address.get(_key(row.local_host, row.local_port,
                                        row.foreign_host, row.foreign_port))

    def is_own(self, row: SocketRow) -> bool:
        """Whether ``row`` is the server's end of the request that fetched this."""
        return self.own is not None and row.is_tcp and self.own == _key(
            row.local_host, row.local_port, row.foreign_host, row.foreign_port)

    def ports(self) -> frozenset[int]:
        """The server's local ports: its listeners and its connections' ends
        (the default ``--port`` filter of ``stat --server``)."""
        ports = {int(c["local_port"]) for c in self.connections
                 if isinstance(c.get("local_port"), int)}
        for address in self.snapshot.get("listening", ()):
            digits = str(address).rpartition(":")[2]
            if digits.isdigit():
                ports.add(int(digits))
        if not ports:
            url = urllib.parse.urlsplit(self.url)
            ports.add(url.port if url.port is not None else
                      (443 if url.scheme == "https" else 80))
        return frozenset(ports)

    def unmatched(self, rows: Iterable[SocketRow]) -> list[dict[str, Any]]:
        """The server's connections with no row among ``rows``."""
        seen = {id(c) for c in (self.match(r) for r in rows) if c is not None}
        return [c for c in self.connections if id(c) not in seen]

    @property
    def header(self) -> tuple[str, ...]:
        return SERVER_HEADER

    @property
    def right(self) -> frozenset[int]:
        return frozenset(range(1, len(SERVER_HEADER)))   # all but the state

    def cells(self, row: SocketRow) -> tuple[str, ...]:
        """The added columns (SERVER_HEADER) of one row; blanks for a socket
        the server does not list (a listener, TIME_WAIT, another process)."""
        conn = self.match(row)
        if conn is None:
            if self.is_own(row):
                return ("(stat)",) + ("",) * (len(SERVER_HEADER) - 1)
            return ("",) * len(SERVER_HEADER)
        return (str(conn.get("state", "?")), format_age(conn.get("age_seconds")),
                _n(conn.get("messages_in")), _n(conn.get("bytes_in")),
                _n(conn.get("messages_out")), _n(conn.get("bytes_out")),
                _n(conn.get("buffered_amount")))

    def merge(self, data: dict[str, Any], rows: Iterable[SocketRow]) -> dict[str, Any]:
        """The ``--json`` object of a report (``StatReport.as_dict()``, whose
        ``sockets`` are ``rows`` in order) with the bookkeeping merged in: each
        socket gets ``server`` (its connection's row, or null), and a top-level
        ``server`` says where it came from and what did not match."""
        rows = list(rows)
        for sock, row in zip(data["sockets"], rows):
            sock["server"] = self.match(row)
            sock["stat_request"] = self.is_own(row)
        s = self.snapshot
        unmatched = self.unmatched(rows)
        data["server"] = {
            "url": self.url, "pid": s.get("pid"), "time": s.get("time"),
            "listening": s.get("listening", []), "count": s.get("count"),
            "handshakes": s.get("handshakes"), "truncated": s.get("truncated"),
            "matched": len(self.connections) - len(unmatched), "unmatched": unmatched,
        }
        return data

    def summary_lines(self, rows: Iterable[SocketRow]) -> list[str]:
        """What the text view says about the bookkeeping, under the summary."""
        s = self.snapshot
        unmatched = self.unmatched(rows)
        listed = len(self.connections)
        line = (f"server: pid {s.get('pid', '?')} ({self.url}): {s.get('count', listed)} "
                f"WebSocket connections, {listed - len(unmatched)} of them in the table above")
        if s.get("handshakes"):
            line += f"; {s['handshakes']} in the HTTP handshake (this request's among them)"
        lines = [line]
        if any(self.is_own(r) for r in rows):
            lines.append("  (stat): the server's end of the request that fetched this")
        if s.get("truncated"):
            lines.append(f"  {s['truncated']} connections not listed by the server (?limit)")
        if unmatched:
            some = ", ".join(f"{c.get('local')} <- {c.get('peer')}" for c in unmatched[:3])
            more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
            lines.append(f"  not in the table: {some}{more} (filtered out, closed meanwhile, "
                         "or another network namespace)")
        return lines


def _n(value: Any) -> str:
    return str(value) if isinstance(value, int) else "?"


def format_age(seconds: Any) -> str:
    """``0.4s``, ``59.9s``, ``1m05s``, ``2h03m``, ``3d04h``; ``?`` if unknown."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
