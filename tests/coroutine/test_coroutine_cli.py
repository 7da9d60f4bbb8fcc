"""``python -m fastsock serve echo --api async`` and ``--certfile/--keyfile``
(wss://) as subprocesses, with the ``websockets`` client: the echo keeps
types, and SIGTERM closes clients with 1001 and exits 0."""
from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^fastsock echo listening on (wss?)://(\S+):(\d+)$")
READY_TIMEOUT = 30.0        # seconds for the ready line
STOP_TIMEOUT = 20.0         # seconds for a graceful stop


@contextlib.contextmanager
def echo_app(*extra: str, loop: str) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", "echo", "--port", "0",
                             "--loop", loop, "--quiet", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().strip() if sel.select(READY_TIMEOUT) else ""
        sel.close()
        m = READY.match(line)
        assert m, f"no ready line, got {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, m.group(1), int(m.group(3))
    finally:
        if proc.poll() is None:
            proc.kill()          # only this test's own child
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def check_echo_and_stop(proc: subprocess.Popen[str], url: str, **client: Any) -> None:
    with connect(url, max_size=None, **client) as ws:
        ws.send("text")
        assert ws.recv(timeout=10) == "text"
        ws.send(b"\x00bin")
        assert ws.recv(timeout=10) == b"\x00bin"
        big = b"q" * (5 << 20)
        ws.send(big)
        assert ws.recv(timeout=30) == big
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001


@pytest.mark.parametrize("loop", ["fastsock", "asyncio", "uvloop"])
def test_serve_echo_api_async(loop: str) -> None:
    with echo_app("--api", "async", loop=loop) as (proc, scheme, port):
        assert scheme == "ws"
        check_echo_and_stop(proc, f"ws://127.0.0.1:{port}/any")


@pytest.mark.parametrize("api", ["async", "callback"])
@pytest.mark.parametrize("loop", ["fastsock", "uvloop"])
def test_serve_echo_wss(tls: Any, tmp_path: Path, api: str, loop: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.server_cert.cert_chain_pems[0].write_to_path(str(cert))
    tls.server_cert.private_key_pem.write_to_path(str(key))
    with echo_app("--api", api, "--certfile", str(cert), "--keyfile", str(key),
                  loop=loop) as (proc, scheme, port):
        assert scheme == "wss"
        # The address it listens on, checked against the certificate's
        # "localhost": a wss://localhost URL could reach whatever else
        # listens on [::1] with that port number.
        check_echo_and_stop(proc, f"wss://127.0.0.1:{port}/", ssl=tls.client_context(),
                            server_hostname="localhost")


def test_serve_echo_bad_certfile_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    missing = tmp_path / "missing.pem"
    done = subprocess.run([sys.executable, "-m", "fastsock", "serve", "echo", "--port", "0",
                           "--certfile", str(missing)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "cannot load the TLS certificate" in done.stderr
    assert "Traceback" not in done.stderr


def test_plain_client_on_wss_port_does_not_disturb_others(tls: Any, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.server_cert.cert_chain_pems[0].write_to_path(str(cert))
    tls.server_cert.private_key_pem.write_to_path(str(key))
    with echo_app("--api", "async", "--certfile", str(cert), "--keyfile", str(key),
                  loop="fastsock") as (proc, _, port):
        ctx: ssl.SSLContext = tls.client_context()
        with connect(f"wss://localhost:{port}/", ssl=ctx) as good:
            with pytest.raises(Exception):
                with connect(f"ws://127.0.0.1:{port}/", open_timeout=5):
                    pass
            good.send("still here")
            assert good.recv(timeout=10) == "still here"
