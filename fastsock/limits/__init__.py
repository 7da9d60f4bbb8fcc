"""OS facts: descriptor and socket limits, and the live connection table.

- :mod:`fastsock.limits.report`: the limits, what they allow, the 80% warning
  (everything below is re-exported here, as before this became a package);
- :mod:`fastsock.limits.table`: the sockets themselves, read from /proc/net
  (``python -m fastsock stat``). Imported on demand, not here, so that a
  server importing the limits does not pay for it.

Tests that replace module state (``_default_watch``, ``_getrlimit``) patch
:mod:`fastsock.limits.report`, where the functions look it up.
"""
from __future__ import annotations

import sys
import types

from fastsock.limits.report import PROC as PROC  # importable as before, not in __all__
from fastsock.limits.report import UNLIMITED as UNLIMITED
from fastsock.limits.report import (
    RESERVE,
    Bound,
    DescriptorWatch,
    LimitsReport,
    default_watch,
    format_report,
    limits,
    log_summary,
    raise_nofile,
    summary_lines,
)

__all__ = [
    "Bound",
    "DescriptorWatch",
    "LimitsReport",
    "RESERVE",
    "default_watch",
    "format_report",
    "limits",
    "log_summary",
    "raise_nofile",
    "summary_lines",
]

class _CallableModule(types.ModuleType):
    """The package exports ``fastsock.limits`` as the :func:`limits` function,
    but importing this subpackage rebinds that package attribute to the module
    (import order decides which one a user gets). A callable module makes
    ``fastsock.limits()`` return the report either way."""

    def __call__(self, *, proc: str | None = None) -> LimitsReport:
        return limits(proc=proc)


sys.modules[__name__].__class__ = _CallableModule
