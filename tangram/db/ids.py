"""Record ids: UUIDv7 — unique across installations and ordered by creation time,
so exported data merges without renumbering and keyset paging follows creation."""

import uuid

from uuid6 import uuid7


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid7().bytes)
