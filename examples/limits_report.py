"""Print this machine's descriptor/socket limits, then watch descriptors run low.

    python examples/limits_report.py

Part 1 prints the report (what `python -m fastsock limits` shows). Part 2 lowers
this process's soft RLIMIT_NOFILE to 64, opens sockets one by one under a
DescriptorWatch and shows the single warning it logs at 80 %, then closes
them (the watch re-arms below 70 %) and restores the limit.
"""
from __future__ import annotations

import logging
import resource
import socket

from fastsock.limits import DescriptorWatch, format_report, limits

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    report = limits()
    print(format_report(report))
    print()

    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, saved[1]))
    socks: list[socket.socket] = []
    try:
        watch = DescriptorWatch()  # baseline: what is open now; soft limit: 64
        print(f"watch: {watch!r}")
        while watch.in_use < 60:
            socks.append(socket.socket())
            watch.opened()
        print(f"opened {len(socks)} sockets: in_use={watch.in_use} warned={watch.warned} "
              f"warnings={watch.warnings}")
        while socks and watch.warned:
            socks.pop().close()
            watch.closed()
        print(f"closed down to in_use={watch.in_use}: re-armed={not watch.warned}")
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


if __name__ == "__main__":
    main()
