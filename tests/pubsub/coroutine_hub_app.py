"""The hub from the coroutine API: ``python tests/pubsub/coroutine_hub_app.py [URL]``.

Each connection subscribes to ``room``; every message it sends is published
to ``room``. Prints ``ready PORT`` once listening on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import fastsock
from fastsock.pubsub import create_hub


def main(url: str | None) -> None:
    hub = create_hub(url)

    async def handler(ws: Any) -> None:
        hub.subscribe(ws, "room")
        try:
            async for message in ws:
                hub.publish("room", message)
        finally:
            hub.unsubscribe(ws)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        hub.start(loop)
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with fastsock.serve(handler, "127.0.0.1", 0) as server:
            print(f"ready {server.port}", flush=True)
            await stop
        await hub.aclose()

    fastsock.run(serve())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
