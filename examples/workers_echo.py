"""A WebSocket echo server in N worker processes on one port (SO_REUSEPORT).

    python examples/workers_echo.py [PORT] [WORKERS]      (WORKERS 0 = one per core)

Each reply says which worker process answered. SIGHUP to the printed
supervisor PID reloads the workers one by one (new code is loaded, no
connection is refused); SIGTERM or Ctrl-C drains them (1001 to clients).
"""
import logging
import os
import sys

import fastsock
from fastsock.server import run
from fastsock.workers import Supervisor, Worker


class Echo(fastsock.WebSocketHandler):
    def on_message(self, data: "str | bytes") -> None:
        self.send(f"worker {os.getpid()}: {data!r}" if isinstance(data, str) else data)


def serve(worker: Worker) -> int:
    # Runs in each worker: serve on the listener the supervisor made for this slot.
    return run(Echo, sock=worker.socket, shutdown_timeout=5.0,
               on_ready=lambda server: worker.ready())


def announce(supervisor: Supervisor) -> None:
    print(f"supervisor {os.getpid()}: {supervisor.count} workers on "
          f"ws://127.0.0.1:{supervisor.port} (pids {supervisor.pids()})", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    # In the supervisor this supervises; in each worker (which re-runs this
    # script) it calls serve(worker).
    sys.exit(fastsock.run_workers(serve, workers, host="127.0.0.1", port=port,
                                  on_ready=announce))
