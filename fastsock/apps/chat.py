"""``python -m fastsock serve chat``: chat rooms with a browser page.

``GET /`` serves a one-file HTML page; the page opens ``ws://<host>/chat``
(the lobby), or ``/chat/ROOM`` when opened as ``/?room=ROOM``. Every text
line a member sends goes to every member of the room as ``name: text``;
joins (with how many are in the room) and leaves are announced. Binary
messages are refused with 1003. Each room is a hub topic: with ``--pubsub
redis://HOST:PORT`` a room spans every process using that Redis.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import re
from typing import Optional, Union

from fastsock.apps._pubsub import add_pubsub_arguments, hub_from, start_hub
from fastsock.apps.ws_echo import add_ws_arguments, serve_ws
from fastsock.frame import CloseCode
from fastsock.pubsub import Hub, MemoryHub
from fastsock.websocket import Request, Response, WebSocketHandler

__all__ = ["DESCRIPTION", "DEFAULT_PORT", "CHAT_PAGE", "Chat", "ChatHandler",
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
const room = new URLSearchParams(location.search).get("room");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
                         (room ? "/chat/" + encodeURIComponent(room) : "/chat"));
ws.onopen = () => add("* connected");
ws.onmessage = (e) => add(e.data);
ws.onclose = (e) => add("* disconnected (" + e.code + ")");
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault(); if (msg.value) { ws.send(msg.value); msg.value = ""; } };
</script></body></html>
"""


ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOBBY = "lobby"
TOPIC_PREFIX = "chat:"


class Chat:
    """The rooms of a chat server: each room is a hub topic (``chat:NAME``),
    so with a Redis hub a room spans every process using that Redis."""

    def __init__(self, hub: Optional[Hub] = None) -> None:
        self.hub = hub if hub is not None else MemoryHub()
        self._ids = itertools.count(1)
        # Names from several processes must not collide: tag them with the process's hub.
        self._tag = "" if isinstance(self.hub, MemoryHub) else f"-{self.hub.node_id[:4]}"

    def next_name(self) -> str:
        return f"guest-{next(self._ids)}{self._tag}"

    @staticmethod
    def room_of(path: Optional[str]) -> Optional[str]:
        """``/chat`` → the lobby, ``/chat/NAME`` → room NAME, anything else → None."""
        if path == "/chat":
            return LOBBY
        if path is not None and path.startswith("/chat/") and ROOM_NAME.fullmatch(path[6:]):
            return path[6:]
        return None

    def say(self, room: str, text: str) -> int:
        return self.hub.publish(TOPIC_PREFIX + room, text)

    def refuse_unknown_paths(self, request: Request) -> Optional[Response]:
        """``process_request`` hook: 404 before the upgrade for a path that is no room."""
        if self.room_of(request.path) is None:
            return Response(404, [], f"404 no chat room at {request.path}\n")
        return None


class ChatHandler(WebSocketHandler):
    __slots__ = ("chat", "name", "room")

    def __init__(self, chat: Chat) -> None:
        super().__init__()
        self.chat = chat
        self.name = chat.next_name()
        self.room: Optional[str] = None

    def on_open(self) -> None:
        room = self.chat.room_of(self.path)
        if room is None:               # a route that also reaches other paths
            self.close(CloseCode.POLICY_VIOLATION, "no such room")
            return
        self.room = room
        hub = self.chat.hub
        hub.subscribe(self, TOPIC_PREFIX + room)
        asyncio.ensure_future(self._announce_join(room), loop=hub.loop)

    async def _announce_join(self, room: str) -> None:
        here = await self.chat.hub.presence(TOPIC_PREFIX + room)
        self.chat.say(room, f"* {self.name} joined ({here} here)")

    def on_message(self, data: Union[str, bytes]) -> None:
        if not isinstance(data, str):
            self.close(CloseCode.UNSUPPORTED_DATA, "text only")
            return
        if self.room is not None:
            self.chat.say(self.room, f"{self.name}: {data[:MAX_LINE]}")

    def on_close(self, code: int, reason: str) -> None:
        if self.room is not None:
            self.chat.hub.unsubscribe(self)
            self.chat.say(self.room, f"* {self.name} left")
            self.room = None


def page_handler(request: Request) -> Optional[Response]:
    """Plain HTTP: the chat page on ``GET /``, 404 elsewhere."""
    if request.method in ("GET", "HEAD") and request.path in ("/", "/index.html"):
        return Response(200, [("Content-Type", "text/html; charset=utf-8")], CHAT_PAGE)
    return Response(404, [], "404 Not Found\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ws_arguments(parser, DEFAULT_PORT, max_message_size=64 << 10, ping_interval=20.0)
    add_pubsub_arguments(parser)


def run(args: argparse.Namespace) -> int:
    chat = Chat(hub_from(args))
    return serve_ws(getattr(args, "app", "chat"), lambda: ChatHandler(chat), args,
                    http_handler=page_handler, process_request=chat.refuse_unknown_paths,
                    on_start=lambda server: start_hub(chat.hub, server),
                    on_shutdown=chat.hub.aclose, hub=chat.hub)
