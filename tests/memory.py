"""Memory measured in tests: a budget is proven by the peak of what Python
allocated (tracemalloc), never by wall-clock time."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any


def peak_of(run: Callable[[], Any]) -> tuple[Any, int]:
    """What ``run()`` returned and the peak bytes allocated while it ran."""
    tracemalloc.start()
    try:
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak
