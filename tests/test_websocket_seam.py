"""The connection core driven through its outputs alone: a SansIOSeam
records what the core asks of I/O (bytes, half-close, abort, reading
paused, timers), with no transport and no loop, fake or real."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest

from fastsock.frame import FrameParser, build_frame
from fastsock.websocket import State, WebSocketHandler, WebSocketOptions
from fastsock.websocket.seam import SansIOSeam

PINGS = WebSocketOptions(ping_interval=10.0, ping_timeout=5.0, close_timeout=3.0)
QUIET = WebSocketOptions(ping_interval=None, close_timeout=3.0)


class Recorder(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []

    def on_message(self, data: Any) -> None:
        self.events.append(("message", data))
        if data == "echo me":
            self.send(data)

    def on_pong(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def on_pause_writing(self) -> None:
        self.events.append(("paused",))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


def opened(options: WebSocketOptions = QUIET, *, client: bool = False) -> tuple[Recorder, SansIOSeam]:
    ws = Recorder()
    seam = SansIOSeam(now=100.0)
    ws.attach(None, None, options=options, seam=seam, client=client)
    return ws, seam


def frames(data: bytes, *, masked: bool = False) -> list[tuple[int, bytes]]:
    parser = FrameParser(require_mask=masked, validate_utf8=False)
    return [(f.opcode, f.payload) for f in parser.feed(data)]


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return build_frame(opcode, payload, fin=fin, mask=True)


def test_bytes_in_events_and_bytes_out() -> None:
    ws, seam = opened()
    assert seam.write_limits == (QUIET.write_limit, QUIET.write_low)
    ws.receive_data(client_frame(1, b"echo me") + client_frame(2, b"\x00\x01"))
    assert ws.events == [("message", "echo me"), ("message", b"\x00\x01")]
    assert frames(seam.data_to_send()) == [(1, b"echo me")]
    assert seam.data_to_send() == b""          # taken


def test_the_keepalive_timer_pings_and_fails_a_silent_peer() -> None:
    ws, seam = opened(PINGS)
    [timer] = seam.timers
    assert timer.when() == pytest.approx(110.0)
    seam.advance(10.0)                          # the ping goes out
    [(op, payload)] = frames(seam.data_to_send())
    assert op == 9 and len(payload) == 4
    seam.advance(2.0)
    ws.receive_data(client_frame(10, payload))  # answered after 2 s of the seam's clock
    assert ws.latency == pytest.approx(2.0)
    assert ("pong", payload) in ws.events
    seam.advance(10.0)                          # the next ping, never answered
    [(op, _)] = frames(seam.data_to_send())
    assert op == 9
    seam.advance(PINGS.ping_timeout)            # ping_timeout later: failed with 1011
    [(op, payload)] = frames(seam.data_to_send())
    assert (op, payload[:2]) == (8, (1011).to_bytes(2, "big"))
    assert seam.eof_sent and ws.state is State.CLOSING
    seam.advance(PINGS.close_timeout)           # the peer never closes: aborted
    assert seam.aborted and ws.state is State.CLOSED
    assert ws.events[-1] == ("close", 1011, "keepalive ping timeout")
    assert seam.timers == []


def test_server_close_handshake_lingers_then_waits_for_the_peer() -> None:
    ws, seam = opened()
    ws.receive_data(client_frame(8, (1000).to_bytes(2, "big") + b"done"))
    assert frames(seam.data_to_send()) == [(8, (1000).to_bytes(2, "big") + b"done")]
    assert seam.eof_sent and not seam.closed      # FIN after the close frame; still reading
    assert [t.callback.__name__ for t in seam.timers] == ["_close_timed_out"]
    ws.receive_eof()                              # the peer's FIN: the end
    assert seam.closed and ws.state is State.CLOSED
    assert ws.events[-1] == ("close", 1000, "done")
    assert seam.timers == []


def test_client_close_waits_for_the_server_to_end_tcp() -> None:
    ws, seam = opened(client=True)
    ws.close(1000, "bye")
    [(op, payload)] = frames(seam.data_to_send(), masked=True)
    assert (op, payload) == (8, (1000).to_bytes(2, "big") + b"bye")
    ws.receive_data(build_frame(8, (1000).to_bytes(2, "big")))
    assert not seam.eof_sent                      # RFC 6455 7.1.1: the server closes TCP first
    seam.advance(QUIET.close_timeout)
    assert seam.aborted and ws.events[-1] == ("close", 1000, "")


def test_a_protocol_error_fails_with_its_code_and_writes_nothing_after() -> None:
    ws, seam = opened()
    ws.receive_data(build_frame(1, b"unmasked"))  # a client must mask
    [(op, payload)] = frames(seam.data_to_send())
    assert op == 8 and payload[:2] == (1002).to_bytes(2, "big")
    assert seam.eof_sent and ws.state is State.CLOSING
    with pytest.raises(Exception):
        ws.send("too late")
    assert seam.data_to_send() == b""


def test_slow_peer_pause_stops_reading_until_drained() -> None:
    ws, seam = opened(WebSocketOptions(ping_interval=None, slow_peer="pause"))
    ws.pause_writing()                            # what a transport over write_limit calls
    assert seam.reading_paused and ws.writing_paused and ws.events[-1] == ("paused",)
    ws.resume_writing()
    assert not seam.reading_paused and not ws.writing_paused


def test_slow_peer_disconnect_aborts_on_the_next_turn() -> None:
    ws, seam = opened(WebSocketOptions(ping_interval=None, slow_peer="disconnect"))
    ws.pause_writing()
    assert not seam.aborted                       # not from inside the transport's write()
    seam.advance(0.0)
    assert seam.aborted and ws.state is State.CLOSED
    assert ws.events[-1] == ("close", 1006, "")


ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_handler_api_page_snippet_runs() -> None:
    text = (ROOT / "docs" / "handler-api.md").read_text()
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "SansIOSeam" in b]
    exec(compile(block, "handler-api.md", "exec"), {})


def test_the_sansio_example_runs_its_scenario() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "ws_sansio.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "after a message: [\"opcode=1 payload=b'HELLO'\"]" in lines
    assert any(line.startswith("after 10 s: ") and "opcode=9 " in line for line in lines)
    assert any("keepalive ping timeout" in line and "half-closed: True CLOSING" in line
               for line in lines)
    assert lines[-2:] == ["on_close(1011, 'keepalive ping timeout')",
                          "after 17 s: aborted: True CLOSED"]
