"""The harness's TLS and permessage-deflate paths: ``wsload --tls`` against the
C reference's ``--certfile``, ``wsload --deflate`` against the websockets
library and against servers that decline or answer wrongly, ``wsload --mode
hold``, and the run/c10k command lines and same-run ratios built for them.
Runs are tiny (a fraction of a second, a few connections); nothing here
asserts speed."""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from benchmarks import aio_loops, c10k, run
from benchmarks.procs import HarnessError, ServerProcess, build_loadgen, free_port, parse_result, tool

pytestmark = pytest.mark.timeout(120)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    try:
        build_loadgen()
    except HarnessError as exc:
        pytest.skip(f"cannot build the C load generators here: {exc}")


def _has(flag: str) -> bool:
    """Whether this build of wsload has --tls (OpenSSL) or --deflate (zlib):
    without them the option is refused with "built without"."""
    proc = subprocess.run([str(tool("wsload")), "--port", "1", "--connections", "1", "--duration", "0.01",
                           "--warmup", "0", "--connect-timeout", "0.2", flag],
                          capture_output=True, text=True, timeout=10)
    return "built without" not in proc.stderr


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> aio_loops.CertFiles:
    pytest.importorskip("trustme")
    return aio_loops.make_cert(tmp_path_factory.mktemp("cert"))


def wsload(*argv: str, timeout: float = 30) -> dict[str, Any]:
    proc = subprocess.run([str(tool("wsload")), *argv], capture_output=True, text=True, timeout=timeout)
    return parse_result(proc.stdout, proc.stderr, proc.returncode, "wsload")


def tiny(port: int, *extra: str) -> list[str]:
    return ["--port", str(port), "--connections", "4", "--duration", "0.3", "--warmup", "0", *extra]


# ---- wss: wsload --tls against wsecho_c --certfile ------------------------------

@pytest.mark.parametrize("mode", ["echo", "broadcast"])
def test_wsload_tls_against_c_reference(cert: aio_loops.CertFiles, mode: str) -> None:
    if not _has("--tls"):
        pytest.skip("wsload built without OpenSSL")
    port = free_port()
    argv = [str(tool("wsecho_c")), "--port", str(port), "--mode", mode, "--certfile", str(cert.cert),
            "--keyfile", str(cert.key)]
    with ServerProcess("c-tls", argv, core=None) as server:
        assert "wss://" in server.ready_line
        if mode == "echo":
            res = wsload(*tiny(port, "--tls", "--size", "70000"))
            assert res["errors"] == 0, res
            assert res["messages_total"] > 0
        else:
            lines = subprocess.run([str(tool("wsload")), "--mode", "c10k", "--tls", "--port", str(port),
                                    "--connections", "20", "--idle", "0", "--ping-rounds", "1",
                                    "--ping-spread", "0", "--broadcasts", "2", "--flood", "2",
                                    "--phase-timeout", "5"], capture_output=True, text=True, timeout=60).stdout
            res = json.loads(lines.strip().splitlines()[-1])
            assert res["broadcast"]["delivered"] == res["broadcast"]["expected"] == 40
            assert res["echo"]["pongs"] == 20
        assert str(res["tls"]).startswith("TLSv1.")


def test_c_reference_tls_survives_a_plain_client(cert: aio_loops.CertFiles) -> None:
    """A client that speaks plain HTTP to the wss port loses its connection;
    a TLS client after it is served."""
    if not _has("--tls"):
        pytest.skip("built without OpenSSL")
    port = free_port()
    argv = [str(tool("wsecho_c")), "--port", str(port), "--certfile", str(cert.cert), "--keyfile", str(cert.key)]
    with ServerProcess("c-tls", argv, core=None):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            assert b"101" not in data
        res = wsload(*tiny(port, "--tls"))
        assert res["errors"] == 0 and res["messages_total"] > 0


def test_wsecho_c_rejects_a_missing_certificate(tmp_path: Path) -> None:
    proc = subprocess.run([str(tool("wsecho_c")), "--port", "0", "--certfile", str(tmp_path / "none.pem")],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert "none.pem" in proc.stderr or "without OpenSSL" in proc.stderr


# ---- permessage-deflate --------------------------------------------------------

@pytest.mark.parametrize("params,expect", [
    (None, "client_max_window_bits"),
    ("client_no_context_takeover; server_no_context_takeover", "server_no_context_takeover"),
])
def test_wsload_deflate_against_websockets(params: str | None, expect: str) -> None:
    pytest.importorskip("websockets")
    if not _has("--deflate"):
        pytest.skip("wsload built without zlib")
    port = free_port()
    argv = run.ADAPTERS["deflate-echo"][-1].command("127.0.0.1", port)
    with ServerProcess("websockets-deflate", argv, core=None):
        extra = ["--deflate", "--payload", "json", "--size", "3000"]
        if params:
            extra += ["--deflate-params", params]
        res = wsload(*tiny(port, *extra))
    assert res["errors"] == 0, res
    deflate = res["deflate"]
    assert isinstance(deflate, dict)
    assert str(deflate["accepted"]).startswith("permessage-deflate") and expect in str(deflate["accepted"])
    assert res["compressed_replies"] == res["messages_total"] > 0
    assert 0 < float(str(res["wire_ratio"])) < 1     # JSON-like text does compress


def test_wsload_deflate_declined_runs_uncompressed() -> None:
    port = free_port()
    with ServerProcess("c", [str(tool("wsecho_c")), "--port", str(port)], core=None):
        res = wsload(*tiny(port, "--deflate", "--payload", "json"))
    if "deflate" not in res:
        pytest.skip("wsload built without zlib")
    assert res["errors"] == 0
    assert res["deflate"]["declined"] == 4 and res["deflate"]["accepted"] == ""
    assert res["compressed_replies"] == 0 and res["messages_total"] > 0


def _one_shot_server(answer_ext: str | None) -> tuple[int, threading.Thread]:
    """Answers every handshake with a 101 carrying ``answer_ext`` as
    Sec-WebSocket-Extensions (whatever was offered), then waits for EOF."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def serve() -> None:
        conns = []
        try:
            for _ in range(4):
                c, _addr = lsock.accept()
                conns.append(c)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                       if ln.lower().startswith(b"sec-websocket-key:")][0]
                accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
                ext = f"Sec-WebSocket-Extensions: {answer_ext}\r\n".encode() if answer_ext else b""
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n" + ext + b"\r\n")
        except OSError:
            pass
        finally:
            for c in conns:
                c.close()
            lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return port, t


@pytest.mark.parametrize("offer,answer", [
    (False, "permessage-deflate"),                          # not offered: must fail
    (True, "permessage-deflate; bogus_param"),              # unknown parameter
    (True, "permessage-deflate; client_max_window_bits=7"), # out of range
    (True, "x-webkit-deflate-frame"),                       # another extension
])
def test_wsload_fails_a_bad_extension_answer(offer: bool, answer: str) -> None:
    if not _has("--deflate"):
        pytest.skip("wsload built without zlib")
    port, thread = _one_shot_server(answer)
    res = wsload("--port", str(port), "--connections", "4", "--duration", "0.2", "--warmup", "0",
                 "--connect-timeout", "3", *(["--deflate"] if offer else []))
    thread.join(10)
    assert res["connected"] == 0
    assert "bad handshake response" in str(res["last_error"])


# ---- hold mode -----------------------------------------------------------------

def test_wsload_hold_mode_events_and_replies() -> None:
    port = free_port()
    with ServerProcess("c", [str(tool("wsecho_c")), "--port", str(port)], core=None):
        proc = subprocess.run([str(tool("wsload")), "--mode", "hold", "--port", str(port), "--connections", "30",
                               "--size", "500", "--idle", "0.1"], capture_output=True, text=True, timeout=30)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["connecting", "established", "idle_begin", "idle_end", "result"]
    assert events[1]["replies"] == 30
    assert events[-1]["replies"] == 30 and events[-1]["errors"] == 0 and events[-1]["open_at_end"] == 30


# ---- command lines and ratios ---------------------------------------------------

def test_loadgen_argv_for_wss_and_deflate() -> None:
    case = {"connections": 100, "size": 1024, "inflight": 1}
    wss = run.loadgen_argv("wss-echo", "127.0.0.1", 9, case, 1.0, 0.0, False)
    assert "--tls" in wss and "--text" in wss
    d = run.loadgen_argv("deflate-echo", "127.0.0.1", 9, case, 1.0, 0.0, False, "server_no_context_takeover")
    assert d[d.index("--payload") + 1] == "json" and "--deflate" in d
    assert d[d.index("--deflate-params") + 1] == "server_no_context_takeover"
    plain = run.loadgen_argv("ws-echo", "127.0.0.1", 9, case, 1.0, 0.0, False)
    assert "--tls" not in plain and "--deflate" not in plain


def test_wss_adapters_get_the_certificate() -> None:
    for adapter in run.ADAPTERS["wss-echo"]:
        argv = adapter.command("127.0.0.1", 9, cert="/c.pem", key="/k.pem")
        assert "/c.pem" in argv and "/k.pem" in argv, adapter.name


def test_pair_ratios_per_round_and_of_medians() -> None:
    runs: dict[str, list[dict[str, Any]]] = {"a": [{"round": 1, "msgs_per_s": 300.0}, {"round": 2, "msgs_per_s": 200.0},
                  {"round": 3, "error": "x"}],
            "b": [{"round": 1, "msgs_per_s": 100.0}, {"round": 2, "msgs_per_s": 100.0},
                  {"round": 3, "msgs_per_s": 50.0}]}
    (p,) = run.pair_ratios(runs, run.parse_pairs("a/b"))
    assert p["per_round"] == [3.0, 2.0]
    assert p["median_per_round"] == 2.5 and p["min_per_round"] == 2.0 and p["max_per_round"] == 3.0
    assert p["ratio_of_medians"] == round(250.0 / 100.0, 3)
    with pytest.raises(SystemExit):
        run.parse_pairs("a-b")


def test_c10k_hold_and_deflate_command_lines() -> None:
    args = c10k.build_parser().parse_args(["--mode", "hold", "--connections", "50", "--deflate-params",
                                           "server_no_context_takeover"])
    args.sources = 1
    args.deflate = True
    argv = c10k.wsload_argv(args, 9)
    assert argv[1:3] == ["--mode", "hold"] and "--broadcasts" not in argv
    assert argv[argv.index("--deflate-params") + 1] == "server_no_context_takeover"
    args.mode = "c10k"
    argv = c10k.wsload_argv(args, 9)
    assert argv[1:3] == ["--mode", "c10k"] and "--broadcasts" in argv and "--deflate" in argv
    plain = c10k.wsload_argv(args, 9, offer_deflate=False)   # the same JSON, no offer
    assert "--deflate" not in plain and "--deflate-params" not in plain
    assert plain[plain.index("--payload") + 1] == "json"


def test_hold_and_deflate_goals() -> None:
    hold = c10k.hold_goals({"fastsock-deflate": {"rss_per_conn_kib": 10.0},
                            "websockets-deflate": {"rss_per_conn_kib": 80.0}})
    assert hold[0]["met"] and "0.125" in hold[0]["measured"]
    bc = c10k.deflate_goals({"fastsock-deflate": {"bc_last_p50_ms": 30.0}, "fastsock": {"bc_last_p50_ms": 15.0}})
    assert not bc[0]["met"] and "2.00×" in bc[0]["measured"]
    assert c10k.hold_goals({}) == [] and c10k.deflate_goals({"fastsock": {}}) == []


def test_wsload_c10k_deflate_against_fastsock_broadcast() -> None:
    """The compressed broadcast run: JSON filler after the binary header, the
    server's compressed messages inflated (a 16-byte prefix under
    server_no_context_takeover), nothing lost."""
    if not _has("--deflate"):
        pytest.skip("wsload built without zlib")
    port = free_port()
    adapter = next(a for a in c10k.ADAPTERS if a.name == "fastsock-deflate")
    with ServerProcess("fastsock-deflate", adapter.command("127.0.0.1", port), core=None):
        out = subprocess.run([str(tool("wsload")), "--mode", "c10k", "--port", str(port), "--connections", "20",
                              "--idle", "0", "--ping-rounds", "1", "--ping-spread", "0", "--broadcasts", "2",
                              "--flood", "2", "--size", "1024", "--payload", "json", "--deflate-params",
                              "server_no_context_takeover; client_max_window_bits", "--phase-timeout", "5"],
                             capture_output=True, text=True, timeout=60).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["errors"] == 0, res["last_error"]
    assert res["broadcast"]["delivered"] == res["broadcast"]["expected"] == 40
    assert res["flood"]["undelivered"] == 0
    if "server_no_context_takeover" in res["deflate"]["accepted"]:
        assert res["compressed_received"] == 80
