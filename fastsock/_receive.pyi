"""The C-level receive contract (``chunk_received`` is C-only)."""
from typing import Any, Optional

class ChunkReceiver:
    """Base of protocols that parse received bytes in place, from C."""

def receiver_for(protocol: Any) -> Optional[Any]: ...
