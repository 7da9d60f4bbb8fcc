"""The migration example (issue 14): a chat with rooms written for the
websockets library (examples/chat_rooms_websockets.py) and its fastsock
rewrite (examples/chat_rooms_fastsock.py).

Each runs as its own process; clients (the websockets library's) in two
rooms check that a room's members get its messages and nobody else does.
docs/migrate/websockets.md shows the diff of the two files: it must be the
one difflib makes of them now.
"""
from __future__ import annotations

import asyncio
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from conformance.launch import ServerProcess

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = "examples/chat_rooms_websockets.py"
REWRITE = "examples/chat_rooms_fastsock.py"
DOC = ROOT / "docs" / "migrate" / "websockets.md"
RECV_TIMEOUT = 10.0    # seconds for one expected message
SILENCE = 0.3          # seconds in which a client must get nothing


async def _join(url: str, room: str) -> Any:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"join": room}))
    # the first message after the join comes back to its sender: it is in
    await ws.send("joined")
    reply = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    assert reply["room"] == room and reply["text"] == "joined"
    return ws


async def _next(ws: Any) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
        if message["text"] != "joined":          # the others' join confirmations
            return message


async def _conversation(url: str) -> None:
    alice = await _join(url, "red")
    bob = await _join(url, "red")
    carol = await _join(url, "blue")
    try:
        await alice.send("hello red")
        for member in (alice, bob):
            got = await _next(member)
            assert got["room"] == "red" and got["text"] == "hello red"
            host, port = alice.local_address[:2]
            assert got["from"] == f"{host}:{port}"
        await carol.send("hello blue")
        # carol's next message is her own: nothing from red reached her
        got = await _next(carol)
        assert got == {"room": "blue", "from": got["from"], "text": "hello blue"}
        for member in (alice, bob):      # and nothing from blue reaches red
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(member.recv(), SILENCE)
        # a member that left gets nothing more; the others still do
        await bob.close()
        await alice.send("bob left")
        assert (await _next(alice))["text"] == "bob left"
    finally:
        for ws in (alice, bob, carol):
            await ws.close()


@pytest.mark.parametrize("example", [ORIGINAL, REWRITE], ids=["websockets", "fastsock"])
def test_chat_rooms_end_to_end(example: str) -> None:
    server = ServerProcess([sys.executable, str(ROOT / example), "--port", "0"])
    try:
        asyncio.run(asyncio.wait_for(_conversation(server.url + "/"), 4 * RECV_TIMEOUT))
    finally:
        server.stop()
        log = server.stderr_text()
        server.stderr.close()
    assert "Traceback" not in log, log[-3000:]


def _doc_diff() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- chat-rooms-diff -->\n```diff\n(.*?)```\n", text, re.S)
    assert match, "docs/migrate/websockets.md has no chat-rooms diff block"
    return match.group(1)


def test_the_doc_shows_the_diff_of_the_two_files() -> None:
    original = (ROOT / ORIGINAL).read_text().splitlines(keepends=True)
    rewrite = (ROOT / REWRITE).read_text().splitlines(keepends=True)
    expected = "".join(difflib.unified_diff(original, rewrite, ORIGINAL, REWRITE))
    assert expected, "the two files are the same"
    assert _doc_diff() == expected
