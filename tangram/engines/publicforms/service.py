"""Publishing forms at anonymous URLs and accepting their submissions.

    pf = publish_public_form(ctx, app="crm", form="lead", fields=["name", "mobile"],
                             utm_fields={"utm_source": "source"})
    submit(ctx, token=pf["token"], values={"name": "张三"}, utm={"utm_source": "baidu"},
           ip="203.0.113.7")

A submission is validated like any record and created through the records
service (so flows triggered by new records run), owned by whoever published
the public form.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from tangram.clock import iso_utc
from tangram.db import new_id
from tangram.engines.access import AllowAll
from tangram.engines.context import SYSTEM_ACTOR, EngineContext
from tangram.engines.forms.records import create_record
from tangram.engines.forms.registry import get_runtime
from tangram.engines.publicforms.tables import public_form_hits_table, public_forms_table
from tangram.errors import (
    DefinitionInvalid,
    ErrorItem,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from tangram.metamodel import storage

UTM_PARAMETERS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
DEFAULT_HONEYPOT = "website"
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 5000
RATE_WINDOW = timedelta(hours=1)


def _load(ctx: EngineContext, token: str) -> sa.RowMapping:
    p = public_forms_table
    row = ctx.session.execute(sa.select(p).where(p.c.token == token,
                                                 p.c.active.is_(True))).mappings().first()
    if row is None:
        raise NotFound("this form is not (or no longer) published")
    return row


def _public(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    return {"token": row["token"], "app": row["app"], "form": row["form"],
            "fields": list(row["fields"]), "utm_fields": dict(row["utm_fields"]),
            "honeypot": row["honeypot"], "max_per_hour": row["max_per_hour"],
            "url": f"/api/public/forms/{row['token']}", "active": row["active"],
            "owner_id": str(row["owner_id"]), "created_at": iso_utc(row["created_at"])}


def publish_public_form(ctx: EngineContext, *, app: str, form: str,
                        fields: list[str] | None = None,
                        utm_fields: Mapping[str, str] | None = None,
                        honeypot: str = DEFAULT_HONEYPOT,
                        max_per_hour: int = 20) -> dict[str, Any]:
    if ctx.actor.id is None:
        raise PermissionDenied("a public form belongs to a user")
    rt = get_runtime(ctx.session, app, form)
    known = {f.key for f in rt.form.fields}
    chosen = list(dict.fromkeys(fields)) if fields else [f.key for f in rt.form.fields]
    utm = dict(utm_fields or {})
    problems = [f"unknown field {k!r}" for k in [*chosen, *utm.values()] if k not in known]
    problems += [f"{p!r} is not a UTM parameter ({', '.join(UTM_PARAMETERS)})"
                 for p in utm if p not in UTM_PARAMETERS]
    if honeypot in known:
        problems.append(f"the honeypot {honeypot!r} must not be a field of the form")
    if problems:
        raise DefinitionInvalid("; ".join(problems))
    row = {"token": secrets.token_urlsafe(24), "app": app, "form": form, "fields": chosen,
           "utm_fields": utm, "honeypot": honeypot, "max_per_hour": max_per_hour,
           "owner_id": ctx.actor.id, "active": True, "created_at": ctx.now()}
    ctx.session.execute(public_forms_table.insert(), row)
    return _public(row)


def list_public_forms(ctx: EngineContext, *, app: str, form: str) -> list[dict[str, Any]]:
    p = public_forms_table
    rows = ctx.session.execute(sa.select(p).where(p.c.app == app, p.c.form == form)
                               .order_by(p.c.created_at)).mappings()
    return [_public(r) for r in rows]


def unpublish(ctx: EngineContext, *, app: str, token: str) -> None:
    p = public_forms_table
    done = ctx.session.execute(p.update().where(p.c.token == token, p.c.app == app)
                               .values(active=False))
    if not done.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no public form {token} in app {app!r}")


def definition(ctx: EngineContext, *, token: str) -> dict[str, Any]:
    """What an anonymous page needs to render the form: only the published fields."""
    row = _load(ctx, token)
    rt = get_runtime(ctx.session, row["app"], row["form"])
    body = storage.dump(rt.form)
    shown = set(row["fields"])
    return {"label": body.get("label"), "description": body.get("description"),
            "fields": [f for f in body["fields"] if f["key"] in shown],
            "honeypot": row["honeypot"], "utm_parameters": sorted(row["utm_fields"])}


def submit(ctx: EngineContext, *, token: str, values: Mapping[str, Any],
           utm: Mapping[str, str], ip: str) -> dict[str, Any]:
    """Create a record from an anonymous submission. A filled honeypot answers
    as if accepted and writes nothing (bots learn nothing)."""
    row = _load(ctx, token)
    _rate_limit(ctx, row, ip)
    if values.get(row["honeypot"]):
        return {"accepted": True}
    extra = [k for k in values if k not in row["fields"] and k != row["honeypot"]]
    if extra:
        raise ValidationFailed([ErrorItem(code="field_not_public", field=k,
                                          message=f"{k!r} is not a field of this form")
                                for k in extra])
    too_long = [k for k, v in values.items() if isinstance(v, str) and len(v) > MAX_TEXT_CHARS]
    if too_long:
        raise LimitExceeded(f"{', '.join(too_long)}: at most {MAX_TEXT_CHARS} characters")
    data = {k: v for k, v in values.items() if k != row["honeypot"]}
    for parameter, field_key in row["utm_fields"].items():
        if utm.get(parameter):
            data[field_key] = str(utm[parameter])[:200]
    system = EngineContext(session=ctx.session, actor=SYSTEM_ACTOR, clock=ctx.clock,
                           language=ctx.language, timezone=ctx.timezone, policy=AllowAll())
    record = create_record(system, app=row["app"], form=row["form"], data=data,
                           owner=row["owner_id"], source="public_form")
    return {"accepted": True, "id": record["id"]}


def _rate_limit(ctx: EngineContext, row: sa.RowMapping, ip: str) -> None:
    h = public_form_hits_table
    now = ctx.now()
    ctx.session.execute(h.delete().where(h.c.at < now - RATE_WINDOW))
    count = ctx.session.execute(sa.select(sa.func.count()).select_from(h).where(
        h.c.token == row["token"], h.c.ip == ip, h.c.at >= now - RATE_WINDOW)).scalar_one()
    if count >= row["max_per_hour"]:
        error = RateLimited(f"too many submissions from your address; try again later "
                            f"(at most {row['max_per_hour']} an hour)")
        error.retry_after = int(RATE_WINDOW.total_seconds())  # type: ignore[attr-defined]
        raise error
    ctx.session.execute(h.insert(), {"id": new_id(), "token": row["token"], "ip": ip,
                                     "at": now})
