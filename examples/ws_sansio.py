"""A WebSocket handler driven sans-I/O: bytes in, events and bytes out, timers
on a clock you move. No socket, no loop, no sleep.

    python examples/ws_sansio.py          # runs the scenario, prints each step

The connection's seam (fastsock.websocket.seam.SansIOSeam) records what the
core asks of I/O: the bytes it writes, the half-close of its lingering
close, an abort, the timers it wants. Here a chat-like handler answers a
message, sends keep-alive pings, notices a silent peer and fails the
connection with 1011, then gives up on the peer's FIN after close_timeout.
"""
from __future__ import annotations

from typing import Any

from fastsock.frame import FrameParser, build_frame
from fastsock.websocket import WebSocketHandler, WebSocketOptions
from fastsock.websocket.seam import SansIOSeam

OPTIONS = WebSocketOptions(ping_interval=10.0, ping_timeout=5.0, close_timeout=2.0)


class Shout(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data.upper() if isinstance(data, str) else data)

    def on_close(self, code: int, reason: str) -> None:
        print(f"on_close({code}, {reason!r})")


def frames_out(seam: SansIOSeam) -> list[str]:
    """What the server wrote since the last call, one entry per frame."""
    parser = FrameParser(require_mask=False, validate_utf8=False)
    return [f"opcode={f.opcode} payload={f.payload!r}" for f in parser.feed(seam.data_to_send())]


def main() -> None:
    seam = SansIOSeam()
    ws = Shout()
    ws.attach(None, None, seam=seam, options=OPTIONS)
    print("timers wanted:", seam.timers)

    ws.receive_data(build_frame(1, b"hello", mask=True))     # a client frame is masked
    print("after a message:", frames_out(seam))

    seam.advance(10.0)
    print("after 10 s:", frames_out(seam))                   # the keep-alive ping

    seam.advance(5.0)                                        # no pong within ping_timeout
    print("after 15 s:", frames_out(seam), "half-closed:", seam.eof_sent, ws.state.name)

    seam.advance(2.0)                                        # no FIN within close_timeout
    print("after 17 s: aborted:", seam.aborted, ws.state.name)


if __name__ == "__main__":
    main()
