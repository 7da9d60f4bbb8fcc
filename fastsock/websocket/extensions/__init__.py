"""WebSocket extensions (RFC 6455 section 9): the hook and permessage-deflate.

:mod:`.base` has :class:`Extension` and the factory protocols;
:mod:`.permessage_deflate` has RFC 7692's compression (docs/compression.md).
"""
from .base import (
    ClientExtensionFactory,
    Extension,
    ExtensionResponseError,
    MalformedOfferError,
    ServerExtensionFactory,
)
from .permessage_deflate import (
    ClientPerMessageDeflate,
    PerMessageDeflate,
    ServerPerMessageDeflate,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflate",
    "Extension",
    "ExtensionResponseError",
    "MalformedOfferError",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflate",
]
