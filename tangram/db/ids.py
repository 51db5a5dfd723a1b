"""Record ids: UUIDv7 (RFC 9562) — unique across installations and ordered by
creation time, so exported data merges without renumbering and keyset paging
follows creation.

Ids made by one process are strictly increasing: within one millisecond the
74 random bits after the timestamp are drawn and sorted per batch, and the
millisecond moves forward by one when a batch would otherwise not sort after
the last id (the method the RFC calls "monotonic random").
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_RAND_B = (1 << 62) - 1
_lock = threading.Lock()
_last = 0  # the last id handed out, as an int


def new_ids(n: int) -> list[uuid.UUID]:
    """``n`` fresh ids in increasing order, from one read of the system's
    random source (bulk inserts ask for thousands at once)."""
    global _last
    if n <= 0:
        return []
    pool = os.urandom(10 * n)
    from_bytes = int.from_bytes
    # 74 random bits per id: 12 (rand_a, after the version) and 62 (rand_b,
    # after the variant), from consecutive 10-byte slices of the pool.
    randoms = sorted(((r >> 62) & 0xFFF) << 64 | (r & _RAND_B)
                     for r in (from_bytes(pool[i:i + 10], "big") for i in range(0, 10 * n, 10)))
    with _lock:
        ms = max(time.time_ns() // 1_000_000, _last >> 80)
        if (ms << 80) | _VERSION_AND_VARIANT | randoms[0] <= _last:
            ms += 1  # same millisecond as the last batch: move on by one
        base = (ms << 80) | _VERSION_AND_VARIANT
        _last = base | randoms[-1]
    return [uuid.UUID(int=base | r) for r in randoms]


def new_id() -> uuid.UUID:
    """One fresh id, greater than every id this process made before."""
    return new_ids(1)[0]
