"""A WebSocket echo server with Prometheus metrics (pip install 'fastsock[metrics]').

    python examples/metrics_server.py [PORT] [METRICS_PORT]

The metrics are answered at GET /metrics on the WebSocket port itself, or,
with METRICS_PORT, on a port of their own. Then, e.g.:

    python -m websockets ws://127.0.0.1:8765/      # send a few messages
    curl -s http://127.0.0.1:8765/metrics | grep ^fastsock_

Every 10 seconds it also prints a line from ``server.stats()``, the same
numbers as plain Python values. Stop with Ctrl-C.
"""
import sys
from typing import Any, Optional

import fastsock
from fastsock.metrics import Metrics
from fastsock.server import WebSocketServer, run

REPORT_EVERY = 10.0   # seconds between the stats() lines


class Echo(fastsock.WebSocketHandler):
    def on_message(self, data: "str | bytes") -> None:
        self.send(data)


def main(port: int, metrics_port: Optional[int]) -> int:
    metrics = Metrics()
    sock = Metrics.bind("127.0.0.1", metrics_port) if metrics_port is not None else None
    # On the WebSocket port: plain-HTTP GET /metrics is a scrape; everything
    # else gets the server's usual "426 Upgrade Required".
    kwargs: dict[str, Any] = {} if sock is not None else {"http_handler": metrics.http_handler()}

    def on_ready(server: WebSocketServer) -> None:
        metrics.add_server(server)
        loop = server.state.loop
        where = server.port
        if sock is not None:
            metrics.listen(loop, sock)              # served by the same loop thread
            where = sock.getsockname()[1]
        print(f"listening on ws://127.0.0.1:{server.port}; "
              f"metrics on http://127.0.0.1:{where}/metrics", flush=True)

        def report() -> None:
            s = server.stats()
            print(f"open={s['connections']['open']} in={s['messages_in']} "
                  f"out={s['messages_out']} closes={s['close_codes_received']}", flush=True)
            loop.call_later(REPORT_EVERY, report)

        loop.call_later(REPORT_EVERY, report)

    options = fastsock.WebSocketOptions(ping_interval=20)   # pings fill the RTT histogram
    return run(Echo, "127.0.0.1", port, options=options, on_ready=on_ready, **kwargs)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765,
                  int(sys.argv[2]) if len(sys.argv) > 2 else None))
