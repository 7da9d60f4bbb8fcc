# cython: language_level=3
"""The C-level receive contract (see ``_receive.pxd``): the base class, its
default, and ``receiver_for``, which a transport asks once per protocol."""
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef extern from "Python.h":
    unsigned long Py_TPFLAGS_HEAPTYPE


cdef class ChunkReceiver:
    """Base of protocols that parse received bytes in place, from C.

    A compiled subclass overrides ``chunk_received`` (C only) together with
    ``data_received``; this default copies the chunk into ``bytes`` and calls
    ``self.data_received`` with it.
    """

    cdef int chunk_received(self, const unsigned char *data, Py_ssize_t n) except -1:
        self.data_received(PyBytes_FromStringAndSize(<const char *>data, n))
        return 0


def receiver_for(protocol):
    """``protocol`` if the transport may call its ``chunk_received``, else None.

    It may when the protocol is a ``ChunkReceiver`` and the ``data_received``
    it would otherwise get is defined by a compiled class (a static type):
    that class pairs it with ``chunk_received``. A Python override of
    ``data_received`` anywhere below it wins, and is called with bytes.
    """
    if not isinstance(protocol, ChunkReceiver):
        return None
    for klass in type(protocol).__mro__:
        if "data_received" in klass.__dict__:
            if klass.__flags__ & Py_TPFLAGS_HEAPTYPE:
                return None
            return protocol
    return None
