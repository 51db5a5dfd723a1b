"""Planner statistics after bulk changes (a dialect quirk, kept here).

SQLite's planner has no statistics until ``ANALYZE`` runs. Without them it
serves ``WHERE deleted_at IS NULL ORDER BY id`` from the ``deleted_at`` index
and sorts every live row for each keyset page, so paging through a large
table (an export) costs O(n²). With statistics it walks the primary key.
PostgreSQL's autovacuum refreshes statistics by itself, but only now and
then: a bulk load that grows a table from empty to 100,000 rows in a minute
keeps the plans (and prepared generic plans) made for an empty table —
sequential scans for every lookup — unless the loader says ``ANALYZE``. On
PostgreSQL that samples a bounded number of rows, so it costs little.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session


def refresh_statistics(session: Session, table: sa.Table) -> None:
    """Let the planner know ``table``'s size and value spread.

    On SQLite a full ``ANALYZE`` of the table (about a second per million
    rows): a sampled one (``analysis_limit``) misjudges the ``deleted_at``
    index as selective on large tables and brings the O(n²) paging back. On
    PostgreSQL the usual sampled ``ANALYZE``."""
    quoted = session.get_bind().dialect.identifier_preparer.quote(table.name)
    session.execute(sa.text(f"ANALYZE {quoted}"))
