"""fastsock's WebSocket client on the reactor: connect, talk, close.

    python examples/ws_client.py ws://127.0.0.1:8765/

With no URL it starts its own echo server first, so it runs on its own.
"""
import sys

import fastsock
from fastsock.reactor import Reactor


class Client(fastsock.WebSocketHandler):
    def on_open(self) -> None:
        self.send("hello")
        self.send(b"\x00\x01\x02")
        self.ping(b"rtt")

    def on_message(self, data: "str | bytes") -> None:
        print("got", repr(data))

    def on_pong(self, payload: bytes) -> None:
        if self.latency is not None:             # set when the pong answers our ping
            print(f"round trip {self.latency * 1000:.2f} ms")
        self.close(1000, "done")

    def on_close(self, code: int, reason: str) -> None:
        print("closed", code, reason)


class Echo(fastsock.WebSocketHandler):
    def on_message(self, data: "str | bytes") -> None:
        self.send(data)


def main() -> None:
    reactor = Reactor()
    url = sys.argv[1] if len(sys.argv) > 1 else None
    if url is None:
        server = fastsock.serve(Echo, "127.0.0.1", 0, reactor=reactor)
        url = f"ws://127.0.0.1:{server.port}/"
    ws = reactor.run_until_complete(fastsock.connect(url, Client, reactor=reactor), timeout=10)
    reactor.run_until(lambda: not ws.open and ws.state == ws.state.CLOSED, timeout=10)
    reactor.close()


if __name__ == "__main__":
    main()
