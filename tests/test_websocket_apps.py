"""``python -m fastsock serve echo|broadcast|chat|demo`` as subprocesses: the
ready line, real clients, and a clean stop (1001 to clients, exit 0)."""
from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"^fastsock (\S+) listening on ws://(\S+):(\d+)$")


@contextlib.contextmanager
def app(name: str, *extra: str, loop: str = "fastsock",
        quiet: bool = True) -> Iterator[tuple[subprocess.Popen, int]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    flags = ("--quiet",) if quiet else ()
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", name, "--port", "0",
                             "--loop", loop, *flags, *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = ""
        if sel.select(30):
            line = proc.stdout.readline().strip()
        sel.close()
        m = READY.match(line)
        assert m, f"no ready line, got {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert m.group(1) == name
        yield proc, int(m.group(3))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(20)


@pytest.mark.parametrize("loop", ["fastsock", "asyncio", "uvloop"])
def test_serve_echo_keeps_types_and_stops_with_1001(loop: str) -> None:
    with app("echo", loop=loop) as (proc, port):
        with connect(f"ws://127.0.0.1:{port}/whatever", max_size=None) as ws:
            ws.send("text")
            assert ws.recv() == "text"
            ws.send(b"\x00bin")
            assert ws.recv() == b"\x00bin"
            big = b"q" * (20 << 20)          # above the library default, below the app's 64 MiB
            ws.send(big)
            assert ws.recv(timeout=60) == big
            assert stop(proc, signal.SIGINT if loop == "fastsock" else signal.SIGTERM) == 0
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001


def test_serve_echo_max_message_size_option() -> None:
    with app("echo", "--max-message-size", "1k") as (proc, port):
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert stop(proc) == 0


def test_serve_broadcast_sends_to_everyone_including_sender() -> None:
    with app("broadcast") as (proc, port), contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/")) for _ in range(4)]
        time.sleep(0.2)   # every connection registered before the first message
        clients[0].send("hello all")
        clients[2].send(b"\x01\x02")
        for ws in clients:
            got = {ws.recv(timeout=5), ws.recv(timeout=5)}
            assert got == {"hello all", b"\x01\x02"}
        assert stop(proc) == 0


def test_serve_chat_page_and_room() -> None:
    with app("chat") as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"</html>" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ") and b"new WebSocket(" in data
        with connect(f"ws://127.0.0.1:{port}/chat") as a:
            assert a.recv(timeout=5).startswith("* guest-1 joined")
            with connect(f"ws://127.0.0.1:{port}/chat") as b:
                assert b.recv(timeout=5).startswith("* guest-2 joined")
                assert a.recv(timeout=5).startswith("* guest-2 joined")
                b.send("hi there")
                assert a.recv(timeout=5) == "guest-2: hi there"
                assert b.recv(timeout=5) == "guest-2: hi there"
            assert a.recv(timeout=5) == "* guest-2 left"
        assert stop(proc) == 0


def test_serve_demo_echo_and_chat_on_one_port_with_limits_report() -> None:
    with app("demo", quiet=False) as (proc, port):
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("demo")
            assert ws.recv(timeout=5) == "demo"
        with connect(f"ws://127.0.0.1:{port}/chat") as ws:
            assert "joined" in ws.recv(timeout=5)
        assert stop(proc) == 0
        assert proc.stderr is not None
        assert "RLIMIT_NOFILE" in proc.stderr.read()   # the limits report at start
