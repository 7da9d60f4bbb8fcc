"""The C-level send contract (``write_chunk`` is C-only)."""
from typing import Any, Optional

class ChunkWriter:
    """Base of transport write paths that also take bytes by pointer, from C."""

def writer_for(transport: Any) -> Optional[ChunkWriter]: ...
