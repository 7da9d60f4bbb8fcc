"""One reactor per core: a supervisor and N worker processes on one port.

:func:`run_workers` (and ``python -m fastsock serve APP --workers N``) starts
a supervisor that opens N listening sockets with ``SO_REUSEPORT`` on the same
address, one per worker *slot*; the kernel spreads incoming connections
across them by 4-tuple hash. Each worker is a fresh interpreter that re-runs
the program's own command line (``sys.orig_argv``) with ``FASTSOCK_WORKER``
in its environment; there :func:`run_workers` does not supervise but calls
``target(worker)``, which serves on ``worker.socket`` and calls
``worker.ready()`` once it accepts.

Why the supervisor owns the listeners: closing a ``SO_REUSEPORT`` listener
resets every connection still in its accept queue (unless
``net.ipv4.tcp_migrate_req=1``). A replacement worker inherits its slot's
listener, so in a rolling reload the old worker closes only its own copy of
the descriptor: the socket and its queue live on in the supervisor and the
new worker, and nothing is refused or reset, whatever the sysctl says. A
crashed worker's queue waits for its replacement the same way.

Signals to the supervisor:

- SIGTERM / SIGINT: close the listeners, SIGTERM every worker (each stops
  accepting, closes WebSockets with 1001 and flushes within its
  ``shutdown_timeout``), SIGKILL what is left after ``shutdown_timeout +
  KILL_GRACE``; exit 0.
- SIGHUP: rolling reload, one slot at a time: start the replacement, wait
  for its ``ready()``, then SIGTERM the old worker (which drains as above).
  Workers re-run the command line, so a reload picks up new code.
- SIGUSR1: log the workers report (:meth:`Supervisor.report`): per worker
  its connections on the port and its descriptors against its limit, the
  depth of each slot's accept queue, and the totals. It is also logged once
  every worker accepts.

A worker that exits without being asked to is logged with its exit status
and restarted after a back-off that doubles on each quick crash. If a slot's
worker fails BOOT_ATTEMPTS times before any worker ever accepted, the
supervisor gives up and returns 1 (the program cannot start).
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

__all__ = [
    "ENV_VAR",
    "Supervisor",
    "Worker",
    "current",
    "default_workers",
    "run_workers",
]

log = logging.getLogger("fastsock.workers")

ENV_VAR = "FASTSOCK_WORKER"          # set by the supervisor in each worker's environment
RESTART_BACKOFF_MIN = 0.1            # seconds before the first restart of a crashed worker
RESTART_BACKOFF_MAX = 10.0           # cap of the doubling back-off
STABLE_AFTER = 5.0                   # a worker up this long resets the back-off
BOOT_ATTEMPTS = 5                    # a slot whose first worker fails this often: give up
EXIT_BOOT_FAILED = 1                 # run()'s result when the workers never started
KILL_GRACE = 2.0                     # after a worker's shutdown_timeout, SIGKILL it this much later
DEFAULT_READY_TIMEOUT = 30.0         # a worker must call ready() within this (start-up, imports)
SUPERVISOR_TICK = 1.0                # longest sleep of the supervisor loop
READY_LINE_MAX = 4096                # bytes a worker may send with ready()
REQUEST_LINE_MAX = 256               # a supervisor's request to a worker (one line)
ANSWER_MAX = 64 << 20                # bytes of one worker's answer the supervisor reads
_ANSWER = struct.Struct(">QQ")       # an answer: its length and its request's id, then its bytes
_PR_SET_PDEATHSIG = 1                # prctl(2) option: signal me when my parent dies

Target = Callable[["Worker"], Optional[int]]


# ----------------------------------------------------------------------------- worker side

class Worker:
    """What a worker process knows about itself (``fastsock.workers.current()``).

    ``socket`` is the slot's listening socket (``SO_REUSEPORT``, already
    listening, non-blocking): serve on it, e.g. ``fastsock.server.run(handler,
    sock=worker.socket, on_ready=lambda server: worker.ready())``.
    """

    def __init__(self, index: int, generation: int, listen_fd: int, ready_fd: int,
                 supervisor_pid: int, control_fd: int = -1) -> None:
        self.index = index
        self.generation = generation
        self.supervisor_pid = supervisor_pid
        self.socket = socket.socket(fileno=listen_fd)
        self.socket.setblocking(False)
        self._ready_fd: Optional[int] = ready_fd
        # The supervisor's requests (e.g. "metrics" for the totals across workers).
        self.control: Optional[socket.socket] = (
            socket.socket(fileno=control_fd) if control_fd >= 0 else None)
        self._requests = b""

    def serve_requests(self, loop: Any, answer: Callable[[str], bytes]) -> None:
        """Answer the supervisor's requests from ``loop`` (any loop with
        ``add_reader``): each request is one line, the answer ``answer(line)``
        goes back length-prefixed. Used for the totals across workers
        (:mod:`fastsock.workers_metrics`)."""
        control = self.control
        if control is None:
            return
        control.setblocking(False)
        out = bytearray()                 # answers not yet taken by the socket

        def flush() -> None:
            try:
                sent = control.send(out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("worker %d: cannot answer the supervisor: %s", self.index, exc)
                sent = len(out)
            del out[:sent]
            if not out:
                loop.remove_writer(control.fileno())

        def readable() -> None:
            try:
                data = control.recv(REQUEST_LINE_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:                  # the supervisor is gone
                loop.remove_reader(control.fileno())
                return
            self._requests += data
            while b"\n" in self._requests:
                line, _, self._requests = self._requests.partition(b"\n")
                number, _, request = line.partition(b" ")   # "<id> <request>"
                try:
                    body = answer(request.decode(errors="replace"))
                except Exception:
                    log.exception("worker %d: answering %r failed", self.index, request)
                    body = b""
                # Never blocks the loop: what the socket does not take now is
                # written when it can take more (the supervisor reads while it
                # waits for answers, and drops late ones by their id).
                pending = bool(out)
                out.extend(_ANSWER.pack(len(body), int(number) if number.isdigit() else 0))
                out.extend(body)
                if not pending:
                    loop.add_writer(control.fileno(), flush)

        loop.add_reader(control.fileno(), readable)

    @property
    def pid(self) -> int:
        return os.getpid()

    def ready(self, line: str = "") -> None:
        """Tell the supervisor this worker accepts connections (once; later calls
        do nothing). ``line`` (one line) is what the supervisor prints for the
        first generation, e.g. the app's ready line."""
        fd = self._ready_fd
        if fd is None:
            return
        self._ready_fd = None
        data = (line.replace("\n", " ") + "\n").encode()[:READY_LINE_MAX]
        try:
            os.write(fd, data)
        except OSError as exc:  # the supervisor is gone; PDEATHSIG will stop us
            log.warning("worker %d: cannot report ready: %s", self.index, exc)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<Worker {self.index} gen={self.generation} pid={self.pid}>"


_current: Optional[Worker] = None


def current() -> Optional[Worker]:
    """The :class:`Worker` of this process when it is a supervised worker, else None."""
    return _current if _current is not None else _worker_from_env()


def _worker_from_env() -> Optional[Worker]:
    global _current
    if _current is not None:
        return _current
    spec = os.environ.pop(ENV_VAR, None)   # popped: our own children are not workers
    if spec is None:
        return None
    index, generation, listen_fd, ready_fd, parent, control_fd = (int(x) for x in spec.split(","))
    _die_with_parent(parent)
    _current = Worker(index, generation, listen_fd, ready_fd, parent, control_fd)
    return _current


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies (even by SIGKILL): no orphans
    holding the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: rely on the supervisor's SIGTERM
        return
    if os.getppid() != parent:         # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


# ----------------------------------------------------------------------------- supervisor side

def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def describe_status(status: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL`` for a wait() status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


@dataclass
class _Proc:
    slot: int
    generation: int
    pid: int
    ready_fd: int                      # read end of the ready pipe (-1 once closed)
    started: float
    ready_deadline: float
    ready: bool = False
    line: bytes = b""
    stopping: bool = False             # we asked it to stop: its exit is not a crash
    kill_at: Optional[float] = None
    control: Optional[socket.socket] = None   # our end of its request channel
    answers: bytearray = field(default_factory=bytearray)   # bytes read from it, not parsed yet
    skip: int = 0                      # bytes of an oversized answer still to drop


@dataclass
class _Slot:
    index: int
    sock: socket.socket
    current: Optional[_Proc] = None
    pending: Optional[_Proc] = None    # a reload's replacement, not ready yet
    draining: list[_Proc] = field(default_factory=list)
    failures: int = 0                  # quick crashes in a row (the back-off exponent)
    restart_at: Optional[float] = None
    restarts: int = 0


class Supervisor:
    """Runs N workers on one address (see the module docstring). Use
    :func:`run_workers`; this class is public for its ``pids()`` and tests."""

    def __init__(self, workers: int, host: str, port: int, *, backlog: int = 1024,
                 shutdown_timeout: float = 5.0, ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 on_ready: Optional[Callable[["Supervisor"], None]] = None,
                 argv: Optional[list[str]] = None,
                 type: socket.SocketKind = socket.SOCK_STREAM) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core), got {workers}")
        self.count = workers or default_workers()
        self.host = host
        self.backlog = backlog
        self.shutdown_timeout = shutdown_timeout
        self.ready_timeout = ready_timeout
        self.on_ready = on_ready
        self.argv = list(argv) if argv is not None else [sys.executable, *sys.orig_argv[1:]]
        self.ready_line = ""
        self.reloads = 0
        self._generation = 0
        self.type = type
        self._slots = [_Slot(i, s) for i, s in
                       enumerate(_listeners(host, port, self.count, backlog, type))]
        self.port = int(self._slots[0].sock.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._by_fd: dict[int, _Proc] = {}
        self._signals: list[int] = []
        self._stopping = False
        self._announced = False
        self._reload_queue: list[int] = []
        self._reload_again = False
        self._boot_failed = False
        self._ask_lock = threading.Lock()
        self._request_id = 0
        self._closing_controls: list[socket.socket] = []   # of exited workers
        self.pid = os.getpid()

    # -- public ---------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """PIDs of the current workers, by slot (0 for a slot waiting for a restart)."""
        return [s.current.pid if s.current else 0 for s in self._slots]

    @property
    def restarts(self) -> int:
        """Workers restarted after a crash, over every slot."""
        return sum(s.restarts for s in self._slots)

    def ask(self, request: str, timeout: float) -> list[tuple[int, int, Optional[bytes]]]:
        """Send ``request`` (one line) to every current, ready worker and wait
        up to ``timeout`` seconds for their answers: ``(slot, pid, answer)``
        each, ``answer`` None for a worker that did not answer in time (or
        exited). Thread-safe (one request at a time); the workers answer
        with :meth:`Worker.serve_requests`."""
        with self._ask_lock:
            procs = [s.current for s in self._slots
                     if s.current is not None and s.current.ready and s.current.control]
            self._request_id += 1
            number = self._request_id
            answers: dict[int, Optional[bytes]] = {}
            waiting: dict[int, _Proc] = {}
            sel = selectors.DefaultSelector()
            line = f"{number} {request}".replace("\n", " ").encode() + b"\n"
            try:
                for proc in procs:
                    control = proc.control
                    answers[proc.pid] = None
                    try:
                        assert control is not None
                        control.settimeout(timeout)
                        control.sendall(line)
                        control.setblocking(False)
                        sel.register(control, selectors.EVENT_READ, proc)
                        waiting[proc.pid] = proc
                    except (OSError, ValueError, AssertionError):
                        continue             # exited meanwhile
                deadline = time.monotonic() + timeout
                while waiting:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    for key, _ in sel.select(left):
                        proc = key.data
                        try:
                            data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(key.fileobj)
                            del waiting[proc.pid]
                            continue
                        body = _take_answer(proc, data, number)
                        if body is not None:
                            answers[proc.pid] = body
                            sel.unregister(key.fileobj)
                            del waiting[proc.pid]
            finally:
                sel.close()
            return [(p.slot, p.pid, answers.get(p.pid)) for p in procs]

    def _close_controls(self) -> None:
        """Close exited workers' request channels, unless a scrape (another
        thread) is reading them: then on a later tick; never wait for it."""
        if not self._closing_controls or not self._ask_lock.acquire(blocking=False):
            return
        try:
            for control in self._closing_controls:
                control.close()
            self._closing_controls.clear()
        finally:
            self._ask_lock.release()


    def run(self) -> int:
        """Start the workers and supervise them until SIGTERM/SIGINT; returns 0
        (1 when a slot's worker failed BOOT_ATTEMPTS times before any accepted)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1)
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            log.info("supervisor %d: %d workers on %s", os.getpid(), self.count,
                     _format(self.host, self.port))
            for slot in self._slots:
                self._spawn(slot)
            while not self._finished():
                self._tick(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)
            for slot in self._slots:
                slot.sock.close()
            with self._ask_lock:
                for proc in self._procs():
                    if proc.control is not None:
                        proc.control.close()
                        proc.control = None
                for control in self._closing_controls:
                    control.close()
                self._closing_controls.clear()
        log.info("supervisor %d: all workers stopped", os.getpid())
        return EXIT_BOOT_FAILED if self._boot_failed else 0

    def report(self) -> dict[str, Any]:
        """Per worker and in total, read from /proc now: connections established
        on the port, descriptors in use against RLIMIT_NOFILE (and so how many
        more connections fit), and each slot's accept-queue depth."""
        from .limits.table import process_descriptors, read_sockets, socket_owners

        rows = read_sockets()
        pids = [s.current.pid for s in self._slots if s.current is not None]
        owners = socket_owners(pids=pids)
        by_pid: dict[int, int] = dict.fromkeys(pids, 0)
        queues: dict[int, int] = {}
        slot_inodes = {}
        for slot in self._slots:
            if slot.sock.fileno() >= 0:
                slot_inodes[os.fstat(slot.sock.fileno()).st_ino] = slot.index
        for row in rows:
            if not row.is_tcp or row.local_port != self.port or self.type != socket.SOCK_STREAM:
                continue
            if row.state == "ESTABLISHED":
                for pid in owners.by_inode.get(row.inode, ()):
                    if pid in by_pid:
                        by_pid[pid] += 1
            elif row.state == "LISTEN" and row.inode in slot_inodes:
                queues[slot_inodes[row.inode]] = row.rx_queue
        workers = []
        for slot in self._slots:
            proc = slot.current
            entry: dict[str, Any] = {"slot": slot.index, "pid": proc.pid if proc else None,
                                     "restarts": slot.restarts,
                                     "accept_queue": queues.get(slot.index)}
            if proc is not None:
                fds = process_descriptors(proc.pid)
                room = (None if fds.soft is None or fds.in_use is None
                        else max(0, fds.soft - fds.in_use))
                entry.update(connections=by_pid.get(proc.pid, 0), descriptors=fds.in_use,
                             nofile_soft=fds.soft, room=room, warning=fds.warning)
            workers.append(entry)
        rooms = [w.get("room") for w in workers]
        return {"address": _format(self.host, self.port), "workers": workers,
                "connections": sum(w.get("connections", 0) for w in workers),
                "room": None if None in rooms else sum(r for r in rooms if r is not None),
                "reloads": self.reloads}

    def _log_report(self) -> None:
        try:
            rep = self.report()
        except OSError as exc:   # /proc unreadable: the report is advice, never fatal
            log.warning("supervisor %d: no workers report: %s", os.getpid(), exc)
            return
        for w in rep["workers"]:
            if w["pid"] is None:
                log.info("worker %d: not running (restarts %d)", w["slot"], w["restarts"])
                continue
            log.info("worker %d: pid %d, %d connections, %s of %s descriptors (room for %s "
                     "more), accept queue %s, restarts %d", w["slot"], w["pid"], w["connections"],
                     w["descriptors"], w["nofile_soft"], w["room"], w["accept_queue"], w["restarts"])
            if w.get("warning"):
                log.warning("worker %d: %s", w["slot"], w["warning"])
        log.info("workers on %s: %d connections in total, room for %s more; %d reloads",
                 rep["address"], rep["connections"], rep["room"], rep["reloads"])

    # -- loop -----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)   # handled in the loop, not in the handler

    def _finished(self) -> bool:
        return self._stopping and not any(self._procs())

    def _procs(self) -> list[_Proc]:
        out: list[_Proc] = []
        for slot in self._slots:
            if slot.current is not None:
                out.append(slot.current)
            if slot.pending is not None:
                out.append(slot.pending)
            out.extend(slot.draining)
        return out

    def _tick(self, wake_r: int) -> None:
        timeout = self._next_timeout()
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                self._read_ready(key.data)
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self._stopping:
                self._start_reload()
            elif signum == signal.SIGUSR1 and not self._stopping:
                self._log_report()
        self._reap()
        self._close_controls()
        self._timers()
        self._advance_reload()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        when = now + SUPERVISOR_TICK
        for slot in self._slots:
            if slot.restart_at is not None:
                when = min(when, slot.restart_at)
        for proc in self._procs():
            if proc.kill_at is not None:
                when = min(when, proc.kill_at)
            if not proc.ready:
                when = min(when, proc.ready_deadline)
        return max(0.0, when - now)

    # -- starting ------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> _Proc:
        self._generation += 1
        ready_r, ready_w = os.pipe()
        control, worker_control = socket.socketpair()
        listen_fd = slot.sock.fileno()
        env = dict(os.environ)
        env[ENV_VAR] = (f"{slot.index},{self._generation},{listen_fd},{ready_w},{os.getpid()},"
                        f"{worker_control.fileno()}")
        os.set_inheritable(listen_fd, True)
        os.set_inheritable(ready_w, True)
        worker_control.set_inheritable(True)
        try:
            pid = os.posix_spawn(self.argv[0], self.argv, env, setpgroup=0,
                                 setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                            signal.SIGCHLD, signal.SIGUSR1))
        except BaseException:
            control.close()
            raise
        finally:
            os.set_inheritable(listen_fd, False)
            os.close(ready_w)
            worker_control.close()
        os.set_blocking(ready_r, False)
        now = time.monotonic()
        proc = _Proc(slot.index, self._generation, pid, ready_r, now, now + self.ready_timeout,
                     control=control)
        self._by_fd[ready_r] = proc
        self._selector.register(ready_r, selectors.EVENT_READ, proc)
        slot.restart_at = None
        if slot.current is None:
            slot.current = proc
        else:
            slot.pending = proc
        log.info("worker %d: started pid %d", slot.index, pid)
        return proc

    def _read_ready(self, proc: _Proc) -> None:
        try:
            data = os.read(proc.ready_fd, READY_LINE_MAX)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            proc.line += data
            if not proc.line.endswith(b"\n"):
                return
            proc.ready = True
            log.info("worker %d: pid %d accepts", proc.slot, proc.pid)
        self._close_ready(proc)  # ready, or EOF: the worker exited before ready()
        if proc.ready:
            self._became_ready(proc)

    def _close_ready(self, proc: _Proc) -> None:
        if proc.ready_fd >= 0:
            self._selector.unregister(proc.ready_fd)
            del self._by_fd[proc.ready_fd]
            os.close(proc.ready_fd)
            proc.ready_fd = -1

    def _became_ready(self, proc: _Proc) -> None:
        slot = self._slots[proc.slot]
        if slot.pending is proc and slot.current is not None:
            old = slot.current
            slot.current, slot.pending = proc, None
            log.info("worker %d: pid %d replaces pid %d (draining)", slot.index, proc.pid, old.pid)
            slot.draining.append(old)
            self._terminate(old)
        elif slot.pending is proc:        # the old one died meanwhile
            slot.current, slot.pending = proc, None
        if not self._announced and all(s.current is not None and s.current.ready
                                       for s in self._slots):
            self._announced = True
            self.ready_line = proc.line.decode(errors="replace").strip()
            log.info("supervisor %d: %d workers accept on %s", os.getpid(), self.count,
                     _format(self.host, self.port))
            self._log_report()
            if self.on_ready is not None:
                self.on_ready(self)

    # -- stopping -------------------------------------------------------------------------
    def _terminate(self, proc: _Proc) -> None:
        if proc.stopping:
            return
        proc.stopping = True
        proc.kill_at = time.monotonic() + self.shutdown_timeout + KILL_GRACE
        _signal(proc.pid, signal.SIGTERM)

    def _stop(self, why: str) -> None:
        if self._stopping:
            # A second signal: do not wait for the drain.
            for proc in self._procs():
                _signal(proc.pid, signal.SIGKILL)
            return
        log.info("supervisor %d: %s received, draining %d workers", os.getpid(), why,
                 len(self._procs()))
        self._stopping = True
        self._reload_queue.clear()
        for slot in self._slots:
            slot.restart_at = None
            # Stop accepting: once the workers close their copies too, the
            # listener is gone and new connections are refused.
            slot.sock.close()
        for proc in self._procs():
            self._terminate(proc)

    def _timers(self) -> None:
        now = time.monotonic()
        for proc in self._procs():
            if proc.kill_at is not None and now >= proc.kill_at:
                log.warning("worker %d: pid %d did not stop within %.1fs; killing it",
                            proc.slot, proc.pid, self.shutdown_timeout + KILL_GRACE)
                proc.kill_at = None
                _signal(proc.pid, signal.SIGKILL)
            elif not proc.ready and not proc.stopping and now >= proc.ready_deadline:
                log.error("worker %d: pid %d not ready within %.1fs; killing it",
                          proc.slot, proc.pid, self.ready_timeout)
                _signal(proc.pid, signal.SIGKILL)
                proc.ready_deadline = float("inf")
        if self._stopping:
            return
        for slot in self._slots:
            if slot.current is None and slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                self._spawn(slot)

    def _reap(self) -> None:
        for proc in self._procs():
            try:
                pid, status = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = proc.pid, 0
            if pid == 0:
                continue
            self._exited(proc, status)

    def _exited(self, proc: _Proc, status: int) -> None:
        self._close_ready(proc)
        if proc.control is not None:
            self._closing_controls.append(proc.control)
            proc.control = None
            self._close_controls()
        slot = self._slots[proc.slot]
        if proc in slot.draining:
            slot.draining.remove(proc)
        if slot.pending is proc:
            slot.pending = None
            if not proc.stopping:
                log.error("worker %d: replacement pid %d %s before it accepted; reload aborted, "
                          "pid %s keeps serving", slot.index, proc.pid, describe_status(status),
                          slot.current.pid if slot.current else "-")
                self._reload_queue.clear()
                self._reload_again = False
            return
        if proc.stopping:
            log.info("worker %d: pid %d stopped (%s)", slot.index, proc.pid, describe_status(status))
            if slot.current is proc:
                slot.current = None
            return
        # A crash (or any exit nobody asked for): log it and restart with back-off.
        if slot.current is proc:
            slot.current = None
        if time.monotonic() - proc.started >= STABLE_AFTER:
            slot.failures = 0
        delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_MIN * (2 ** slot.failures))
        slot.failures += 1
        if not self._announced and slot.failures >= BOOT_ATTEMPTS:
            # Never got going (a bad option, code that does not import): a
            # supervisor that retried forever would only hide it.
            log.error("worker %d: pid %d %s; %d attempts failed before any worker "
                      "accepted: giving up", slot.index, proc.pid, describe_status(status),
                      slot.failures)
            self._boot_failed = True
            self._stop("start-up failure")
            return
        log.error("worker %d: pid %d %s; restarting in %.2fs", slot.index, proc.pid,
                  describe_status(status), delay)
        if slot.pending is not None:      # a reload's replacement takes over when ready
            return
        slot.restart_at = time.monotonic() + delay

    # -- rolling reload -------------------------------------------------------------------
    def _start_reload(self) -> None:
        if self._reload_queue or any(s.pending for s in self._slots):
            self._reload_again = True     # finish this round, then reload once more
            return
        self.reloads += 1
        log.info("supervisor %d: SIGHUP: rolling reload of %d workers", os.getpid(), self.count)
        self._reload_queue = [s.index for s in self._slots]

    def _advance_reload(self) -> None:
        if self._stopping or any(s.pending for s in self._slots):
            return
        while self._reload_queue:
            slot = self._slots[self._reload_queue.pop(0)]
            if slot.current is None:      # waiting for a restart, which starts new code anyway
                continue
            self._spawn(slot)
            return
        if self._reload_again:
            self._reload_again = False
            self._start_reload()


def _take_answer(proc: _Proc, data: bytes, number: int) -> Optional[bytes]:
    """Add ``data`` read from ``proc``'s channel; the answer to request
    ``number`` once it is complete. Answers to earlier requests (a worker that
    answered after their deadline) are dropped whole, so the framing holds."""
    buf = proc.answers
    if proc.skip:                          # the rest of an oversized answer
        dropped = min(proc.skip, len(data))
        proc.skip -= dropped
        data = data[dropped:]
    buf += data
    while len(buf) >= _ANSWER.size:
        size, answered = _ANSWER.unpack_from(buf)
        if size > ANSWER_MAX:
            log.warning("worker %d: answer of %d bytes dropped (more than %d)", proc.slot, size,
                        ANSWER_MAX)
            proc.skip = size - min(size, len(buf) - _ANSWER.size)
            del buf[:_ANSWER.size + size]
            continue
        if len(buf) < _ANSWER.size + size:
            return None
        body = bytes(buf[_ANSWER.size:_ANSWER.size + size])
        del buf[:_ANSWER.size + size]
        if answered == number:
            return body
    return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listeners(host: str, port: int, count: int, backlog: int,
               type: socket.SocketKind = socket.SOCK_STREAM) -> list[socket.socket]:
    """``count`` listening sockets on one address with SO_REUSEPORT (port 0: the
    first one picks the port, the others join it). ``SOCK_DGRAM``: bound UDP
    sockets, among which the kernel spreads datagrams by their 4-tuple."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this system")
    infos = socket.getaddrinfo(host, port, type=type, flags=socket.AI_PASSIVE)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    out: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, type)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            if type == socket.SOCK_STREAM:
                sock.listen(backlog)
            sock.setblocking(False)
            sockaddr = sock.getsockname()   # the port picked for port 0
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def run_workers(target: Target, workers: int = 0, *, host: str = "127.0.0.1", port: int = 0,
                backlog: int = 1024, shutdown_timeout: float = 5.0,
                ready_timeout: float = DEFAULT_READY_TIMEOUT,
                on_ready: Optional[Callable[[Supervisor], None]] = None,
                type: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """Serve ``target`` in ``workers`` processes (0 = one per core) on one port.
    ``type=socket.SOCK_DGRAM``: each worker gets a bound UDP socket of the
    port's SO_REUSEPORT group instead of a TCP listener.

    In the supervisor (the process you start) this blocks until SIGTERM/SIGINT
    and returns 0; ``on_ready(supervisor)`` runs once every worker accepts.
    Each worker re-runs this program's command line and reaches this same
    call, which then runs ``target(worker)`` (see :class:`Worker`) and
    returns its result (None → 0). So call it from the program's main path,
    after nothing that must happen only once.
    """
    worker = _worker_from_env()
    if worker is not None:
        result: Union[int, None] = target(worker)
        return 0 if result is None else int(result)
    supervisor = Supervisor(workers, host, port, backlog=backlog, shutdown_timeout=shutdown_timeout,
                            ready_timeout=ready_timeout, on_ready=on_ready, type=type)
    return supervisor.run()
