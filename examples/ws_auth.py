"""Authenticate during the handshake with an async hook, on the callback API.

    python examples/ws_auth.py                  # ws://127.0.0.1:8765/rooms/<room>
    python -m fastsock connect "ws://127.0.0.1:8765/rooms/lobby?token=s3cret-token"

- ``check`` is ``async``: it looks the token up (here: a dict after a short
  sleep, standing in for a database) and either answers 401 or attaches the
  user to ``request.state``; the handler reads ``self.request.state.user``.
- ``/rooms/{room}`` is a route with a parameter (``request.path_params``).
- ``ORIGINS`` admits programs (no ``Origin``) and pages served from any
  subdomain of app.example (a regular expression matched against the whole value).
- ``select_subprotocol`` picks ``chat.v2`` when offered, else ``chat.v1``.
"""
from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Any, Optional, Union

from fastsock.server import run
from fastsock.websocket import Response, WebSocketHandler
from fastsock.websocket.server_handshake import HandshakeRequest

TOKENS = {"s3cret-token": "alice", "other-token": "bob"}
ORIGINS = [None, re.compile(r"https://([a-z0-9-]+\.)?app\.example")]


async def check(request: HandshakeRequest) -> Optional[Response]:
    auth = request.headers.get("Authorization", "") or ""
    token = (auth[len("Bearer "):] if auth.startswith("Bearer ")
             else urllib.parse.parse_qs(request.query).get("token", [""])[0])
    await asyncio.sleep(0.01)                  # as if asking a database
    user = TOKENS.get(token)
    if user is None:
        return Response(401, [("WWW-Authenticate", "Bearer")], "missing or bad token\n")
    request.state.user = user
    return None


def select_subprotocol(request: HandshakeRequest, offered: list[str]) -> Optional[str]:
    for wanted in ("chat.v2", "chat.v1"):
        if wanted in offered:
            return wanted
    return None


class Room(WebSocketHandler):
    def on_open(self) -> None:
        request = self.request
        self.room = request.path_params["room"]
        self.user = request.state.user
        self.send(f"hello {self.user}, welcome to {self.room} ({self.subprotocol})")

    def on_message(self, data: Union[str, bytes]) -> None:
        self.send(f"{self.user}@{self.room}: {data!s}")


ROUTES = {"/rooms/{room}": Room}
POLICY: dict[str, Any] = dict(process_request=check, origins=ORIGINS,
                            select_subprotocol=select_subprotocol)

if __name__ == "__main__":
    run(ROUTES, "127.0.0.1", 8765,
        on_ready=lambda server: print(f"listening on ws://127.0.0.1:{server.port}/rooms/<room>"),
        **POLICY)
