"""TCP on the reactor: the names fastsock's TCP API has always had.

The work is split by job: :mod:`.stream` (the transport), :mod:`.listener`
(bind, accept, the EMFILE back-off) and :mod:`.connector` (connect with a
timeout over every resolved address).
"""
from __future__ import annotations

from .connector import create_tcp_connection
from .listener import ACCEPT_RETRY_MAX, ACCEPT_RETRY_MIN, TCPServer, create_tcp_server
from .stream import IMPLEMENTATION, StreamTransport, TCPTransport

__all__ = ["StreamTransport", "TCPTransport", "TCPServer", "create_tcp_server",
           "create_tcp_connection", "IMPLEMENTATION", "ACCEPT_RETRY_MIN", "ACCEPT_RETRY_MAX"]
