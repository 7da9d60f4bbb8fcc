"""The live connection table: every TCP and UDP socket, from the kernel.

This is the netstat view (``Proto  Local Address  Foreign Address  State``)
behind ``python -m fastsock stat``, read from /proc alone:

- ``/proc/net/{tcp,tcp6,udp,udp6}`` (or ``/proc/PID/net/...``: the process's
  network namespace) give one line per socket, including the ones no process
  holds: TIME_WAIT, connections closed with data still unsent (FIN_WAIT1,
  LAST_ACK, CLOSING), half-open requests (SYN_RECV) and connections waiting in
  an accept queue. For a LISTEN line rx_queue is the accept-queue depth, but
  tx_queue is not the backlog (it is write_seq - snd_una, always 0 there);
- so the backlogs come from one netlink sock_diag dump of the listeners
  (what ``ss`` shows as Send-Q), when this process shares the target's
  network namespace; elsewhere a backlog is unknown (None).
- ``/proc/PID/fd/*`` links (``socket:[INODE]``) say which process holds which
  socket; ``/proc/PID/limits`` and the fd count give its descriptor use.

psutil is not needed: it reads the same /proc files and gives neither queue
depths, backlogs nor TIME_WAIT sockets. The steps are separate so that other sources can feed
the same table: :func:`read_sockets` (kernel rows), :func:`socket_owners`,
then :func:`build_report`, which takes rows from anywhere (a running server's
own per-connection bookkeeping, later) and only summarises them.
"""
from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Protocol

from fastsock.limits.report import PROC, UNLIMITED, WARN_THRESHOLD, nofile_warning

__all__ = [
    "EXPLANATIONS",
    "Columns",
    "Filter",
    "ProcessDescriptors",
    "SocketRow",
    "StatReport",
    "Summary",
    "TCP_STATES",
    "UDP_STATES",
    "build_report",
    "connection_table",
    "format_stat",
    "parse_state",
    "read_sockets",
    "socket_owners",
]

#: The /proc/net files, each with its address family.
PROC_NET_FILES: tuple[tuple[str, int], ...] = (
    ("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6),
    ("udp", socket.AF_INET), ("udp6", socket.AF_INET6),
)

#: Kernel TCP states (include/net/tcp_states.h) by the number /proc prints.
#: NEW_SYN_RECV (12) is a request socket; /proc and ss both call it SYN_RECV.
_KERNEL_TCP_STATE: dict[int, str] = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "SYN_RECV",
}
_TCP_LISTEN = 10
_UDP_CONNECTED = 1  # a UDP socket after connect(); 7 (CLOSE) is an unconnected one

#: TCP states in lifecycle order (the summary counts every one, zeros too).
TCP_STATES: tuple[str, ...] = (
    "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
    "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSING", "CLOSE",
)
#: UDP has no connection states: bound only, or connect()ed to one peer.
UDP_STATES: tuple[str, ...] = ("UNCONN", "ESTABLISHED")

#: What each state means and what to do when many sockets sit in it.
EXPLANATIONS: dict[str, str] = {
    "LISTEN": "bind() + listen() done; accept() takes connections from its queue "
              "(a full queue: accept faster, or raise the backlog up to net.core.somaxconn)",
    "SYN_SENT": "connect() sent a SYN, no answer yet (many: the server is down, "
                "filtered, or its accept queue is full)",
    "SYN_RECV": "the server answered a SYN and waits for the final ACK or, with "
                "TCP_DEFER_ACCEPT, the first data (many: a connect burst or SYN flood; "
                "net.ipv4.tcp_max_syn_backlog, syncookies)",
    "ESTABLISHED": "an open connection: data flows both ways (each costs one descriptor)",
    "FIN_WAIT1": "this side closed; its FIN is unsent or unacknowledged (many: peers "
                 "that stopped reading while data was still queued to them)",
    "FIN_WAIT2": "this side closed, the peer has not closed yet (many: peers that "
                 "never close; net.ipv4.tcp_fin_timeout ends orphaned ones)",
    "CLOSE_WAIT": "the peer closed, this application has not called close() yet "
                  "(many: the application does not close its sockets - a leak to fix "
                  "in code, no sysctl helps)",
    "LAST_ACK": "the peer closed first, then this side; waits for the ACK of its FIN "
                "(many: peers that stopped reading)",
    "TIME_WAIT": "this side closed first; kept 2*MSL (60 s) so late packets die, no "
                 "descriptor held (many on a server: harmless; many on a client: they "
                 "use up the ephemeral port range - reuse connections, widen "
                 "net.ipv4.ip_local_port_range, net.ipv4.tcp_tw_reuse=1)",
    "CLOSING": "both sides closed at once; waits for the ACK of its FIN (rare)",
    "CLOSE": "a socket with no connection (bound, never listened or connected)",
    "UNCONN": "a UDP endpoint: bound, takes datagrams from anyone",
}

#: CLOSE_WAIT sockets at which the summary warns: a few are peers that just
#: closed; this many that stay are a descriptor leak.
MANY_CLOSE_WAIT = 100

#: The text view lists at most this many local ports and processes (JSON has all).
MAX_PORTS_SHOWN = 10
MAX_PROCESSES_SHOWN = 10


# -- rows ---------------------------------------------------------------------

@dataclass(frozen=True)
class SocketRow:
    """One socket as the kernel lists it."""

    proto: str             # "tcp", "tcp6", "udp", "udp6" (the /proc/net file)
    local_host: str
    local_port: int
    foreign_host: str
    foreign_port: int
    state: str             # a TCP_STATES or UDP_STATES name
    rx_queue: int          # LISTEN: connections in the accept queue; else bytes unread
    tx_queue: int          # LISTEN: the backlog when known (as ss); else bytes unacknowledged
    inode: int             # 0: held by no process (TIME_WAIT, closed, not yet accepted)
    uid: int
    pids: tuple[int, ...] = ()   # processes holding it (several after fork)
    process: str | None = None   # the first one's name (/proc/PID/comm)
    listen_backlog: int | None = None  # LISTEN: the backlog in force (sock_diag), if known

    @property
    def is_tcp(self) -> bool:
        return self.proto.startswith("tcp")

    @property
    def is_listener(self) -> bool:
        return self.is_tcp and self.state == "LISTEN"

    @property
    def accept_queue(self) -> int | None:
        """Connections waiting for accept() (LISTEN rows only)."""
        return self.rx_queue if self.is_listener else None

    @property
    def backlog(self) -> int | None:
        """The listen() backlog in force, after the somaxconn cap (LISTEN rows
        only; None where sock_diag could not tell)."""
        return self.listen_backlog if self.is_listener else None

    @property
    def accept_queue_full(self) -> bool:
        # The kernel's own test (sk_acceptq_is_full): past the backlog, SYNs are dropped.
        return self.listen_backlog is not None and self.is_listener and \
            self.rx_queue > self.listen_backlog

    @property
    def local(self) -> str:
        return _endpoint(self.local_host, self.local_port)

    @property
    def foreign(self) -> str:
        return _endpoint(self.foreign_host, self.foreign_port)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pids"] = list(self.pids)
        data["local"] = self.local
        data["foreign"] = self.foreign
        data["accept_queue"] = self.accept_queue
        data["backlog"] = self.backlog
        return data


def _endpoint(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port if port else '*'}"


def _host(hex_addr: str, family: int) -> str:
    # The kernel prints each 32-bit word of the address in host byte order.
    words = [int(hex_addr[i:i + 8], 16) for i in range(0, len(hex_addr), 8)]
    return socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words))


def _parse_line(line: str, proto: str, family: int) -> SocketRow | None:
    fields = line.split()
    # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if len(fields) < 10 or not fields[0].endswith(":"):
        return None
    try:
        local, _, lport = fields[1].partition(":")
        remote, _, rport = fields[2].partition(":")
        number = int(fields[3], 16)
        tx, _, rx = fields[4].partition(":")
        if proto.startswith("tcp"):
            state = _KERNEL_TCP_STATE.get(number, f"UNKNOWN_{number}")
        else:
            state = "ESTABLISHED" if number == _UDP_CONNECTED else "UNCONN"
        return SocketRow(
            proto=proto, local_host=_host(local, family), local_port=int(lport, 16),
            foreign_host=_host(remote, family), foreign_port=int(rport, 16), state=state,
            rx_queue=int(rx, 16), tx_queue=int(tx, 16), inode=int(fields[9]),
            uid=int(fields[7]),
        )
    except (ValueError, struct.error, OSError):
        return None  # a line this parser does not understand is skipped, not fatal


def read_sockets(*, proc: str = PROC, pid: int | None = None) -> list[SocketRow]:
    """Every TCP and UDP socket of the network namespace (that of ``pid`` if
    given, else this process's), without owners. Raises FileNotFoundError
    when there is no /proc/net/tcp at all (not Linux); a missing tcp6/udp6
    (IPv6 disabled) is skipped."""
    base = os.path.join(proc, str(pid), "net") if pid is not None else os.path.join(proc, "net")
    rows: list[SocketRow] = []
    for proto, family in PROC_NET_FILES:
        path = os.path.join(base, proto)
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            if proto == "tcp":
                raise
            continue
        for line in lines[1:]:  # the first line is the header
            row = _parse_line(line, proto, family)
            if row is not None:
                rows.append(row)
    if any(r.is_listener for r in rows) and _same_netns(proc, pid):
        backlogs = listen_backlogs()
        if backlogs:
            rows = [replace(r, listen_backlog=backlogs[r.inode], tx_queue=backlogs[r.inode])
                    if r.is_listener and r.inode in backlogs else r for r in rows]
    return rows


def _same_netns(proc: str, pid: int | None) -> bool:
    """Whether a netlink socket opened here sees the sockets of ``<proc>[/pid]/net``."""
    if os.path.realpath(proc) != PROC:
        return False  # a test's fake /proc
    if pid is None:
        return True
    try:
        return (os.stat(os.path.join(proc, str(pid), "ns", "net")).st_ino
                == os.stat(os.path.join(proc, "self", "ns", "net")).st_ino)
    except OSError:
        return False


# Netlink sock_diag (linux/sock_diag.h, linux/inet_diag.h, linux/netlink.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300   # NLM_F_REQUEST | NLM_F_DUMP
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_DIAG_REQUEST = struct.Struct("=BBBBI48x")  # family, protocol, ext, pad, states, sockid
# inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), then these:
_DIAG_QUEUES = struct.Struct("=IIIII")      # expires, rqueue, wqueue, uid, inode
_DIAG_QUEUES_AT = 4 + 48
_RECV_SIZE = 1 << 16


def listen_backlogs() -> dict[int, int] | None:
    """inode -> backlog of every TCP listener in this network namespace, from
    one sock_diag dump per address family (the kernel's sk_max_ack_backlog,
    which ss shows as Send-Q); None where netlink is not available."""
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
    except (OSError, AttributeError):
        return None
    backlogs: dict[int, int] = {}
    with nl:
        nl.settimeout(5.0)  # the kernel answers at once; never hang a watch on it
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            body = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
            try:
                nl.send(_NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                           _NLM_F_REQUEST_DUMP, seq, 0) + body)
                _read_dump(nl, backlogs)
            except OSError:
                return backlogs or None
    return backlogs


def _read_dump(nl: socket.socket, backlogs: dict[int, int]) -> None:
    while True:
        data = nl.recv(_RECV_SIZE)
        at = 0
        while at + _NLMSG_HEADER.size <= len(data):
            length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data, at)
            if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < _NLMSG_HEADER.size:
                return  # an error here is a family the kernel lacks (no IPv6)
            _, _, wqueue, _, inode = _DIAG_QUEUES.unpack_from(
                data, at + _NLMSG_HEADER.size + _DIAG_QUEUES_AT)
            backlogs[inode] = wqueue
            at += (length + 3) & ~3  # messages are 4-byte aligned
        if not data:
            return


# -- owners and descriptors ---------------------------------------------------

@dataclass(frozen=True)
class Owners:
    """Which processes hold which socket inodes."""

    by_inode: dict[int, tuple[int, ...]]
    names: dict[int, str]
    unreadable: int  # processes whose descriptors could not be read (another user's)


def _socket_inodes(proc: str, pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds. Raises OSError like listdir."""
    fd_dir = os.path.join(proc, str(pid), "fd")
    inodes: set[int] = set()
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue  # closed since listdir
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _comm(proc: str, pid: int) -> str | None:
    try:
        with open(os.path.join(proc, str(pid), "comm"), encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _all_pids(proc: str) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return []


def socket_owners(*, proc: str = PROC, pids: Iterable[int] | None = None) -> Owners:
    """Map socket inodes to the processes holding them (all processes by default)."""
    by_inode: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    unreadable = 0
    for pid in (_all_pids(proc) if pids is None else pids):
        try:
            inodes = _socket_inodes(proc, pid)
        except PermissionError:
            unreadable += 1
            continue
        except OSError:
            continue  # exited meanwhile
        if inodes:
            name = _comm(proc, pid)
            if name is not None:
                names[pid] = name
        for inode in inodes:
            by_inode.setdefault(inode, []).append(pid)
    return Owners({k: tuple(v) for k, v in by_inode.items()}, names, unreadable)


@dataclass(frozen=True)
class ProcessDescriptors:
    """One process's descriptor use against its RLIMIT_NOFILE."""

    pid: int
    name: str | None
    in_use: int | None
    soft: int | None        # None: unknown; UNLIMITED shows as "unlimited"
    hard: int | None
    warning: str | None     # the `limits` warning when use is close to the soft limit

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("soft", "hard"):
            if data[key] == UNLIMITED:
                data[key] = "unlimited"
        return data


def _nofile_of(proc: str, pid: int) -> tuple[int | None, int | None]:
    """(soft, hard) RLIMIT_NOFILE of ``pid`` from /proc/PID/limits."""
    try:
        with open(os.path.join(proc, str(pid), "limits"), encoding="ascii",
                  errors="replace") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line[len("Max open files"):].split()
                    values = [UNLIMITED if p == "unlimited" else int(p) for p in parts[:2]]
                    return values[0], values[1]
    except (OSError, ValueError, IndexError):
        pass
    return None, None


def process_descriptors(pid: int, *, proc: str = PROC, name: str | None = None,
                        threshold: float = WARN_THRESHOLD) -> ProcessDescriptors:
    """Descriptors ``pid`` has open and its limit, with the warning if close."""
    try:
        in_use: int | None = len(os.listdir(os.path.join(proc, str(pid), "fd")))
    except OSError:
        in_use = None
    soft, hard = _nofile_of(proc, pid)
    warning = (nofile_warning(in_use, soft, hard, pid=pid, threshold=threshold)
               if in_use is not None else None)
    return ProcessDescriptors(pid, name if name is not None else _comm(proc, pid),
                              in_use, soft, hard, warning)


# -- filtering and summary (the seam: kernel rows in, report out) ------------------

@dataclass(frozen=True)
class Filter:
    """Which rows to keep. Port filters are alternatives (a row matches if its
    local port is in ``ports`` or its foreign port in ``peer_ports``); the pid
    and state filters must hold as well. Empty means "any"."""

    pid: int | None = None
    ports: frozenset[int] = frozenset()       # local ports (servers: bound to it)
    peer_ports: frozenset[int] = frozenset()  # foreign ports (clients of it)
    states: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "ports": sorted(self.ports),
                "peer_ports": sorted(self.peer_ports), "states": sorted(self.states)}


def parse_state(name: str) -> str:
    """A state name as TCP_STATES/UDP_STATES spell it, from any spelling
    (``time-wait``, ``ESTAB``, ``fin_wait_1``); ValueError if unknown."""
    key = name.strip().upper().replace("-", "_")
    key = {"ESTAB": "ESTABLISHED", "FIN_WAIT_1": "FIN_WAIT1", "FIN_WAIT_2": "FIN_WAIT2",
           "SYN_RECEIVED": "SYN_RECV", "CLOSED": "CLOSE"}.get(key, key)
    if key not in TCP_STATES and key not in UDP_STATES:
        raise ValueError(f"unknown state {name!r} (states: {', '.join(TCP_STATES)}, UNCONN)")
    return key


def _owned_ports(rows: Iterable[SocketRow], pid: int) -> set[int]:
    """Local ports on which ``pid`` listens."""
    return {r.local_port for r in rows if r.is_listener and pid in r.pids}


def select(rows: Iterable[SocketRow], flt: Filter) -> list[SocketRow]:
    """The rows ``flt`` keeps. With a pid, the rows no process holds (TIME_WAIT,
    closed, queued for accept, SYN_RECV) count as the process's when they sit
    on a port it listens on: they are its server's connections."""
    rows = list(rows)
    served = _owned_ports(rows, flt.pid) if flt.pid is not None else set()
    kept = []
    for r in rows:
        if flt.pid is not None and flt.pid not in r.pids and not (
                r.is_tcp and r.inode == 0 and r.local_port in served):
            continue
        if (flt.ports or flt.peer_ports) and not (
                r.local_port in flt.ports or r.foreign_port in flt.peer_ports):
            continue
        if flt.states and r.state not in flt.states:
            continue
        kept.append(r)
    return kept


@dataclass(frozen=True)
class Summary:
    """Counts over a set of rows."""

    tcp_states: dict[str, int]   # every TCP state, zeros included
    udp_states: dict[str, int]
    local_ports: dict[int, dict[str, int]]  # port -> {"tcp": n, "udp": n, STATE: n, ...}

    @property
    def tcp_total(self) -> int:
        return sum(self.tcp_states.values())

    @property
    def udp_total(self) -> int:
        return sum(self.udp_states.values())


def summarize(rows: Iterable[SocketRow]) -> Summary:
    tcp: Counter[str] = Counter()
    udp: Counter[str] = Counter()
    ports: dict[int, Counter[str]] = {}
    for r in rows:
        (tcp if r.is_tcp else udp)[r.state] += 1
        per_port = ports.setdefault(r.local_port, Counter())
        per_port["tcp" if r.is_tcp else "udp"] += 1
        if r.is_tcp:
            per_port[r.state] += 1
    unknown = sorted(s for s in tcp if s not in TCP_STATES)
    return Summary(
        tcp_states={s: tcp[s] for s in (*TCP_STATES, *unknown)},
        udp_states={s: udp[s] for s in UDP_STATES},
        local_ports={p: {"tcp": c["tcp"], "udp": c["udp"],
                         **{s: c[s] for s in TCP_STATES if c[s]}}
                     for p, c in sorted(ports.items())},
    )


@dataclass(frozen=True)
class StatReport:
    """The table, its summary, descriptor use and warnings."""

    rows: tuple[SocketRow, ...]
    summary: Summary
    processes: tuple[ProcessDescriptors, ...]
    warnings: tuple[str, ...]
    filter: Filter = field(default_factory=Filter)
    unreadable: int = 0  # processes whose sockets could not be attributed

    def as_dict(self) -> dict[str, Any]:
        s = self.summary
        return {
            "filter": self.filter.as_dict(),
            "sockets": [r.as_dict() for r in self.rows],
            "summary": {
                "tcp": s.tcp_total, "udp": s.udp_total,
                "tcp_states": s.tcp_states, "udp_states": s.udp_states,
                "local_ports": {str(p): c for p, c in s.local_ports.items()},
            },
            "descriptors": [p.as_dict() for p in self.processes],
            "warnings": list(self.warnings),
            "unreadable_processes": self.unreadable,
        }


def _order(r: SocketRow) -> tuple[int, int, int, str, int]:
    rank = TCP_STATES.index(r.state) if r.state in TCP_STATES else len(TCP_STATES)
    return (0 if r.is_tcp else 1, r.local_port, rank, r.foreign_host, r.foreign_port)


def build_report(rows: Iterable[SocketRow], flt: Filter = Filter(), *,
                 processes: Iterable[ProcessDescriptors] = (),
                 port_range: tuple[int, int] | None = None,
                 listening_ports: Iterable[int] | None = None,
                 many_close_wait: int = MANY_CLOSE_WAIT,
                 threshold: float = WARN_THRESHOLD,
                 unreadable: int = 0) -> StatReport:
    """Filter, sort and summarise ``rows`` (from the kernel or any other source)
    and derive the warnings. No I/O.

    ``listening_ports`` tells server-side sockets from client-side ones (a
    client's local port is ephemeral); by default the LISTEN rows among ``rows``.
    ``port_range`` (net.ipv4.ip_local_port_range) enables the warning about
    client sockets using up the ephemeral ports toward one destination.
    """
    rows = list(rows)
    listening = (set(listening_ports) if listening_ports is not None
                 else {r.local_port for r in rows if r.is_listener})
    shown = sorted(select(rows, flt), key=_order)
    summary = summarize(shown)
    procs = tuple(processes)
    warnings: list[str] = []
    for r in shown:
        if r.accept_queue_full:
            warnings.append(
                f"accept queue of {r.local} is full ({r.rx_queue} waiting, backlog "
                f"{r.backlog}): new SYNs are dropped; the process does not accept() "
                f"fast enough, or raise the backlog (net.core.somaxconn caps it)")
    close_wait = summary.tcp_states["CLOSE_WAIT"]
    if close_wait >= many_close_wait:
        warnings.append(f"{close_wait} sockets in CLOSE_WAIT: the peers closed and the "
                        "application has not; it leaks a descriptor per connection")
    if port_range is not None:
        ports = port_range[1] - port_range[0] + 1
        toward: Counter[tuple[str, int]] = Counter(
            (r.foreign_host, r.foreign_port) for r in shown
            if r.is_tcp and not r.is_listener and r.local_port not in listening)
        for (host, port), count in toward.most_common():
            if count < max(1, int(ports * threshold)):
                break
            waiting = sum(1 for r in shown if r.state == "TIME_WAIT"
                          and (r.foreign_host, r.foreign_port) == (host, port)
                          and r.local_port not in listening)
            warnings.append(
                f"{count} client sockets toward {_endpoint(host, port)} ({waiting} in "
                f"TIME_WAIT) hold {count} of the {ports} ephemeral ports "
                f"{port_range[0]}-{port_range[1]}: connect() fails with EADDRNOTAVAIL "
                "when they run out; reuse connections, widen net.ipv4.ip_local_port_range "
                "or connect from more source addresses")
    warnings += [p.warning for p in procs if p.warning]
    return StatReport(tuple(shown), summary, procs, tuple(warnings), flt, unreadable)


def _port_range(proc: str) -> tuple[int, int] | None:
    try:
        with open(os.path.join(proc, "sys", "net", "ipv4", "ip_local_port_range"),
                  encoding="ascii") as f:
            low, high = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return (low, high) if high >= low else None


def _alive(proc: str, pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (which holds no sockets and
    whose /proc/PID/net is gone)."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="ascii",
                  errors="replace") as f:
            # "PID (comm) STATE ...": comm may hold spaces and parentheses
            state = f.read().rpartition(")")[2].split()[:1]
    except OSError:
        return False
    return state not in (["Z"], ["X"])


def connection_table(flt: Filter = Filter(), *, proc: str = PROC) -> StatReport:
    """Read the kernel's sockets now and build the report for ``flt``.

    Raises ProcessLookupError for a ``flt.pid`` that does not exist,
    PermissionError when its descriptors cannot be read (another user's
    process), FileNotFoundError without /proc/net (not Linux).
    """
    if flt.pid is not None:
        if not _alive(proc, flt.pid):
            raise ProcessLookupError(f"no process with PID {flt.pid}")
        try:
            _socket_inodes(proc, flt.pid)
        except PermissionError as exc:
            raise PermissionError(
                exc.errno, f"cannot read the descriptors of PID {flt.pid} (run as its "
                "user or root)", exc.filename) from None
        except FileNotFoundError:
            raise ProcessLookupError(f"no process with PID {flt.pid}") from None
    try:
        kernel_rows = read_sockets(proc=proc, pid=flt.pid)
    except FileNotFoundError:
        if flt.pid is not None and not _alive(proc, flt.pid):
            raise ProcessLookupError(f"no process with PID {flt.pid}") from None
        raise
    # With a pid only its descriptors matter: the other rows are filtered out.
    owners = socket_owners(proc=proc, pids=None if flt.pid is None else [flt.pid])
    rows = [_with_owner(r, owners) for r in kernel_rows]
    listening = {r.local_port for r in rows if r.is_listener}
    shown = select(rows, flt)
    pids = ({flt.pid} if flt.pid is not None else
            {p for r in shown for p in r.pids})
    processes = sorted((process_descriptors(p, proc=proc, name=owners.names.get(p))
                        for p in pids), key=lambda d: (-(d.in_use or 0), d.pid))
    return build_report(rows, flt, processes=processes, port_range=_port_range(proc),
                        listening_ports=listening, unreadable=owners.unreadable)


def _with_owner(row: SocketRow, owners: Owners) -> SocketRow:
    pids = owners.by_inode.get(row.inode, ()) if row.inode else ()
    if not pids:
        return row
    return replace(row, pids=pids, process=owners.names.get(pids[0]))


# -- presentation -------------------------------------------------------------

_HEADER = ("Proto", "Local Address", "Foreign Address", "State", "Recv-Q", "Send-Q",
           "PID/Program", "Accept queue")


def _owner(r: SocketRow) -> str:
    if not r.pids:
        return "-"
    more = f" +{len(r.pids) - 1}" if len(r.pids) > 1 else ""
    return f"{r.pids[0]}/{r.process or '?'}{more}"


def _accept(r: SocketRow) -> str:
    if not r.is_listener:
        return ""
    backlog = "?" if r.backlog is None else str(r.backlog)
    return f"{r.rx_queue} of {backlog}" + (" FULL" if r.accept_queue_full else "")


def _limit(value: int | None) -> str:
    if value is None:
        return "unknown"
    return "unlimited" if value == UNLIMITED else str(value)


class Columns(Protocol):
    """More columns for :func:`format_stat`, from another source than the
    kernel (``stat --server``: fastsock.limits.bookkeeping.ServerBookkeeping)."""

    @property
    def header(self) -> tuple[str, ...]: ...

    @property
    def right(self) -> frozenset[int]:
        """Indexes (in ``header``) of the right-aligned columns: numbers."""

    def cells(self, row: SocketRow) -> tuple[str, ...]: ...


def format_stat(report: StatReport, *, summary: bool = True,
                columns: Columns | None = None) -> str:
    """The table, then (unless ``summary=False``) the summary: counts by state
    with what each means, by local port, descriptor use, warnings.
    ``columns`` are added after the kernel's."""
    header: tuple[str, ...] = _HEADER
    right = {4, 5}  # the queue columns are numbers
    if columns is not None:
        header += columns.header
        right |= {len(_HEADER) + i for i in columns.right}
    table = [header] + [
        (r.proto, r.local, r.foreign, r.state, str(r.rx_queue), str(r.tx_queue),
         _owner(r), _accept(r)) + (columns.cells(r) if columns is not None else ())
        for r in report.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join((c.rjust(w) if i in right else c.ljust(w))
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    if not report.rows:
        lines.append("(no sockets match)")
    if not summary:
        return "\n".join(lines)
    s = report.summary
    lines += ["", f"TCP: {s.tcp_total} sockets"]
    idle = []
    for state, count in s.tcp_states.items():
        if count:
            lines.append(f"  {state:<12}{count:>6}  {EXPLANATIONS.get(state, '')}")
        elif state != "CLOSE":
            idle.append(state)
    if idle:
        lines.append(f"  none in {', '.join(idle)}")
    udp = ", ".join(f"{n} {st}" for st, n in s.udp_states.items() if n)
    lines.append(f"UDP: {s.udp_total} endpoints" + (f" ({udp})" if udp else ""))
    if s.local_ports:
        busiest = sorted(s.local_ports.items(), key=lambda kv: (-(kv[1]["tcp"] + kv[1]["udp"]),
                                                                 kv[0]))
        lines.append("by local port:")
        for port, counts in busiest[:MAX_PORTS_SHOWN]:
            states = ", ".join(f"{counts[st]} {st}" for st in TCP_STATES if counts.get(st))
            parts = [f"{counts['tcp']} tcp" + (f" ({states})" if states else "")]
            if counts["udp"]:
                parts.append(f"{counts['udp']} udp")
            lines.append(f"  {port:>5}  {', '.join(parts)}")
        if len(busiest) > MAX_PORTS_SHOWN:
            lines.append(f"  ... and {len(busiest) - MAX_PORTS_SHOWN} more ports (--json has all)")
    if report.processes:
        lines.append("descriptors:")
        for p in report.processes[:MAX_PROCESSES_SHOWN]:
            lines.append(f"  {p.pid}/{p.name or '?'}: {_limit(p.in_use)} in use of "
                         f"{_limit(p.soft)} (soft RLIMIT_NOFILE; hard {_limit(p.hard)})")
        if len(report.processes) > MAX_PROCESSES_SHOWN:
            lines.append(f"  ... and {len(report.processes) - MAX_PROCESSES_SHOWN} more "
                         "processes (--json has all)")
    if report.unreadable:
        lines.append(f"note: the descriptors of {report.unreadable} processes are not "
                     "readable as this user; their sockets show no PID (run as root)")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
