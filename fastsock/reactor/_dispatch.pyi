from typing import Any, Callable

def dispatch(events: list[tuple[int, int]], fds: dict[int, list[Any]], rev: int, wev: int,
             stale: Callable[[int], None], failed: Callable[[Any, BaseException], None]) -> None: ...
