"""Broadcast with timers and back-pressure: a price ticker.

    python examples/ws_ticker.py [PORT]

Every 100 ms one frame is encoded once and written to every subscriber.
A subscriber that stops reading passes its write limit and is skipped
(slow_peer="drop"); the number of dropped ticks is reported when it leaves.
"""
import json
import random
import sys

import fastsock
from fastsock.reactor import Reactor

subscribers: "set[Subscriber]" = set()


class Subscriber(fastsock.WebSocketHandler):
    def on_open(self) -> None:
        subscribers.add(self)

    def on_close(self, code: int, reason: str) -> None:
        subscribers.discard(self)
        print(f"subscriber left ({code}); {self.messages_dropped} ticks dropped while it lagged")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8770
    reactor = Reactor()
    options = fastsock.WebSocketOptions(write_limit=64 << 10, slow_peer="drop")
    server = fastsock.serve(Subscriber, "127.0.0.1", port, reactor=reactor, options=options)
    price = 100.0

    def tick() -> None:
        nonlocal price
        price *= 1 + random.uniform(-0.001, 0.001)
        fastsock.broadcast(subscribers, json.dumps({"price": round(price, 4)}))
        reactor.call_later(0.1, tick)

    tick()
    reactor.install_shutdown_signals()
    print(f"ticker on ws://127.0.0.1:{server.port}/")
    reactor.run_forever()
    reactor.close()


if __name__ == "__main__":
    main()
