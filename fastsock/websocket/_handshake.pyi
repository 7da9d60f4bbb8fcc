"""Compiled opening-handshake scan; the contract is ``_handshake_py``'s."""
from typing import Optional

WANT_ORIGIN: int
WANT_PROTOCOL: int
WANT_EXTENSIONS: int
PLAIN_HTTP: int
UPGRADE: int

def accept_key(key: bytes) -> bytes: ...
def scan_request(head: bytes, max_headers: int, want: int) -> tuple[
    int, Optional[str], Optional[str], Optional[bytes], Optional[str], Optional[str], Optional[str]]: ...
def parse_head(head: bytes, max_headers: int) -> tuple[str, str, str, list[tuple[str, str]]]: ...
