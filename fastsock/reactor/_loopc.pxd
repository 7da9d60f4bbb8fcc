# The loop's per-callback machinery in C (see _loopc.pyx): asyncio's Handle
# and TimerHandle fields, and the fields of the loop that its turn reads.

cdef class Handle:
    cdef public object _callback
    cdef public object _args
    cdef public bint _cancelled
    cdef public object _loop
    cdef public object _context
    cdef public object _source_traceback
    cdef public object _repr
    cpdef cancel(self)
    cpdef _run(self)
    cdef _report(self, exc, callback, args)


cdef class TimerHandle(Handle):
    cdef public double _when
    cdef public bint _scheduled


cdef class LoopCore:
    # asyncio's fields (its BaseEventLoop.__init__ assigns them)
    cdef public object _ready              # collections.deque of handles
    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public double _clock_resolution
    # the timer heap: (when, sequence, TimerHandle) tuples
    cdef public list _timers
    cdef public Py_ssize_t _timer_seq
    cdef public Py_ssize_t _cancelled_timers
    # the poller: fd -> [reader, args, writer, args]; the compiled poller
    # (an _epollc.EpollPoller, called from C) or a Python poll_dispatch
    cdef public dict _fds
    cdef public object _poller
    cdef public object _poll_dispatch
    # the loop's two callbacks for the dispatch, bound once
    cdef public object _stale_cb
    cdef public object _failed_cb
    # statistics
    cdef public unsigned long long _io_events
    cdef public unsigned long long _timers_run
    cdef public unsigned long long _callbacks_run
    cdef public unsigned long long _iterations
    # {"loop": self}: create_future's keyword arguments, built once
    cdef dict _future_kwargs

    cdef TimerHandle _call_at(self, object when, object callback, tuple args, object context)
    cdef int _compact_timers(self) except -1
