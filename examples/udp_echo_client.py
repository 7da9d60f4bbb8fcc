"""Measure round trips and loss against a UDP echo server.

    python -m fastsock serve udp-echo --port 9000 &
    python examples/udp_echo_client.py --port 9000 --count 10000 --inflight 8

Each datagram carries a sequence number and its send time; the client keeps
``--inflight`` datagrams outstanding, times every echo, and declares a
datagram lost when no echo came back within ``--timeout``. UDP promises none
of this, so the client also counts what the application must cope with:
duplicates and reordering. ``--json`` prints one machine-readable line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import time
from typing import Any

from fastsock.reactor import Reactor
from fastsock.transports.base import DatagramProtocol
from fastsock.transports.udp import create_udp_endpoint

HEADER = struct.Struct("!Qd")  # sequence number, send time (monotonic seconds)


class EchoClient(DatagramProtocol):
    def __init__(self, reactor: Reactor, count: int, size: int, inflight: int,
                 timeout: float) -> None:
        self.reactor = reactor
        self.count = count
        self.filler = b"\0" * (size - HEADER.size)
        self.inflight = inflight
        self.timeout = timeout
        self.transport: Any = None
        self.next_seq = 0
        self.outstanding: dict[int, float] = {}   # seq -> send time
        self.answered: set[int] = set()
        self.rtts: list[float] = []
        self.lost = self.duplicates = self.reordered = self.errors = self.malformed = 0
        self.highest = -1
        self.started = self.finished = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.started = time.monotonic()
        self._fill()
        self._tick()

    def _fill(self) -> None:
        while len(self.outstanding) < self.inflight and self.next_seq < self.count:
            now = time.monotonic()
            self.outstanding[self.next_seq] = now
            self.transport.sendto(HEADER.pack(self.next_seq, now) + self.filler)
            self.next_seq += 1
        if self.next_seq >= self.count and not self.outstanding and not self.finished:
            self.finished = time.monotonic()
            self.transport.close()

    def _tick(self) -> None:
        if self.finished:
            return
        deadline = time.monotonic() - self.timeout
        for seq in [s for s, t in self.outstanding.items() if t < deadline]:
            del self.outstanding[seq]
            self.lost += 1
        self._fill()
        self.reactor.call_later(0.01, self._tick)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        if len(data) < HEADER.size:
            self.malformed += 1
            return
        seq, _ = HEADER.unpack_from(data)
        sent = self.outstanding.pop(seq, None)
        if sent is None:
            # an echo we already had (duplicate) or gave up on (late)
            self.duplicates += seq in self.answered
            return
        self.answered.add(seq)
        self.rtts.append(now - sent)
        if seq < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, seq)
        self._fill()

    def error_received(self, exc: Exception) -> None:
        self.errors += 1  # e.g. ConnectionRefusedError: nothing listens there

    def report(self) -> dict[str, Any]:
        rtts = sorted(self.rtts)
        elapsed = (self.finished or time.monotonic()) - self.started

        def q(p: float) -> float:
            return round(rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1e3, 3) if rtts else 0.0

        return {
            "sent": self.next_seq, "received": len(rtts), "lost": self.lost,
            "loss_pct": round(100 * self.lost / self.next_seq, 3) if self.next_seq else 0.0,
            "duplicates": self.duplicates, "reordered": self.reordered,
            "errors": self.errors, "malformed": self.malformed,
            "rtt_ms": {"min": q(0), "p50": q(0.5), "p99": q(0.99), "max": q(1.0),
                       "mean": round(statistics.fmean(rtts) * 1e3, 3) if rtts else 0.0},
            "elapsed_s": round(elapsed, 3),
            "round_trips_per_s": round(len(rtts) / elapsed, 1) if elapsed > 0 else 0.0,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--count", type=int, default=1000, help="datagrams to send (default: 1000)")
    p.add_argument("--size", type=int, default=64, help="datagram size in bytes, >= 16")
    p.add_argument("--inflight", type=int, default=1, help="datagrams outstanding at once")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds before a datagram is lost")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)
    if not HEADER.size <= args.size <= 65507:
        p.error(f"--size must be in {HEADER.size}..65507")
    if args.count < 1 or args.inflight < 1 or args.timeout <= 0:
        p.error("--count and --inflight must be >= 1, --timeout > 0")

    reactor = Reactor()
    try:
        transport, client = create_udp_endpoint(
            reactor, lambda: EchoClient(reactor, args.count, args.size, args.inflight, args.timeout),
            remote_addr=(args.host, args.port))
        # bound: every datagram is answered or declared lost within --timeout
        reactor.run_until(lambda: bool(client.finished),
                          timeout=args.timeout * (args.count / args.inflight + 2) + 5)
        transport.abort()
        reactor.run_until(timeout=0.01)
    except OSError as exc:
        print(f"udp_echo_client: {exc}", file=sys.stderr)
        return 1
    finally:
        reactor.close()
    result = client.report()
    if args.json:
        print(json.dumps(result))
    else:
        r = result["rtt_ms"]
        print(f"sent {result['sent']}  received {result['received']}  lost {result['lost']} "
              f"({result['loss_pct']}%)  duplicates {result['duplicates']}  "
              f"reordered {result['reordered']}  errors {result['errors']}")
        print(f"rtt ms: min {r['min']}  p50 {r['p50']}  p99 {r['p99']}  max {r['max']}  "
              f"mean {r['mean']}  -- {result['round_trips_per_s']} round trips/s")
    return 0 if result["received"] else 1


if __name__ == "__main__":
    sys.exit(main())
