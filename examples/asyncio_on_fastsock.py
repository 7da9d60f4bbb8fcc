"""Plain asyncio code, unchanged, on fastsock's event loop.

    python examples/asyncio_on_fastsock.py

An ``asyncio.start_server`` echo server and an ``asyncio.open_connection``
client, run with ``fastsock.run(main())`` instead of ``asyncio.run(main())``.
With trustme installed (``pip install trustme``) the connection is TLS, with
certificates made on the spot; without it, plain TCP.
"""
from __future__ import annotations

import asyncio
import ssl

import fastsock

HOST = "127.0.0.1"
LINES = [b"hello\n", b"from asyncio\n", b"on fastsock\n"]


def tls_contexts() -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server, client) contexts from a throwaway CA, or (None, None) without trustme."""
    try:
        import trustme
    except ImportError:
        return None, None
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context()   # verifies the certificate and the host name
    ca.configure_trust(client)
    return server, client


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    server_ssl, client_ssl = tls_contexts()
    server = await asyncio.start_server(echo, HOST, 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ssl)
        ssl_object = writer.get_extra_info("ssl_object")
        print(f"loop: {type(asyncio.get_running_loop()).__module__}, "
              f"connection: {ssl_object.version() if ssl_object else 'plain TCP'}")
        for line in LINES:
            writer.write(line)
            await writer.drain()
            answer = await reader.readline()
            assert answer == line, (answer, line)
            print("echoed:", answer.decode().rstrip())
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":
    fastsock.run(main())
