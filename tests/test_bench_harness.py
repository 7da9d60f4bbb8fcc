"""The benchmark harness itself: the C tools build and speak their protocols
correctly, every scenario and every server adapter starts and is driven, and
results are parsed and reported right.  Runs are tiny (a fraction of a
second, a few connections); nothing here asserts speed."""
from __future__ import annotations

import base64
import hashlib
import json
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks import aio_loops, c10k, report, run
from benchmarks.procs import HarnessError, ServerProcess, build_loadgen, command_line, free_port, parse_result, tool

pytestmark = pytest.mark.timeout(120)

TOOLS = ("tcpload", "wsload", "tcpecho_c", "wsecho_c")


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    try:
        build_loadgen()
    except HarnessError as exc:
        pytest.skip(f"cannot build the C load generators here: {exc}")


def tiny_args(**over: object) -> run.argparse.Namespace:
    ns = run.build_parser().parse_args([])
    ns.duration, ns.warmup, ns.server_core, ns.client_core = 0.2, 0.0, None, None
    for k, v in over.items():
        setattr(ns, k, v)
    return ns


def ws_handshake(sock: socket.socket) -> bytes:
    key = base64.b64encode(b"0123456789abcdef").decode()
    sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


# ---- the C tools -------------------------------------------------------------

@pytest.mark.parametrize("name", TOOLS)
def test_tool_builds_and_prints_usage(name: str) -> None:
    assert tool(name).exists()
    out = subprocess.run([str(tool(name)), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert "usage" in out.stdout


@pytest.mark.parametrize("argv,needle", [
    (["--port", "1", "--connections", "0"], "--connections must be an integer"),
    (["--port", "1", "--bogus", "3"], "unknown option"),
    (["--connections", "3"], "--port is required"),
    (["--port", "1", "--size"], "missing value"),
])
def test_loadgen_rejects_bad_arguments(argv: list[str], needle: str) -> None:
    out = subprocess.run([str(tool("tcpload")), *argv], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert needle in out.stderr
    assert out.stdout == ""


def test_wsecho_c_talks_to_a_real_websocket_client() -> None:
    from websockets.sync.client import connect

    port = free_port()
    with ServerProcess("c", [str(tool("wsecho_c")), "--port", str(port)], core=None) as srv:
        assert srv.ready_line.startswith("wsecho_c listening on ws://127.0.0.1:")
        with connect(f"ws://127.0.0.1:{port}/any/path", max_size=None, compression=None) as ws:
            ws.send("héllo")
            assert ws.recv(timeout=5) == "héllo"
            big = bytes(range(256)) * 300          # 76,800 bytes: 64-bit length form
            ws.send(big)
            assert ws.recv(timeout=5) == big
            ws.ping(b"p").wait(5)


def test_wsecho_c_broadcast_reaches_everyone_including_the_sender() -> None:
    from websockets.sync.client import connect

    port = free_port()
    with ServerProcess("c", [str(tool("wsecho_c")), "--port", str(port), "--mode", "broadcast"], core=None):
        with connect(f"ws://127.0.0.1:{port}/") as a, connect(f"ws://127.0.0.1:{port}/") as b:
            a.send(b"\x00\x01fan-out")
            assert a.recv(timeout=5) == b"\x00\x01fan-out"
            assert b.recv(timeout=5) == b"\x00\x01fan-out"


def test_wsecho_c_refuses_non_websocket_and_unmasked_frames() -> None:
    port = free_port()
    with ServerProcess("c", [str(tool("wsecho_c")), "--port", str(port)], core=None):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert ws_handshake(s).startswith(b"HTTP/1.1 101")
            s.sendall(b"\x81\x02hi")               # a client frame without a mask
            assert s.recv(4096) == b""             # closed


def test_wsload_rejects_a_wrong_accept_key() -> None:
    """The C client checks Sec-WebSocket-Accept instead of trusting any 101."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def serve_bad() -> None:
        for _ in range(2):
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                wrong = base64.b64encode(hashlib.sha1(b"not the key").digest()).decode()
                conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Accept: {wrong}\r\n\r\n".encode())
                try:
                    conn.recv(1)
                except OSError:
                    pass

    t = threading.Thread(target=serve_bad, daemon=True)
    t.start()
    try:
        out = subprocess.run([str(tool("wsload")), "--port", str(port), "--connections", "2",
                              "--duration", "0.1", "--warmup", "0", "--connect-timeout", "5"],
                             capture_output=True, text=True, timeout=30)
    finally:
        lsock.close()
        t.join(10)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1
    assert res["connected"] == 0 and res["errors"] == 2
    assert res["last_error"].startswith("bad handshake response")


# ---- every scenario and adapter ----------------------------------------------------

CASES = [(scenario, a) for scenario in run.SCENARIOS for a in run.ADAPTERS[scenario]]


@pytest.mark.parametrize("scenario,adapter", CASES, ids=[f"{s}-{a.name}" for s, a in CASES])
def test_every_adapter_is_driven(scenario: str, adapter: run.Adapter) -> None:
    if scenario == "udp-echo" and not tool("udpload").exists():
        pytest.skip("udpload.c (the UDP engineer's load generator) is not in benchmarks/loadgen yet")
    reason = run.unavailable(adapter, run.fastsock_apps())
    if reason:
        pytest.skip(reason)
    case = {"connections": 3, "size": 100, "inflight": 2}
    res = run.run_once(scenario, adapter, case, tiny_args())
    assert res["server_alive"], res.get("server_stderr")
    assert res["errors"] == 0, res
    assert res["msgs_per_s"] > 0 and res["server_cpu_s"] >= 0
    assert res["server_peak_rss_mib"] > 0
    if scenario != "udp-echo":
        assert res["connected"] == 3 and res["messages"] > 0
        assert res["p50_us"] <= res["p99_us"] <= res["p999_us"] <= res["max_us"]


@pytest.mark.parametrize("adapter", c10k.ADAPTERS, ids=[a.name for a in c10k.ADAPTERS])
def test_c10k_scenario_runs_against_every_broadcast_server(adapter: run.Adapter) -> None:
    reason = run.unavailable(adapter, run.fastsock_apps())
    if reason:
        pytest.skip(reason)
    args = c10k.build_parser().parse_args([
        "--connections", "40", "--concurrency", "10", "--idle", "0.1", "--ping-rounds", "2",
        "--ping-spread", "0.05", "--broadcasts", "3", "--broadcast-gap", "0.01", "--flood", "4",
        "--flood-interval", "0.02", "--phase-timeout", "5", "--connect-timeout", "10"])
    args.sources, args.server_core, args.client_core = 2, None, None
    r = c10k.drive(adapter, args, deadline=float("inf"))
    assert r["server_alive"]
    assert r["connected"] == 40 and r["failed"] == 0
    assert r["pings"] == 80 and r["echo_success_pct"] == 100.0
    assert r["bc_delivered"] == r["bc_expected"] == 3 * 40
    assert r["flood_delivered"] == r["flood_expected"] == 4 * 40
    assert r["flood_undelivered"] == 0 and r["flood_gaps"] == 0 and r["flood_out_of_order"] == 0
    assert r["server_fds"] >= 40
    assert "rss_per_conn_kib" in r and "idle_cpu_pct" in r and "bc_cpu_us_per_delivery" in r


# ---- whole commands and their output ------------------------------------------------

def test_run_interleaves_rounds_and_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run.main(["--scenario", "tcp-echo", "--servers", "c,asyncio", "--connections", "2",
                     "--duration", "0.15", "--warmup", "0", "--rounds", "2", "--baseline", "asyncio",
                     "--out", str(tmp_path), "--tag", "t", "--server-core", "-1", "--client-core", "-1"])
    assert code == 0
    progress = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    names = [next(n for n in ("asyncio", "c") if f" {n} " in ln) for ln in progress]
    assert names == ["c", "asyncio", "c", "asyncio"]          # A B A B, not A A B B
    data = json.loads((tmp_path / "tcp-echo-t.json").read_text())
    summary = data["cases"][0]["summary"]
    assert summary["asyncio"]["ratio"] == 1.0
    assert summary["c"]["rounds"] == 2 and len(summary["c"]["msgs_per_s_all"]) == 2
    md = (tmp_path / "tcp-echo-t.md").read_text()
    assert "| c |" in md and "× asyncio" in md and data["machine"]["commit"] in md
    assert (tmp_path / "tcp-echo-t.png").read_bytes().startswith(b"\x89PNG")


def test_c10k_main_writes_reports(tmp_path: Path) -> None:
    code = c10k.main(["--servers", "c", "--connections", "30", "--idle", "0.05", "--ping-rounds", "1",
                      "--ping-spread", "0.02", "--broadcasts", "2", "--broadcast-gap", "0.01", "--flood", "3",
                      "--flood-interval", "0.02", "--out", str(tmp_path), "--server-core", "-1",
                      "--client-core", "-1"])
    assert code == 0
    data = json.loads((tmp_path / "c10k.json").read_text())
    assert data["results"]["c"]["connected"] == 30
    assert data["results"]["c"]["connect_vs_c"] == 1.0
    assert "| c | 30 |" in (tmp_path / "c10k.md").read_text()
    assert (tmp_path / "c10k.png").exists()


def test_recorded_command_can_be_pasted_back_into_a_shell() -> None:
    argv = ["--servers", "c", "--add-server", 'old=sh -c "cd /tmp/x && exec python -m fastsock serve echo --port {port}"',
            "--rounds", "3"]
    line = command_line("benchmarks.c10k", argv)
    assert line.startswith("python -m benchmarks.c10k --servers c --add-server '")
    assert shlex.split(line) == ["python", "-m", "benchmarks.c10k", *argv]


@pytest.mark.parametrize("argv,needle", [
    (["--scenario", "tcp-echo", "--servers", "nginx"], "unknown server(s) for tcp-echo: nginx"),
    (["--scenario", "tcp-echo", "--size", "64,x"], "--size takes integers"),
    (["--host", "10.1.2.3"], "loopback only"),
    (["--rounds", "0"], "--rounds >= 1"),
    (["--scenario", "tcp-echo", "--add-server", "mine"], "--add-server takes NAME=COMMAND"),
    (["--scenario", "tcp-echo", "--add-server", "mine=./srv --port 1"], "must contain {port}"),
    (["--add-server", "mine=./srv --port {port}"], "pick --scenario too"),
])
def test_run_rejects_bad_input(argv: list[str], needle: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main([*argv, "--out", str(tmp_path)])
    assert needle in str(exc.value)


def test_server_that_never_gets_ready_is_reported() -> None:
    with pytest.raises(HarnessError, match="did not print its ready line"):
        ServerProcess("broken", [sys.executable, "-c", "import sys; print('oops'); sys.exit(3)"],
                      core=None, ready_timeout=10)


def test_results_are_parsed_and_normalised() -> None:
    udp = parse_result('noise\n{"tool":"udpload","datagrams_per_s":1000.0,"p50_us":5}\n', "", 0, "udpload")
    norm = run.normalise(udp, 100)
    assert norm["msgs_per_s"] == 1000.0 and norm["mb_per_s"] == pytest.approx(0.1) and norm["errors"] == 0
    with pytest.raises(HarnessError, match="printed no result"):
        parse_result("", "boom", 2, "/x/tcpload")
    with pytest.raises(HarnessError, match="bad JSON"):
        parse_result("{not json", "", 0, "tcpload")


def test_summary_takes_medians_and_ratios() -> None:
    runs = {"a": [{"msgs_per_s": v, "mb_per_s": 1, "p50_us": 1, "p99_us": 2, "p999_us": 3, "errors": 0,
                   "server_cpu_pct": 50, "server_peak_rss_mib": 10} for v in (100, 300, 200)],
            "b": [{"msgs_per_s": 50, "errors": 1}, {"error": "server died"}]}
    s = run.summarise(runs, "a")
    assert s["a"]["msgs_per_s"] == 200 and s["a"]["ratio"] == 1.0
    assert s["b"]["ratio"] == 0.25 and s["b"]["failed_rounds"] == 1 and s["b"]["errors"] == 1
    md = report.markdown({"scenario": "tcp-echo", "baseline": "a", "params": {}, "machine": {},
                          "cases": [{"connections": 1, "size": 2, "inflight": 3, "summary": s,
                                     "runs": {"b": runs["b"]}}]})
    assert "| b | 50 | 0.25 |" in md and "server died" in md


def test_summary_normalises_by_server_cpu() -> None:
    """Half a core for twice as long is the same efficiency: msgs per CPU-second."""
    runs = {"full": [{"msgs_per_s": 100, "messages_total": 1000, "server_cpu_s": 1.0}],
            "half": [{"msgs_per_s": 50, "messages_total": 500, "server_cpu_s": 0.5}],
            "udp": [{"msgs_per_s": 10, "received": 300, "server_cpu_s": 1.0}]}
    s = run.summarise(runs, "full")
    assert s["half"]["ratio"] == 0.5 and s["half"]["cpu_ratio"] == 1.0
    assert s["udp"]["msgs_per_cpu_s"] == 300.0


def test_c10k_goals_follow_the_measurements() -> None:
    res = {"c": {"connected": 10, "connect_s": 1.0, "bc_last_p50_ms": 10.0},
           "fastsock": {"connections": 10, "connected": 10, "connect_s": 1.2, "bc_last_p50_ms": 11.0,
                        "echo_success_pct": 100.0, "rss_per_conn_kib": 5.0, "flood_undelivered": 0, "flood_gaps": 0}}
    c10k.add_ratios(res)
    met = {g["goal"]: g["met"] for g in c10k.goals(res)}
    assert met["time to connect all vs C server"] is True            # 1.2x <= 1.5x
    assert met["broadcast to the last client (p50) vs C server"] is False   # 1.1x > 1.05x
    assert met["server RSS per idle connection"] is False
    assert met["connections established"] and met["echoes answered"]


def test_report_cli_regenerates_from_json(tmp_path: Path) -> None:
    src = {"scenario": "ws-echo", "baseline": "x", "servers": ["x"], "params": {}, "machine": {"commit": "abc"},
           "cases": [{"connections": 1, "size": 64, "inflight": 1, "runs": {},
                      "summary": run.summarise({"x": [{"msgs_per_s": 10, "errors": 0}]}, "x")}]}
    path = tmp_path / "ws-echo.json"
    path.write_text(json.dumps(src))
    assert report.main([str(path)]) == 0
    assert "| x | 10 | 1.00 |" in (tmp_path / "ws-echo.md").read_text()
    assert (tmp_path / "ws-echo.png").exists()
    assert report.main([str(tmp_path / "missing.json")]) == 1


def test_sources_cover_the_port_range() -> None:
    n, why = c10k.sources_needed(10_000)
    assert n >= 1 and "source address" in why
    pr = c10k.port_range()
    if pr is not None:
        assert n * int((pr[1] - pr[0] + 1) * 0.9) >= 10_000


def test_c10k_report_lists_every_round() -> None:
    res = {"scenario": "c10k", "params": {"connections": 3}, "machine": {}, "results": {"c": {"connected": 3}},
           "rounds": {"c": [{"connect_s": 0.3, "bc_last_p50_ms": 90.0, "flood_lag_max_ms": 100},
                            {"connect_s": 0.4, "bc_last_p50_ms": 95.0, "flood_lag_max_ms": 120},
                            {"error": "server died"}]}}
    md = report.markdown(res)
    assert "| c (1 failed) | 0.30, 0.40 | –, – | 90.0, 95.0 | 100, 120 |" in md


def test_c10k_combines_rounds_by_median() -> None:
    rs = [{"connected": 10, "connect_s": v, "bc_last_p50_ms": b, "server_alive": True, "last_error": ""}
          for v, b in ((0.5, 100.0), (0.3, 120.0), (0.4, 90.0))] + [{"error": "boom"}]
    r = c10k.combine(rs)
    assert r["connect_s"] == 0.4 and r["bc_last_p50_ms"] == 100.0 and r["connected"] == 10
    assert r["server_alive"] is True and r["rounds"] == 3 and r["failed_rounds"] == 1
    assert c10k.combine([{"error": "x"}]) == {"error": "x"}


def test_your_own_server_runs_side_by_side(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m benchmarks.servers.tcp_echo --host {{host}} --port {{port}} --loop asyncio"
    code = run.main(["--scenario", "tcp-echo", "--servers", "c", "--add-server", f"mine={cmd}",
                     "--connections", "2", "--duration", "0.1", "--warmup", "0", "--rounds", "1",
                     "--baseline", "c", "--out", str(tmp_path), "--no-chart", "--server-core", "-1",
                     "--client-core", "-1"])
    assert code == 0
    data = json.loads((tmp_path / "tcp-echo.json").read_text())
    assert data["servers"] == ["c", "mine"]
    assert data["cases"][0]["summary"]["mine"]["msgs_per_s"] > 0
    assert not (tmp_path / "tcp-echo.png").exists()


def test_ws_core_micro_reports_both_cores(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import ws_core_micro
    assert ws_core_micro.main(["--sizes", "0,200", "--messages", "50", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| message |") and "python core" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["0 B", "200 B"]
    for line in lines[2:]:
        assert float(line.split("|")[2]) > 0 and float(line.split("|")[3]) > 0


def test_ws_core_micro_rejects_bad_sizes() -> None:
    from benchmarks import ws_core_micro
    with pytest.raises(SystemExit) as exc:
        ws_core_micro.main(["--sizes", "big"])
    assert exc.value.code == 2


# ---- one asyncio program on each event loop (aio-echo, aio-streams, tls-echo) ----------

LOOP_MODES = [(loop, mode) for loop in aio_loops.LOOPS for mode in ("protocol", "streams")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> aio_loops.CertFiles:
    pytest.importorskip("trustme")
    return aio_loops.make_cert(tmp_path_factory.mktemp("tls"))


def aio_echo(loop: str, mode: str, port: int, *extra: str) -> ServerProcess:
    why = aio_loops.unavailable(loop)
    if why:
        pytest.skip(why)
    return ServerProcess(loop, [sys.executable, "-m", "benchmarks.servers.aio_echo", "--port", str(port),
                                "--loop", loop, "--mode", mode, *extra], core=None)


def echo_roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("loop,mode", LOOP_MODES, ids=[f"{lp}-{m}" for lp, m in LOOP_MODES])
def test_aio_echo_answers_on_each_loop(loop: str, mode: str) -> None:
    port = free_port()
    with aio_echo(loop, mode, port) as srv:
        assert f"{loop} aio-echo {mode} listening on tcp://127.0.0.1:{port}" in srv.ready_line
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert echo_roundtrip(s, b"ping") == b"ping"
            big = bytes(range(256)) * 1024              # 256 KiB: several reads and writes
            assert echo_roundtrip(s, big) == big
        assert srv.alive()


@pytest.mark.parametrize("loop", aio_loops.LOOPS)
def test_aio_echo_serves_tls_with_a_verifiable_certificate(loop: str, certs: aio_loops.CertFiles) -> None:
    import ssl

    port = free_port()
    ctx = ssl.create_default_context(cafile=str(certs.ca))     # verification on: the cert is right
    with aio_echo(loop, "protocol", port, "--tls", str(certs.cert), str(certs.key)) as srv:
        assert "listening on tls://" in srv.ready_line
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                assert echo_roundtrip(s, b"hello over tls") == b"hello over tls"
                big = b"x" * 40_000                       # more than one TLS record
                assert echo_roundtrip(s, big) == big


def test_tcpload_tls_completes_a_short_bounded_run(certs: aio_loops.CertFiles) -> None:
    port = free_port()
    with aio_echo("asyncio", "protocol", port, "--tls", str(certs.cert), str(certs.key)):
        out = subprocess.run([str(tool("tcpload")), "--port", str(port), "--tls", "--connections", "3",
                              "--size", "20000", "--inflight", "2", "--duration", "0.3", "--warmup", "0",
                              "--max-messages", "300", "--connect-timeout", "5"],
                             capture_output=True, text=True, timeout=30)
    if out.returncode == 2 and "built without OpenSSL" in out.stderr:
        pytest.skip("tcpload was built without OpenSSL headers (libssl-dev)")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr
    assert res["connected"] == 3 and res["errors"] == 0, res
    assert 0 < res["messages_total"] <= 300 + 3 * 2      # bounded by --max-messages
    assert res["tls"].startswith("TLSv1."), res["tls"]


def test_tcpload_tls_reports_a_server_that_does_not_speak_tls() -> None:
    port = free_port()
    with ServerProcess("c", [str(tool("tcpecho_c")), "--port", str(port)], core=None):
        out = subprocess.run([str(tool("tcpload")), "--port", str(port), "--tls", "--connections", "2",
                              "--duration", "0.1", "--warmup", "0", "--connect-timeout", "3"],
                             capture_output=True, text=True, timeout=30)
    if out.returncode == 2 and "built without OpenSSL" in out.stderr:
        pytest.skip("tcpload was built without OpenSSL headers (libssl-dev)")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1 and res["connected"] == 0 and res["errors"] == 2
    assert res["last_error"].startswith("TLS handshake"), res["last_error"]


@pytest.mark.parametrize("argv,needle", [
    (["--scenario", "aio-echo", "--loops", "tokio"], "unknown loop(s): tokio"),
    (["--scenario", "tcp-echo", "--loops", "uvloop"], "--loops applies to"),
    (["--scenario", "aio-echo", "--loops", "uvloop", "--servers", "uvloop"], "give one of them"),
])
def test_run_rejects_bad_loop_choices(argv: list[str], needle: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main([*argv, "--out", str(tmp_path)])
    assert needle in str(exc.value)


def test_tls_run_records_the_negotiated_cipher(tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    code = run.main(["--scenario", "tls-echo", "--loops", "asyncio", "--connections", "2", "--size", "64",
                     "--duration", "0.15", "--warmup", "0", "--rounds", "1", "--baseline", "asyncio",
                     "--out", str(tmp_path), "--no-chart", "--server-core", "-1", "--client-core", "-1"])
    assert code == 0
    data = json.loads((tmp_path / "tls-echo.json").read_text())
    assert data["params"]["tls"].startswith("TLSv1.")
    assert "raw over TLS (TLSv1." in (tmp_path / "tls-echo.md").read_text()


@pytest.mark.parametrize("loop", aio_loops.LOOPS)
def test_aio_tasks_child_measures_both_workloads(loop: str) -> None:
    from benchmarks import aio_tasks
    if aio_loops.unavailable(loop):
        pytest.skip(aio_loops.unavailable(loop) or "")
    r = aio_tasks.child(loop, switches=2_000, gather_tasks=300, gather_reps=3)
    assert r["loop"] == loop and r["switches"] == 2_000 and len(r["gather_reps_s"]) == 3
    assert r["switch_per_s"] > 0 and r["gather_per_s"] > 0 and r["switch_s"] > 0


def test_aio_tasks_interleaves_fresh_processes_and_writes_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import aio_tasks
    code = aio_tasks.main(["--loops", "asyncio,uvloop", "--rounds", "2", "--switches", "3000", "--gather", "200",
                           "--gather-reps", "1", "--core", "-1", "--out", str(tmp_path), "--tag", "t"])
    assert code == 0
    progress = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    assert [ln.split()[5] for ln in progress] == ["asyncio", "uvloop", "asyncio", "uvloop"]
    data = json.loads((tmp_path / "aio-tasks-t.json").read_text())
    assert data["baseline"] == "uvloop" and data["summary"]["uvloop"]["switch_per_s_ratio"] == 1.0
    assert data["summary"]["asyncio"]["rounds"] == 2 and len(data["summary"]["asyncio"]["switch_per_s_all"]) == 2
    classes = {r["loop_class"] for rs in data["runs"].values() for r in rs}
    assert any("uvloop" in c for c in classes)                  # each child really ran its own loop
    md = (tmp_path / "aio-tasks-t.md").read_text()
    assert "| asyncio |" in md and "× uvloop" in md and data["machine"]["commit"] in md
    assert (tmp_path / "aio-tasks-t.png").read_bytes().startswith(b"\x89PNG")


def test_aio_tasks_rejects_unknown_loops() -> None:
    from benchmarks import aio_tasks
    with pytest.raises(SystemExit, match="unknown loop"):
        aio_tasks.main(["--loops", "asyncio,trio"])


def test_aio_summary_sets_fastsock_against_uvloop_and_asyncio(tmp_path: Path) -> None:
    from benchmarks import aio_summary

    def echo(stem: str, sizes: dict[int, dict[str, tuple[float, float]]]) -> None:
        cases = [{"size": size, "summary": {n: {"msgs_per_s": w, "msgs_per_cpu_s": c} for n, (w, c) in per.items()}}
                 for size, per in sizes.items()]
        (tmp_path / f"{stem}.json").write_text(json.dumps({"scenario": stem, "machine": {"commit": "abc"},
                                                           "cases": cases}))
    echo("aio-echo", {64: {"fastsock": (120, 240), "uvloop": (100, 200), "asyncio": (30, 60)}})
    echo("tls-echo", {64: {"fastsock": (110, 190), "uvloop": (100, 200), "asyncio": (100, 100)}})
    table = aio_summary.table(tmp_path)
    row = next(ln for ln in table.splitlines() if ln.startswith("| Protocol echo"))
    assert "| 1.1× | 1.20× | 1.20× | 4.00× | 4.00× | yes | `abc` |" in row
    row = next(ln for ln in table.splitlines() if ln.startswith("| TLS echo, 64 B"))
    assert "| 1.10× | 0.95× |" in row and "**no**" in row
    assert "| streams echo (start_server), 64 B × 50 conns | 1.0× | not run |" in table


def test_aio_profile_tallies_self_and_inclusive_samples() -> None:
    from benchmarks import aio_profile
    root = str(aio_profile.ROOT)
    raw = (f"main ({root}/a.py:3);loop (/x/lib/python3.11/asyncio/base_events.py:10);write (b.py:7) 5\n"
           f"main ({root}/a.py:4);loop (/x/lib/python3.11/asyncio/base_events.py:11) 3\n"
           "garbage\n")
    total, own, incl = aio_profile.tally(raw)
    assert total == 8
    assert own["write (b.py)"] == 5 and own["loop (asyncio/base_events.py)"] == 3
    assert incl["main (a.py)"] == 8 and incl["loop (asyncio/base_events.py)"] == 8
