"""fastsock.workers_metrics: ``serve echo --workers 2 --metrics-port PORT``; the
supervisor answers scrapes with the totals of both workers (asked over their
control channels), and ``stat --server`` lists every worker's connections."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from test_workers import CLI_READY, ROOT, _env, supervisor, worker_pids
from websockets.sync.client import connect

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from fastsock.workers_metrics import merge_expositions  # noqa: E402

CLIENTS = 12
MESSAGES = 3          # per client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bytes(answer.read())


@pytest.mark.timeout(90)
def test_the_supervisor_scrape_is_the_total_of_both_workers() -> None:
    metrics_port = free_port()
    cmd = [sys.executable, "-m", "fastsock", "serve", "echo", "--workers", "2", "--port", "0",
           "--metrics-port", str(metrics_port)]
    with supervisor(cmd) as (proc, line):
        m = CLI_READY.match(line)
        assert m, line
        port = int(m.group(4))
        workers = worker_pids(proc)
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/"))
                       for _ in range(CLIENTS)]
            for ws in clients:
                for i in range(MESSAGES):
                    ws.send(f"m{i}")
                    assert ws.recv(timeout=5) == f"m{i}"
            held = {c.pid for c in psutil.net_connections("tcp")
                    if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                    and c.pid in workers}
            assert held == workers                      # both workers hold some clients
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            got = samples(get(url).decode())
            assert got[("fastsock_workers", ())] == 2
            assert got[("fastsock_workers_reporting", ())] == 2
            # every number summed over the workers, with no worker label left
            assert got[("fastsock_received_messages_total", (("type", "text"),))] == \
                CLIENTS * MESSAGES
            assert got[("fastsock_sent_messages_total", (("type", "text"),))] == CLIENTS * MESSAGES
            assert got[("fastsock_connections", (("state", "open"),))] == CLIENTS
            assert got[("fastsock_handshakes_total", ())] == CLIENTS
            assert not any("worker" in dict(labels) for _, labels in got)
            assert got[("fastsock_workers_descriptor_room", ())] > 0
            # one snapshot of both workers' connections, each row with its worker
            table = json.loads(get(f"{url}/connections"))
            assert table["count"] == CLIENTS and len(table["connections"]) == CLIENTS
            per_worker = {w["pid"]: w["count"] for w in table["workers"]}
            assert set(per_worker) == workers and all(n > 0 for n in per_worker.values())
            assert {row["worker"] for row in table["connections"]} == {0, 1}
            assert json.loads(get(f"{url}/connections?limit=5"))["truncated"] == CLIENTS - 5
            # python -m fastsock stat --server merges them into the kernel's table
            stat = subprocess.run([sys.executable, "-m", "fastsock", "stat", "--server", url,
                                   "--json"], cwd=ROOT, env=_env(), capture_output=True,
                                  text=True, timeout=30)
            assert stat.returncode == 0, stat.stderr
            data = json.loads(stat.stdout)
            matched = [s["server"] for s in data["sockets"] if s.get("server")]
            assert len(matched) == CLIENTS and data["server"]["matched"] == CLIENTS
            assert {row["worker"] for row in matched} == {0, 1}
        # A rolling reload replaces both workers: the totals keep what the old
        # ones had counted at the last scrape, so they do not go backwards.
        get(url)                                    # the last scrape of the old workers
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while not (len(worker_pids(proc)) == 2 and not worker_pids(proc) & workers):
            assert time.monotonic() < deadline, "the reload did not replace both workers"
            time.sleep(0.1)
        after = samples(get(url).decode())
        assert after[("fastsock_workers_reporting", ())] == 2
        assert after[("fastsock_workers_reloads_total", ())] == 1
        assert after[("fastsock_received_messages_total", (("type", "text"),))] == \
            CLIENTS * MESSAGES
        assert after[("fastsock_connections", (("state", "open"),))] == 0   # gauges: live only
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_merge_sums_samples_and_drops_the_worker_label() -> None:
    a = (b'# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="0",type="t"} 2.0\n'
         b'# HELP process_start_time_seconds S.\n# TYPE process_start_time_seconds gauge\n'
         b'process_start_time_seconds{worker="0"} 200.0\n'
         b'# HELP h H.\n# TYPE h histogram\nh_bucket{le="1.0",worker="0"} 1.0\n'
         b'h_bucket{le="+Inf",worker="0"} 2.0\nh_count{worker="0"} 2.0\nh_sum{worker="0"} 3.0\n')
    b = a.replace(b'worker="0"', b'worker="1"').replace(b"200.0", b"100.0")
    merged = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in merge_expositions([a, b]) for s in family.samples}
    assert merged == {("x_total", (("type", "t"),)): 4.0,
                      ("process_start_time_seconds", ()): 100.0,     # the earliest, not a sum
                      ("h_bucket", (("le", "1.0"),)): 2.0, ("h_bucket", (("le", "+Inf"),)): 4.0,
                      ("h_count", ()): 4.0, ("h_sum", ()): 6.0}


def test_a_worker_that_is_gone_keeps_its_counters_but_not_its_gauges() -> None:
    from fastsock.workers_metrics import Totals

    text = (b'# HELP c_total C.\n# TYPE c_total counter\nc_total{worker="0"} 5.0\n'
            b'# HELP g G.\n# TYPE g gauge\ng{worker="0"} 7.0\n'
            b'# HELP q_peak_bytes P.\n# TYPE q_peak_bytes gauge\nq_peak_bytes 3.0\n')
    retired = Totals()
    retired.add(text, monotonic_only=True)
    totals = Totals()
    totals.add_totals(retired)
    totals.add(text.replace(b"5.0", b"1.0").replace(b"7.0", b"2.0"))
    totals.add(text.replace(b"3.0", b"9.0"))
    got = {s.name: s.value for family in totals.metrics() for s in family.samples}
    assert got == {"c_total": 5.0 + 1.0 + 5.0, "g": 2.0 + 7.0, "q_peak_bytes": 9.0}


@pytest.mark.timeout(90)
def test_a_worker_that_does_not_answer_is_left_out_of_the_scrape() -> None:
    """A stopped worker (SIGSTOP) cannot answer: the scrape comes back after the
    supervisor's deadline with the other worker's numbers, and says so."""
    from fastsock.workers_metrics import ASK_TIMEOUT

    metrics_port = free_port()
    cmd = [sys.executable, "-m", "fastsock", "serve", "echo", "--workers", "2", "--port", "0",
           "--metrics-port", str(metrics_port)]
    with supervisor(cmd) as (proc, line):
        assert CLI_READY.match(line), line
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert samples(get(url).decode())[("fastsock_workers_reporting", ())] == 2
        stopped = min(worker_pids(proc))
        os.kill(stopped, signal.SIGSTOP)
        try:
            started = time.monotonic()
            got = samples(get(url).decode())
            waited = time.monotonic() - started
            assert got[("fastsock_workers_reporting", ())] == 1
            assert got[("fastsock_workers", ())] == 2
            assert ASK_TIMEOUT * 0.9 <= waited < ASK_TIMEOUT + 5
        finally:
            os.kill(stopped, signal.SIGCONT)
        # its late answer is discarded; the next scrape has both again
        assert samples(get(url).decode())[("fastsock_workers_reporting", ())] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_answers_are_framed_by_request_id_and_late_ones_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's side of the channel: an answer arrives in pieces; an
    answer to an earlier request (too late for its scrape) is dropped whole,
    as is one over the size bound, and the framing holds for the next."""
    import fastsock.workers as workers

    def frame(number: int, body: bytes) -> bytes:
        return workers._ANSWER.pack(len(body), number) + body

    proc = workers._Proc(0, 1, 1234, -1, 0.0, 0.0)
    data = frame(6, b"late answer") + frame(7, b"fresh")
    assert workers._take_answer(proc, data[:5], 7) is None
    assert workers._take_answer(proc, data[5:20], 7) is None
    assert workers._take_answer(proc, data[20:], 7) == b"fresh"
    assert not proc.answers
    monkeypatch.setattr(workers, "ANSWER_MAX", 8)
    big = frame(8, b"x" * 20)
    assert workers._take_answer(proc, big[:25], 8) is None        # dropped, 3 bytes to go
    assert workers._take_answer(proc, big[25:] + frame(9, b"ok"), 9) == b"ok"
