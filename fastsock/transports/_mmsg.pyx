# cython: language_level=3
"""Batched datagram I/O for the UDP transport (Linux ``recvmmsg``/``sendmmsg``).

One readiness event moves up to ``batch`` datagrams in one system call each
way, instead of one ``recvfrom``/``sendto`` per datagram. ``fastsock.transports.udp``
uses this module when it is built and ``AVAILABLE`` is true, and a bounded
``recvfrom_into`` loop otherwise; both have the interface below.

The GIL stays held across the (non-blocking) system calls: that is what makes
the receive slab shareable between endpoints and keeps the send queue stable
while the kernel reads it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_SetFromErrno
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

import os as _os

cdef extern from *:
    """
    #include <string.h>
    #include <errno.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    #include <net/if.h>
    #include <sys/un.h>
    #include <stddef.h>
    #define FS_SUN_PATH_OFFSET offsetof(struct sockaddr_un, sun_path)
    #ifdef __linux__
    #define FS_MMSG_AVAILABLE 1
    typedef struct mmsghdr fs_mmsghdr;
    static int fs_recvmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags) {
        return recvmmsg(fd, v, n, flags, NULL);
    }
    static int fs_sendmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags) {
        return sendmmsg(fd, v, n, flags);
    }
    #else
    /* Not Linux: the module still builds, AVAILABLE is 0 and udp.py falls back. */
    #define FS_MMSG_AVAILABLE 0
    #ifndef MSG_DONTWAIT
    #define MSG_DONTWAIT 0
    #endif
    typedef struct { struct msghdr msg_hdr; unsigned int msg_len; } fs_mmsghdr;
    static int fs_recvmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags) {
        (void)fd; (void)v; (void)n; (void)flags; errno = ENOSYS; return -1;
    }
    static int fs_sendmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags) {
        (void)fd; (void)v; (void)n; (void)flags; errno = ENOSYS; return -1;
    }
    #endif
    """
    int FS_MMSG_AVAILABLE
    int EWOULDBLOCK
    int AF_INET
    int AF_INET6
    int AF_UNIX
    int FS_SUN_PATH_OFFSET
    int MSG_DONTWAIT
    int MSG_TRUNC
    int INET6_ADDRSTRLEN
    int IF_NAMESIZE
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    struct iovec:
        void *iov_base
        size_t iov_len

    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

    ctypedef struct fs_mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len

    struct sockaddr_storage:
        sa_family_t ss_family

    struct in_addr:
        uint32_t s_addr

    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr

    struct in6_addr:
        uint8_t s6_addr[16]

    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id

    int fs_recvmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags)
    int fs_sendmmsg(int fd, fs_mmsghdr *v, unsigned int n, int flags)
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    int inet_pton(int af, const char *src, void *dst)
    char *if_indextoname(unsigned int ifindex, char *ifname)

#: True when recvmmsg/sendmmsg exist on this platform (Linux).
AVAILABLE = bool(FS_MMSG_AVAILABLE)

#: ``Sender.send`` result: the kernel's send buffer is full (EAGAIN).
WOULD_BLOCK = -1
#: ``Sender.send`` result: the first queued address is not a numeric IP tuple;
#: send that one datagram through the socket module (it resolves names).
SLOW_PATH = -2

# Address caches are cleared (not evicted one by one) past this many peers: a
# server talking to more peers than this pays one conversion per datagram.
cdef enum:
    ADDR_CACHE_MAX = 65536

cdef dict _slabs = {}


cdef class _Slab:
    def __cinit__(self, int batch, Py_ssize_t bufsize):
        cdef int i
        cdef iovec *iovs
        cdef fs_mmsghdr *msgs
        cdef sockaddr_storage *names
        self.batch = batch
        self.bufsize = bufsize
        # calloc'd; large blocks are mmap'd, so pages no datagram touched cost
        # no physical memory.
        self.buf = <char *>calloc(batch, bufsize)
        self.iovs = calloc(batch, sizeof(iovec))
        self.msgs = calloc(batch, sizeof(fs_mmsghdr))
        self.names = calloc(batch, sizeof(sockaddr_storage))
        if not (self.buf and self.iovs and self.msgs and self.names):
            raise MemoryError()
        iovs = <iovec *>self.iovs
        msgs = <fs_mmsghdr *>self.msgs
        names = <sockaddr_storage *>self.names
        for i in range(batch):
            iovs[i].iov_base = self.buf + <Py_ssize_t>i * bufsize
            iovs[i].iov_len = <size_t>bufsize
            msgs[i].msg_hdr.msg_iov = &iovs[i]
            msgs[i].msg_hdr.msg_iovlen = 1
            msgs[i].msg_hdr.msg_name = &names[i]

    def __dealloc__(self):
        free(self.buf)
        free(self.iovs)
        free(self.msgs)
        free(self.names)


cdef _Slab _get_slab(int batch, Py_ssize_t bufsize):
    key = (batch, bufsize)
    slab = _slabs.get(key)
    if slab is None:
        slab = _Slab(batch, bufsize)
        _slabs[key] = slab
    return <_Slab>slab


cdef inline bint _transient(int err) noexcept:
    return err == EAGAIN or err == EWOULDBLOCK or err == EINTR


cdef class Receiver:
    """Receives up to ``batch`` datagrams of at most ``bufsize`` bytes per call."""

    def __cinit__(self, int fd, int batch, Py_ssize_t bufsize):
        if batch < 1 or batch > 1024:
            raise ValueError(f"batch must be in 1..1024, got {batch}")
        if bufsize < 1:
            raise ValueError(f"bufsize must be positive, got {bufsize}")
        self.fd = fd
        self.slab = _get_slab(batch, bufsize)
        self._addrs = {}
        self.nbytes = 0
        self.truncated = None

    def recv(self):
        """Return ``[(data, addr), ...]`` (empty when nothing is waiting).

        Datagrams longer than ``bufsize`` are not returned: their senders'
        addresses go to ``truncated``. Errors other than EAGAIN/EINTR raise
        the matching ``OSError`` subclass (a pending ICMP error on a connected
        socket raises ``ConnectionRefusedError``). An error that happens after
        some datagrams were received stays pending in the kernel (which keeps
        the socket readable) and is raised by the next call, so ``error`` is
        always None here; the pure-Python twin uses it.
        """
        cdef _Slab slab = self.slab
        cdef fs_mmsghdr *msgs = <fs_mmsghdr *>slab.msgs
        cdef sockaddr_storage *names = <sockaddr_storage *>slab.names
        cdef int i, n
        cdef Py_ssize_t total = 0
        cdef list out
        for i in range(slab.batch):
            msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            msgs[i].msg_hdr.msg_flags = 0
        n = fs_recvmmsg(self.fd, msgs, <unsigned int>slab.batch, MSG_DONTWAIT)
        self.syscalls += 1
        self.truncated = None
        self.nbytes = 0
        if n < 0:
            if _transient(errno):
                return []
            PyErr_SetFromErrno(OSError)
        out = []
        for i in range(n):
            addr = self._address(&names[i], msgs[i].msg_hdr.msg_namelen)
            if msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                if self.truncated is None:
                    self.truncated = []
                self.truncated.append(addr)
                continue
            total += msgs[i].msg_len
            out.append((PyBytes_FromStringAndSize(
                slab.buf + <Py_ssize_t>i * slab.bufsize, msgs[i].msg_len), addr))
        self.nbytes = total
        return out

    cdef object _address(self, void *name, unsigned int namelen):
        cdef sockaddr_in *sin = <sockaddr_in *>name
        cdef sockaddr_in6 *sin6 = <sockaddr_in6 *>name
        cdef char text[64]
        cdef char ifname[32]
        cdef int family
        # The slab is shared: when the kernel wrote no name (an unnamed unix
        # peer) the bytes there belong to an earlier datagram. Trust namelen.
        if namelen < sizeof(sa_family_t):
            return None
        family = (<sockaddr_storage *>name).ss_family
        if (family == AF_INET and namelen < sizeof(sockaddr_in)) or \
                (family == AF_INET6 and namelen < sizeof(sockaddr_in6)):
            return None
        if family == AF_INET:
            key = (<uint64_t>sin.sin_addr.s_addr << 16) | sin.sin_port
        elif family == AF_INET6:
            key = PyBytes_FromStringAndSize(<char *>name, sizeof(sockaddr_in6))
        elif family == AF_UNIX:
            return _unix_address(<char *>name, namelen)
        else:
            return None
        addr = self._addrs.get(key)
        if addr is not None:
            return addr
        if family == AF_INET:
            inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text))
            addr = (text.decode("ascii"), ntohs(sin.sin_port))
        else:
            inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text))
            host = text.decode("ascii")
            # The socket module spells scoped (link-local) addresses "fe80::1%lo".
            if sin6.sin6_scope_id and if_indextoname(sin6.sin6_scope_id, ifname) != NULL:
                host = host + "%" + ifname.decode("ascii", "replace")
            addr = (host, ntohs(sin6.sin6_port), ntohl(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id)
        if len(self._addrs) >= ADDR_CACHE_MAX:
            self._addrs.clear()
        self._addrs[key] = addr
        return addr


cdef object _unix_address(char *name, unsigned int namelen):
    # The socket module's spelling: None when unnamed, bytes for the abstract
    # namespace (leading NUL), else the path as str.
    cdef Py_ssize_t n = <Py_ssize_t>namelen - FS_SUN_PATH_OFFSET
    cdef char *path = name + FS_SUN_PATH_OFFSET
    if n <= 0:
        return None
    if path[0] == 0:
        return PyBytes_FromStringAndSize(path, n)
    raw = PyBytes_FromStringAndSize(path, n)
    return _os.fsdecode(raw.split(b"\0", 1)[0])


cdef class Sender:
    """Sends up to ``cap`` queued ``(data: bytes, addr)`` pairs per call.

    ``addr`` None means the connected peer. Numeric IPv4/IPv6 tuples are
    packed here (and cached); any other address stops the batch before it
    (``SLOW_PATH`` when it is first).
    """

    def __cinit__(self, int fd, int family, int cap):
        cdef int i
        cdef iovec *iovs
        cdef fs_mmsghdr *msgs
        if cap < 1 or cap > 1024:
            raise ValueError(f"cap must be in 1..1024, got {cap}")
        self.fd = fd
        self.family = family
        self.cap = cap
        self.iovs = calloc(cap, sizeof(iovec))
        self.msgs = calloc(cap, sizeof(fs_mmsghdr))
        self.names = calloc(cap, sizeof(sockaddr_storage))
        if not (self.iovs and self.msgs and self.names):
            raise MemoryError()
        iovs = <iovec *>self.iovs
        msgs = <fs_mmsghdr *>self.msgs
        for i in range(cap):
            msgs[i].msg_hdr.msg_iov = &iovs[i]
            msgs[i].msg_hdr.msg_iovlen = 1
        self._addrs = {}
        self.nbytes = 0

    def __dealloc__(self):
        free(self.iovs)
        free(self.msgs)
        free(self.names)

    def send(self, items):
        """Send the leading items of ``items`` (an iterable of ``(bytes, addr)``).

        Returns how many datagrams the kernel took (>= 1), ``WOULD_BLOCK``
        or ``SLOW_PATH``; the caller removes that many from its queue. An
        error on the first datagram raises ``OSError`` (for example
        ``EMSGSIZE``); the caller drops that one and calls again.
        """
        cdef iovec *iovs = <iovec *>self.iovs
        cdef fs_mmsghdr *msgs = <fs_mmsghdr *>self.msgs
        cdef sockaddr_storage *names = <sockaddr_storage *>self.names
        cdef int count = 0
        cdef int n, i
        cdef Py_ssize_t total = 0
        cdef bytes data
        cdef bytes packed
        self.nbytes = 0
        for item in items:
            if count == self.cap:
                break
            data = <bytes?>item[0]
            addr = item[1]
            if addr is None:
                msgs[count].msg_hdr.msg_name = NULL
                msgs[count].msg_hdr.msg_namelen = 0
            else:
                packed = self._addrs.get(addr)
                if packed is None:
                    packed = self._pack(addr)
                    if packed is None:
                        break
                memcpy(&names[count], PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed))
                msgs[count].msg_hdr.msg_name = &names[count]
                msgs[count].msg_hdr.msg_namelen = <socklen_t>PyBytes_GET_SIZE(packed)
            iovs[count].iov_base = PyBytes_AS_STRING(data)
            iovs[count].iov_len = <size_t>PyBytes_GET_SIZE(data)
            count += 1
        if count == 0:
            return SLOW_PATH
        while True:
            n = fs_sendmmsg(self.fd, msgs, <unsigned int>count, MSG_DONTWAIT)
            self.syscalls += 1
            if n >= 0 or errno != EINTR:
                break
        if n < 0:
            if errno == EAGAIN or errno == EWOULDBLOCK:
                return WOULD_BLOCK
            PyErr_SetFromErrno(OSError)
        for i in range(n):
            total += <Py_ssize_t>iovs[i].iov_len
        self.nbytes = total
        return n

    cdef bytes _pack(self, object addr):
        """Pack a numeric address tuple, or return None for the slow path."""
        cdef sockaddr_in sin
        cdef sockaddr_in6 sin6
        cdef bytes packed
        if self.family != AF_INET and self.family != AF_INET6:
            return None  # unix paths and the like: the socket module packs them
        if type(addr) is not tuple or len(addr) < 2:
            return None
        host = addr[0]
        port = addr[1]
        if type(host) is not str or type(port) is not int or not 0 <= port <= 65535:
            return None
        try:
            bhost = (<str>host).encode("ascii")
        except UnicodeEncodeError:
            return None
        if self.family == AF_INET:
            if len(addr) != 2:
                return None
            memset(&sin, 0, sizeof(sin))
            sin.sin_family = AF_INET
            sin.sin_port = htons(<uint16_t>port)
            if inet_pton(AF_INET, bhost, &sin.sin_addr) != 1:
                return None
            packed = PyBytes_FromStringAndSize(<char *>&sin, sizeof(sin))
        else:
            if len(addr) > 4:
                return None
            memset(&sin6, 0, sizeof(sin6))
            sin6.sin6_family = AF_INET6
            sin6.sin6_port = htons(<uint16_t>port)
            if len(addr) > 2:
                if type(addr[2]) is not int or not 0 <= addr[2] <= 0xFFFFFFFF:
                    return None
                sin6.sin6_flowinfo = htonl(<uint32_t>addr[2])
            if len(addr) > 3:
                if type(addr[3]) is not int or not 0 <= addr[3] <= 0xFFFFFFFF:
                    return None
                sin6.sin6_scope_id = <uint32_t>addr[3]
            if inet_pton(AF_INET6, bhost, &sin6.sin6_addr) != 1:
                return None
            packed = PyBytes_FromStringAndSize(<char *>&sin6, sizeof(sin6))
        if len(self._addrs) >= ADDR_CACHE_MAX:
            self._addrs.clear()
        self._addrs[addr] = packed
        return packed
