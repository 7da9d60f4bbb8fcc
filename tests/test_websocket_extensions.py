"""The extension negotiation hook, end to end (server and client), on asyncio."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest

from fastsock.adapters import aio
from fastsock.client import ClientHandshakeProtocol
from fastsock.exceptions import InvalidResponseError
from fastsock.websocket import Extension, WebSocketHandler, parse_uri


class Reverse(Extension):
    """Toy extension: payloads travel reversed, marked with RSV1."""

    name = "x-reverse"
    rsv = 0x40

    def __init__(self) -> None:
        self.params: list[Any] = []

    def decode(self, rsv: int, opcode: int, payload: bytes,
               max_size: Optional[int] = None) -> bytes:
        return payload[::-1] if rsv & 0x40 else payload

    def encode(self, opcode: int, payload: bytes) -> tuple[int, bytes]:
        return 0x40, payload[::-1]


class ServerReverse:
    name = "x-reverse"

    def accept(self, params: list[tuple[str, Optional[str]]]) -> Optional[tuple[str, Extension]]:
        if ("refuse", None) in params:
            return None
        return "x-reverse; ok", Reverse()


class ClientReverse:
    name = "x-reverse"

    def __init__(self, offer: str = "x-reverse") -> None:
        self._offer = offer
        self.answer: Any = None

    def offer(self) -> str:
        return self._offer

    def accept(self, params: list[tuple[str, Optional[str]]]) -> Optional[Extension]:
        self.answer = params
        return Reverse()


class Echo(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data)


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.raw = bytearray()

    def on_message(self, data: Any) -> None:
        self.inbox.put_nowait(data)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        super().data_received(data)


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


def test_negotiated_extension_transforms_both_ways() -> None:
    async def main() -> None:
        server = await aio.serve(Echo, "127.0.0.1", 0, extensions=[ServerReverse()])
        factory = ClientReverse()
        ws = await aio.connect(f"ws://127.0.0.1:{server.port}/", Client, extensions=[factory])
        assert factory.answer == [("ok", None)]
        ws.send("hello")
        assert await ws.inbox.get() == "hello"
        assert ws.raw == b"\xc1\x05olleh"        # FIN|RSV1|text, reversed on the wire
        server.close()
        await server.wait_closed(5)

    run(main())


def test_refused_or_unknown_extension_is_left_out() -> None:
    async def main() -> None:
        server = await aio.serve(Echo, "127.0.0.1", 0, extensions=[ServerReverse()])
        factory = ClientReverse("x-reverse; refuse")
        ws = await aio.connect(f"ws://127.0.0.1:{server.port}/", Client, extensions=[factory])
        assert factory.answer is None
        ws.send("plain")
        assert await ws.inbox.get() == "plain"
        assert ws.raw == b"\x81\x05plain"
        server.close()
        await server.wait_closed(5)

    run(main())


def test_client_rejects_an_extension_it_did_not_offer() -> None:
    loop = asyncio.new_event_loop()
    try:
        proto = ClientHandshakeProtocol(parse_uri("ws://h/"), Client, loop, loop.create_future(),
                                        timeout=0)
        with pytest.raises(InvalidResponseError):
            proto._accept_extensions("permessage-deflate")
        assert proto._accept_extensions(None) == []
    finally:
        loop.close()
