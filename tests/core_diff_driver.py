"""Driver for tests/test_websocket_core_diff.py: runs WebSocket scenarios on
whichever core this interpreter has (compiled ``_core.pyx``, or the twin
``_core_py.py`` under FASTSOCK_PURE=1) and prints what the server sent.

    python tests/core_diff_driver.py < scenarios.json > results.json

A scenario is client octets in chunks plus the application calls the
handler makes for each message it receives. Each runs twice:

* ``sansio``: ``attach(None, None)``, ``data_received(chunk)`` per chunk,
  ``data_to_send()`` after each (the bytes path);
* ``socket``: ``fastsock.server.serve`` on a reactor, a real loopback TCP
  client sending each chunk in its own segment (TCP_NODELAY, a pause
  between): on the compiled core the transport lends its receive buffer to
  the core's ``chunk_received`` (the pointer path, which has no twin).

Output per scenario and mode: the server's octets after the 101 (hex), and
the handler's log (messages with their type, pings, pongs, close).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastsock.pubsub.fanout import broadcast  # noqa: E402
from fastsock.websocket import WebSocketHandler, WebSocketOptions  # noqa: E402
from fastsock.websocket import protocol  # noqa: E402

OPTIONS = dict(ping_interval=None, max_message_size=1 << 20)
CHUNK_PAUSE = 0.002
WAIT = 10.0

_actions: dict[int, list[list[Any]]] = {}


class DiffHandler(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[Any]] = []
        self.count = 0
        self.pointer_path: bool | None = None

    def on_open(self) -> None:
        # which receive path feeds this connection: the pointer path when the
        # transport's fast path holds a ChunkReceiver (the compiled core)
        fast = getattr(self.transport, "_fast", None)
        self.pointer_path = getattr(fast, "receiver", None) is not None

    def on_message(self, data: Any) -> None:
        i = self.count
        self.count += 1
        self.log.append(["message", "text" if isinstance(data, str) else "binary",
                         data if isinstance(data, str) else data.hex()])
        for act in _actions.get(i, [["echo"]]):
            kind = act[0]
            if kind == "echo":
                self.send(data)
            elif kind == "send_text":
                self.send(act[1])
            elif kind == "send_binary":
                self.send(bytes.fromhex(act[1]))
            elif kind == "ping":
                self.ping(bytes.fromhex(act[1]))
            elif kind == "pong":
                self.pong(bytes.fromhex(act[1]))
            elif kind == "broadcast":
                broadcast([self], data)
            elif kind == "close":
                self.close(act[1], act[2])

    def on_ping(self, payload: bytes) -> None:
        self.log.append(["ping", payload.hex()])

    def on_pong(self, payload: bytes) -> None:
        self.log.append(["pong", payload.hex()])

    def on_close(self, code: int, reason: str) -> None:
        self.log.append(["close", int(code), reason])


def run_sansio(chunks: list[bytes]) -> dict[str, Any]:
    ws = DiffHandler()
    ws.attach(None, None, options=WebSocketOptions(**OPTIONS))
    out = bytearray()
    for chunk in chunks:
        ws.data_received(chunk)
        out += ws.data_to_send()
    return {"out": bytes(out).hex(), "log": ws.log}


def _client(port: int, chunks: list[bytes], result: dict[str, Any], wake: Any) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"GET /diff HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("closed during the handshake")
                head += data
            head, rest = head.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            got = bytearray(rest)
            reader_done = threading.Event()

            def read() -> None:
                try:
                    while True:
                        data = sock.recv(1 << 20)
                        if not data:
                            break
                        got.extend(data)
                except OSError:
                    pass
                reader_done.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            for chunk in chunks:
                try:
                    sock.sendall(chunk)
                except OSError:
                    break       # the server failed the connection and closed
                time.sleep(CHUNK_PAUSE)
            if not reader_done.wait(WAIT):
                result["error"] = "the server did not close the connection"
            result["out"] = bytes(got).hex()
    except Exception as exc:  # reported to the parent test
        result["error"] = repr(exc)
    finally:
        result["done"] = True
        wake(lambda: None)      # the reactor checks its predicate after a turn


def run_socket(chunks: list[bytes]) -> dict[str, Any]:
    from fastsock.reactor import Reactor
    from fastsock.server import serve

    reactor = Reactor()
    handlers: list[DiffHandler] = []

    def factory() -> DiffHandler:
        h = DiffHandler()
        handlers.append(h)
        return h

    server = serve(factory, "127.0.0.1", 0, reactor=reactor, options=WebSocketOptions(**OPTIONS))
    result: dict[str, Any] = {}
    thread = threading.Thread(target=_client, args=(server.port, chunks, result, reactor.call_soon_threadsafe), daemon=True)
    thread.start()
    reactor.run_until(lambda: result.get("done", False), timeout=WAIT * 2)
    thread.join(WAIT)
    server.close()
    reactor.run_until(timeout=0.05)
    reactor.close()
    result.pop("done", None)
    result["log"] = handlers[0].log if handlers else None
    result["pointer_path"] = getattr(handlers[0], "pointer_path", None) if handlers else None
    return result


def main() -> None:
    scenarios = json.load(sys.stdin)
    results = []
    for sc in scenarios:
        _actions.clear()
        _actions.update({int(k): v for k, v in sc["actions"].items()})
        chunks = [bytes.fromhex(c) for c in sc["chunks"]]
        t0 = time.monotonic()
        results.append({"sansio": run_sansio(chunks), "socket": run_socket(chunks)})
        print(f"scenario {len(results) - 1}: {time.monotonic() - t0:.2f} s", file=sys.stderr)
    json.dump({"core": protocol.CORE_IMPLEMENTATION, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
