"""Ownership transfer: give one or many records to another owner.

An audited write like any update (version bump, audit entry ``transfer``,
``updated`` event with ``owner`` changed), checked against the policy's
``update`` right on each record. All records or none.

Example::

    transfer_owner(ctx, app="crm", form="account", record_ids=[a, b], new_owner=user_id)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from tangram.engines.context import EngineContext
from tangram.engines.directory import existing_user_ids
from tangram.engines.forms import events
from tangram.engines.forms.records import (
    audit_change,
    bump_data_version,
    check_version,
    fetch_record,
    note_written,
    parse_id,
    record_json,
    written_version,
)
from tangram.engines.forms.registry import get_runtime
from tangram.errors import ErrorItem, ValidationFailed

MAX_TRANSFER = 5000


def transfer_owner(ctx: EngineContext, *, app: str, form: str, record_ids: Iterable[Any],
                   new_owner: uuid.UUID | None, source: str = "api",
                   expected_version: int | None = None) -> list[dict[str, Any]]:
    """Set ``owner`` of every record to ``new_owner`` (None: no owner, e.g. a
    lead back in the public pool); returns ``[{id, version}]``.
    ``expected_version`` (one record): the version the client read — when
    two people take the same record at once, the second gets 409."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "update")
    ids = list(dict.fromkeys(parse_id(i) for i in record_ids))
    if not ids or len(ids) > MAX_TRANSFER:
        raise ValidationFailed([ErrorItem(code="count", field="record_ids", message=(
            f"give 1 to {MAX_TRANSFER} record ids"))])
    if expected_version is not None and len(ids) != 1:
        raise ValidationFailed([ErrorItem(code="version", field="version", message=(
            "a version is for transferring one record"))])
    if new_owner is not None and not existing_user_ids(ctx.session, [new_owner]):
        raise ValidationFailed([ErrorItem(code="user_missing", field="owner",
                                          message=f"user {new_owner} does not exist")])
    now = ctx.now()
    t = rt.table
    out = []
    for rid in ids:
        old = fetch_record(ctx, rt, rid, deleted=False, lock=True)
        ctx.policy.check_row(ctx.actor, app, form, old, "update")
        check_version(old, expected_version)
        if old.get("owner") == new_owner:
            out.append({"id": str(rid), "version": old["version"]})
            continue
        version = old["version"] + 1
        ctx.session.execute(t.update().where(t.c.id == rid).values(
            owner=new_owner, updated_at=now, updated_by=ctx.actor.id, version=version))
        new = {**old, "owner": new_owner, "updated_at": now, "updated_by": ctx.actor.id,
               "version": version}
        note_written(ctx, rid, version)
        old_json, new_json = record_json(rt, old), record_json(rt, new)
        audit_change(ctx, rt, rid, "transfer",
               {"owner": {"old": old_json["owner"], "new": new_json["owner"]}}, source)
        events.emit(ctx, app=app, form=form, record_id=rid, event="updated",
                    changed_fields=["owner"], record=new_json, old=old_json, source=source)
        # A flow the transfer started may have changed the record again.
        out.append({"id": str(rid), "version": written_version(ctx, rid, version)})
    bump_data_version(ctx, rt)
    return out
