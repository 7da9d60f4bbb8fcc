"""Walk a TCP socket through its life and show each state in the connection table.

    python examples/stat_demo.py            # the steps, then every state at once
    python examples/stat_demo.py --hold 60  # keep them so that you can run
                                            # python -m fastsock stat --port P --peer-port P

Everything runs in this one process on 127.0.0.1: a server listening on port
P and clients connecting to it. After each step it prints the rows on port P
(both sides: local port P is the server, foreign port P a client), as
`python -m fastsock stat --port P --peer-port P` shows them. The states that
pass in microseconds on loopback are made to stay: a peer that never reads
(small buffers, filled until EAGAIN) keeps a FIN stuck behind unsent data
(FIN_WAIT1, LAST_ACK, CLOSING); TCP_DEFER_ACCEPT keeps a handshake in
SYN_RECV; a full accept queue leaves a client in SYN_SENT.
"""
from __future__ import annotations

import argparse
import select
import socket
import struct
import time

from fastsock.limits.table import Filter, connection_table, format_stat

HOST = "127.0.0.1"
SMALL_BUFFER = 4096       # bytes: fills in a few sends
DEFER_ACCEPT_SECONDS = 30
SETTLE = 0.2              # seconds for loopback to deliver the last segments
ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

socks: list[socket.socket] = []


def new_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    socks.append(s)
    return s


def listener(backlog: int, *, defer_accept: bool = False) -> socket.socket:
    s = new_socket()
    if defer_accept:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
    s.bind((HOST, 0))
    s.listen(backlog)
    return s


def port_of(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def pair(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = new_socket()
    client.connect(server.getsockname())
    conn, _ = server.accept()
    socks.append(conn)
    return client, conn


def fill(sender: socket.socket) -> None:
    """Send until the kernel takes no more: the peer does not read."""
    sender.setblocking(False)
    while True:
        try:
            sender.send(b"x" * SMALL_BUFFER)
        except BlockingIOError:
            return


def show(title: str, *ports: int, summary: bool = False) -> None:
    time.sleep(SETTLE)
    report = connection_table(Filter(ports=frozenset(ports), peer_ports=frozenset(ports)))
    print(f"## {title}\n")
    print(format_stat(report, summary=summary))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="keep the sockets this long at the end")
    args = parser.parse_args()

    server = new_socket()
    server.bind((HOST, 0))
    port = port_of(server)
    show(f"socket() + bind() on port {port}: no row yet (a bound socket is in no table)", port)

    server.listen(8)
    show("listen(8): LISTEN, accept queue 0 of 8", port)

    client = new_socket()
    client.connect((HOST, port))
    show("connect(): both ends ESTABLISHED; the server's end waits in the accept queue "
         "and belongs to no process yet", port)

    conn, _ = server.accept()
    socks.append(conn)
    show("accept(): the server's end now has a descriptor (a PID)", port)

    client.close()
    show("the client close()s first: client FIN_WAIT2, server CLOSE_WAIT "
         "(until the application closes)", port)

    conn.close()
    show("the server close()s too: its end is gone, the client's is in TIME_WAIT "
         "(the side that closes first waits)", port)

    # Every state at once.
    deferring = listener(8, defer_accept=True)
    full = listener(0)
    for _ in range(2):                       # ESTABLISHED
        pair(server)
    c, s = pair(server)                      # server closes first: server TIME_WAIT
    s.close()
    time.sleep(SETTLE)
    c.close()
    c, s = pair(server)                      # client closes, server does not: CLOSE_WAIT
    c.close()
    c, s = pair(server)                      # server closes, data unsent: FIN_WAIT1
    fill(s)
    s.close()
    c, s = pair(server)                      # client half-closes, server fills it and
    c.shutdown(socket.SHUT_WR)               # closes: LAST_ACK
    time.sleep(SETTLE)
    fill(s)
    s.close()
    c, s = pair(server)                      # server FIN stuck, then the client's FIN
    fill(s)                                  # arrives: CLOSING
    s.close()
    c.shutdown(socket.SHUT_WR)
    early = new_socket()                     # handshake done, no data: SYN_RECV
    early.connect(deferring.getsockname())
    while True:                              # a full accept queue: SYN_SENT
        waiting = new_socket()
        waiting.setblocking(False)
        waiting.connect_ex(full.getsockname())
        if not select.select([], [waiting], [], 1.0)[1]:
            break
    show(f"every state at once: python -m fastsock stat --port {port} --peer-port {port} ...",
         port, port_of(deferring), port_of(full), summary=True)

    if args.hold > 0:
        ports = " ".join(f"--port {p} --peer-port {p}"
                         for p in (port, port_of(deferring), port_of(full)))
        print(f"holding for {args.hold:g} s: python -m fastsock stat {ports}")
        time.sleep(args.hold)
    for s in socks:  # abort: ends the orphaned closing sockets on the other side too
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
        except OSError:
            pass
        s.close()


if __name__ == "__main__":
    main()
