from typing import Any, Callable

class EpollPoller:
    def __init__(self, epoll: Any, maxevents: int = 1024) -> None: ...
    def poll_dispatch(self, timeout: float, fds: dict[int, list[Any]],
                      stale: Callable[[int], None],
                      failed: Callable[[Any, BaseException], None]) -> int: ...
