"""A WebSocket echo server on fastsock's reactor.

    python examples/ws_echo_server.py [PORT]

Then, e.g.: python -m websockets ws://127.0.0.1:8765/
Stop with Ctrl-C: every client gets a 1001 close first.
"""
import sys

import fastsock
from fastsock.server import run


class Echo(fastsock.WebSocketHandler):
    def on_open(self) -> None:
        print("open", self.remote_address, self.path)

    def on_message(self, data: "str | bytes") -> None:
        self.send(data)                      # str goes back as text, bytes as binary

    def on_close(self, code: int, reason: str) -> None:
        print("closed", self.remote_address, code, reason)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    # The library default is 1 MiB per message; raise it like this:
    options = fastsock.WebSocketOptions(max_message_size=16 << 20, ping_interval=20)
    run(Echo, "127.0.0.1", port, options=options,
        on_ready=lambda server: print(f"listening on ws://127.0.0.1:{server.port}"))
