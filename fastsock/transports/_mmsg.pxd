# Batched datagram I/O: one recvmmsg/sendmmsg system call moves many datagrams.
# The table of contents of _mmsg.pyx (fields of the classes below).

cdef class _Slab:
    # Receive memory shared by every Receiver with the same (batch, bufsize) in
    # this process. Safe because the GIL is held from the system call until the
    # datagrams are copied out into bytes objects.
    cdef int batch
    cdef Py_ssize_t bufsize
    cdef char *buf
    cdef void *iovs       # struct iovec[batch]
    cdef void *msgs       # struct mmsghdr[batch]
    cdef void *names      # struct sockaddr_storage[batch]


cdef class Receiver:
    cdef int fd
    cdef _Slab slab
    cdef dict _addrs      # raw sockaddr key -> Python address tuple
    cdef readonly Py_ssize_t nbytes     # payload bytes in the last batch
    cdef readonly list truncated        # addresses of datagrams cut by MSG_TRUNC, or None
    cdef readonly object error          # always None: the kernel keeps a late error pending
    cdef readonly unsigned long long syscalls

    cdef object _address(self, void *name, unsigned int namelen)


cdef class Sender:
    cdef int fd
    cdef int family
    cdef int cap
    cdef void *iovs
    cdef void *msgs
    cdef void *names
    cdef dict _addrs      # Python address tuple -> packed sockaddr bytes
    cdef readonly Py_ssize_t nbytes     # payload bytes taken by the last call
    cdef readonly unsigned long long syscalls

    cdef bytes _pack(self, object addr)
