# The compiled poller (see _epollc.pyx): one epoll fd, a preallocated event
# array, and the dispatch that the loop's turn calls from C.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data


cdef class EpollPoller:
    cdef int epfd
    cdef int maxevents
    cdef epoll_event* events
    cdef object epoll

    cpdef int poll_dispatch(self, double timeout, dict fds, object stale, object failed) except -1
