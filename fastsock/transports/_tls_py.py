"""Pure-Python twin of ``_tls.pyx`` for what it adds to asyncio's TLS
protocol besides speed: the one log line for a plain-HTTP request on a TLS
port. With FASTSOCK_PURE=1 (or ``_tls`` not built) the loop uses this
subclass of asyncio's ``SSLProtocol``; the compiled one calls
:func:`note_handshake_failure` too. The compiled module's direct OpenSSL
record layer has no Python twin: here every record goes through the ``ssl``
module's ``SSLObject``, as it does there when ``_tls.DIRECT`` is False."""
from __future__ import annotations

import logging
from asyncio import sslproto
from typing import Any, Optional

__all__ = ["SSLProtocol", "note_handshake_failure", "tls_log"]

# Where a server says that a client spoke plain HTTP to its TLS port (one line
# per connection: asyncio itself logs TLS handshake failures only in debug mode).
tls_log = logging.getLogger("fastsock.tls")


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def note_handshake_failure(protocol: Any, exc: Optional[BaseException]) -> None:
    """Log a server-side handshake that failed because the client sent HTTP
    (OpenSSL recognises a request line where a ClientHello belongs)."""
    if exc is None or not protocol._server_side or getattr(exc, "reason", None) != "HTTP_REQUEST":
        return
    transport = protocol._transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    tls_log.warning("plain HTTP on a TLS port from %s; closing the connection", _peer(peer))


class SSLProtocol(sslproto.SSLProtocol):
    """asyncio's ``SSLProtocol`` that names a plain-HTTP client in the log."""

    def _on_handshake_complete(self, handshake_exc: Optional[BaseException]) -> None:
        note_handshake_failure(self, handshake_exc)
        super()._on_handshake_complete(handshake_exc)
