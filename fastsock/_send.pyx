# cython: language_level=3
"""The C-level send contract (see ``_send.pxd``): the base class, its default,
and ``writer_for``, which a protocol asks once per transport."""
from cpython.bytes cimport PyBytes_FromStringAndSize


cdef class ChunkWriter:
    """Base of transport write paths that also take bytes by pointer, from C.

    A compiled subclass overrides ``write_chunk`` (C only) together with
    ``write``; this default copies the chunk into ``bytes`` and calls
    ``self.write`` with it.
    """

    cdef int write_chunk(self, const char *data, Py_ssize_t n) except -1:
        self.write(PyBytes_FromStringAndSize(data, n))
        return 0


def writer_for(transport):
    """The ``ChunkWriter`` behind ``transport.write``, or None.

    Only when ``transport.write`` is a ChunkWriter's own ``write`` method:
    anything else (no transport, an asyncio transport, a write wrapped or
    replaced by the application) keeps getting ``bytes``.
    """
    write = getattr(transport, "write", None)
    writer = getattr(write, "__self__", None)
    if isinstance(writer, ChunkWriter) and write == writer.write:
        return writer
    return None
