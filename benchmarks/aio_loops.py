"""The asyncio event loops the side-by-side runs compare, chosen by name.

``asyncio`` is CPython's own loop, ``uvloop`` is uvloop's, and ``fastsock``
is ``fastsock.new_event_loop()`` (fastsock's reactor as a complete asyncio
loop).  The benchmark code that runs on them is the same; only the loop
differs.  Also: the run-time TLS certificate the TLS scenarios use.
"""
from __future__ import annotations

import asyncio
import atexit
import importlib.util
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

LOOPS = ("asyncio", "uvloop", "fastsock")


def unavailable(name: str) -> str | None:
    """Why loop ``name`` cannot run in this checkout, or None."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        return None if importlib.util.find_spec("uvloop") else "Python package uvloop is not installed"
    if name == "fastsock":
        try:
            import fastsock
        except ImportError as exc:
            return f"fastsock does not import: {exc}"
        if not callable(getattr(fastsock, "new_event_loop", None)):
            return "fastsock.new_event_loop() does not exist in this checkout yet"
        return None
    return f"unknown loop {name!r} (choose from {', '.join(LOOPS)})"


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new, not yet running event loop of the named kind."""
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "fastsock":
        import fastsock

        loop: asyncio.AbstractEventLoop = fastsock.new_event_loop()
        return loop
    raise ValueError(f"unknown loop {name!r} (choose from {', '.join(LOOPS)})")


@dataclass(frozen=True)
class CertFiles:
    cert: Path    # server certificate chain (PEM)
    key: Path     # its private key (PEM)
    ca: Path      # the CA that signed it, for clients that do verify


def make_cert(directory: Path | None = None) -> CertFiles:
    """A fresh CA and a server certificate for 127.0.0.1 and localhost
    (``trustme``), written as PEM files into ``directory`` (by default a new
    temporary directory, removed when the process exits).  Made at run time,
    so no key is ever committed."""
    import trustme

    if directory is None:
        out = Path(tempfile.mkdtemp(prefix="fastsock-bench-tls-"))
        atexit.register(shutil.rmtree, out, True)    # the key lives no longer than the run
    else:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = CertFiles(out / "server.pem", out / "server.key", out / "ca.pem")
    leaf.private_key_pem.write_to_path(str(files.key))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in leaf.cert_chain_pems[1:]:
        with open(files.cert, "ab") as f:
            f.write(extra.bytes())
    ca.cert_pem.write_to_path(str(files.ca))
    return files


def server_ssl_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """The server context every loop gets: Python's defaults (TLS 1.2+,
    OpenSSL's cipher order), so the loops differ only in their TLS plumbing."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
