"""``python -m fastsock`` (and the ``fastsock`` console script): see :mod:`fastsock.cli`."""
from __future__ import annotations

import sys

from fastsock.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
