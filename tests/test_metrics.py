"""fastsock/metrics.py: the Prometheus scrape and server.stats() against the
traffic a test sent over real sockets; the compiled core and its pure twin
count the same; the CLI's --metrics and --metrics-port."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Union

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from fastsock.frame import build_frame  # noqa: E402
from fastsock.metrics import Metrics, merge_stats  # noqa: E402
from fastsock.server import ServerState, close_code_label  # noqa: E402
from fastsock.testing import FakeClock, FakeTransport  # noqa: E402
from fastsock.websocket import WebSocketHandler, WebSocketOptions, protocol  # noqa: E402
from test_websocket_helpers import ServerThread, recv_head, status_of, wait_for  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
NO_PINGS = WebSocketOptions(ping_interval=None, max_message_size=None)


class Echo(WebSocketHandler):
    def on_message(self, data: Union[str, bytes]) -> None:
        if data == "close-me":
            self.close(3001, "as asked")
        else:
            self.send(data)


class Broadcaster(WebSocketHandler):
    def on_message(self, data: Union[str, bytes]) -> None:
        self.server.broadcast(data)


def scrape(port: int, path: str = "/metrics") -> dict[str, float]:
    """GET the metrics and parse them with prometheus_client's own parser:
    ``{'name{label="v",...}': value}`` (labels sorted)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------- real sockets


@pytest.mark.parametrize("loop_kind", ["fastsock", "asyncio"])
def test_scrape_counts_messages_bytes_and_close_codes(loop_kind: str) -> None:
    metrics = Metrics()
    texts = ["héllo", "x" * 200, "ü" * 3000]          # 6, 200, 6000 UTF-8 bytes
    blobs = [b"\x00" * 10, b"\x01" * 70000]
    with ServerThread(Echo, loop=loop_kind, options=NO_PINGS,
                      http_handler=metrics.http_handler("/metrics")) as srv:
        metrics.add_server(srv.state)
        with connect(srv.url, max_size=None) as ws:
            for m in texts + blobs:
                ws.send(m)
                assert ws.recv() == m
            ws.send(["frag", "mented"])                  # one message in two frames
            assert ws.recv() == "fragmented"
            assert ws.ping(b"1234").wait(5)
            ws.close(4001, "done")
        with connect(srv.url) as ws:                     # the server closes this one
            ws.send("close-me")
            with pytest.raises(Exception):
                ws.recv(timeout=5)
        with socket.create_connection(("127.0.0.1", srv.port)) as raw:   # a bad upgrade
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n")       # no version, no key
            assert status_of(recv_head(raw)[0]) == 426
        assert wait_for(lambda: srv.call(lambda: len(srv.state.handlers)) == 0)
        got = scrape(srv.port)
        stats = srv.call(srv.state.snapshot)

    n_text = len(texts) + 1 + 1                          # + "fragmented" + "close-me"
    text_bytes = sum(len(t.encode()) for t in texts) + len("fragmented") + len("close-me")
    assert got['fastsock_received_messages_total{type="text"}'] == n_text
    assert got['fastsock_received_bytes_total{type="text"}'] == text_bytes
    assert got['fastsock_received_messages_total{type="binary"}'] == len(blobs)
    assert got['fastsock_received_bytes_total{type="binary"}'] == sum(map(len, blobs))
    assert got['fastsock_sent_messages_total{type="text"}'] == n_text - 1   # not "close-me"
    assert got['fastsock_sent_bytes_total{type="text"}'] == text_bytes - len("close-me")
    assert got['fastsock_sent_messages_total{type="binary"}'] == len(blobs)
    assert got['fastsock_sent_bytes_total{type="binary"}'] == sum(map(len, blobs))
    assert got['fastsock_received_messages_total{type="ping"}'] == 1
    assert got['fastsock_received_bytes_total{type="ping"}'] == 4
    assert got['fastsock_sent_messages_total{type="pong"}'] == 1
    # the client closed with 4001 (echoed); the server closed with 3001 (echoed)
    assert got['fastsock_close_codes_received_total{code="4xxx"}'] == 1
    assert got['fastsock_close_codes_sent_total{code="4xxx"}'] == 1
    assert got['fastsock_close_codes_sent_total{code="3xxx"}'] == 1
    assert got['fastsock_close_codes_received_total{code="3xxx"}'] == 1
    assert got["fastsock_handshakes_total"] == 2
    assert got['fastsock_handshake_failures_total{reason="bad_upgrade"}'] == 1
    assert got["fastsock_accepts_total"] == 4           # two WebSockets, the bad one, the scrape
    assert got["fastsock_http_requests_total"] == 1     # this scrape
    assert got['fastsock_connections{state="open"}'] == 0
    assert got['fastsock_connections{state="connecting"}'] == 1   # the scrape itself
    assert ("fastsock_emfile_total" in got) == (loop_kind == "fastsock")
    # fastsock's reactor counts its turns; asyncio's loop keeps no such counters
    assert (got.get("fastsock_loop_iterations_total", 0) > 0) == (loop_kind == "fastsock")
    assert got.get("fastsock_loop_callback_errors_total", 0) == 0
    # server.stats() has the same numbers
    assert stats["messages_in"]["text"] == n_text and stats["bytes_out"]["binary"] == 70010
    assert stats["close_codes_sent"] == {"3xxx": 1, "4xxx": 1}


def test_live_connections_are_counted_before_they_end() -> None:
    metrics = Metrics()
    with ServerThread(Echo, options=NO_PINGS, http_handler=metrics.http_handler()) as srv:
        metrics.add_server(srv.state)
        with connect(srv.url) as ws:
            for _ in range(5):
                ws.send(b"abc")
                ws.recv()
            got = scrape(srv.port)
            assert got['fastsock_connections{state="open"}'] == 1
            assert got['fastsock_received_messages_total{type="binary"}'] == 5
            assert got['fastsock_sent_bytes_total{type="binary"}'] == 15
        assert wait_for(lambda: srv.call(lambda: len(srv.state.handlers)) == 0)
        got = scrape(srv.port)                           # now from the retired totals
        assert got['fastsock_received_messages_total{type="binary"}'] == 5
        assert got['fastsock_close_codes_received_total{code="1000"}'] == 1


def test_broadcast_deliveries_and_duration() -> None:
    metrics = Metrics()
    with ServerThread(Broadcaster, options=NO_PINGS, http_handler=metrics.http_handler()) as srv:
        metrics.add_server(srv.state)
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(srv.url)) for _ in range(3)]
            assert wait_for(lambda: srv.call(lambda: len(srv.state.handlers)) == 3)
            clients[0].send("to all")
            for c in clients:
                assert c.recv(timeout=5) == "to all"
            got = scrape(srv.port)
    assert got["fastsock_broadcasts_total"] == 1
    assert got["fastsock_broadcast_deliveries_total"] == 3
    assert got["fastsock_broadcast_duration_seconds_count"] == 1
    assert got['fastsock_broadcast_duration_seconds_bucket{le="+Inf"}'] == 1
    assert got['fastsock_sent_messages_total{type="text"}'] == 3
    assert got['fastsock_sent_bytes_total{type="text"}'] == 3 * len("to all")


def test_ping_round_trips_fill_the_histogram() -> None:
    metrics = Metrics()
    fast_pings = WebSocketOptions(ping_interval=0.05, ping_timeout=5)
    with ServerThread(Echo, options=fast_pings, http_handler=metrics.http_handler()) as srv:
        metrics.add_server(srv.state)
        with connect(srv.url) as ws:                      # websockets answers pings itself
            deadline = time.monotonic() + 5
            while srv.call(lambda: srv.state.ping_rtt.snapshot()["count"]) < 2:
                assert time.monotonic() < deadline
                try:
                    ws.recv(timeout=0.05)
                except TimeoutError:
                    pass
            got = scrape(srv.port)
    assert got["fastsock_ping_rtt_seconds_count"] >= 2
    assert 0 < got["fastsock_ping_rtt_seconds_sum"] < 5
    assert got['fastsock_sent_messages_total{type="ping"}'] >= 2
    assert got['fastsock_received_messages_total{type="pong"}'] >= 2


def test_handshake_failures_by_reason() -> None:
    metrics = Metrics()
    with ServerThread({"/ws": Echo}, options=NO_PINGS, handshake_timeout=0.2,
                      origins=["http://ok"], http_handler=metrics.http_handler()) as srv:
        metrics.add_server(srv.state)

        def ask(request: bytes) -> int:
            with socket.create_connection(("127.0.0.1", srv.port)) as raw:
                raw.sendall(request)
                return status_of(recv_head(raw)[0])

        upgrade = ("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   "Origin: {origin}\r\n\r\n")
        assert ask(upgrade.format(path="/nope", origin="http://ok").encode()) == 404
        assert ask(upgrade.format(path="/ws", origin="http://evil").encode()) == 403
        assert ask(b"NOT HTTP AT ALL\r\n\r\n") == 400
        assert ask(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n") == 431
        with socket.create_connection(("127.0.0.1", srv.port)) as raw:   # says nothing
            assert status_of(recv_head(raw)[0]) == 408
        got = scrape(srv.port)
    for reason in ("no_route", "origin", "bad_request", "head_too_large", "timeout"):
        assert got[f'fastsock_handshake_failures_total{{reason="{reason}"}}'] == 1, reason
    assert got['fastsock_handshake_failures_total{reason="internal"}'] == 0


def test_udp_endpoint_datagrams(reactor: Any) -> None:
    from fastsock.transports import udp

    class EchoProto:
        transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data, addr)

        def error_received(self, exc: Exception) -> None:
            pass

        def connection_lost(self, exc: Any) -> None:
            pass

    server, _ = udp.create_udp_endpoint(reactor, EchoProto, local_addr=("127.0.0.1", 0))
    metrics = Metrics(process=False)
    metrics.add_udp(server, "echo")
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(5):
            client.sendto(b"x" * (i + 1), server.get_extra_info("sockname"))
        assert reactor.run_until(lambda: server.stats["datagrams_out"] == 5, timeout=5)
    finally:
        client.close()
    body, _ = metrics.render()
    got = {f"{s.name}{sorted(s.labels.items())}": s.value
           for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert got["fastsock_udp_datagrams_total[('direction', 'in'), ('endpoint', 'echo')]"] == 5
    assert got["fastsock_udp_bytes_total[('direction', 'out'), ('endpoint', 'echo')]"] == 15
    assert got["fastsock_udp_drops_total[('endpoint', 'echo'), ('reason', 'queue')]"] == 0
    server.close()


# ------------------------------------------------------------- sans-I/O


def _attached(state: ServerState, clock: FakeClock, options: WebSocketOptions) -> tuple[Any, Any]:
    ws = Echo()
    transport = FakeTransport(ws, clock=clock)
    ws.server = state
    state.handlers.add(ws)
    ws.attach(transport, clock, options=options, flusher=state.flusher)
    return ws, transport


@pytest.mark.parametrize("policy", ["pause", "drop", "disconnect"])
def test_slow_peer_actions_and_drops(policy: str) -> None:
    clock = FakeClock()
    state = ServerState(Echo, clock)
    options = WebSocketOptions(ping_interval=None, write_limit=100, slow_peer=policy)
    ws, transport = _attached(state, clock, options)
    transport.set_buffer_size(1000)                      # the peer stopped reading
    clock.run_ready()
    state.broadcast("x" * 10)
    clock.run_all()
    snap = state.snapshot()
    assert snap["slow_peer_actions"][policy] == 1
    # "disconnect" aborted the connection before the broadcast came
    assert snap["messages_dropped"] == (1 if policy == "drop" else 0)
    if policy == "disconnect":
        assert snap["close_codes_received"] == {"1006": 1}
    else:
        assert snap["write_buffer_bytes"] >= 1000 and snap["write_buffer_max_bytes"] >= 1000
    assert snap["write_buffer_peak_bytes"] >= 1000       # seen at the crossing, even if gone


def test_close_code_labels_are_bounded() -> None:
    assert close_code_label(1000) == "1000" and close_code_label(1015) == "1015"
    assert close_code_label(3999) == "3xxx" and close_code_label(4000) == "4xxx"
    assert close_code_label(2000) == "other" and close_code_label(65535) == "other"


def test_merge_adds_counts_and_keeps_the_largest_gauge() -> None:
    a = {"x": 1, "write_buffer_max_bytes": 5, "h": {"buckets": [(0.1, 1), ("+Inf", 2)], "sum": 1.0},
         "emfile": None}
    b = {"x": 2, "write_buffer_max_bytes": 3, "h": {"buckets": [(0.1, 0), ("+Inf", 1)], "sum": 0.5},
         "emfile": 4}
    assert merge_stats(a, b) == {"x": 3, "write_buffer_max_bytes": 5, "emfile": 4,
                                 "h": {"buckets": [(0.1, 1), ("+Inf", 3)], "sum": 1.5}}


# --------------------------------------------- compiled core vs pure twin


def _stream(rng: random.Random) -> bytes:
    sizes = [0, 1, 5, 125, 126, 1000, 4095, 4096, 65535, 65536, 70000]
    out = b""
    for _ in range(rng.randint(5, 25)):
        kind = rng.random()
        if kind < 0.1:
            out += build_frame(9, b"p" * rng.randint(0, 20), mask=True)
            continue
        size = rng.choice(sizes)
        if kind < 0.5:
            payload = ("é" if rng.random() < 0.3 else "a").encode() * (size // 2)
            op = 1
        else:
            payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
            payload = payload[:size]
            op = 2
        if rng.random() < 0.2 and len(payload) > 2:       # fragmented
            cut = rng.randint(1, len(payload) - 1)
            if op == 1:
                while cut < len(payload) and (payload[cut] & 0xC0) == 0x80:
                    cut += 1
            out += build_frame(op, payload[:cut], fin=False, mask=True)
            out += build_frame(0, payload[cut:], fin=True, mask=True)
        else:
            out += build_frame(op, payload, mask=True)
    return out + build_frame(8, (1000).to_bytes(2, "big"), mask=True)


class _Mixed(WebSocketHandler):
    """Echoes, sometimes through the slow path (bytearray) or a broadcast."""

    def on_message(self, data: Union[str, bytes]) -> None:
        n = len(data)
        if n % 3 == 0 and isinstance(data, bytes):
            self.send(bytearray(data))
        elif n % 5 == 0:
            self.server.broadcast(data)
        else:
            self.send(data)


def _scenarios(seeds: list[int]) -> list[dict[str, Any]]:
    """Counters and output of the same byte streams, chunked at random places."""
    results = []
    for seed in seeds:
        rng = random.Random(seed)
        stream = _stream(rng)
        clock = FakeClock()
        state = ServerState(_Mixed, clock)
        ws = _Mixed()
        transport = FakeTransport(ws, clock=clock)
        ws.server = state
        state.handlers.add(ws)
        ws.attach(transport, clock, options=NO_PINGS, flusher=state.flusher)
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 7, 100, 5000, 100000])
            ws.data_received(stream[pos:pos + step])
            clock.run_ready()
            pos += step
        counters = ws.counters
        ws.connection_lost(None)
        snap = state.snapshot()
        snap.pop("broadcast_seconds")                    # durations differ; counts do not
        results.append({"counters": counters, "stats": snap,
                        "out": hashlib.sha256(transport.take()).hexdigest()})
    return results


SEEDS = list(range(12))


def test_compiled_and_pure_cores_count_the_same() -> None:
    if protocol.CORE_IMPLEMENTATION != "cython":
        pytest.skip("the compiled core is not built")
    compiled = json.loads(json.dumps(_scenarios(SEEDS)))
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys; sys.path.insert(0, 'tests'); "
         "from test_metrics import _scenarios, SEEDS; "
         "from fastsock.websocket import protocol; assert protocol.CORE_IMPLEMENTATION == 'python'; "
         "print(json.dumps(_scenarios(SEEDS)))"],
        cwd=ROOT, env=dict(os.environ, FASTSOCK_PURE="1"), capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    pure = json.loads(done.stdout)
    for seed, (c, p) in enumerate(zip(compiled, pure)):
        assert c == p, f"seed {seed}"
        assert c["counters"]["rx_text"] + c["counters"]["rx_binary"] > 0


# ------------------------------------------------------------------- CLI


def _serve(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", "echo", "--port", "0",
                             "--quiet", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on ws://" in line, proc.stderr.read() if proc.stderr else line
    return proc, int(line.rsplit(":", 1)[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_cli_metrics_on_the_server_port() -> None:
    proc, port = _serve("--metrics", "/metrics")
    try:
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
        got = scrape(port)
        assert got['fastsock_received_messages_total{type="text"}'] == 1
        assert got['fastsock_received_bytes_total{type="text"}'] == 2
        assert "process_open_fds" in got
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert answer.value.code == 426                 # the app's own plain-HTTP answer
    finally:
        _stop(proc)


def test_cli_metrics_on_a_port_of_its_own() -> None:
    mport = free_port()
    proc, port = _serve("--metrics-port", str(mport), "--metrics", "/m")
    try:
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send(b"12345")
            assert ws.recv() == b"12345"
        got = scrape(mport, "/m")
        assert got['fastsock_received_bytes_total{type="binary"}'] == 5
        assert got["fastsock_http_requests_total"] == 0  # scrapes go to the other port
    finally:
        _stop(proc)


def test_cli_metrics_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = subprocess.run([sys.executable, "-m", "fastsock", "serve", "echo", "--port", "0",
                               "--metrics-port", str(busy.getsockname()[1])],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "already in use" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("own_port", [False, True])
def test_the_example_serves_metrics(own_port: bool) -> None:
    """examples/metrics_server.py is what docs/metrics.md points users at."""
    args = ["0", str(free_port())] if own_port else ["0"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "metrics_server.py"), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "metrics on http://" in line, line
        port = int(line.split("ws://127.0.0.1:")[1].split(";")[0])
        mport = int(line.rsplit(":", 1)[1].split("/")[0])
        assert (mport != port) == own_port
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("ping me")
            assert ws.recv() == "ping me"
        got = scrape(mport)
        assert got['fastsock_received_messages_total{type="text"}'] == 1
    finally:
        _stop(proc)


def test_cli_udp_echo_metrics_port() -> None:
    mport = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", "udp-echo", "--port", "0",
                             "--quiet", "--metrics-port", str(mport)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on udp://" in line, line
        port = int(line.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for size in (1, 2, 3):
                client.sendto(b"u" * size, ("127.0.0.1", port))
                assert client.recv(100) == b"u" * size
        got = scrape(mport)
        assert got['fastsock_udp_datagrams_total{direction="in",endpoint="udp-echo"}'] == 3
        assert got['fastsock_udp_bytes_total{direction="out",endpoint="udp-echo"}'] == 6
        assert "fastsock_connections" not in " ".join(got)   # no WebSocket server here
    finally:
        _stop(proc)


def test_cli_udp_metrics_need_a_port_and_the_fastsock_loop() -> None:
    for extra in (["--metrics", "/m"], ["--metrics-port", "0", "--loop", "asyncio"]):
        done = subprocess.run([sys.executable, "-m", "fastsock", "serve", "udp-echo", "--port", "0",
                               *extra], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("fastsock: error: --metrics"), done.stderr


def test_constant_labels_mark_every_sample() -> None:
    metrics = Metrics(labels={"worker": "3"})
    metrics.add_server(ServerState(Echo, FakeClock()))
    body, _ = metrics.render()
    families = list(text_string_to_metric_families(body.decode()))
    assert {f.name for f in families} >= {"fastsock_connections", "process_cpu_seconds"}
    for family in families:
        for sample in family.samples:
            assert sample.labels.get("worker") == "3", sample


def test_cli_workers_label_their_numbers() -> None:
    """With --workers, a scrape on the shared port reaches one worker: each
    labels its series worker="N", so no counter seems to go backwards."""
    proc, port = _serve("--workers", "2", "--metrics", "/metrics")
    try:
        seen: dict[str, list[float]] = {}
        deadline = time.monotonic() + 20
        while len(seen) < 2 or min(map(len, seen.values())) < 2:
            assert time.monotonic() < deadline, seen
            got = scrape(port)
            (key,) = [k for k in got if k.startswith("fastsock_http_requests_total")]
            seen.setdefault(key, []).append(got[key])
        assert set(seen) == {'fastsock_http_requests_total{worker="0"}',
                             'fastsock_http_requests_total{worker="1"}'}
        for values in seen.values():
            assert values == sorted(values)
    finally:
        _stop(proc)
