"""Node's `ws` client against the coroutine server over wss:// (issue 14).

The server is ``fastsock.serve(handler, ssl=...)`` with a trustme
certificate for localhost, on asyncio's loop, uvloop and fastsock's (the
``aio`` fixture). Node (tests/node/echo_client.js: text, non-ASCII, empty,
binary, a message in three fragments, a ping, close 4000) trusts the test
CA through ``NODE_EXTRA_CA_CERTS``; without it, Node refuses the
certificate, which shows that it verifies.

Skipped, with the reason, when node or node-ws is missing
(scripts/ensure-system-deps.sh installs them).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from fastsock.coroutine import Connection, serve

pytestmark = [pytest.mark.needs_node, pytest.mark.timeout(120)]

NODE_CLIENT = Path(__file__).resolve().parents[1] / "node" / "echo_client.js"
NODE_WS = os.environ.get("NODE_WS", "/usr/share/nodejs/ws")
NODE_TIMEOUT = 60.0    # seconds for one Node client run
RUN_TIMEOUT = 90.0     # seconds for one test's coroutine


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed (Debian package nodejs)")
    if not Path(NODE_WS).is_dir():
        pytest.skip(f"Node's ws library is not at {NODE_WS} (Debian package node-ws)")
    return node


async def _run_node(url: str, extra_ca: Path | None) -> dict[str, Any]:
    env = dict(os.environ, NODE_WS=NODE_WS)
    env.pop("NODE_EXTRA_CA_CERTS", None)
    if extra_ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(extra_ca)
    proc = await asyncio.create_subprocess_exec(
        _node(), str(NODE_CLIENT), url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        proc.kill()          # the process this test started, by its handle
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def test_node_ws_client_against_coroutine_server_over_wss(aio: Any, tls: Any, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    tls.ca.cert_pem.write_to_path(str(ca))
    seen: list[tuple[str, bool]] = []

    async def echo(ws: Connection) -> None:
        seen.append((ws.request.path, ws.transport.get_extra_info("ssl_object") is not None))
        async for message in ws:
            await ws.send(message)

    async def main() -> dict[str, Any]:
        async with serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
            return await _run_node(f"wss://localhost:{server.port}/node", ca)

    result = aio.run(main(), RUN_TIMEOUT)
    assert result["errors"] == []
    assert len(result["echoes"]) == 5
    for echoed in result["echoes"]:
        assert echoed["equal"] and echoed["gotBinary"] == echoed["sentBinary"], echoed
    assert result["echoes"][4]["length"] == len("fragmented")    # joined from 3 frames
    assert result["pong"] == "node ping"
    # the handler's async for ends on Node's 4000; the server echoes that code
    assert result["close"]["code"] == 4000
    assert seen == [("/node", True)]


def test_node_ws_client_refuses_an_untrusted_certificate(aio: Any, tls: Any) -> None:
    handled: list[Connection] = []

    async def echo(ws: Connection) -> None:
        handled.append(ws)

    async def main() -> dict[str, Any]:
        aio.tolerate_handshake_failures()
        async with serve(echo, "127.0.0.1", 0, ssl=tls.server_context()) as server:
            return await _run_node(f"wss://localhost:{server.port}/node", None)

    result = aio.run(main(), RUN_TIMEOUT)
    assert result["echoes"] == []
    assert any("certificate" in e or "self-signed" in e or "issuer" in e
               for e in result["errors"]), result["errors"]
    assert handled == []
