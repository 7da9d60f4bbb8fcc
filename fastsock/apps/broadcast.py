"""``python -m fastsock serve broadcast``: every message to every client.

Each message received from any client is sent, unchanged and with its type,
to every connected client including the sender, through the hub
(:mod:`fastsock.pubsub`): every connection subscribes to one topic. The
frame is encoded once and the same bytes are queued on every connection;
each connection writes everything queued in one loop turn with one send. A
client that does not read is handled by ``--slow-peer`` (pause, drop or
disconnect). With ``--pubsub redis://HOST:PORT`` the clients of every
process using that Redis get every message (one Redis message per process).
"""
from __future__ import annotations

import argparse
from typing import Union

from fastsock.apps._pubsub import add_pubsub_arguments, hub_from, start_hub
from fastsock.apps.ws_echo import add_ws_arguments, serve_ws
from fastsock.pubsub import Hub
from fastsock.websocket import WebSocketHandler

__all__ = ["DESCRIPTION", "DEFAULT_PORT", "TOPIC", "BroadcastHandler", "add_arguments", "run"]

DESCRIPTION = "WebSocket broadcast server: each message goes to every connected client"
DEFAULT_PORT = 8766
TOPIC = "broadcast"


class BroadcastHandler(WebSocketHandler):
    __slots__ = ("hub",)

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def on_open(self) -> None:
        self.hub.subscribe(self, TOPIC)

    def on_message(self, data: Union[str, bytes]) -> None:
        self.hub.publish(TOPIC, data)

    def on_close(self, code: int, reason: str) -> None:
        self.hub.unsubscribe(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Default to "drop" so one stalled client cannot stop the others' reads.
    add_ws_arguments(parser, DEFAULT_PORT)
    add_pubsub_arguments(parser)
    parser.set_defaults(slow_peer="drop")


def run(args: argparse.Namespace) -> int:
    hub = hub_from(args)
    return serve_ws(getattr(args, "app", "broadcast"), lambda: BroadcastHandler(hub), args,
                    on_start=lambda server: start_hub(hub, server), on_shutdown=hub.aclose,
                    hub=hub)
