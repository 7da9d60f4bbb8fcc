"""Real peers with permessage-deflate on, against ``python -m fastsock serve echo``:

* Node's `ws` client (tests/node/deflate_client.js) with ``perMessageDeflate``
  at its defaults and with each parameter combination, threshold 0 so every
  message it sends is compressed: small and large, text and binary,
  compressible and not, fragmented; it reports the negotiated extensions and
  how many bytes a 1 MiB compressible echo took on the wire (so the server's
  compression is seen, not assumed);
* headless Chromium, which offers ``permessage-deflate;
  client_max_window_bits`` on every connection: the page reports
  ``WebSocket.extensions`` and the round trips, small and large.

Skipped, with the reason, when node/node-ws or Chromium is missing.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conformance.deflate import Offer, negotiate
from conformance.launch import ServerProcess, server_command

HERE = Path(__file__).resolve().parent
NODE_WS = os.environ.get("NODE_WS", "/usr/share/nodejs/ws")
MiB = 1 << 20
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    if importlib.util.find_spec("fastsock.server") is None:
        pytest.skip("fastsock.server is not built yet")
    server = ServerProcess(server_command("fastsock") + ["--compression", "deflate"])
    try:
        yield server.url
    finally:
        status = server.stop()
        log = server.stderr_text()
        server.stderr.close()
    assert status == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# --- Node ws --------------------------------------------------------------------

def _node() -> str:
    from test_interop_node_ws import _node as node
    return node()


# ws's perMessageDeflate option -> the Autobahn-style offer it sends, to check
# the server's answer against (conformance/deflate.py's strict client rules)
NODE_OPTIONS = {
    "defaults": ({}, Offer(accept_no_context_takeover=False)),
    "no-context-takeover": ({"serverNoContextTakeover": True, "clientNoContextTakeover": True},
                            Offer(request_no_context_takeover=True)),
    "window-bits": ({"serverMaxWindowBits": 10, "clientMaxWindowBits": 9},
                    Offer(accept_no_context_takeover=False, request_max_window_bits=10)),
    "server-window-9-no-takeover": ({"serverMaxWindowBits": 9, "serverNoContextTakeover": True},
                                    Offer(accept_no_context_takeover=False,
                                          request_no_context_takeover=True,
                                          request_max_window_bits=9)),
}


@pytest.mark.needs_node
@pytest.mark.parametrize("name", sorted(NODE_OPTIONS))
def test_node_ws_with_permessage_deflate(echo_url: str, name: str) -> None:
    options, offer = NODE_OPTIONS[name]
    proc = subprocess.run([_node(), str(HERE / "node" / "deflate_client.js"), echo_url + "/node",
                           json.dumps(options)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NODE_WS=NODE_WS))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    # deflate was negotiated, with an answer valid for what ws offered
    assert result["extensions"] == "permessage-deflate"
    answer = result["answer"]
    agreement = negotiate([offer], answer)
    assert agreement is not None
    if "serverNoContextTakeover" in options:
        assert agreement.server_no_context_takeover
    if "serverMaxWindowBits" in options:
        assert agreement.server_max_window_bits <= options["serverMaxWindowBits"]
    if "clientMaxWindowBits" in options:
        assert agreement.client_max_window_bits <= options["clientMaxWindowBits"]
    echoes = result["echoes"]
    assert len(echoes) == 30
    for echo in echoes:
        assert echo["equal"] and echo["gotBinary"] == echo["sentBinary"], echo
    assert [e["length"] for e in echoes[-3:]] == [MiB, 4 * MiB, 6000]
    # the server compressed its 1 MiB JSON echo: far fewer bytes than the message
    assert result["compressedEcho"]["bytesRead"] < MiB // 4, result["compressedEcho"]
    assert result["close"]["code"] == 1000


# --- Chromium -------------------------------------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>fastsock deflate interop</title>
<script>
const ECHO = %(echo)s, REPORT = %(report)s;
const results = {extensions: null, echoes: [], errors: []};
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
function json(n) {
  let s = "[", i = 0;
  while (s.length < n) s += JSON.stringify({id: i++, user: "user" + (i %% 17), text: "hello world"}) + ",";
  return s.slice(0, n - 1) + "]";
}
async function run() {
  results.extensions = ws.extensions;
  const big = new Uint8Array(4 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 255;
  const noise = new Uint8Array(65536);
  let x = 12345;
  for (let i = 0; i < noise.length; i++) { x = (x * 1103515245 + 12345) & 0x7fffffff; noise[i] = x >> 16; }
  const messages = ["", "h", "\\u03ba\\u1f79\\u03c3\\u03bc\\u03b5 \\u2713 \\ud834\\udd1e".repeat(20),
                    json(1024), new Uint8Array([0, 255, 254, 1]).buffer, noise.buffer,
                    json(1 << 20), big.buffer];
  for (let i = 0; i < 20; i++) messages.push(json(100 + i));
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
def page_server(echo_url: str) -> Iterator[tuple[str, "queue.Queue[str]"]]:
    websockets_sync = pytest.importorskip("websockets.sync.server")
    reports: "queue.Queue[str]" = queue.Queue()
    report_url: list[str] = []

    def process_request(connection, request):
        if request.path == "/report":
            return None
        page = PAGE % {"echo": json.dumps(echo_url + "/browser"),
                       "report": json.dumps(report_url[0])}
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
@pytest.mark.needs_chromium
def test_chromium_negotiates_deflate_and_round_trips(page_server) -> None:
    from chromium_launch import fail_without_report, find_chromium, headless_chromium
    url, reports = page_server
    with headless_chromium(find_chromium(), url) as log:
        try:
            result = json.loads(reports.get(timeout=TIMEOUT))
        except queue.Empty:
            fail_without_report(log)
    assert result["errors"] == []
    # Chromium offers "permessage-deflate; client_max_window_bits"
    answer = result["extensions"]
    assert answer.startswith("permessage-deflate"), answer
    assert negotiate([Offer(accept_no_context_takeover=False)], answer) is not None
    assert len(result["echoes"]) == 28
    assert all(e["ok"] for e in result["echoes"]), result["echoes"]
    assert [e["length"] for e in result["echoes"][6:8]] == [1 << 20, 4 << 20]
    assert result["close"]["wasClean"] and result["close"]["code"] == 1000, result["close"]
