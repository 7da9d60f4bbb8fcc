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
    Compression,
    PerMessageDeflate,
    ServerPerMessageDeflate,
    client_factories,
    server_factories,
)

__all__ = [
    "ClientExtensionFactory",
    "ClientPerMessageDeflate",
    "Compression",
    "Extension",
    "ExtensionResponseError",
    "MalformedOfferError",
    "PerMessageDeflate",
    "ServerExtensionFactory",
    "ServerPerMessageDeflate",
    "client_factories",
    "server_factories",
]
