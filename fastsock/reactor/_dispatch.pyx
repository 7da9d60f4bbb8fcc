# cython: language_level=3, boundscheck=False, wraparound=False
"""The reactor's per-event dispatch in C: the loop body that runs for every
readiness event. Pure-Python twin: ``fastsock.reactor.loop.dispatch_py`` (used when this module
is not built or FASTSOCK_PURE=1); tests run the reactor on both."""


def dispatch(list events, dict fds, long rev, long wev, object stale, object failed):
    cdef object item, entry, cb, args, fd
    cdef long ev
    for item in events:
        fd = (<tuple>item)[0]
        ev = (<tuple>item)[1]
        entry = fds.get(fd)
        if entry is None:
            stale(fd)
            continue
        if ev & rev:
            cb = (<list>entry)[0]
            if cb is not None:
                args = (<list>entry)[1]
                try:
                    if args is None:
                        cb()
                    else:
                        cb(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    failed(cb, exc)
        if ev & wev:
            cb = (<list>entry)[2]
            if cb is not None:
                args = (<list>entry)[3]
                try:
                    if args is None:
                        cb()
                    else:
                        cb(*args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    failed(cb, exc)
