"""Descriptor and socket limits: what this machine allows and when it runs out.

Every connection a server holds costs one file descriptor, every client
connection to one destination also costs one local port, and the kernel caps
both in several places. :func:`limits` reads them all (a file that is missing
or unreadable reads as ``None`` and is shown as "unknown" -- never an error),
derives how many connections they allow, names the limit that binds first and
gives the exact command that raises it.

:class:`DescriptorWatch` is the run-time half: servers call ``opened()`` and
``closed()`` as descriptors come and go (plain counter updates, no /proc reads)
and it logs one warning before the process runs out.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    import resource
except ImportError:  # not on Windows: rlimits read as unknown
    resource = None  # type: ignore[assignment]

__all__ = [
    "Bound",
    "DescriptorWatch",
    "LimitsReport",
    "RESERVE",
    "default_watch",
    "format_report",
    "limits",
    "log_summary",
    "raise_nofile",
    "summary_lines",
]

_LOG = logging.getLogger("fastsock.limits")

#: Descriptors kept back from the connection budget: listening sockets, the
#: epoll descriptor, wake-up pipes, log files, lazily imported modules.
RESERVE = 32

#: Where /proc lives; tests point :func:`limits` elsewhere with ``proc=``.
PROC = "/proc"

#: Value of an rlimit that has no limit (RLIM_INFINITY), shown as "unlimited".
UNLIMITED: int = resource.RLIM_INFINITY if resource is not None else -1

# A limit raised on our behalf goes to at least this many descriptors.
_SUGGESTED_NOFILE = 65536


def _getrlimit() -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE, or None where rlimits do not exist."""
    if resource is None:
        return None
    try:
        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="strict") as f:
            return f.read(4096)
    except (OSError, ValueError):
        return None


def _read_ints(path: str, count: int) -> tuple[int, ...] | None:
    """The first ``count`` whitespace-separated integers of a file, or None."""
    text = _read(path)
    if text is None:
        return None
    parts = text.split()
    if len(parts) < count:
        return None
    try:
        values = tuple(int(p) for p in parts[:count])
    except ValueError:
        return None
    if any(v < 0 for v in values):
        return None
    return values


def _read_int(path: str) -> int | None:
    values = _read_ints(path, 1)
    return values[0] if values else None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _count_fds(proc: str) -> int | None:
    """Descriptors open in this process, from ``<proc>/self/fd``."""
    path = os.path.join(proc, "self", "fd")
    try:
        names = [n for n in os.listdir(path) if n.isdigit()]
    except OSError:
        return None
    # Listing our own fd directory opens one descriptor that is closed again
    # by the time listdir returns: keep only descriptors that are still open.
    if os.path.realpath(path) == f"/proc/{os.getpid()}/fd":
        return sum(1 for n in names if _is_open(int(n)))
    return len(names)


@dataclass(frozen=True)
class Bound:
    """One limit on the number of connections, and how to raise it."""

    name: str                 # e.g. "RLIMIT_NOFILE (soft)"
    connections: int          # connections it allows from now on
    commands: tuple[str, ...]  # exact commands that raise it, most direct first


@dataclass(frozen=True)
class LimitsReport:
    """Every descriptor and socket limit of this process and machine.

    ``None`` means unknown: the file is missing or unreadable here.
    """

    nofile_soft: int | None          # RLIMIT_NOFILE soft: EMFILE above this
    nofile_hard: int | None          # RLIMIT_NOFILE hard: ceiling for the soft limit
    file_max: int | None             # fs.file-max: descriptors system-wide (ENFILE)
    file_nr: int | None              # fs.file-nr: descriptors allocated system-wide now
    nr_open: int | None              # fs.nr_open: ceiling for the hard limit
    somaxconn: int | None            # net.core.somaxconn: cap on listen() backlog
    tcp_max_syn_backlog: int | None  # half-open connections queued per listener
    port_range: tuple[int, int] | None  # net.ipv4.ip_local_port_range (inclusive)
    epoll_max_user_watches: int | None  # fs.epoll.max_user_watches, per user
    conntrack_max: int | None        # net.netfilter.nf_conntrack_max, when loaded
    conntrack_count: int | None      # net.netfilter.nf_conntrack_count, when loaded
    fds_in_use: int | None           # descriptors open in this process now
    # net.ipv4.tcp_migrate_req (Linux 5.14+): 1 moves the accept queue of a
    # closing SO_REUSEPORT listener to another one instead of resetting it
    tcp_migrate_req: int | None = None
    # The process the raise commands name; None for "the server's PID" (the
    # `limits` command reports on behalf of a server that is not running yet).
    pid: int | None = field(default_factory=os.getpid)
    reserve: int = RESERVE

    # -- derived ----------------------------------------------------------

    def _headroom(self, limit: int | None) -> int | None:
        if limit is None:
            return None
        if limit == UNLIMITED:
            return None
        return max(0, limit - (self.fds_in_use or 0) - self.reserve)

    @property
    def server_connections(self) -> int | None:
        """Concurrent connections this process can still accept at the soft limit."""
        bound = self.binding
        return bound.connections if bound is not None else None

    @property
    def server_connections_at_hard(self) -> int | None:
        """The same after raising the soft limit to the hard one (``--raise``)."""
        bounds = self._server_bounds(self.nofile_hard, "RLIMIT_NOFILE (hard)")
        return min(b.connections for b in bounds) if bounds else None

    @property
    def ephemeral_ports(self) -> int | None:
        """Local ports available for outgoing connections, per source address."""
        if self.port_range is None:
            return None
        low, high = self.port_range
        return high - low + 1 if high >= low else None

    @property
    def client_connections_per_destination(self) -> int | None:
        """Client connections to one (ip, port) that the ephemeral port range
        allows, per source address (each needs its own local port)."""
        return self.ephemeral_ports

    @property
    def client_connections(self) -> int | None:
        """Client connections to one destination this process can open now:
        the port range or the descriptor limits, whichever binds first."""
        bound = self.client_binding
        return bound.connections if bound is not None else None

    @property
    def binding(self) -> Bound | None:
        """The limit that stops a server first (fewest connections), or None."""
        bounds = self._server_bounds(self.nofile_soft, "RLIMIT_NOFILE (soft)")
        return min(bounds, key=lambda b: b.connections) if bounds else None

    @property
    def client_binding(self) -> Bound | None:
        """The limit that stops clients to one destination first, or None."""
        bounds = self._server_bounds(self.nofile_soft, "RLIMIT_NOFILE (soft)")
        ports = self.ephemeral_ports
        if ports is not None:
            bounds.append(Bound(
                "net.ipv4.ip_local_port_range", ports,
                ('sysctl -w net.ipv4.ip_local_port_range="1024 65535"',
                 "or connect from more source addresses (bind to 127.0.0.2, ...)"),
            ))
        return min(bounds, key=lambda b: b.connections) if bounds else None

    def _server_bounds(self, nofile: int | None, label: str) -> list[Bound]:
        """Every known limit on descriptors, with ``nofile`` as the rlimit."""
        bounds: list[Bound] = []
        room = self._headroom(nofile)
        if room is not None:
            bounds.append(Bound(label, room, self._nofile_commands()))
        if self.file_max is not None:
            bounds.append(Bound(
                "fs.file-max", max(0, self.file_max - (self.file_nr or 0)),
                (f"sysctl -w fs.file-max={_grow(self.file_max)}",),
            ))
        if self.epoll_max_user_watches is not None:
            bounds.append(Bound(
                "fs.epoll.max_user_watches", self.epoll_max_user_watches,
                (f"sysctl -w fs.epoll.max_user_watches={_grow(self.epoll_max_user_watches)}",),
            ))
        if self.conntrack_max is not None:
            bounds.append(Bound(
                "net.netfilter.nf_conntrack_max",
                max(0, self.conntrack_max - (self.conntrack_count or 0)),
                (f"sysctl -w net.netfilter.nf_conntrack_max={_grow(self.conntrack_max)}",),
            ))
        return bounds

    def _nofile_commands(self) -> tuple[str, ...]:
        """Exact commands that raise the descriptor limit of this server."""
        soft, hard = self.nofile_soft, self.nofile_hard
        pid = self.pid if self.pid is not None else "<server PID>"
        if soft is not None and hard is not None and (hard == UNLIMITED or hard > soft):
            target = hard if hard != UNLIMITED else max(soft * 2, _SUGGESTED_NOFILE)
            return (
                f"ulimit -n {target}   # in the shell that starts the server",
                "python -m fastsock serve APP --raise-nofile   # or raise_nofile() in code",
                f"prlimit --pid {pid} --nofile={target}:{hard if hard != UNLIMITED else 'unlimited'}",
            )
        # Soft is already at hard: the hard limit itself must go up, and it
        # can never exceed fs.nr_open.
        base = hard if hard is not None and hard != UNLIMITED else (soft or 1024)
        target = max(base * 2, _SUGGESTED_NOFILE)
        commands = []
        if self.nr_open is not None and target > self.nr_open:
            commands.append(f"sysctl -w fs.nr_open={target}")
        commands += [
            f"prlimit --pid {pid} --nofile={target}:{target}   # as root",
            f"ulimit -Hn {target} && ulimit -n {target}   # as root, before starting",
            f"echo '* - nofile {target}' >> /etc/security/limits.conf   # new logins",
            f"LimitNOFILE={target}   # in the [Service] section of a systemd unit",
        ]
        return tuple(commands)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every raw value plus the derived ones."""
        data = asdict(self)
        data["port_range"] = list(self.port_range) if self.port_range else None
        for key in ("nofile_soft", "nofile_hard"):
            if data[key] == UNLIMITED:
                data[key] = "unlimited"
        data["ephemeral_ports"] = self.ephemeral_ports
        data["server_connections"] = self.server_connections
        data["server_connections_at_hard"] = self.server_connections_at_hard
        data["client_connections_per_destination"] = self.client_connections_per_destination
        data["client_connections"] = self.client_connections
        for key, bound in (("binding", self.binding), ("client_binding", self.client_binding)):
            data[key] = (
                {"name": bound.name, "connections": bound.connections,
                 "commands": list(bound.commands)}
                if bound is not None else None
            )
        return data


def _grow(value: int) -> int:
    """A suggested new value for a sysctl: double it."""
    return max(value * 2, 1024)


def limits(*, proc: str | None = None) -> LimitsReport:
    """Read every limit now. Never raises: unknown values are ``None``."""
    root = PROC if proc is None else proc
    sysctl = os.path.join(root, "sys")

    def sys_int(name: str) -> int | None:
        return _read_int(os.path.join(sysctl, *name.split(".")))

    rl = _getrlimit()
    port_range = _read_ints(os.path.join(sysctl, "net", "ipv4", "ip_local_port_range"), 2)
    return LimitsReport(
        nofile_soft=rl[0] if rl else None,
        nofile_hard=rl[1] if rl else None,
        file_max=sys_int("fs.file-max"),
        file_nr=sys_int("fs.file-nr"),
        nr_open=sys_int("fs.nr_open"),
        somaxconn=sys_int("net.core.somaxconn"),
        tcp_max_syn_backlog=sys_int("net.ipv4.tcp_max_syn_backlog"),
        port_range=(port_range[0], port_range[1]) if port_range else None,
        epoll_max_user_watches=sys_int("fs.epoll.max_user_watches"),
        conntrack_max=sys_int("net.netfilter.nf_conntrack_max"),
        conntrack_count=sys_int("net.netfilter.nf_conntrack_count"),
        fds_in_use=_count_fds(root),
        tcp_migrate_req=sys_int("net.ipv4.tcp_migrate_req"),
    )


# -- presentation -------------------------------------------------------------

def _fmt(value: int | None) -> str:
    if value is None:
        return "unknown"
    if value == UNLIMITED:
        return "unlimited"
    return str(value)


def format_report(report: LimitsReport) -> str:
    """A human-readable table of every limit, what it allows, and what binds first."""
    r = report
    ports = (f"{r.port_range[0]}-{r.port_range[1]}" if r.port_range else "unknown")
    rows = [
        ("RLIMIT_NOFILE soft", _fmt(r.nofile_soft), "descriptors this process may open (EMFILE above)"),
        ("RLIMIT_NOFILE hard", _fmt(r.nofile_hard), "ceiling for the soft limit without privileges"),
        ("descriptors in use", _fmt(r.fds_in_use), "open in this process now"),
        ("fs.nr_open", _fmt(r.nr_open), "ceiling for the hard limit"),
        ("fs.file-max", _fmt(r.file_max), "descriptors system-wide (ENFILE above)"),
        ("fs.file-nr", _fmt(r.file_nr), "descriptors allocated system-wide now"),
        ("net.core.somaxconn", _fmt(r.somaxconn), "cap on a listen() backlog"),
        ("net.ipv4.tcp_max_syn_backlog", _fmt(r.tcp_max_syn_backlog), "half-open connections queued"),
        ("net.ipv4.ip_local_port_range", ports,
         f"{_fmt(r.ephemeral_ports)} ports for outgoing connections"),
        ("fs.epoll.max_user_watches", _fmt(r.epoll_max_user_watches), "watched descriptors per user"),
        ("net.netfilter.nf_conntrack_max", _fmt(r.conntrack_max),
         f"tracked connections system-wide ({_fmt(r.conntrack_count)} now)"),
        ("net.ipv4.tcp_migrate_req", _fmt(r.tcp_migrate_req),
         "1: a closing SO_REUSEPORT listener hands its accept queue on (fastsock's "
         "workers need not: docs/workers.md)"),
    ]
    w0 = max(len(row[0]) for row in rows)
    w1 = max(len(row[1]) for row in rows)
    lines = ["limit".ljust(w0) + "  " + "value".rjust(w1) + "  meaning"]
    lines += [f"{a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows]
    lines.append("")
    lines += _derived_lines(r)
    return "\n".join(lines)


def _derived_lines(r: LimitsReport) -> list[str]:
    lines = [
        f"server connections now:         {_fmt(r.server_connections)}"
        f"  (soft limit - {_fmt(r.fds_in_use)} in use - {r.reserve} reserve)",
        f"server connections at hard:     {_fmt(r.server_connections_at_hard)}",
        f"client connections per dest.:   {_fmt(r.client_connections_per_destination)}"
        f"  (ephemeral ports per source address; {_fmt(r.client_connections)} with"
        " descriptors counted)",
    ]
    for label, bound in (("server", r.binding), ("client", r.client_binding)):
        if bound is None:
            lines.append(f"binds first ({label}): unknown")
            continue
        if label == "client" and bound == r.binding:
            lines.append(f"binds first ({label}): {bound.name}, as for the server")
            continue
        lines.append(f"binds first ({label}): {bound.name} ({bound.connections} connections); raise it with:")
        lines += [f"    {cmd}" for cmd in bound.commands]
    return lines


def summary_lines(report: LimitsReport | None = None) -> list[str]:
    """A compact summary for a server's start-up log (a few lines)."""
    r = report if report is not None else limits()
    bound = r.binding
    lines = [
        f"limits: RLIMIT_NOFILE soft={_fmt(r.nofile_soft)} hard={_fmt(r.nofile_hard)}"
        f" in use={_fmt(r.fds_in_use)} fs.file-max={_fmt(r.file_max)}"
        f" somaxconn={_fmt(r.somaxconn)}",
        f"limits: up to {_fmt(r.server_connections)} server connections"
        f" ({_fmt(r.server_connections_at_hard)} at the hard limit),"
        f" {_fmt(r.client_connections_per_destination)} client connections per destination",
    ]
    if bound is not None:
        lines.append(f"limits: {bound.name} binds first; raise it with: {bound.commands[0]}")
    return lines


_summary_logged = False


def log_summary(log: logging.Logger | None = None, *, report: LimitsReport | None = None,
                once: bool = True) -> bool:
    """Log :func:`summary_lines` at INFO, by default only the first time in
    the process: the CLI and every server call it at start, and the first
    caller's summary is the one that appears. ``once=False`` always logs.
    Returns whether it logged."""
    global _summary_logged
    if once and _summary_logged:
        return False
    _summary_logged = True
    target = log if log is not None else _LOG
    for line in summary_lines(report):
        target.info("%s", line)
    return True


# -- acting on the limits -----------------------------------------------------

def raise_nofile(target: int | None = None, *, log: logging.Logger | None = None) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or to ``target``).

    Never lowers a limit. A ``target`` above the hard limit raises the hard
    limit too when the process may (root / CAP_SYS_RESOURCE, and at most
    fs.nr_open); otherwise the soft limit stops at the hard one and a warning
    says how to go further. Logs what it did and returns the new (soft, hard).
    """
    if resource is None:
        raise OSError("RLIMIT_NOFILE does not exist on this platform")
    out = log if log is not None else _LOG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if target is None else target
    if want == UNLIMITED and sys.platform == "darwin":
        want = max(soft, _SUGGESTED_NOFILE)  # macOS refuses an unlimited soft limit
    if soft == UNLIMITED or (want != UNLIMITED and want <= soft):
        out.info("RLIMIT_NOFILE soft limit already %s (hard %s); nothing to raise",
                 _fmt(soft), _fmt(hard))
        return soft, hard
    new = None
    if hard != UNLIMITED and (want == UNLIMITED or want > hard):
        # Above the hard limit: needs root or CAP_SYS_RESOURCE, and fs.nr_open.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            new = (want, want)
        except (OSError, ValueError) as exc:
            out.warning(
                "cannot raise the RLIMIT_NOFILE hard limit from %d to %s (%s); "
                "stopping at the hard limit; as root: prlimit --pid %d --nofile=%s:%s",
                hard, _fmt(want), getattr(exc, "strerror", None) or exc, os.getpid(), want, want,
            )
            want = hard
            if want <= soft:
                return soft, hard
    if new is None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError) as exc:
            out.warning("cannot raise the RLIMIT_NOFILE soft limit from %d to %s: %s",
                        soft, _fmt(want), getattr(exc, "strerror", None) or exc)
            return soft, hard
    new_soft, new_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out.info("raised RLIMIT_NOFILE soft limit from %s to %s (hard %s)",
             _fmt(soft), _fmt(new_soft), _fmt(new_hard))
    if _default_watch is not None:
        _default_watch.set_soft_limit(new_soft)
    return new_soft, new_hard


#: Share of the soft RLIMIT_NOFILE at which fastsock warns (DescriptorWatch, `stat`).
WARN_THRESHOLD = 0.8

#: The descriptor warning: in use, threshold %, soft limit (twice), first raise command.
WARNING_FORMAT = ("descriptor use %d has crossed %d%% of the soft RLIMIT_NOFILE %d; "
                  "new connections fail with EMFILE at %d; raise it with: %s")


def _raise_commands(soft: int, hard: int | None, pid: int | None) -> tuple[str, ...]:
    """The commands that raise the descriptor limit of process ``pid``."""
    report = LimitsReport(
        nofile_soft=soft, nofile_hard=hard, file_max=None, file_nr=None,
        nr_open=_read_int(os.path.join(PROC, "sys", "fs", "nr_open")),
        somaxconn=None, tcp_max_syn_backlog=None, port_range=None,
        epoll_max_user_watches=None, conntrack_max=None, conntrack_count=None,
        fds_in_use=None, pid=pid,
    )
    return report._nofile_commands()


def nofile_warning(in_use: int, soft: int | None, hard: int | None, *, pid: int | None,
                   threshold: float = WARN_THRESHOLD) -> str | None:
    """The warning :class:`DescriptorWatch` logs, for any process: the text when
    ``in_use`` has reached ``threshold`` x the soft limit, else None (also for an
    unknown or unlimited limit). ``stat`` shows it for the process it lists."""
    if soft is None or soft == UNLIMITED or soft <= 0:
        return None
    if in_use < max(1, int(soft * threshold)):
        return None
    return WARNING_FORMAT % (in_use, round(threshold * 100), soft, soft,
                             _raise_commands(soft, hard, pid)[0])


class DescriptorWatch:
    """Counts descriptors as a server opens and closes them; warns once.

    The baseline is the number of descriptors open when the watch is created
    (one /proc read); after that ``opened()``/``closed()`` only update a
    counter. When use crosses ``threshold`` × the soft limit it logs ONE
    warning with the numbers and the command to raise the limit, and re-arms
    once use falls back below ``rearm`` × the soft limit.
    """

    __slots__ = ("_in_use", "_soft", "_threshold", "_rearm", "_warn_at", "_rearm_at",
                 "_warned", "warnings", "_log", "_commands")

    def __init__(self, soft_limit: int | None = None, threshold: float = WARN_THRESHOLD,
                 logger: logging.Logger | None = None, *, rearm: float | None = None,
                 baseline: int | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if rearm is None:
            rearm = max(0.0, threshold - 0.1)
        if not 0.0 <= rearm < threshold:
            raise ValueError(f"rearm must be in [0, threshold), got {rearm!r}")
        self._threshold = threshold
        self._rearm = rearm
        self._log = logger if logger is not None else _LOG
        if baseline is None:
            baseline = _count_fds(PROC) or 0
        self._in_use = baseline
        self._warned = False
        self.warnings = 0  # how many warnings were logged in total
        self._commands: tuple[str, ...] = ()
        if soft_limit is None:
            rl = _getrlimit()
            soft_limit = rl[0] if rl else None
        self.set_soft_limit(soft_limit)

    def set_soft_limit(self, soft_limit: int | None) -> None:
        """Follow a changed soft limit (``raise_nofile`` calls this)."""
        self._soft = soft_limit if soft_limit != UNLIMITED else None
        if self._soft is None or self._soft <= 0:
            self._warn_at = sys.maxsize  # unknown or unlimited: never warn
            self._rearm_at = -1
        else:
            self._warn_at = max(1, int(self._soft * self._threshold))
            self._rearm_at = int(self._soft * self._rearm)
        self._commands = ()
        if self._warned and self._in_use <= self._rearm_at:
            self._warned = False
        elif not self._warned and self._in_use >= self._warn_at:
            self._warn()

    def resync(self) -> int | None:
        """Re-read what is open now from /proc (one directory listing) and
        continue counting from there; for after a burst of descriptors the
        watch was not told about (a loop's own epoll and pipes, listening
        sockets). Returns the new count, or None where /proc is missing."""
        count = _count_fds(PROC)
        if count is not None:
            self._in_use = count
            if self._warned and count <= self._rearm_at:
                self._warned = False
            elif not self._warned and count >= self._warn_at:
                self._warn()
        return count

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def soft_limit(self) -> int | None:
        return self._soft

    @property
    def warned(self) -> bool:
        """True while a warning is out and use has not dropped below the re-arm mark."""
        return self._warned

    def opened(self, n: int = 1) -> None:
        self._in_use += n
        if self._in_use >= self._warn_at and not self._warned:
            self._warn()

    def closed(self, n: int = 1) -> None:
        self._in_use -= n
        if self._in_use < 0:
            self._in_use = 0
        if self._warned and self._in_use <= self._rearm_at:
            self._warned = False

    def _warn(self) -> None:
        self._warned = True
        self.warnings += 1
        soft = self._soft or 0
        if not self._commands:
            rl = _getrlimit()
            self._commands = _raise_commands(soft, rl[1] if rl else None, os.getpid())
        self._log.warning(WARNING_FORMAT, self._in_use, round(self._threshold * 100), soft, soft,
                          self._commands[0])

    def __repr__(self) -> str:
        return (f"<DescriptorWatch in_use={self._in_use} soft_limit={_fmt(self._soft)} "
                f"threshold={self._threshold} warned={self._warned}>")


_default_watch: DescriptorWatch | None = None


def default_watch() -> DescriptorWatch:
    """The process-wide watch that fastsock's servers share (created on first use)."""
    global _default_watch
    if _default_watch is None:
        _default_watch = DescriptorWatch()
    return _default_watch
