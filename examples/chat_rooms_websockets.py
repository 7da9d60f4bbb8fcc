"""A chat with rooms, written for the websockets library
(examples/chat_rooms_websockets.py) and moved to fastsock
(examples/chat_rooms_fastsock.py); docs/migrate/websockets.md shows the diff.

    python examples/chat_rooms_websockets.py [--port 8765]

A client joins a room by its first message, {"join": "<room>"}. Every text
it sends after that goes to the members of that room, and only to them, as
{"room": ..., "from": ..., "text": ...}.
"""
import argparse
import asyncio
import json

from websockets.asyncio.server import ServerConnection, broadcast, serve

# room name -> the connections in it
ROOMS: dict[str, set[ServerConnection]] = {}


async def chat(ws: ServerConnection) -> None:
    room = json.loads(await ws.recv())["join"]
    members = ROOMS.setdefault(room, set())
    members.add(ws)
    name = f"{ws.remote_address[0]}:{ws.remote_address[1]}"
    try:
        async for text in ws:
            broadcast(members, json.dumps({"room": room, "from": name, "text": text}))
    finally:
        members.discard(ws)
        if not members:
            del ROOMS[room]


async def main(port: int) -> None:
    async with serve(chat, "127.0.0.1", port) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"chat listening on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a chat with rooms")
    parser.add_argument("--port", type=int, default=8765)
    asyncio.run(main(parser.parse_args().port))
