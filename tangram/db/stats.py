"""Planner statistics after bulk changes (a dialect quirk, kept here).

SQLite's planner has no statistics until ``ANALYZE`` runs. Without them it
serves ``WHERE deleted_at IS NULL ORDER BY id`` from the ``deleted_at`` index
and sorts every live row for each keyset page, so paging through a large
table (an export) costs O(n²). With statistics it walks the primary key.
PostgreSQL's autovacuum keeps statistics current by itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session


def refresh_statistics(session: Session, table: sa.Table) -> None:
    """Let the planner know ``table``'s size and value spread.

    A full ``ANALYZE`` of the table (about a second per million rows): a
    sampled one (``analysis_limit``) misjudges the ``deleted_at`` index as
    selective on large tables and brings the O(n²) paging back."""
    if session.get_bind().dialect.name != "sqlite":
        return
    quoted = session.get_bind().dialect.identifier_preparer.quote(table.name)
    session.execute(sa.text(f"ANALYZE {quoted}"))
