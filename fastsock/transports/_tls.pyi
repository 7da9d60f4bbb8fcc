"""Type stub for fastsock/transports/_tls.pyx: asyncio's SSLProtocol, compiled,
with the direct OpenSSL record layer."""
from asyncio import sslproto

# whether the direct OpenSSL record layer passed its checks at import, and why not
DIRECT: bool
DIRECT_REASON: str

class SSLProtocol(sslproto.SSLProtocol):
    _in_read: int
    def _encrypt_backlog(self) -> None: ...
    def _write_one(self, data: bytes | bytearray | memoryview) -> None: ...
