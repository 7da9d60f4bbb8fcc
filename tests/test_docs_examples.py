"""The code in the how-to and migration guides runs against the current API.

Every Python block of getting-started.md, docs/howto/ and docs/migrate/
must compile (top-level ``await`` allowed, as in the snippets). The blocks that define handlers are
executed: the how-to pages' own tests run, and each migration page's
fastsock echo server answers both its fastsock client and the client of the
library it migrates from, over loopback on asyncio.
"""
from __future__ import annotations

import ast
import asyncio
import pathlib
import re
import textwrap
from typing import Any

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
GUIDES = sorted([DOCS / "getting-started.md", *DOCS.glob("howto/*.md"), *DOCS.glob("migrate/*.md")])

pytestmark = pytest.mark.timeout(60)


def python_blocks(page: pathlib.Path) -> list[str]:
    """The ```python blocks of a page, tabbed ones (indented) dedented."""
    text = page.read_text()
    return [textwrap.dedent(m.group(2))
            for m in re.finditer(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M)]


def run_block(code: str, ns: dict[str, Any], *, drop_from: str | None = None) -> None:
    """exec a block, cut before the line that starts ``drop_from`` (a call that would serve forever)."""
    if drop_from is not None:
        code = code[:code.index(drop_from)]
    exec(compile(code, "<docs>", "exec"), ns)


def recorder(ns: dict[str, Any]) -> None:
    """testing.md's Recorder handler, which the how-to tests use."""
    block = next(b for b in python_blocks(DOCS / "testing.md") if "class Recorder" in b)
    run_block(block, ns)


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_python_block_compiles(page: pathlib.Path) -> None:
    for code in python_blocks(page):
        compile(code, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_chat_rooms_guide() -> None:
    ns: dict[str, Any] = {}
    recorder(ns)
    server, test = python_blocks(DOCS / "howto" / "chat-rooms.md")
    run_block(server, ns, drop_from="run(Member")
    run_block(test, ns)
    ns["test_a_room_hears_its_members"]()
    # a binary message is refused with 1003 and an empty room is forgotten
    from fastsock.testing import websocket_pair

    ws = websocket_pair(ns["Member"], ns["Recorder"], path="/rooms/attic")
    assert "attic" in ns["rooms"]
    ws.client.send(b"\x00")
    ws.run()
    assert ws.client.closed_with == (1003, "text only")
    assert "attic" not in ns["rooms"]


def test_auth_guide() -> None:
    ns: dict[str, Any] = {}
    recorder(ns)
    server, test = python_blocks(DOCS / "howto" / "auth.md")
    run_block(server, ns, drop_from="run(Private")
    run_block(test, ns)
    ns["test_no_token_is_refused"]()
    ns["test_a_token_is_accepted"]()
    from fastsock.testing import websocket_pair

    ws = websocket_pair(ns["Private"], ns["Recorder"], process_request=ns["check"],
                        path="/?token=s3cret-token")
    assert ws.client.received == ["hello alice"]


def _fastsock_blocks(page: str) -> tuple[dict[str, Any], str]:
    """Define the page's fastsock echo handler and client; return them and
    the client block's code that uses them (with top-level await)."""
    blocks = python_blocks(DOCS / "migrate" / page)
    server = next(b for b in blocks if "fastsock.server import run" in b)
    client = next(b for b in blocks if "aio.connect(" in b and "class Client" in b)
    ns: dict[str, Any] = {}
    run_block(server, ns, drop_from="run(")
    usage = client[client.index("ws = await"):]
    run_block(client, ns, drop_from="ws = await")
    return ns, usage


async def _run_usage(usage: str, ns: dict[str, Any], url: str) -> None:
    code = usage.replace('"ws://127.0.0.1:8765/echo"', repr(url)).replace('"ws://127.0.0.1:8765/"', repr(url))
    assert repr(url) in code
    body = "async def _usage():\n" + textwrap.indent(code, "    ")
    exec(compile(body, "<docs>", "exec"), ns)
    await asyncio.wait_for(ns["_usage"](), 10)


@pytest.mark.parametrize("page", ["aiohttp.md", "picows.md"])
def test_migration_guide_server_and_clients(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fastsock.adapters import aio

    ns, usage = _fastsock_blocks(page)
    path = "/echo" if page == "aiohttp.md" else "/"

    async def main() -> None:
        routes = {path: ns["Echo"]}
        server = await aio.serve(routes, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}{path}"
        try:
            await _run_usage(usage, ns, url)              # fastsock's client
            await other_client(page, url)                 # the other library's client
        finally:
            server.close()
            await server.wait_closed(5)

    asyncio.run(main())
    assert capsys.readouterr().out.split() == ["hello", "hello"]


def test_websockets_guide_callback_echo_serves_both_clients() -> None:
    """docs/migrate/websockets.md: the page's callback echo (its chat-rooms
    diff is checked by tests/coroutine/test_chat_rooms_migration.py) answers
    the websockets client and fastsock's coroutine client."""
    websockets_client = pytest.importorskip("websockets.asyncio.client")
    import fastsock
    from fastsock.adapters import aio

    ns: dict[str, Any] = {}
    server_block = next(b for b in python_blocks(DOCS / "migrate" / "websockets.md")
                        if "fastsock.server import run" in b)
    run_block(server_block, ns, drop_from="run(")

    async def main() -> list[Any]:
        server = await aio.serve({"/": ns["Echo"]}, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.port}/"
        try:
            async with websockets_client.connect(url) as ws:
                await ws.send("hello")
                first = await asyncio.wait_for(ws.recv(), 10)
            async with fastsock.connect(url) as fs:
                await fs.send(b"bytes")
                second = await asyncio.wait_for(fs.recv(), 10)
            return [first, second]
        finally:
            server.close()
            await server.wait_closed(5)

    assert asyncio.run(main()) == ["hello", b"bytes"]


async def other_client(page: str, url: str) -> None:
    blocks = python_blocks(DOCS / "migrate" / page)
    if page == "aiohttp.md":
        pytest.importorskip("aiohttp")
        code = next(b for b in blocks if "ClientSession" in b)
        await _run_usage(code, {}, url)
    else:
        pytest.importorskip("picows")
        code = next(b for b in blocks if "ws_connect" in b)
        ns: dict[str, Any] = {}
        run_block(code, ns, drop_from="transport, client =")
        await _run_usage(code[code.index("transport, client ="):], ns, url)
