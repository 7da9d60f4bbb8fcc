# fastsock/transports/_tls.pyx holds a Python class (a compiled subclass of
# asyncio's sslproto.SSLProtocol); it declares no C-level API.
