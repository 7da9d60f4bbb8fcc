"""``python -m fastsock serve chat``: a tiny chat room with a browser page.

``GET /`` serves a one-file HTML page; the page opens ``ws://<host>/chat``.
Every text line a member sends goes to every member as ``name: text``;
joins and leaves are announced. Binary messages are refused with 1003.
"""
from __future__ import annotations

import argparse
import itertools
from typing import Optional, Union

from fastsock.apps.ws_echo import add_ws_arguments, serve_ws
from fastsock.websocket import Request, Response, WebSocketHandler, broadcast

__all__ = ["DESCRIPTION", "DEFAULT_PORT", "CHAT_PAGE", "ChatRoom", "ChatHandler",
           "page_handler", "add_arguments", "run"]

DESCRIPTION = "WebSocket chat room; open http://HOST:PORT/ in a browser"
DEFAULT_PORT = 8767
MAX_LINE = 2000

CHAT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastsock chat</title>
<style>body{font:15px sans-serif;max-width:40em;margin:2em auto}#log{height:22em;overflow:auto;
border:1px solid #ccc;padding:.5em;white-space:pre-wrap}#msg{width:80%}</style></head>
<body><h1>fastsock chat</h1><div id="log"></div>
<form id="f"><input id="msg" autocomplete="off" autofocus><button>Send</button></form>
<script>
const log = document.getElementById("log"), msg = document.getElementById("msg");
const add = (t) => { log.textContent += t + "\\n"; log.scrollTop = log.scrollHeight; };
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/chat");
ws.onopen = () => add("* connected");
ws.onmessage = (e) => add(e.data);
ws.onclose = (e) => add("* disconnected (" + e.code + ")");
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault(); if (msg.value) { ws.send(msg.value); msg.value = ""; } };
</script></body></html>
"""


class ChatRoom:
    """The members of one room."""

    def __init__(self) -> None:
        self.members: set[ChatHandler] = set()
        self._ids = itertools.count(1)

    def next_name(self) -> str:
        return f"guest-{next(self._ids)}"

    def say(self, text: str) -> int:
        return broadcast(self.members, text)


class ChatHandler(WebSocketHandler):
    __slots__ = ("room", "name")

    def __init__(self, room: ChatRoom) -> None:
        super().__init__()
        self.room = room
        self.name = room.next_name()

    def on_open(self) -> None:
        self.room.members.add(self)
        self.room.say(f"* {self.name} joined ({len(self.room.members)} here)")

    def on_message(self, data: Union[str, bytes]) -> None:
        if not isinstance(data, str):
            self.close(1003, "text only")
            return
        self.room.say(f"{self.name}: {data[:MAX_LINE]}")

    def on_close(self, code: int, reason: str) -> None:
        if self in self.room.members:
            self.room.members.discard(self)
            self.room.say(f"* {self.name} left")


def page_handler(request: Request) -> Optional[Response]:
    """Plain HTTP: the chat page on ``GET /``, 404 elsewhere."""
    if request.method in ("GET", "HEAD") and request.path in ("/", "/index.html"):
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], CHAT_PAGE)
    return Response(404, [], "404 Not Found\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ws_arguments(parser, DEFAULT_PORT, max_message_size=64 << 10, ping_interval=20.0)


def run(args: argparse.Namespace) -> int:
    room = ChatRoom()
    return serve_ws(getattr(args, "app", "chat"), {"/chat": lambda: ChatHandler(room)}, args,
                    http_handler=page_handler)
