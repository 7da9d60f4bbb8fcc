"""Real sockets on 127.0.0.1 put into each TCP state, and ``ss`` to check the
connection table against (shared by test_table.py and test_stat_cli.py).

How each state is made to stay (on loopback most pass in microseconds):
- FIN_WAIT1 / LAST_ACK / CLOSING: the closing side first fills a peer that
  never reads (small buffers, send until EAGAIN), so its FIN waits behind
  unsent data; the peer's window stays zero.
- SYN_RECV: a listener with TCP_DEFER_ACCEPT keeps a handshake open until
  the client sends data.
- SYN_SENT: a listener whose accept queue is full drops new SYNs.
"""
from __future__ import annotations

import collections
import os
import select
import shutil
import socket
import subprocess
import time
from typing import Callable, Iterable

# ss -tan spells the states its own way.
SS_STATES = {
    "LISTEN": "LISTEN", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV", "ESTAB": "ESTABLISHED",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK", "TIME-WAIT": "TIME_WAIT", "CLOSING": "CLOSING", "UNCONN": "CLOSE",
}
SMALL_BUFFER = 4096   # bytes; small so that "send until EAGAIN" is quick
WAIT = 10.0           # seconds any state change is given to happen
HAVE_SS = shutil.which("ss") is not None


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def ss_rows(*, local: Iterable[int] = (), peer: Iterable[int] = ()) -> list[tuple[str, int, int, str, str]]:
    """``ss -tan`` for sockets on these local/peer ports: (state, recv-q, send-q, local, peer)."""
    terms = [f"sport = :{p}" for p in sorted(local)] + [f"dport = :{p}" for p in sorted(peer)]
    out = subprocess.run(["ss", "-tanH", f"( {' or '.join(terms)} )"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    rows = []
    for line in out.splitlines():
        state, recv_q, send_q, local_addr, peer_addr = line.split()[:5]
        rows.append((SS_STATES[state], int(recv_q), int(send_q), local_addr, peer_addr))
    return rows


def ss_counts(*, local: Iterable[int] = (), peer: Iterable[int] = ()) -> collections.Counter[str]:
    """Counts by state (fastsock's names) of ``ss -tan`` for these ports."""
    return collections.Counter(row[0] for row in ss_rows(local=local, peer=peer))


def inode(sock: socket.socket) -> int:
    """The socket's inode: what /proc/net/tcp lists and /proc/PID/fd links to."""
    return os.fstat(sock.fileno()).st_ino


class Lab:
    """Owns every socket it makes; ``close()`` ends them all (an unread byte
    makes close() send RST, which also ends the orphaned closing sockets)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socks: list[socket.socket] = []

    def _new(self, small: bool = False) -> socket.socket:
        s = socket.socket(self.family, socket.SOCK_STREAM)
        if small:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        self.socks.append(s)
        return s

    def listener(self, backlog: int = 64, *, defer_accept: bool = False) -> socket.socket:
        # Small buffers are inherited by every accepted socket.
        s = self._new(small=True)
        if defer_accept:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
        s.bind((self.host, 0))
        s.listen(backlog)
        return s

    def connect(self, lst: socket.socket, timeout: float = WAIT) -> socket.socket:
        c = self._new(small=True)
        c.settimeout(timeout)
        c.connect(lst.getsockname()[:2])
        return c

    def pair(self, lst: socket.socket) -> tuple[socket.socket, socket.socket]:
        """(client, server) of one accepted connection."""
        c = self.connect(lst)
        lst.settimeout(WAIT)
        s, _ = lst.accept()
        self.socks.append(s)
        return c, s

    def connect_nowait(self, address: tuple[str, int]) -> socket.socket:
        c = self._new(small=True)
        c.setblocking(False)
        c.connect_ex(address)
        return c

    @staticmethod
    def fill(sender: socket.socket) -> int:
        """Send until the kernel takes no more (the peer does not read)."""
        sender.setblocking(False)
        sent = 0
        chunk = b"x" * SMALL_BUFFER
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                sent += sender.send(chunk)
            except BlockingIOError:
                # The window may reopen a little once; stop after a quiet moment.
                time.sleep(0.05)
                try:
                    sent += sender.send(chunk)
                except BlockingIOError:
                    return sent
        raise AssertionError("the peer kept taking data")

    def close(self) -> None:
        for s in self.socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            s.close()
        self.socks.clear()


def fill_accept_queue(lab: Lab, address: tuple[str, int],
                      limit: int = 64) -> tuple[list[socket.socket], socket.socket]:
    """Connect to the listener at ``address`` one client at a time until the kernel stops completing
    handshakes: returns (the clients now in the accept queue, the client
    left in SYN_SENT). Nothing is accepted."""
    queued: list[socket.socket] = []
    for _ in range(limit):
        c = lab.connect_nowait(address)
        _, writable, _ = select.select([], [c], [], 1.0)
        if not writable:
            return queued, c  # its SYN was dropped: the queue is full
        assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        queued.append(c)
    raise AssertionError(f"{limit} connections and the accept queue is still not full")
