"""The one switch between compiled and pure-Python code.

``FASTSOCK_PURE=1`` in the environment makes every layer use its pure-Python
path: the codec's twin, asyncio-style handles and turn in the loop, plain
socket calls in the transports, the Python WebSocket core. It is read here,
once, at import; every module asks :func:`compiled` for its extension.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["PURE", "compiled"]

PURE: bool = os.environ.get("FASTSOCK_PURE") == "1"


def compiled(name: str, package: str | None = None) -> ModuleType | None:
    """The compiled module ``name`` (relative names need ``package``), or
    None when FASTSOCK_PURE=1 or it is not built."""
    if PURE:
        return None
    try:
        return importlib.import_module(name, package)
    except ImportError:
        return None
