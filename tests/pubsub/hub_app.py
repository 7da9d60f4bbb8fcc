"""A WebSocket server driven by text commands, for the hub tests.

``python tests/pubsub/hub_app.py [URL] [--max-queue N]`` serves on a free port
of 127.0.0.1 with ``create_hub(URL)`` and prints ``ready PORT``. Commands
(one text message each; the replies go to the sender only):

    sub T | unsub T | unsub-all      subscribe / unsubscribe this connection
    pub T MESSAGE                    hub.publish(T, MESSAGE); reply "published N"
    pubbin T MESSAGE                 the same as a binary message
    id                               reply "id ID"
    to ID MESSAGE                    hub.send_to(ID, MESSAGE); reply "sent True|False"
    presence T                       reply "presence T N"
    stats                            reply "stats {json}" (hub.snapshot())
    listen T                         hub.listen(T) iterated by a task: each message M
                                     is sent to this connection as "heard T M"
    listen-cb T                      the same with hub.listen(T, callback)
    unlisten T                       close this connection's listener of T
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Union

from fastsock.pubsub import Hub, Listener, create_hub
from fastsock.websocket import WebSocketHandler, WebSocketOptions


class Commands(WebSocketHandler):
    __slots__ = ("hub", "listeners")

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.listeners: dict[str, Listener] = {}

    def on_message(self, data: Union[str, bytes]) -> None:
        assert isinstance(data, str)
        word, _, rest = data.partition(" ")
        hub = self.hub
        if word == "sub":
            hub.subscribe(self, rest)
            self.send(f"subscribed {rest}")
        elif word == "unsub":
            hub.unsubscribe(self, rest)
            self.send(f"unsubscribed {rest}")
        elif word == "unsub-all":
            hub.unsubscribe(self)
            self.send("unsubscribed all")
        elif word in ("pub", "pubbin"):
            topic, _, message = rest.partition(" ")
            n = hub.publish(topic, message if word == "pub" else message.encode())
            self.send(f"published {n}")
        elif word == "id":
            self.send(f"id {hub.connection_id(self)}")
        elif word == "to":
            target, _, message = rest.partition(" ")
            self.send(f"sent {hub.send_to(target, message)}")
        elif word == "presence":
            asyncio.ensure_future(self._presence(rest), loop=hub.loop)
        elif word == "listen":
            listener = self.listeners[rest] = hub.listen(rest)
            asyncio.ensure_future(self._heard(listener), loop=hub.loop)
            self.send(f"listening {rest}")
        elif word == "listen-cb":
            self.listeners[rest] = hub.listen(rest, lambda m: self._tell(rest, m))
            self.send(f"listening {rest}")
        elif word == "unlisten":
            self.listeners.pop(rest).close()
            self.send(f"unlistened {rest}")
        elif word == "stats":
            self.send("stats " + json.dumps(hub.snapshot()))
        else:
            self.close(1003, f"unknown command {word!r}")

    async def _presence(self, topic: str) -> None:
        n = await self.hub.presence(topic)
        self.send(f"presence {topic} {n}")

    async def _heard(self, listener: Listener) -> None:
        async for message in listener:
            self._tell(listener.topic, message)

    def _tell(self, topic: str, message: Union[str, bytes]) -> None:
        if isinstance(message, bytes):
            self.send(f"heard {topic} bytes {message.hex()}")
        else:
            self.send(f"heard {topic} {message}")

    def on_close(self, code: int, reason: str) -> None:
        self.hub.unsubscribe(self)
        for listener in self.listeners.values():
            listener.close()


def main(argv: list[str]) -> int:
    import argparse
    import logging

    from fastsock.server import run

    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?")
    parser.add_argument("--max-queue", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: dict[str, Any] = {}
    if args.max_queue is not None:
        options["max_queue"] = args.max_queue
    hub = create_hub(args.url, **options)

    def on_ready(server: Any) -> None:
        hub.start(server.state.loop)
        server.state.loop.add_shutdown_hook(lambda deadline: hub.close())
        print(f"ready {server.port}", flush=True)

    return run(lambda: Commands(hub), "127.0.0.1", 0, on_ready=on_ready, shutdown_timeout=2.0,
               options=WebSocketOptions(ping_interval=None))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
