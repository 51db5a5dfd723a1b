"""Where records come from: give records just created in bulk by the system
(a package's seed or demo rows) the owner and creation time they stand for.

A demo company needs each rep's own pipeline and eighteen months of history,
but the bulk path stamps every record "now, by the caller". This rewrites
those system columns once, right after the create, in the same transaction.
It is not an edit by anyone — nothing about the records' content changes —
so it writes no audit entry and emits no event (an ownership change by a
user is :func:`ownership.transfer_owner`, audited).

    set_origins(ctx, app="crm", form="lead",
                origins=[Origin(record_id=rid, owner=rep_id, created_at=at)])
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.directory import existing_user_ids
from tangram.engines.forms.records import autonumbers, bump_data_version, give_back_numbers
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel import fields as fm


@dataclass(frozen=True)
class Origin:
    """``owner`` also becomes the record's creator (and last editor);
    ``created_at`` also its last update time. ``None`` keeps the column;
    ``no_owner`` leaves the record without an owner (e.g. a lead in a public
    pool; the creator stays who created it). ``numbered``: the autonumber
    fields the record was given a number for (kept, not renumbered)."""

    record_id: uuid.UUID
    owner: uuid.UUID | None = None
    created_at: datetime | None = None
    no_owner: bool = False
    numbered: frozenset[str] = frozenset()


def set_origins(ctx: EngineContext, *, app: str, form: str, origins: Sequence[Origin]) -> int:
    """Rewrite owner / creator and creation time of the given records;
    returns how many records were given an origin. Refused (nothing
    written) when an owner is not a user."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "create")
    owners = {o.owner for o in origins if o.owner is not None}
    missing = owners - existing_user_ids(ctx.session, owners)
    if missing:
        raise ValidationFailed([ErrorItem(code="user_missing", field="owner",
                                          message=f"user {m} does not exist")
                                for m in sorted(missing, key=str)])
    t = rt.table
    by_owner = [{"_id": o.record_id, "_owner": o.owner} for o in origins
                if o.owner is not None]
    by_time = [{"_id": o.record_id, "_at": o.created_at} for o in origins
               if o.created_at is not None]
    # One executemany per column group: rows giving only one of the two keep the other.
    if by_owner:
        ctx.session.execute(sa.update(t).where(t.c.id == sa.bindparam("_id")).values(
            owner=sa.bindparam("_owner"), created_by=sa.bindparam("_owner"),
            updated_by=sa.bindparam("_owner")), by_owner)
    if by_time:
        ctx.session.execute(sa.update(t).where(t.c.id == sa.bindparam("_id")).values(
            created_at=sa.bindparam("_at"), updated_at=sa.bindparam("_at")), by_time)
    unowned = [{"_id": o.record_id} for o in origins if o.no_owner]
    if unowned:
        ctx.session.execute(sa.update(t).where(t.c.id == sa.bindparam("_id")).values(
            owner=None), unowned)
    _renumber(ctx, rt, [o for o in origins if o.created_at is not None])
    if by_owner or by_time or unowned:
        bump_data_version(ctx, rt)
    return len({o.record_id for o in origins if o.owner is not None
                or o.created_at is not None or o.no_owner})


def _renumber(ctx: EngineContext, rt: FormRuntime, dated: Sequence[Origin]) -> None:
    """Records created in the past take the numbers of their own period: a
    ticket of September is GD-20260915-…, not numbered for the install day
    (the numbers they got at insert are given back, so the install day's
    counter has no gap). A number the record was given (an exported
    record's) is its own: kept."""
    fields = [f for f in rt.form.fields if isinstance(f, fm.AutonumberField)
              and re.search(r"\{(YYYY|YY|MM|DD)\}", f.pattern)]
    if not fields or not dated:
        return
    ordered = sorted(dated, key=lambda o: (o.created_at, str(o.record_id)))
    t = rt.table
    for f in fields:
        moved = [o.record_id for o in ordered if f.key not in o.numbered]
        if not moved:
            continue
        # The numbers drawn at insert are given back first (they were the
        # last of the install day's counter): no gap before the next number.
        drawn = [n for i in range(0, len(moved), 1000) for n in ctx.session.execute(
            sa.select(t.c[f.key]).where(t.c.id.in_(moved[i:i + 1000]))).scalars()]
        give_back_numbers(ctx, rt, f, drawn)
        params = [{"_id": o.record_id, "_number": autonumbers(ctx, rt, f, at=o.created_at)[0]}
                  for o in ordered if f.key not in o.numbered]
        ctx.session.execute(sa.update(t).where(t.c.id == sa.bindparam("_id")).values(
            {f.key: sa.bindparam("_number")}), params)
