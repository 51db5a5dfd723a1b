"""The security audit log: who changed which right, when.

Every service of this package that changes a right (roles, assignments,
shares, ownership, tokens, users' status, the org chart, lockouts) writes one
entry in the caller's transaction, so the entry exists exactly when the change
does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.platform.permissions.tables import security_audit_table


def record(session: Session, *, action: str, target: str, actor_id: uuid.UUID | None,
           at: datetime, **details: Any) -> None:
    """Write one entry, e.g. ``record(s, action="role.assign", target="crm/sales_rep", …)``."""
    session.execute(security_audit_table.insert().values(
        id=new_id(), at=at, actor_id=actor_id, action=action, target=target[:200],
        details=_jsonable(details)))


def entries(session: Session, *, limit: int = 100, action: str | None = None
            ) -> list[dict[str, Any]]:
    """The newest entries first."""
    t = security_audit_table
    stmt = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
    if action:
        stmt = stmt.where(t.c.action == action)
    return [{"id": str(r.id), "at": iso_utc(r.at),
             "actor_id": str(r.actor_id) if r.actor_id else None, "action": r.action,
             "target": r.target, "details": r.details} for r in session.execute(stmt)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (uuid.UUID, datetime)):
        return str(value)
    return value
