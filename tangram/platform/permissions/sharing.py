"""Sharing a record with a user or a department, for read or edit, and
transferring ownership. Both need the ``update`` right on the record; both
are audited.

    share_record(ctx, app="crm", form="deal", record_id=d, user_id=presales.id,
                 access="edit")
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa

from tangram.db import new_id
from tangram.engines.context import EngineContext
from tangram.engines.forms.ownership import transfer_owner
from tangram.engines.forms.records import fetch_record, parse_id
from tangram.engines.forms.registry import get_runtime
from tangram.errors import NotFound
from tangram.platform.permissions import audit
from tangram.platform.permissions.roles import parse_holder
from tangram.platform.permissions.tables import record_shares_table

ShareAccess = Literal["read", "edit"]


def _editable_record(ctx: EngineContext, app: str, form: str, record_id: Any) -> uuid.UUID:
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "update")
    rid = parse_id(record_id)
    row = fetch_record(ctx, rt, rid, deleted=False)
    ctx.policy.check_row(ctx.actor, app, form, row, "update")
    return rid


def share_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                 access: ShareAccess, user_id: uuid.UUID | None = None,
                 department_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Share (or change the access of an existing share); idempotent."""
    rid = _editable_record(ctx, app, form, record_id)
    kind, holder = parse_holder(ctx.session, user_id, department_id)
    s = record_shares_table
    column = s.c.user_id if kind == "user" else s.c.department_id
    where = (s.c.app == app, s.c.form == form, s.c.record_id == rid, column == holder)
    existing = ctx.session.execute(sa.select(s.c.id).where(*where)).first()
    if existing is not None:
        share_id = existing.id
        ctx.session.execute(s.update().where(s.c.id == share_id).values(access=access))
    else:
        share_id = new_id()
        ctx.session.execute(s.insert().values(
            id=share_id, app=app, form=form, record_id=rid, user_id=user_id,
            department_id=department_id, access=access, created_at=ctx.now(),
            created_by=ctx.actor.id))
    audit.record(ctx.session, action="share.create", target=f"{app}/{form}/{rid}",
                 actor_id=ctx.actor.id, at=ctx.now(), access=access, **{kind: holder})
    return {"id": str(share_id), "record_id": str(rid), "access": access, kind: str(holder)}


def unshare_record(ctx: EngineContext, *, app: str, form: str, record_id: Any,
                   share_id: uuid.UUID) -> None:
    rid = _editable_record(ctx, app, form, record_id)
    s = record_shares_table
    result = ctx.session.execute(s.delete().where(s.c.id == share_id, s.c.record_id == rid,
                                                  s.c.app == app, s.c.form == form))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"share {share_id} of record {rid} does not exist")
    audit.record(ctx.session, action="share.delete", target=f"{app}/{form}/{rid}",
                 actor_id=ctx.actor.id, at=ctx.now(), share=share_id)


def list_shares(ctx: EngineContext, *, app: str, form: str, record_id: Any
                ) -> list[dict[str, Any]]:
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "read")
    rid = parse_id(record_id)
    ctx.policy.check_row(ctx.actor, app, form, fetch_record(ctx, rt, rid, deleted=False), "read")
    s = record_shares_table
    rows = ctx.session.execute(sa.select(s).where(s.c.app == app, s.c.form == form,
                                                  s.c.record_id == rid)
                               .order_by(s.c.created_at))
    return [{"id": str(r.id), "access": r.access,
             "user_id": str(r.user_id) if r.user_id else None,
             "department_id": str(r.department_id) if r.department_id else None}
            for r in rows]


def transfer(ctx: EngineContext, *, app: str, form: str, record_ids: list[Any],
             new_owner: uuid.UUID, version: int | None = None) -> list[dict[str, Any]]:
    """Transfer ownership of one or many records (all or none), audited."""
    result = transfer_owner(ctx, app=app, form=form, record_ids=record_ids,
                            new_owner=new_owner, expected_version=version)
    audit.record(ctx.session, action="record.transfer", target=f"{app}/{form}",
                 actor_id=ctx.actor.id, at=ctx.now(), owner=new_owner,
                 records=[r["id"] for r in result])
    return result
