"""Database plumbing shared by every layer: engines, portable column types, ids.

Dialect differences live here and in ``tangram.db.types`` only; nothing else
branches on the database.
"""

from tangram.db.engine import create_engine_from_url, normalize_url, session_factory
from tangram.db.ids import new_id
from tangram.db.meta import metadata

__all__ = ["create_engine_from_url", "metadata", "new_id", "normalize_url", "session_factory"]
