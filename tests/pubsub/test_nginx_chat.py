"""A real load balancer in front: Debian's nginx proxies WebSocket upgrades to
two ``serve chat --pubsub redis://...`` processes. Headless Chromium opens the
chat page through nginx in two tabs whose WebSockets nginx sends to different
processes; a message typed in one tab shows up in the other.

nginx runs in the foreground as one process (``master_process off``) with a
configuration, logs and temp paths in the test's directory, on a free port;
it is stopped by its PID."""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from test_apps_pubsub import serve, wait_subscribed
from test_browser import CDP, CHROMIUM, LOG, STEP_TIMEOUT, chromium, open_page, page_log

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_START_TIMEOUT = 10.0

pytestmark = [
    pytest.mark.needs_redis,
    pytest.mark.skipif(not os.access(NGINX, os.X_OK),
                       reason="nginx not installed (scripts/ensure-system-deps.sh installs Debian's)"),
    pytest.mark.timeout(180),
]

CONFIG = """
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$request $status $upstream_addr';
    access_log {tmp}/access.log upstream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    # WebSocket upgrades alternate between the two processes (round robin);
    # the page itself always comes from the first.
    upstream chat {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
    server {{
        listen 127.0.0.1:{port};
        location /chat {{
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 75s;
        }}
        location / {{ proxy_pass http://127.0.0.1:{a}; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nginx(tmp: Path, a: int, b: int) -> Iterator[int]:
    port = _free_port()
    (tmp / "nginx.conf").write_text(CONFIG.format(tmp=tmp, a=a, b=b, port=port))
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"),
                             "-c", str(tmp / "nginx.conf")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                pytest.fail(f"nginx did not start (exit {proc.poll()}): {log[-1500:]}")
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.terminate()          # SIGTERM to this PID only: fast shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Tab(CDP):
    """A second page of the same browser, driven over the first page's CDP
    connection (a flattened target session)."""

    def __init__(self, parent: CDP, session: str) -> None:
        super().__init__(parent.ws)
        self._ids = itertools.count(1_000_000)     # apart from the parent's ids
        self.session = session

    def call(self, method: str, timeout: float = STEP_TIMEOUT, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params,
                                 "sessionId": self.session}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no CDP answer to {method} in {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == msg_id and msg.get("sessionId") == self.session:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg["result"]  # type: ignore[no-any-return]


def new_tab(cdp: CDP) -> Tab:
    target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
    session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    return Tab(cdp, session)


def joined_name(tab: CDP) -> str:
    tab.wait_for(f"{LOG}.includes('* connected') && / joined \\(\\d+ here\\)/.test({LOG})",
                 "the page's WebSocket to open and join")
    m = re.search(r"\* (guest-\d+-[0-9a-f]{4}) joined", "\n".join(page_log(tab)))
    assert m, page_log(tab)
    return m.group(1)


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed")
@pytest.mark.slow
def test_chat_through_nginx_in_two_tabs_held_by_two_processes(redis_process: Any,
                                                               tmp_path: Path) -> None:
    url = redis_process.url
    with serve("chat", "--pubsub", url) as (_, a), serve("chat", "--pubsub", url) as (_, b), \
            nginx(tmp_path, a, b) as port, chromium() as first:
        page = f"http://127.0.0.1:{port}/?room=lobby"
        # Plain HTTP through nginx: the page from the first process.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=STEP_TIMEOUT) as r:
            assert r.status == 200 and b"fastsock chat" in r.read()
        open_page(first, page)
        me = joined_name(first)
        wait_subscribed(redis_process.port, "fastsock:t:chat:lobby", 1)
        second = new_tab(first)
        open_page(second, page)
        other = joined_name(second)
        # The names carry each process's hub id: the two tabs' WebSockets are
        # held by different processes (nginx alternated the upgrades).
        assert me.rsplit("-", 1)[1] != other.rsplit("-", 1)[1], (me, other)
        first.wait_for(f"{LOG}.includes('* {other} joined (2 here)')",
                       "the first tab to see the second join, across processes")
        token = os.urandom(4).hex()
        text = f"typed in the second tab {token} \u2713"
        second.evaluate("(() => { const m = document.getElementById('msg'); m.value = "
                        + json.dumps(text) + "; document.getElementById('f').requestSubmit(); })()")
        first.wait_for(f"{LOG}.includes({json.dumps(f'{other}: {text}')})",
                       "the message typed in the second tab to show in the first")
        # and the other way, with a plain client through nginx in the middle
        with connect(f"ws://127.0.0.1:{port}/chat", open_timeout=STEP_TIMEOUT) as ws:
            ws.send(f"from python {token}")
            for tab in (first, second):
                tab.wait_for(f"{LOG}.includes('from python {token}')", "the client's message")
    # nginx's own record: each process got upgrades through it
    upgrades = re.findall(r"^GET /chat\S* HTTP/1.1 101 127\.0\.0\.1:(\d+)$",
                          (tmp_path / "access.log").read_text(), re.M)
    assert len(upgrades) == 3 and {int(p) for p in upgrades} == {a, b}, upgrades
