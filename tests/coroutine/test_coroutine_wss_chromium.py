"""Headless Chromium against the coroutine server over wss:// (issue 14).

Two coroutine servers run in the test, on asyncio's loop, uvloop and
fastsock's (the ``aio`` fixture):

- a wss:// echo with a certificate issued by a trustme test CA for
  localhost;
- a plain one whose ``http_handler`` serves the page on ``GET /`` and whose
  ``/report`` WebSocket receives what the page found (that is how results
  leave the browser).

Chromium trusts the test certificate through
``--ignore-certificate-errors-spki-list`` with the base64 SHA-256 of the
server certificate's SubjectPublicKeyInfo: a profile-free way to trust one
test key headlessly (it needs ``--user-data-dir``, which is set). With the
hash of another key the same page's wss:// connection fails, which shows
the flag, not a lax browser, is what accepts the certificate.

Chromium fails a connection on any protocol error from the server, so a
clean run means it accepted every frame sent over TLS. Skipped, with the
reason, when Chromium (Debian package chromium) is missing.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any, Optional

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fastsock.coroutine import Connection, serve
from fastsock.websocket import Response, WebSocketOptions

from chromium_launch import fail_without_report, find_chromium, headless_chromium_async

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPORT_TIMEOUT = 60.0     # seconds for the page to report
RUN_TIMEOUT = 120.0       # seconds for one test's coroutine
MAX_MESSAGE = 8 << 20     # bytes: the server's message size limit here

PAGE = """<!doctype html><meta charset="utf-8"><title>fastsock wss interop</title>
<script>
const ECHO = %(echo)s, REPORT = %(report)s;
const results = {echoes: [], errors: []};
const report = new WebSocket(REPORT);
const reportOpen = new Promise((resolve) => { report.onopen = resolve; });
const ws = new WebSocket(ECHO, ["chat"]);
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
  const x = new Uint8Array(a), y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
async function run() {
  results.protocol = ws.protocol;
  const big = new Uint8Array(3 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 255;
  const messages = ["hello", "\\u03ba\\u1f79\\u03c3\\u03bc\\u03b5 \\u2713", "",
                    new Uint8Array([0, 255, 254, 1]).buffer, "x".repeat(1 << 20), big.buffer];
  for (const m of messages) {
    const got = await roundTrip(m);
    results.echoes.push({ok: same(m, got), kind: typeof got === "string" ? "text" : "binary"});
  }
  const closed = new Promise((resolve) => { ws.onclose = resolve; });
  ws.close(1000, "browser done");
  const e = await closed;
  results.close = {code: e.code, reason: e.reason, wasClean: e.wasClean};
}
let reported = false;
function finish() {
  if (reported) return;
  reported = true;
  reportOpen.then(() => report.send(JSON.stringify(results)));
}
ws.onopen = () => run().catch((err) => results.errors.push(String(err))).finally(finish);
ws.onclose = (e) => { results.close = {code: e.code, wasClean: e.wasClean}; finish(); };
</script>"""


def spki_sha256(cert_pem: bytes) -> str:
    """base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def _browse(chromium: str, url: str, spki: str, reports: "asyncio.Queue[str]") -> Any:
    async with headless_chromium_async(
            chromium, url, f"--ignore-certificate-errors-spki-list={spki}") as log:
        try:
            return json.loads(await asyncio.wait_for(reports.get(), REPORT_TIMEOUT))
        except TimeoutError:
            fail_without_report(log)


async def _page_and_echo(tls: Any, chromium: str, spki: Optional[str]) -> tuple[Any, list[Any]]:
    reports: asyncio.Queue[str] = asyncio.Queue()
    seen: list[Any] = []

    async def echo(ws: Connection) -> None:
        seen.append((ws.subprotocol, ws.transport.get_extra_info("ssl_object") is not None))
        async for message in ws:
            await ws.send(message)

    async def report(ws: Connection) -> None:
        reports.put_nowait(str(await ws.recv()))

    # the page's largest message is 3 MiB: over the default 1 MiB limit
    options = WebSocketOptions(max_message_size=MAX_MESSAGE)
    async with serve(echo, "127.0.0.1", 0, ssl=tls.server_context(), subprotocols=["chat"],
                     options=options) as wss_server:
        echo_url = f"wss://localhost:{wss_server.port}/echo"
        page_url: list[str] = []

        def page(request: Any) -> Response:
            body = PAGE % {"echo": json.dumps(echo_url),
                           "report": json.dumps(page_url[0].replace("http:", "ws:") + "report")}
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], body)

        async with serve({"/report": report}, "127.0.0.1", 0, http_handler=page) as plain:
            page_url.append(f"http://127.0.0.1:{plain.port}/")
            pin = spki if spki is not None else spki_sha256(tls.server_cert.cert_chain_pems[0].bytes())
            result = await _browse(chromium, page_url[0], pin, reports)
    return result, seen


def test_chromium_against_coroutine_server_over_wss(aio: Any, tls: Any) -> None:
    chromium = find_chromium()
    aio.tolerate_handshake_failures()
    result, seen = aio.run(_page_and_echo(tls, chromium, None), RUN_TIMEOUT)
    assert result["errors"] == []
    assert result["protocol"] == "chat"
    assert [e["kind"] for e in result["echoes"]] == ["text", "text", "text", "binary", "text", "binary"]
    assert all(e["ok"] for e in result["echoes"]), result["echoes"]
    assert result["close"]["wasClean"] and result["close"]["code"] == 1000, result["close"]
    assert seen == [("chat", True)]


def test_chromium_refuses_the_test_certificate_without_its_pin(aio: Any, tls: Any) -> None:
    chromium = find_chromium()
    aio.tolerate_handshake_failures()
    # the pin of a key the server does not use
    other = spki_sha256(tls.untrusted_cert.cert_chain_pems[0].bytes())
    result, seen = aio.run(_page_and_echo(tls, chromium, other), RUN_TIMEOUT)
    assert result["errors"] == ["error event"]
    assert result["echoes"] == []
    assert result["close"]["code"] == 1006 and not result["close"]["wasClean"]
    assert seen == []
