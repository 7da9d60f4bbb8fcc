"""A real browser as the client: headless Chromium against fastsock's echo server.

The page, served over HTTP on 127.0.0.1 by a small `websockets` server the
test runs (a data: URL may not open connections to loopback), opens a
WebSocket to ``python -m fastsock serve echo``, checks text, non-ASCII, empty,
binary and large echoes and a clean close, then sends its findings back to
that `websockets` server over a second WebSocket: that is how they leave the
browser.
Chromium fails the connection on any protocol error from the server (masked
or reserved frames, bad UTF-8 in text or close reason), so a clean run means
Chromium accepted everything the server sent.

Skipped, with the reason, when Chromium (Debian package chromium) is missing.
"""
from __future__ import annotations

import importlib.util
import json
import queue
import threading
from typing import Iterator

import pytest

from chromium_launch import fail_without_report, headless_chromium
# test_interop_deflate_peers.py imports these two from here, under these names.
from chromium_launch import find_chromium as _chromium
from conformance.launch import ServerProcess, server_command

websockets_sync = pytest.importorskip("websockets.sync.server")

TIMEOUT = 60.0

PAGE = """<!doctype html><meta charset="utf-8"><title>fastsock browser interop</title>
<script>
const ECHO = %(echo)s, REPORT = %(report)s;
const results = {echoes: [], errors: []};
const report = new WebSocket(REPORT);
const ws = new WebSocket(ECHO);
ws.binaryType = "arraybuffer";
const waiting = [];
ws.onmessage = (e) => { const w = waiting.shift(); if (w) w(e.data); };
ws.onerror = () => results.errors.push("error event");
function roundTrip(message) {
  return new Promise((resolve) => { waiting.push(resolve); ws.send(message); });
}
function same(a, b) {
  if (typeof a === "string") return typeof b === "string" && a === b;
  if (!(b instanceof ArrayBuffer)) return false;
  const x = new Uint8Array(a instanceof ArrayBuffer ? a : a.buffer), y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
async function run() {
  const big = new Uint8Array(4 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 255;
  const messages = ["hello", "\\u03ba\\u1f79\\u03c3\\u03bc\\u03b5 \\u2713 \\ud834\\udd1e", "",
                    new Uint8Array([0, 255, 254, 1]).buffer, "x".repeat(1 << 20), big.buffer];
  for (const m of messages) {
    const got = await roundTrip(m);
    results.echoes.push({ok: same(m, got), kind: typeof got === "string" ? "text" : "binary",
                         length: typeof got === "string" ? got.length : got.byteLength});
  }
  const closed = new Promise((resolve) => { ws.onclose = resolve; });
  ws.close(1000, "browser done");
  const e = await closed;
  results.close = {code: e.code, reason: e.reason, wasClean: e.wasClean};
}
const reportOpen = new Promise((resolve) => { report.onopen = resolve; });
let reported = false;
function finish() {
  if (reported) return;
  reported = true;
  reportOpen.then(() => report.send(JSON.stringify(results)));
}
ws.onopen = () => run().catch((err) => results.errors.push(String(err))).finally(finish);
ws.onclose = (e) => { results.close = {code: e.code, wasClean: e.wasClean}; finish(); };
</script>"""


@pytest.fixture
def echo_url() -> Iterator[str]:
    if importlib.util.find_spec("fastsock.server") is None:
        pytest.skip("fastsock.server is not built yet")
    server = ServerProcess(server_command("fastsock"))
    try:
        yield server.url + "/browser"
    finally:
        status = server.stop()
        log = server.stderr_text()
        server.stderr.close()
    assert status == 0, log[-3000:]


@pytest.fixture
def page_server(echo_url: str) -> Iterator[tuple[str, "queue.Queue[str]"]]:
    """Serves the page on GET / and collects what the page reports on /report."""
    reports: "queue.Queue[str]" = queue.Queue()
    report_url: list[str] = []

    def process_request(connection, request):
        if request.path == "/report":
            return None  # the WebSocket handshake goes on
        page = PAGE % {"echo": json.dumps(echo_url), "report": json.dumps(report_url[0])}
        response = connection.respond(200, page)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        return response

    def handler(ws) -> None:
        for message in ws:
            reports.put(message)

    server = websockets_sync.serve(handler, "127.0.0.1", 0, process_request=process_request)
    port = server.socket.getsockname()[1]
    report_url.append(f"ws://127.0.0.1:{port}/report")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/", reports
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


@pytest.mark.slow
def test_chromium_page_against_fastsock_echo(page_server) -> None:
    chromium = _chromium()
    url, reports = page_server
    with headless_chromium(chromium, url) as log:
        try:
            result = json.loads(reports.get(timeout=TIMEOUT))
        except queue.Empty:
            fail_without_report(log)
    assert result["errors"] == []
    assert [e["kind"] for e in result["echoes"]] == ["text", "text", "text", "binary", "text", "binary"]
    assert all(e["ok"] for e in result["echoes"]), result["echoes"]
    assert result["close"]["wasClean"] and result["close"]["code"] == 1000, result["close"]
