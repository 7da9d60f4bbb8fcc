"""A real browser against ``python -m fastsock serve demo``.

Headless Chromium loads the chat page our server serves on ``GET /``; the
page's own script opens a WebSocket to ``/chat``. The test joins the same room
with the ``websockets`` library and checks both directions: what the page
sends (through its form, as a user would) reaches the test, and what the test
sends shows up in the page's DOM. A second check runs a script in the page
(``tests/browser/echo_roundtrip.js``) that pushes text and binary messages of
every length form through the browser's WebSocket to the echo route.

The browser is driven over the Chrome DevTools Protocol (CDP): Chromium is
started with ``--remote-debugging-port=0`` and writes the port it chose to
``DevToolsActivePort`` in its profile directory. Every wait is bounded; only
the processes this test started are stopped, and the temporary profile is
removed. Skips when ``/usr/bin/chromium`` (or ``$FASTSOCK_CHROMIUM``) is
missing; ``make sysdeps`` installs it.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
# Debian's package; FASTSOCK_CHROMIUM points at another Chromium/Chrome binary.
CHROMIUM = os.environ.get("FASTSOCK_CHROMIUM", "/usr/bin/chromium")
READY = re.compile(r"^fastsock (\S+) listening on ws://(\S+):(\d+)$")
ECHO_SCRIPT = Path(__file__).with_name("browser") / "echo_roundtrip.js"
START_TIMEOUT = 60.0      # Chromium's first start on a loaded 2-core machine can be slow
STEP_TIMEOUT = 30.0       # any single wait for the page or the server

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (run scripts/ensure-system-deps.sh)"),
    pytest.mark.timeout(240),
]


def _stop(proc: subprocess.Popen, *, group: bool, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace``: the process we started (and, for
    Chromium, the process group it leads, i.e. its own helper processes)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM) if group else proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(grace)
    if group:
        # Helpers (renderer, GPU, zygote) may outlive the browser process by a
        # moment: kill what is left of the group and wait (bounded) until it is empty.
        deadline = time.monotonic() + grace
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
            while time.monotonic() < deadline:
                os.killpg(proc.pid, 0)
                time.sleep(0.05)


def _read_ready_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                return proc.stdout.readline().strip()
        return ""
    finally:
        sel.close()


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def fastsock_app(name: str, loop: str) -> Iterator[int]:
    """``python -m fastsock serve NAME`` on a free port; yields the port.
    Its stderr goes to a temporary file (never a pipe nobody reads)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="fastsock-serve-") as tmp:
        log = Path(tmp) / "stderr.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "fastsock", "serve", name,
                                     "--host", "127.0.0.1", "--port", "0", "--loop", loop, "--quiet"],
                                    cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line = _read_ready_line(proc, STEP_TIMEOUT)
            m = READY.match(line)
            if m is None:
                _stop(proc, group=False)
                pytest.fail(f"no ready line from serve {name}: {line!r}; stderr: {_tail(log)}")
            assert m.group(1) == name
            yield int(m.group(3))
        finally:
            _stop(proc, group=False)
            assert proc.stdout is not None
            proc.stdout.close()


class CDP:
    """A minimal Chrome DevTools Protocol session on one page target."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = STEP_TIMEOUT, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no CDP answer to {method} in {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg["result"]  # type: ignore[no-any-return]
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str, *, await_promise: bool = False,
                 timeout: float = STEP_TIMEOUT) -> Any:
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                           returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise AssertionError(f"page script failed: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = STEP_TIMEOUT) -> Any:
        """Poll a page expression until it is truthy (bounded)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last value {value!r}")


@contextlib.contextmanager
def chromium() -> Iterator[CDP]:
    """Headless Chromium with a fresh temporary profile; yields a CDP session
    attached to its first page (``about:blank``)."""
    tmp = Path(tempfile.mkdtemp(prefix="fastsock-chromium-"))
    profile = tmp / "profile"
    log = tmp / "stderr.log"      # a file, not a pipe: a chatty browser never blocks
    proc: Optional[subprocess.Popen] = None
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)  # its own process group: stopped as one, nothing else
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        port = 0
        while time.monotonic() < deadline and proc.poll() is None:
            lines = active.read_text().split("\n") if active.exists() else []
            if len(lines) >= 2 and lines[0].strip().isdigit():
                port = int(lines[0])
                break
            time.sleep(0.05)
        if not port:
            why = (f"exited with {proc.returncode}" if proc.poll() is not None
                   else f"did not open its DevTools port in {START_TIMEOUT}s")
            pytest.fail(f"{CHROMIUM} {why}; stderr: {_tail(log)}")
        # CDP messages (DOM text, results) can be large: no size limit.
        with connect(_page_target(port), max_size=None, open_timeout=STEP_TIMEOUT) as ws:
            cdp = CDP(ws)
            # Network events show the page's WebSocket handshake and frames as
            # the browser saw them.
            cdp.call("Network.enable")
            try:
                yield cdp
            finally:
                with contextlib.suppress(Exception):
                    cdp.call("Browser.close", timeout=5)
    finally:
        if proc is not None:
            _stop(proc, group=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _page_target(port: int) -> str:
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=STEP_TIMEOUT) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        if time.monotonic() > deadline:
            raise AssertionError(f"no page target in {targets!r}")
        time.sleep(0.05)


def recv_until(ws: ClientConnection, match: Callable[[Any], bool], what: str) -> list[Any]:
    """Messages received until one matches (bounded in time); returns them all."""
    got: list[Any] = []
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; got {got!r}")
        msg = ws.recv(timeout=left)
        got.append(msg)
        if match(msg):
            return got


# The chat page's log; "" while another page (or none yet) is loaded.
LOG = "(document.getElementById('log') || {textContent: ''}).textContent"


def page_log(cdp: CDP) -> list[str]:
    return [line for line in cdp.evaluate(LOG).split("\n") if line]


def websocket_traffic(cdp: CDP, url: str) -> dict[str, list[dict[str, Any]]]:
    """The browser's own record of its WebSocket(s) to ``url``: handshake
    responses and frames sent/received, from CDP Network events."""
    cdp.evaluate("0")       # a round trip, so every event sent before it has been read
    ids = {e["params"]["requestId"] for e in cdp.events
           if e["method"] == "Network.webSocketCreated" and e["params"]["url"] == url}
    out: dict[str, list[dict[str, Any]]] = {"handshake": [], "sent": [], "received": []}
    kinds = {"Network.webSocketHandshakeResponseReceived": "handshake",
             "Network.webSocketFrameSent": "sent", "Network.webSocketFrameReceived": "received"}
    for e in cdp.events:
        kind = kinds.get(e["method"])
        if kind and e["params"]["requestId"] in ids:
            out[kind].append(e["params"]["response"])
    return out


def open_page(cdp: CDP, url: str) -> None:
    """Navigate and wait until that document has finished loading."""
    cdp.call("Page.navigate", url=url)
    cdp.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                 f"{url} to load")


@pytest.fixture(scope="module")
def browser() -> Iterator[CDP]:
    with chromium() as cdp:
        yield cdp


@pytest.mark.parametrize("loop", ["fastsock", "uvloop"])
def test_chat_page_talks_to_a_websockets_client_both_ways(browser: CDP, loop: str) -> None:
    token = os.urandom(4).hex()     # tells this run's lines from any other's
    with fastsock_app("demo", loop) as port:
        open_page(browser, f"http://127.0.0.1:{port}/")
        # The page's script connects by itself and logs "* connected", then the
        # server announces the browser as the first member of the room.
        browser.wait_for(f"{LOG}.includes('* connected') && {LOG}.includes('joined (1 here)')",
                         "the page's WebSocket to open and join")
        browser_name = re.search(r"\* (\S+) joined \(1 here\)", "\n".join(page_log(browser)))
        assert browser_name, page_log(browser)
        me = browser_name.group(1)

        with connect(f"ws://127.0.0.1:{port}/chat", open_timeout=STEP_TIMEOUT) as ws:
            joined = recv_until(ws, lambda m: "joined (2 here)" in m, "our own join notice")
            test_name = re.search(r"\* (\S+) joined", joined[-1]).group(1)  # type: ignore[union-attr]
            assert test_name != me
            browser.wait_for(f"{LOG}.includes('* {test_name} joined (2 here)')",
                             "the page to see the test client join")

            # Page -> test: typed into the form and submitted, as a user would.
            text = f"hello from chromium {token} h\u00e9 \u2713 \U0001f680"
            browser.evaluate(
                "(() => { const m = document.getElementById('msg'); m.value = " + json.dumps(text)
                + "; document.getElementById('f').requestSubmit(); return m.value; })()")
            got = recv_until(ws, lambda m: m == f"{me}: {text}", "the page's message")
            assert all(isinstance(m, str) for m in got)
            assert browser.evaluate("document.getElementById('msg').value") == ""   # the form reset

            # Test -> page: shows up in the page's DOM.
            reply = f"hello from python {token} \u00fc\u00f1\u00ee"
            ws.send(reply)
            browser.wait_for(f"{LOG}.includes({json.dumps(f'{test_name}: {reply}')})",
                             "the test's message in the page")
            lines = page_log(browser)
            assert lines.index(f"{me}: {text}") < lines.index(f"{test_name}: {reply}")

            # The browser's view of the same exchange: our 101 and accept key,
            # its frames masked, ours not.
            traffic = websocket_traffic(browser, f"ws://127.0.0.1:{port}/chat")
            (handshake,) = traffic["handshake"]
            assert handshake["status"] == 101
            assert {k.lower() for k in handshake["headers"]} >= {"upgrade", "sec-websocket-accept"}
            assert [(f["opcode"], f["mask"], f["payloadData"]) for f in traffic["sent"]] == [
                (1, True, text)]
            received = [(f["opcode"], f["mask"], f["payloadData"]) for f in traffic["received"]]
            assert (1, False, f"{test_name}: {reply}") in received
            assert all(not mask for _, mask, _ in received)

            # The browser closes its side (a clean close handshake, code 1000);
            # the room tells the remaining member.
            browser.evaluate("ws.close(1000)")
            browser.wait_for(f"{LOG}.includes('* disconnected (1000)')", "the page's close to finish")
            recv_until(ws, lambda m: m == f"* {me} left", "the browser's leave notice")


@pytest.mark.parametrize("loop", ["fastsock", "asyncio"])
def test_browser_websocket_echo_every_length_form(browser: CDP, loop: str) -> None:
    with fastsock_app("demo", loop) as port:
        open_page(browser, f"http://127.0.0.1:{port}/")
        browser.wait_for(f"{LOG}.includes('* connected')", "the page's WebSocket to open")
        summary = json.loads(browser.evaluate(ECHO_SCRIPT.read_text(), await_promise=True))
        assert summary["texts"] == 4 and summary["binaries"] == 7
        # The server answered the browser's close frame with the same code.
        assert summary["close"] == {"code": 1000, "reason": "done", "clean": True}


def test_http_page_is_served_to_the_browser(browser: CDP) -> None:
    with fastsock_app("chat", "fastsock") as port:
        open_page(browser, f"http://127.0.0.1:{port}/")
        assert browser.evaluate("document.title") == "fastsock chat"
        browser.wait_for(f"{LOG}.includes('* connected')", "the page's WebSocket to open")
        # A path the server does not serve: our 404 body is what the browser shows.
        open_page(browser, f"http://127.0.0.1:{port}/nope")
        assert "404 Not Found" in browser.evaluate("document.body.innerText")
