"""Type stub for fastsock/transports/_tls.pyx: asyncio's SSLProtocol, compiled."""
from asyncio import sslproto

class SSLProtocol(sslproto.SSLProtocol):
    _in_read: int
    def _encrypt_backlog(self) -> None: ...
    def _write_one(self, data: bytes | bytearray | memoryview) -> None: ...
