"""The UDP benchmark tools work: udpload and udpecho_c speak UDP echo, count
loss, and udp_bench tabulates samples. Runs are tiny (one datagram in flight,
a fraction of a second); nothing here asserts speed."""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import udp_bench
from benchmarks.procs import HarnessError, ServerProcess, build_loadgen, tool

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    try:
        build_loadgen()
    except HarnessError as exc:
        pytest.skip(f"cannot build the C load generators here: {exc}")


def udpload(port: int, *extra: str) -> dict[str, Any]:
    proc = subprocess.run([str(tool("udpload")), "--host", "127.0.0.1", "--port", str(port),
                           "--senders", "2", "--inflight", "1", "--duration", "0.3",
                           "--warmup", "0", "--timeout-ms", "2000", *extra],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("server", ["c", "c-mmsg", "fastsock"])
def test_udpload_against_echo_servers(server: str) -> None:
    argv = udp_bench.SERVERS[server] + ["--host", "127.0.0.1", "--port", "0"]
    with ServerProcess(server, argv, core=None) as proc:
        port = int(proc.ready_line.rsplit(":", 1)[1])
        for size in ("16", "1200"):
            out = udpload(port, "--size", size)
            assert out["size"] == int(size) and out["senders"] == 2
            assert out["received"] > 0 and out["datagrams_per_s"] > 0
            assert out["lost"] == out["errors"] == out["short_replies"] == 0
            assert out["sent"] >= out["received"]
            assert 0 < out["p50_us"] <= out["p99_us"] <= out["max_us"]


def test_udpload_counts_loss_when_nobody_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        # bound but never read: every datagram is lost, none refused
        out = udpload(port, "--timeout-ms", "50")
    assert out["received"] == 0
    assert out["lost"] > 0 and out["loss_pct"] > 0


@pytest.mark.parametrize("argv, needle", [
    (["--port", "0"], "--port"),
    (["--port", "9", "--size", "8"], "--size"),
    (["--port", "9", "--inflight", "0"], "--inflight"),
    (["--port", "9", "--host", "not-an-ip"], "bad numeric host"),
])
def test_udpload_rejects_bad_arguments(argv: list[str], needle: str) -> None:
    proc = subprocess.run([str(tool("udpload")), *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert needle in proc.stderr


def test_report_tabulates_saved_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def sample(server: str, rnd: int, rate: float) -> dict[str, Any]:
        return {"server": server, "round": rnd, "size": 64, "senders": 50,
                "datagrams_per_s": rate, "loss_pct": 0.5, "p50_us": 100, "p99_us": 900,
                "server_cpu_pct": 90, "loadgen_cpu_pct": 60}
    samples = [sample("fastsock", 1, 300.0), sample("uvloop", 1, 200.0),
               sample("fastsock", 2, 330.0), sample("uvloop", 2, 300.0),
               sample("fastsock", 3, 100.0), sample("uvloop", 3, 100.0)]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"samples": samples}))
    assert udp_bench.main(["--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| 64 | 50 | fastsock | 300 | 1.50× |" in out  # medians 300 vs 200
    assert "| 90 | 333 | 60 |" in out  # 300 datagrams/s at 90% CPU: 333 per CPU-second
    assert "64 B, 50 sender(s): 1.10× (1.00–1.50, 3 rounds)" in out  # paired ratios
