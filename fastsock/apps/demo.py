"""``python -m fastsock serve demo`` (what ``make run`` runs).

One port, three things: a WebSocket echo on any path, the chat room on
``/chat`` and its page on ``GET /`` for a browser. The limits report (how
many connections this machine allows) is logged at start.
"""
from __future__ import annotations

import argparse

from fastsock.apps._pubsub import add_pubsub_arguments, hub_from, start_hub
from fastsock.apps.chat import Chat, ChatHandler, page_handler
from fastsock.apps.ws_echo import EchoHandler, add_ws_arguments, serve_ws

__all__ = ["DESCRIPTION", "DEFAULT_PORT", "add_arguments", "run"]

DESCRIPTION = "demo: WebSocket echo on any path, chat on /chat, chat page on http://HOST:PORT/"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_ws_arguments(parser, DEFAULT_PORT, max_message_size=1 << 20, ping_interval=20.0)
    add_pubsub_arguments(parser)


def run(args: argparse.Namespace) -> int:
    chat = Chat(hub_from(args))
    routes = {"/chat": lambda: ChatHandler(chat), "*": EchoHandler}
    return serve_ws(getattr(args, "app", "demo"), routes, args, http_handler=page_handler,
                    on_start=lambda server: start_hub(chat.hub, server),
                    on_shutdown=chat.hub.aclose, hub=chat.hub)
