"""``python -m fastsock serve broadcast``: every message to every client.

Each message received from any client is sent, unchanged and with its type,
to every connected client including the sender. The frame is encoded once
and the same bytes are queued on every connection; each connection writes
everything queued in one loop turn with one send. A client that does not
read is handled by ``--slow-peer`` (pause, drop or disconnect).
"""
from __future__ import annotations

import argparse
from typing import Union

from fastsock.apps.ws_echo import add_ws_arguments, serve_ws
from fastsock.websocket import WebSocketHandler

__all__ = ["DESCRIPTION", "DEFAULT_PORT", "BroadcastHandler", "add_arguments", "run"]

DESCRIPTION = "WebSocket broadcast server: each message goes to every connected client"
DEFAULT_PORT = 8766


class BroadcastHandler(WebSocketHandler):
    __slots__ = ()

    def on_message(self, data: Union[str, bytes]) -> None:
        self.server.broadcast(data)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Default to "drop" so one stalled client cannot stop the others' reads.
    add_ws_arguments(parser, DEFAULT_PORT)
    parser.set_defaults(slow_peer="drop")


def run(args: argparse.Namespace) -> int:
    return serve_ws(getattr(args, "app", "broadcast"), BroadcastHandler, args)
