"""A worker app for tests/test_workers.py: ``python tests/workers_app.py N``.

Each connection is answered with this worker's PID and a newline, then
closed; the supervisor prints ``ready PORT`` once every worker accepts.
"""
from __future__ import annotations

import sys
from typing import Any

from fastsock.reactor import Reactor
from fastsock.transports.tcp import create_tcp_server
from fastsock.workers import Supervisor, Worker, run_workers


class PidProtocol:
    def connection_made(self, transport: Any) -> None:
        import os
        transport.write(b"%d\n" % os.getpid())
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


def serve(worker: Worker) -> int:
    import os
    broken = os.environ.get("WORKERS_APP_BROKEN_IF")   # a file: its presence = a bad deploy
    if broken and os.path.exists(broken):
        return 3
    reactor = Reactor()
    try:
        create_tcp_server(reactor, PidProtocol, sock=worker.socket)
        reactor.install_shutdown_signals(2.0)
        worker.ready()
        reactor.run_forever()
    finally:
        reactor.close()
    return 0


def announce(supervisor: Supervisor) -> None:
    print(f"ready {supervisor.port}", flush=True)


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_workers(serve, int(sys.argv[1]), port=0, shutdown_timeout=2.0, on_ready=announce))
