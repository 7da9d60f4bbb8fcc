"""Testing a WebSocket handler without sockets or sleeps, with fastsock.testing.

    python examples/testing_handler.py          # runs the checks, prints "ok"
    python -m pytest examples/testing_handler.py

The handler under test is a small auction room: bids must be numbers above
the current price, every accepted bid is broadcast to the room, and an idle
bidder is told the auction closes after 30 seconds without a bid. The tests
drive it through fastsock's real handshake in memory (``websocket_pair``)
and move time by hand (``advance``), so the 30-second timer fires instantly.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from fastsock.testing import websocket_pair
from fastsock.websocket import WebSocketHandler, WebSocketOptions


# ---------------------------------------------------------------- the application


class Auction:
    """State shared by the connections of one room."""

    IDLE_CLOSE = 30.0     # seconds without a bid before the auction closes

    def __init__(self) -> None:
        self.bidders: set[Bidder] = set()
        self.price = 0
        self.timer: Any = None

    def bid(self, who: "Bidder", amount: int) -> None:
        self.price = amount
        for b in self.bidders:
            b.send(f"price {amount} by {who.name}")
        self.restart_timer(who)

    def restart_timer(self, conn: "Bidder") -> None:
        if self.timer is not None:
            self.timer.cancel()
        # server.loop is the reactor (or asyncio loop) the server runs on; in
        # tests, the FakeClock.
        self.timer = conn.server.loop.call_later(self.IDLE_CLOSE, self.close)

    def close(self) -> None:
        self.timer = None
        for b in list(self.bidders):
            b.send(f"sold for {self.price}")
            b.close(1000, "auction closed")


class Bidder(WebSocketHandler):
    def __init__(self, auction: Auction) -> None:
        super().__init__()
        self.auction = auction
        self.name = ""

    def on_open(self) -> None:
        self.name = self.request.headers.get("X-Name", "anonymous")
        self.auction.bidders.add(self)
        self.send(f"price {self.auction.price}")
        if self.auction.timer is None:
            self.auction.restart_timer(self)

    def on_message(self, data: Union[str, bytes]) -> None:
        if not isinstance(data, str):
            self.close(1003, "bids are text")
            return
        try:
            amount = int(data)
        except ValueError:
            self.send(f"error: not a number: {data[:40]!r}")
            return
        if amount <= self.auction.price:
            self.send(f"error: bid above {self.auction.price}")
            return
        self.auction.bid(self, amount)

    def on_close(self, code: int, reason: str) -> None:
        self.auction.bidders.discard(self)


# ---------------------------------------------------------------- a test client


class Recorder(WebSocketHandler):
    """The client side in tests: keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Union[str, bytes]] = []
        self.closed_with: Optional[tuple[int, str]] = None

    def on_message(self, data: Union[str, bytes]) -> None:
        self.received.append(data)

    def on_close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


OPTIONS = WebSocketOptions(ping_interval=None)     # no keep-alive pings in these tests


def join(auction: Auction, name: str, clock: Any = None) -> Any:
    return websocket_pair(lambda: Bidder(auction), Recorder, path="/auction",
                          headers=[("X-Name", name)], options=OPTIONS, clock=clock)


# ---------------------------------------------------------------- the tests


def test_bids_are_checked_and_broadcast() -> None:
    auction = Auction()
    alice = join(auction, "alice")
    bob = join(auction, "bob", clock=alice.clock)     # one clock: one loop, two connections
    alice.client.send("10")
    bob.client.send("5")
    bob.client.send("ten")
    alice.run()
    assert alice.client.received == ["price 0", "price 10 by alice"]
    assert bob.client.received == ["price 0", "price 10 by alice", "error: bid above 10",
                                   "error: not a number: 'ten'"]


def test_binary_bids_are_refused_with_1003() -> None:
    pair = join(Auction(), "carol")
    pair.client.send(b"\x00\x10")
    pair.run()
    assert pair.client.closed_with == (1003, "bids are text")
    assert pair.closed


def test_auction_closes_after_30_idle_seconds() -> None:
    auction = Auction()
    pair = join(auction, "dave")
    pair.advance(20)
    pair.client.send("7")                 # a bid restarts the 30 s timer
    pair.advance(29.9)
    assert pair.client.closed_with is None
    pair.advance(0.1)
    assert pair.client.received[-1] == "sold for 7"
    assert pair.client.closed_with == (1000, "auction closed")
    assert auction.bidders == set()


if __name__ == "__main__":
    test_bids_are_checked_and_broadcast()
    test_binary_bids_are_refused_with_1003()
    test_auction_closes_after_30_idle_seconds()
    print("ok")
