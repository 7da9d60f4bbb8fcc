# fastsock/transports/_tls.pyx holds a Python class (a compiled subclass of
# asyncio's sslproto.SSLProtocol) and a module-private cdef class (_Records,
# the direct OpenSSL record layer); it declares no C-level API for others.
