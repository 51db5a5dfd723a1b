"""The variables a print template sees, read through the records engine.

Everything comes from the records engine's read path as the viewer: the
printed record (``get_record``: read right, row scope, hidden fields left
out), its linked records (each read the same way; one the viewer may not read
shows only its title), and the declared related lists (``list_records`` with
the viewer's scope on that form). A template can therefore only print what
the viewer could open in the app.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from tangram.engines.context import EngineContext
from tangram.engines.forms import records
from tangram.engines.forms.query import ListQuery
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.forms.titles import load_titles
from tangram.engines.printing.values import PrintRecord, ShowEnv, Shown, reference, shown
from tangram.errors import NotFound, PermissionDenied
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize
from tangram.metamodel.printing import PrintTemplate, RelatedList
from tangram.metamodel.storage import get_app

SYSTEM_SHOWN = {  # system values every record carries, shown like these field types
    "id": ("text", {"zh": "记录ID", "en": "Record id"}),
    "owner": ("user", {"zh": "负责人", "en": "Owner"}),
    "created_by": ("user", {"zh": "创建人", "en": "Created by"}),
    "updated_by": ("user", {"zh": "更新人", "en": "Updated by"}),
    "created_at": ("datetime", {"zh": "创建时间", "en": "Created at"}),
    "updated_at": ("datetime", {"zh": "更新时间", "en": "Updated at"}),
}
_SYSTEM_FIELDS = {key: fm.FIELD_MODELS[kind].model_validate(
    {"key": "system_" + key, "type": kind, "label": label})
    for key, (kind, label) in SYSTEM_SHOWN.items()}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class _Reader:
    """Turns records-API JSON into :class:`PrintRecord` values for one viewer."""

    def __init__(self, ctx: EngineContext, app: str) -> None:
        self.ctx = ctx
        self.app = app
        self.env = ShowEnv(language=ctx.language, zone=ZoneInfo(ctx.timezone))

    def _titles(self, rt: FormRuntime, items: list[dict[str, Any]]) -> dict[tuple[str, Any], str]:
        wanted: dict[str, set[uuid.UUID]] = defaultdict(set)

        def want(f: fm.FieldBase, value: Any) -> None:
            ref = reference(f)
            if ref is None or value is None:
                return
            for v in value if isinstance(value, list) else [value]:
                if (ident := _uuid(v)) is not None:
                    wanted[ref].add(ident)

        for item in items:
            for key, f in _SYSTEM_FIELDS.items():
                want(f, item.get(key))
            for f in rt.form.fields:
                if isinstance(f, fm.SubTableField):
                    for row in item.get(f.key) or []:
                        for sf in f.fields:
                            want(sf, row.get(sf.key))
                elif f.key in item:
                    want(f, item[f.key])
        return {(ref, str(ident)): text
                for (ref, ident), text in load_titles(self.ctx, rt.app, wanted).items()}

    def records(self, rt: FormRuntime, items: list[dict[str, Any]], *,
                follow_links: bool) -> list[PrintRecord]:
        """Records as the API returned them (hidden fields already absent)."""
        titles = self._titles(rt, items)
        out = []
        for item in items:
            values: dict[str, Any] = {
                key: shown(f, item.get(key), self.env, titles) for key, f in _SYSTEM_FIELDS.items()}
            for f in rt.form.fields:
                if f.key not in item:
                    continue  # hidden from this viewer: the template prints ""
                if isinstance(f, fm.SubTableField):
                    values[f.key] = [PrintRecord({sf.key: shown(sf, row.get(sf.key), self.env,
                                                                titles) for sf in f.fields})
                                     for row in item[f.key] or []]
                    continue
                values[f.key] = shown(f, item[f.key], self.env, titles)
                if follow_links and isinstance(f, fm.RelationField) and item[f.key]:
                    linked = self._linked(f, item[f.key])
                    if linked is not None:
                        values[f.key] = linked
            title_key = rt.title_field
            title = str(values.get(title_key, "")) if title_key else ""
            out.append(PrintRecord(values, title))
        return out

    def _linked(self, f: fm.RelationField, record_id: str) -> PrintRecord | None:
        """The linked record as this viewer reads it, or None when they may not."""
        try:
            target = get_runtime(self.ctx.session, self.app, f.target)
            item = records.get_record(self.ctx, app=self.app, form=f.target, record_id=record_id)
        except (NotFound, PermissionDenied):
            return None
        return self.records(target, [item], follow_links=False)[0]

    def related(self, record_id: uuid.UUID, spec: RelatedList) -> list[PrintRecord]:
        """Records of ``spec.form`` pointing here, in the viewer's scope on that form
        (none when the viewer may not read it)."""
        try:
            target = get_runtime(self.ctx.session, self.app, spec.form)
            page = records.list_records(self.ctx, app=self.app, form=spec.form, query=ListQuery(
                filter={"field": spec.via, "op": "eq", "value": str(record_id)},
                sort=list(spec.sort), limit=spec.limit))
        except (NotFound, PermissionDenied):
            return []
        return self.records(target, page["items"], follow_links=False)


def check_printable(ctx: EngineContext, *, app: str, form: str, record_id: Any) -> uuid.UUID:
    """Raise unless the viewer may print this record: the ``print`` right on the
    form (403), and the record in their row scope for printing (404 when they
    cannot even see it, 403 when they can but may not print it)."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "print")
    rid = records.parse_id(record_id)
    rows = records.find_records(ctx, rt, "id", [rid])
    if not rows:
        raise NotFound(f"record {rid} of form {form!r} does not exist")
    ctx.policy.check_row(ctx.actor, app, form, rows[0], "print")
    return rid


def template_variables(ctx: EngineContext, *, app: str, template: PrintTemplate,
                       record_id: Any) -> dict[str, Any]:
    """The variables of one print, after :func:`check_printable`.

        variables = template_variables(ctx, app="crm", template=tpl, record_id=rid)
        variables["record"].amount        # Shown("¥1,200,000.00", raw=Decimal(...))
    """
    rid = check_printable(ctx, app=app, form=template.form, record_id=record_id)
    rt = get_runtime(ctx.session, app, template.form)
    item = records.get_record(ctx, app=app, form=template.form, record_id=rid)
    reader = _Reader(ctx, app)
    record = reader.records(rt, [item], follow_links=True)[0]
    now = ctx.now().astimezone(reader.env.zone)
    app_def = get_app(ctx.session, app)
    return {
        "record": record,
        "related": {r.key: reader.related(rid, r) for r in template.related},
        "form": {"key": rt.key, "label": localize(rt.form.label, ctx.language)},
        "app": {"key": app, "name": localize(app_def.name, ctx.language)},
        "template": {"key": template.key, "label": localize(template.label, ctx.language)},
        "user": {"name": ctx.actor.display_name, "username": ctx.actor.username},
        "now": Shown(now.strftime("%Y-%m-%d %H:%M"), now),
        "today": Shown(now.date().isoformat(), now.date()),
    }
