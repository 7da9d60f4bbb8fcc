"""Chat rooms shared by several processes through Redis (fastsock.pubsub).

    redis-server --port 6379 &
    python examples/chat_across_processes.py 9001 redis://127.0.0.1:6379 &
    python examples/chat_across_processes.py 9002 redis://127.0.0.1:6379 &

Connect to ws://127.0.0.1:9001/ROOM and ws://127.0.0.1:9002/ROOM (any
WebSocket client, e.g. ``python -m websockets ws://127.0.0.1:9001/kitchen``):
a line sent on one reaches every member of ROOM on both. ``/who`` answers
how many are in the room across all processes; ``/to ID text`` sends to
one member anywhere (each member is told its ID on joining). Without a URL
the hub is in-process.
"""
import asyncio
import logging
import sys
from typing import Optional

import fastsock
from fastsock.pubsub import Hub, create_hub
from fastsock.server import run


class Member(fastsock.WebSocketHandler):
    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.room: Optional[str] = None

    def on_open(self) -> None:
        self.room = "room:" + ((self.path or "/").strip("/") or "lobby")
        self.hub.subscribe(self, self.room)
        self.send(f"you are {self.hub.connection_id(self)} in {self.room}")

    def on_message(self, data: "str | bytes") -> None:
        if not isinstance(data, str) or self.room is None:
            return
        if data == "/who":
            asyncio.ensure_future(self.who(), loop=self.hub.loop)
        elif data.startswith("/to "):
            _, target, text = (data.split(" ", 2) + [""])[:3]
            if not self.hub.send_to(target, f"(private) {text}"):
                self.send(f"no member {target}")
        else:
            self.hub.publish(self.room, data)        # one Redis message per process

    async def who(self) -> None:
        assert self.room is not None
        self.send(f"{await self.hub.presence(self.room)} in {self.room}")

    def on_close(self, code: int, reason: str) -> None:
        self.hub.unsubscribe(self)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    hub = create_hub(sys.argv[2] if len(sys.argv) > 2 else None)

    def on_ready(server: fastsock.WebSocketServer) -> None:
        hub.start(server.state.loop)                  # the hub runs on the server's loop
        print(f"listening on ws://127.0.0.1:{server.port}/ROOM", flush=True)

    # on_shutdown: once the connections are closed, close the hub's Redis
    # connections and take this process's presence out of Redis.
    sys.exit(run(lambda: Member(hub), "127.0.0.1", port, on_ready=on_ready,
                 on_shutdown=hub.aclose))
