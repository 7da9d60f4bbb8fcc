"""A WebSocket echo with the coroutine API, then a client that talks to it.

    python examples/ws_coroutine_echo.py [fastsock|asyncio|uvloop]

The same code runs on fastsock's loop (the default), asyncio's or uvloop's.
"""
import asyncio
import sys

import fastsock


async def echo(ws: fastsock.Connection) -> None:
    # One coroutine per connection; the loop ends when the client closes (1000/1001).
    async for message in ws:
        await ws.send(message)               # str stays text, bytes stay binary


async def main() -> None:
    async with fastsock.serve(echo, "127.0.0.1", 0) as server:
        async with fastsock.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("hello")
            print("text:", await ws.recv())
            await ws.send(b"\x00\x01")
            print("binary:", await ws.recv())
            await ws.send(["frag", "mented"])    # one message in two frames
            print("fragments:", await ws.recv())
            await ws.send_json({"n": 1})
            print("json:", await ws.recv_json())
            print(f"ping: {await ws.ping() * 1e6:.0f} µs")
        print("closed with", ws.close_code)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "fastsock"
    if kind == "fastsock":
        fastsock.run(main())
    elif kind == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
