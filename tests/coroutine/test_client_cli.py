"""``python -m fastsock connect`` as a subprocess against a ``websockets`` server:
lines from stdin go out, messages come back on stdout; wss with --cafile and
--insecure; a wrong argument is one line on stderr and a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.server import serve as ws_serve

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 30.0          # seconds for one client run
ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def fastsock_connect(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastsock", "connect", *args], input=stdin,
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT)


class Peer:
    """A websockets (sync) server in a thread: echoes, answers 'binary' with
    bytes, closes with 4001 on 'kick'; records request headers."""

    def __init__(self, ssl_context: Any = None) -> None:
        self.headers: list[dict[str, str]] = []
        self.server = ws_serve(self._handler, "127.0.0.1", 0, ssl=ssl_context,
                               select_subprotocol=lambda c, offered: offered[0] if offered else None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.socket.getsockname()[1]

    def _handler(self, ws: Any) -> None:
        self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        for message in ws:
            if message == "binary":
                ws.send(b"\x00\x01\xff")
            elif message == "kick":
                ws.close(4001, "kicked")
                return
            else:
                ws.send(message)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.stop()


def test_echo_round_trip_through_stdin_and_stdout(peer: Peer) -> None:
    done = fastsock_connect(f"ws://127.0.0.1:{peer.port}/chat", "--header", "X-Token: t1",
                            "--subprotocol", "chat.v1", stdin="hello\nhéllo wörld\nbinary\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello", "héllo wörld", "[binary 3 bytes] 0001ff"]
    assert "connected to" in done.stderr and "(subprotocol chat.v1)" in done.stderr
    assert "connection closed: 1000" in done.stderr
    assert peer.headers[0]["x-token"] == "t1"
    assert peer.headers[0]["user-agent"].startswith("fastsock/")


def test_server_close_ends_the_session(peer: Peer) -> None:
    done = fastsock_connect(f"ws://127.0.0.1:{peer.port}/", stdin="one\nkick\nnever sent\n")
    assert done.stdout.splitlines()[0] == "one"
    assert "connection closed: 4001 kicked" in done.stderr
    assert done.returncode == 1                  # not a normal close


def test_wss_with_cafile_and_insecure(tls: Any, tmp_path: Path) -> None:
    peer = Peer(tls.server_context())
    try:
        ca = tmp_path / "ca.pem"
        tls.ca.cert_pem.write_to_path(str(ca))
        url = f"wss://localhost:{peer.port}/"
        done = fastsock_connect(url, "--cafile", str(ca), stdin="secure\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["secure"]
        done = fastsock_connect(url, "--insecure", stdin="unverified\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["unverified"]
        done = fastsock_connect(url, stdin="x\n")          # system CAs: refused
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr
    finally:
        peer.stop()


@pytest.mark.parametrize("args, code, text", [
    ((), 2, "required: URL"),
    (("http://127.0.0.1/",), 2, "is not a ws:// or wss:// URL"),
    (("ws://127.0.0.1/", "--header", "no-colon"), 2, "--header takes 'NAME: VALUE'"),
    (("ws://127.0.0.1/", "--insecure", "--cafile", "x.pem"), 2, "not allowed with"),
    (("ws://127.0.0.1/", "--bogus"), 2, "unrecognized arguments: --bogus"),
    (("ws://127.0.0.1/", "--proxy", "socks5://127.0.0.1:1080"), 2, "only http:// proxies"),
    (("ws://127.0.0.1:9/",), 1, "cannot connect to ws://127.0.0.1:9/"),
])
def test_wrong_arguments_are_one_line(args: tuple[str, ...], code: int, text: str) -> None:
    done = fastsock_connect(*args)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("fastsock: error: ") and done.stderr.count("\n") == 1
    assert text in done.stderr
    assert done.stdout == ""
