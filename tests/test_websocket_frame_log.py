"""DEBUG lines for every frame in and out, on a real server with the
``websockets`` client: decided per connection when it opens, and a
connection that does not log keeps the compiled fast lanes."""
from __future__ import annotations

import logging
import re
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from fastsock.websocket import WebSocketHandler, WebSocketOptions
from fastsock.websocket.protocol import describe_frame
from test_websocket_helpers import LOOPS, ServerThread, wait_for

LOGGER = "fastsock.websocket"
QUIET = WebSocketOptions(ping_interval=None)


class Echo(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def frame_lines() -> Iterator[Lines]:
    logger = logging.getLogger(LOGGER)
    handler = Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_every_frame_is_logged_both_ways(loop_kind: str, frame_lines: Lines) -> None:
    with ServerThread(Echo, loop=loop_kind, options=QUIET) as srv:
        with connect(srv.url, compression=None) as ws:
            ws.send(["frag", "mented"])
            assert ws.recv() == "fragmented"
            ws.send(b"\x00\xff")
            assert ws.recv() == b"\x00\xff"
            assert ws.ping(b"hi").wait(5)
            handler = next(iter(srv.state.handlers))
            assert not handler._rx_fast and not handler._fast
            srv.call(srv.state.broadcast, "to all")
            assert ws.recv() == "to all"
        assert wait_for(lambda: not srv.state.handlers)
    text = [re.sub(r"^\S+ ", "", line) for line in frame_lines.lines]
    for expected in [
        "< TEXT 'frag' [4 bytes, continued]",
        "< CONT 6d 65 6e 74 65 64 [6 bytes, continued]",
        "< CONT [0 bytes]",                  # websockets ends a list with an empty frame
        "> TEXT 'fragmented' [10 bytes]",
        "< BINARY 00 ff [2 bytes]",
        "> BINARY 00 ff [2 bytes]",
        "< PING 68 69 [2 bytes]",
        "> PONG 68 69 [2 bytes]",
        "> TEXT 'to all' [6 bytes]",
        "< CLOSE 1000 '' [2 bytes]",
        "> CLOSE 1000 '' [2 bytes]",
    ]:
        assert expected in text, (expected, text)
    peer = frame_lines.lines[0].split(" ", 1)[0]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", peer)


def test_compressed_frames_show_rsv1(frame_lines: Lines) -> None:
    with ServerThread(Echo, options=QUIET) as srv:
        with connect(srv.url) as ws:                  # permessage-deflate offered
            ws.send("x" * 200)
            assert ws.recv() == "x" * 200
    # Shown decompressed, as websockets logs them, with the frame's RSV bits.
    shown = "TEXT '" + "x" * 60 + "'… [200 bytes, rsv=100]"
    assert [line.split(" ", 1)[1] for line in frame_lines.lines
            if " TEXT " in line] == ["< " + shown, "> " + shown]


def test_without_debug_nothing_is_logged_and_the_fast_lanes_stay(frame_lines: Lines) -> None:
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    with ServerThread(Echo, options=QUIET) as srv:
        with connect(srv.url, compression=None) as ws:
            ws.send("plain")
            assert ws.recv() == "plain"
            handler = next(iter(srv.state.handlers))
            assert handler._rx_fast and handler._fast
    assert not [line for line in frame_lines.lines if " < " in line or " > " in line]


def test_describe_frame_cuts_long_payloads() -> None:
    assert describe_frame(1, "é".encode() * 100) == "TEXT '" + "é" * 60 + "'… [200 bytes]"
    assert describe_frame(2, bytes(100), fin=False).endswith("… [100 bytes, continued]")
    assert describe_frame(8, (1001).to_bytes(2, "big") + b"going") == "CLOSE 1001 'going' [7 bytes]"
    assert describe_frame(9, b"") == "PING [0 bytes]"


def test_a_server_logger_gets_the_frame_lines() -> None:
    logger = logging.getLogger("test.frames.callback")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with ServerThread(Echo, options=QUIET, logger="test.frames.callback") as srv:
            with connect(srv.url, compression=None) as ws:
                ws.send("mine")
                assert ws.recv() == "mine"
    finally:
        logger.removeHandler(handler)
    assert any(line.endswith("< TEXT 'mine' [4 bytes]") for line in handler.lines)
    assert any(line.endswith("> TEXT 'mine' [4 bytes]") for line in handler.lines)
