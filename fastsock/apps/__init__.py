"""Example servers for ``python -m fastsock serve APP``.

Each app is a module with ``DESCRIPTION`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. ``APPS`` maps the name typed on the command line to
the module path; modules are imported only when their app is chosen, so a
heavy or broken app never slows down or breaks the others.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["APPS", "load_app"]

APPS: dict[str, str] = {
    "tcp-echo": "fastsock.apps.tcp_echo",
    "demo": "fastsock.apps.demo",
    "echo": "fastsock.apps.ws_echo",
    "broadcast": "fastsock.apps.broadcast",
    "chat": "fastsock.apps.chat",
    "udp-echo": "fastsock.apps.udp_echo",
}


def load_app(name: str) -> ModuleType:
    """Import the module of app ``name``; KeyError when no such app is registered."""
    module = importlib.import_module(APPS[name])
    for attr in ("add_arguments", "run"):
        if not callable(getattr(module, attr, None)):
            raise ImportError(f"app module {module.__name__} has no {attr}()")
    return module
