"""fastsock.limits.table: the connection table read from /proc, checked
against real sockets (getsockname, fstat's inode), psutil and ``ss -tan``."""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections import Counter
from typing import Iterator

import psutil
import pytest

from fastsock.limits.table import (
    EXPLANATIONS,
    TCP_STATES,
    Filter,
    SocketRow,
    build_report,
    connection_table,
    format_stat,
    parse_state,
    process_descriptors,
    read_sockets,
    socket_owners,
)
from stat_lab import HAVE_SS, Lab, fill_accept_queue, inode, ss_counts, ss_rows, wait_until

needs_ss = pytest.mark.skipif(not HAVE_SS, reason="ss (iproute2) is not installed")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    yield lab
    lab.close()


def by_inode(*, pid: int | None = None) -> dict[int, SocketRow]:
    return {r.inode: r for r in read_sockets(pid=pid) if r.inode}


def ports_table(*ports: int) -> Counter[str]:
    """Counts by TCP state of every socket on these ports, either side."""
    report = connection_table(Filter(ports=frozenset(ports), peer_ports=frozenset(ports)))
    return Counter({s: n for s, n in report.summary.tcp_states.items() if n})


# -- rows: what each line of /proc/net says ----------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_rows_match_the_sockets_addresses_and_inodes(lab: Lab, host: str) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    lab = Lab(host)
    try:
        lst = lab.listener(backlog=7)
        client, server = lab.pair(lst)
        rows = by_inode()
        proto = "tcp6" if ":" in host else "tcp"
        for sock, state in ((lst, "LISTEN"), (client, "ESTABLISHED"), (server, "ESTABLISHED")):
            row = rows[inode(sock)]
            assert (row.proto, row.state) == (proto, state)
            assert (row.local_host, row.local_port) == sock.getsockname()[:2]
            if state == "LISTEN":
                assert row.foreign_port == 0 and row.foreign.endswith(":*")
                assert (row.accept_queue, row.backlog) == (0, 7)
            else:
                assert (row.foreign_host, row.foreign_port) == sock.getpeername()[:2]
                assert row.accept_queue is None and row.backlog is None
        assert rows[inode(lst)].uid == os.getuid()
    finally:
        lab.close()


def test_queues_of_a_connection_count_unread_and_unsent_bytes(lab: Lab) -> None:
    lst = lab.listener()
    client, server = lab.pair(lst)
    client.sendall(b"y" * 1000)
    assert wait_until(lambda: by_inode()[inode(server)].rx_queue == 1000)
    server.recv(400)
    assert by_inode()[inode(server)].rx_queue == 600


def test_udp_endpoints_unconnected_and_connected() -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("::1", 0))
        b.connect(("::1", b.getsockname()[1]))  # connected UDP: to itself
        a.sendto(b"12345", a.getsockname())
        rows = by_inode()
        ra, rb = rows[inode(a)], rows[inode(b)]
        assert (ra.proto, ra.state, ra.local_port) == ("udp", "UNCONN", a.getsockname()[1])
        assert (rb.proto, rb.state, rb.foreign_port) == ("udp6", "ESTABLISHED", b.getsockname()[1])
        assert ra.rx_queue > 0  # the datagram waits, with its kernel overhead
        report = connection_table(Filter(ports=frozenset({a.getsockname()[1], b.getsockname()[1]})))
        assert report.summary.udp_states == {"UNCONN": 1, "ESTABLISHED": 1}
        # (TCP has its own port numbers: a TCP socket on the same number may show too)
        assert {r.inode for r in report.rows if not r.is_tcp} == {inode(a), inode(b)}
    finally:
        a.close()
        b.close()


# -- owners: which process holds which socket --------------------------------------

def test_owners_agree_with_psutil(lab: Lab) -> None:
    lst = lab.listener()
    pairs = [lab.pair(lst) for _ in range(3)]
    me = os.getpid()
    owners = socket_owners(pids=[me])
    ours = {inode(s) for s in lab.socks}
    assert ours <= {i for i, pids in owners.by_inode.items() if pids == (me,)}
    assert owners.names[me] == psutil.Process(me).name()[:15]  # comm is cut at 15 chars

    report = connection_table(Filter(pid=me, ports=frozenset(), states=frozenset()))
    mine = {(r.local, r.foreign, r.state) for r in report.rows
            if r.is_tcp and r.local_port == lst.getsockname()[1] or
            r.foreign_port == lst.getsockname()[1]}

    def fmt(addr: tuple[str, int] | tuple[()]) -> str:
        return f"{addr[0]}:{addr[1]}" if addr else "0.0.0.0:*"

    seen = {(fmt(c.laddr), fmt(c.raddr) if c.raddr else "0.0.0.0:*", c.status)
            for c in psutil.Process(me).net_connections(kind="tcp4")
            if c.laddr.port == lst.getsockname()[1] or (c.raddr and c.raddr.port == lst.getsockname()[1])}
    assert mine == seen
    assert len(mine) == 1 + 2 * len(pairs)


def test_pid_filter_takes_the_listeners_orphans_only(lab: Lab) -> None:
    """TIME_WAIT belongs to no process: with --pid it counts when it sits on a
    port the process listens on (its server closed first), not elsewhere."""
    served, other = lab.listener(), lab.listener()
    # other's connection: our client closes first, so TIME_WAIT is client-side
    c1, s1 = lab.pair(served)
    c2, s2 = lab.pair(other)
    s1.close()          # the server closes first ...
    c1.close()          # ... so the server side ends in TIME_WAIT (local port: served)
    c2.close()
    s2.close()          # the client closed first: TIME_WAIT on c2's ephemeral port
    p, q = served.getsockname()[1], other.getsockname()[1]
    assert wait_until(lambda: ports_table(p)["TIME_WAIT"] == 1 and ports_table(q)["TIME_WAIT"] == 1)
    other.close()       # no longer a listener of ours: its port is not "served"
    rows = connection_table(Filter(pid=os.getpid(), states=frozenset({"TIME_WAIT"}))).rows
    assert [(r.local_port, r.inode, r.pids) for r in rows] == [(p, 0, ())]


# -- the accept queue ------------------------------------------------------------

@needs_ss
def test_full_accept_queue_depth_and_backlog_match_ss(lab: Lab) -> None:
    backlog = 2
    lst = lab.listener(backlog=backlog)
    queued, stalled = fill_accept_queue(lab, lst.getsockname())
    port = lst.getsockname()[1]
    row = by_inode()[inode(lst)]
    assert row.backlog == backlog
    assert row.accept_queue == len(queued) > 0
    assert row.accept_queue_full  # the kernel dropped the next SYN
    ss_listen = [r for r in ss_rows(local={port}) if r[0] == "LISTEN"]
    assert [(r[1], r[2]) for r in ss_listen] == [(row.accept_queue, row.backlog)]
    # the client whose SYN was dropped waits in SYN_SENT
    assert by_inode()[inode(stalled)].state == "SYN_SENT"
    report = connection_table(Filter(ports=frozenset({port}), peer_ports=frozenset({port})))
    assert any("accept queue" in w and "is full" in w for w in report.warnings)
    assert "FULL" in format_stat(report)
    # accepting one makes room: the depth follows (the stalled client is gone
    # first, so that its next SYN cannot take the place)
    stalled.close()
    lst.settimeout(5)
    conn, _ = lst.accept()
    lab.socks.append(conn)
    after = by_inode()[inode(lst)]
    assert (after.accept_queue, after.accept_queue_full) == (len(queued) - 1, False)


# -- every state, against ss -tan ----------------------------------------------------

@needs_ss
def test_every_tcp_state_is_counted_like_ss(lab: Lab) -> None:
    main = lab.listener()
    deferring = lab.listener(defer_accept=True)
    full = lab.listener(backlog=0)
    port, dport, fport = (s.getsockname()[1] for s in (main, deferring, full))

    established = [lab.pair(main) for _ in range(3)]
    # server closes first -> server side TIME_WAIT (2)
    for _ in range(2):
        c, s = lab.pair(main)
        s.close()
        c.close()
    # peer closed, server never does -> server CLOSE_WAIT, client FIN_WAIT2
    c, s = lab.pair(main)
    c.close()
    half_closed = s
    # server closes with data the client does not read -> server FIN_WAIT1
    c, s = lab.pair(main)
    lab.fill(s)
    s.close()
    # client half-closes and does not read, server fills it then closes -> LAST_ACK
    c, s = lab.pair(main)
    c.shutdown(socket.SHUT_WR)
    assert wait_until(lambda: by_inode()[inode(s)].state == "CLOSE_WAIT")
    lab.fill(s)
    s.close()
    # server's FIN stuck behind data, then the client's FIN arrives -> CLOSING
    c, s = lab.pair(main)
    lab.fill(s)
    s.close()
    c.shutdown(socket.SHUT_WR)
    # handshake done, no data yet: the deferring listener keeps it in SYN_RECV
    lab.connect(deferring)
    # a full accept queue leaves the next client in SYN_SENT
    fill_accept_queue(lab, full.getsockname())

    expected_server = {"LISTEN": 1, "ESTABLISHED": 3, "TIME_WAIT": 2, "CLOSE_WAIT": 1,
                       "FIN_WAIT1": 1, "LAST_ACK": 1, "CLOSING": 1}

    def settled() -> bool:
        c = Counter(r.state for r in read_sockets() if r.local_port == port)
        return all(c[s] == n for s, n in expected_server.items())
    assert wait_until(settled), Counter(r.state for r in read_sockets() if r.local_port == port)
    assert wait_until(lambda: ports_table(dport)["SYN_RECV"] == 1)

    ports = {port, dport, fport}
    ours = connection_table(Filter(ports=frozenset(ports), peer_ports=frozenset(ports)))
    theirs = ss_counts(local=ports, peer=ports)
    counted = Counter({s: n for s, n in ours.summary.tcp_states.items() if n})
    assert counted == theirs
    # every state of the lifecycle is there at once, CLOSE aside
    assert set(counted) == set(TCP_STATES) - {"CLOSE"}
    assert half_closed.fileno() >= 0
    text = format_stat(ours)
    for state in counted:
        assert f"  {state:<12}{counted[state]:>6}  {EXPLANATIONS[state]}" in text


# -- the summary and its warnings (the seam: rows in, report out) -------------------

def test_close_wait_warning_counts_real_sockets(lab: Lab) -> None:
    lst = lab.listener()
    for _ in range(3):
        c, _s = lab.pair(lst)
        c.close()
    port = lst.getsockname()[1]
    assert wait_until(lambda: ports_table(port)["CLOSE_WAIT"] == 3)
    rows = read_sockets()
    flt = Filter(ports=frozenset({port}))
    warned = build_report(rows, flt, many_close_wait=3).warnings
    assert any(w.startswith("3 sockets in CLOSE_WAIT") for w in warned)
    assert not build_report(rows, flt, many_close_wait=4).warnings


def test_ephemeral_port_warning_for_client_time_wait(lab: Lab) -> None:
    lst = lab.listener()
    port = lst.getsockname()[1]
    clients = []
    for _ in range(4):
        c, s = lab.pair(lst)
        c.close()       # the client closes first: TIME_WAIT on the client side
        s.close()
        clients.append(c)
    assert wait_until(lambda: ports_table(port)["TIME_WAIT"] == 4)
    rows = read_sockets()
    flt = Filter(peer_ports=frozenset({port}))
    # a range of 5 ports: 4 in use is 80%, the warning threshold
    warned = build_report(rows, flt, port_range=(40000, 40004)).warnings
    assert len(warned) == 1 and "4 client sockets toward 127.0.0.1:" in warned[0]
    assert "(4 in TIME_WAIT)" in warned[0] and "ip_local_port_range" in warned[0]
    # a range of 10: 4 in use is below 80%
    assert not build_report(rows, flt, port_range=(40000, 40009)).warnings
    # the server's own TIME_WAIT (server closed first) uses no ephemeral port
    assert not build_report(rows, Filter(ports=frozenset({port})),
                            port_range=(40000, 40004)).warnings


def test_descriptor_use_of_another_process_and_its_warning() -> None:
    """A child at 60 of 64 descriptors: over the 80% warning; its numbers match psutil."""
    soft = 64
    code = "import os, sys; fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(56)]; " \
           "print('ready', flush=True); sys.stdin.read()"

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, preexec_fn=lower)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        p = psutil.Process(child.pid)
        d = process_descriptors(child.pid)
        assert (d.in_use, d.soft) == (p.num_fds(), p.rlimit(psutil.RLIMIT_NOFILE)[0])
        assert d.in_use >= int(soft * 0.8)
        assert d.warning is not None and f"of the soft RLIMIT_NOFILE {soft}" in d.warning
        assert f"--pid {child.pid}" in d.warning or "ulimit" in d.warning
        mine = process_descriptors(os.getpid())
        assert mine.warning is None or mine.in_use >= int(mine.soft * 0.8)  # type: ignore[operator]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


# -- robustness: other kernels, missing files, names ---------------------------------

def test_missing_ipv6_files_and_garbage_lines(tmp_path: os.PathLike[str]) -> None:
    net = os.path.join(tmp_path, "net")
    os.makedirs(net)
    real = open("/proc/net/tcp").read().splitlines()
    with open(os.path.join(net, "tcp"), "w") as f:
        f.write("\n".join([real[0], "garbage", "  7: nothing:here", *real[1:]]) + "\n")
    rows = read_sockets(proc=str(tmp_path))
    assert len(rows) >= len(real) - 1 - 2  # sockets may come and go between the two reads
    assert all(r.proto == "tcp" for r in rows)
    os.remove(os.path.join(net, "tcp"))
    with pytest.raises(FileNotFoundError):
        read_sockets(proc=str(tmp_path))


def test_a_pid_that_does_not_exist() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    with pytest.raises(ProcessLookupError, match=str(child.pid)):
        connection_table(Filter(pid=child.pid))


@pytest.mark.parametrize("text, name", [
    ("time-wait", "TIME_WAIT"), ("ESTAB", "ESTABLISHED"), ("fin-wait-1", "FIN_WAIT1"),
    ("Listen", "LISTEN"), ("syn-recv", "SYN_RECV"), ("unconn", "UNCONN"),
])
def test_state_names_in_any_spelling(text: str, name: str) -> None:
    assert parse_state(text) == name


def test_unknown_state_name() -> None:
    with pytest.raises(ValueError, match="unknown state 'NAPPING'"):
        parse_state("NAPPING")


def test_every_state_has_an_explanation() -> None:
    assert set(TCP_STATES) | {"UNCONN"} <= set(EXPLANATIONS)
    assert all("\n" not in line for line in EXPLANATIONS.values())
