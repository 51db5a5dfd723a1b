"""Print templates: save (checked against the app), list, delete, and print a
record with one of them as HTML or PDF.

    save_print_template(ctx, app="crm", key="contract_pdf", body={...})
    out = print_record(ctx, app="crm", form="contract", record_id=rid,
                       template="contract_pdf", fmt="pdf")
    out.content, out.media_type, out.file_name
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from jinja2 import nodes

from tangram.engines.context import EngineContext
from tangram.engines.forms.records import file_readable
from tangram.engines.forms.registry import get_runtime
from tangram.engines.forms.systables import files_table
from tangram.engines.printing.context import SYSTEM_SHOWN, template_variables
from tangram.engines.printing.render import (
    ENVIRONMENT,
    FetchLog,
    FileOpener,
    check_template_text,
    render_html,
    render_pdf,
    render_text,
)
from tangram.engines.templates import TemplateInvalid
from tangram.errors import (
    DefinitionInvalid,
    ErrorItem,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tangram.metamodel import fields as fm
from tangram.metamodel import storage
from tangram.metamodel.common import localize
from tangram.metamodel.printing import PrintTemplate
from tangram.metamodel.storage import definition_versions_table, definitions_table

KIND = "print_template"


@dataclass(frozen=True)
class PrintFormat:
    name: str
    media_type: str
    extension: str
    produce: Callable[[str, FileOpener | None, FetchLog | None], bytes]


PRINT_FORMATS: dict[str, PrintFormat] = {f.name: f for f in (
    PrintFormat("html", "text/html; charset=utf-8", ".html",
                lambda html, open_file, log: html.encode("utf-8")),
    PrintFormat("pdf", "application/pdf", ".pdf",
                lambda html, open_file, log: render_pdf(html, open_file=open_file,
                                                        fetched=log)),
)}


@dataclass(frozen=True)
class PrintOutput:
    content: bytes
    media_type: str
    file_name: str


# --------------------------------------------------------------------------- checks

def _record_names(source: str, variable: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each ``<variable>.name`` in a template (parsed, not run)."""
    try:
        tree = ENVIRONMENT.parse(source)
    except Exception:  # syntax errors are reported by check_template_text
        return []
    return [(n.lineno, n.attr) for n in tree.find_all(nodes.Getattr)
            if isinstance(n.node, nodes.Name) and n.node.name == variable]


def check_print_template(ctx: EngineContext, app: str, template: PrintTemplate
                         ) -> list[ErrorItem]:
    """Every problem of ``template`` in its app: the template texts compile in
    the sandbox, the form, fields and related lists they name exist."""
    errors: list[ErrorItem] = []
    for part in ("body", "file_name"):
        text = getattr(template, part)
        problem = check_template_text(text) if text else None
        if problem:
            errors.append(ErrorItem(code="template", path=f"$.{part}", message=problem))
    try:
        rt = get_runtime(ctx.session, app, template.form)
    except NotFound:
        errors.append(ErrorItem(code="unknown_form", path="$.form", message=(
            f"app {app!r} has no published form {template.form!r}")))
        return errors
    known = {f.key for f in rt.form.fields} | set(SYSTEM_SHOWN)
    for line, name in _record_names(template.body, "record"):
        if name not in known:
            errors.append(ErrorItem(code="unknown_field", path="$.body", message=(
                f"line {line}: record.{name}: form {template.form!r} has no field {name!r} "
                f"(fields: {', '.join(f.key for f in rt.form.fields)})")))
    declared = {r.key for r in template.related}
    for line, name in _record_names(template.body, "related"):
        if name not in declared:
            errors.append(ErrorItem(code="unknown_related", path="$.body", message=(
                f"line {line}: related.{name} is not declared in \"related\" "
                f"(declared: {', '.join(sorted(declared)) or 'none'})")))
    for i, rel in enumerate(template.related):
        at = f"$.related[{i}]"
        try:
            source = get_runtime(ctx.session, app, rel.form)
        except NotFound:
            errors.append(ErrorItem(code="unknown_form", path=f"{at}.form", message=(
                f"app {app!r} has no published form {rel.form!r}")))
            continue
        via = source.form.field(rel.via)
        if not isinstance(via, fm.RelationField) or via.target != template.form:
            errors.append(ErrorItem(code="unknown_field", path=f"{at}.via", message=(
                f"form {rel.form!r} has no relation field {rel.via!r} pointing at form "
                f"{template.form!r}")))
        for spec in rel.sort:
            if source.form.field(spec.lstrip("-")) is None and spec.lstrip("-") not in \
                    SYSTEM_SHOWN:
                errors.append(ErrorItem(code="unknown_field", path=f"{at}.sort", message=(
                    f"form {rel.form!r} has no field {spec.lstrip('-')!r} to sort by")))
    return errors


def _raise(key: str, errors: list[ErrorItem]) -> None:
    if not errors:
        return
    cls = TemplateInvalid if any(e.code == "template" for e in errors) else DefinitionInvalid
    raise cls(f"print template {key!r} is not valid: {errors[0].path}: {errors[0].message}",
              errors=errors)


# --------------------------------------------------------------------------- definitions

def save_print_template(ctx: EngineContext, *, app: str, key: str, body: dict[str, Any],
                        note: str | None = None) -> dict[str, Any]:
    """Check ``body`` and store it as the template's next version (in use at once)."""
    def check(model: Any) -> None:
        _raise(key, check_print_template(ctx, app, model))

    row = storage.save_draft(ctx.session, app=app, kind=KIND, key=key, body=body,
                             user_id=ctx.actor.id, now=ctx.now(), check=check)
    locked = storage.get_definition(ctx.session, app=app, kind=KIND, key=key, lock=True)
    assert row.draft is not None
    version = storage.record_version(ctx.session, definition=locked, body=row.draft,
                                     user_id=ctx.actor.id, now=ctx.now(), note=note)
    return {"key": key, "version": version, "definition": row.draft}


def get_print_template(ctx: EngineContext, *, app: str, key: str) -> tuple[PrintTemplate, int]:
    d = storage.get_definition(ctx.session, app=app, kind=KIND, key=key)
    if d.latest_version == 0:
        raise NotFound(f"print template {key!r} of app {app!r} is not published")
    body = storage.get_version(ctx.session, d, d.latest_version)["body"]
    return PrintTemplate.model_validate(body), d.latest_version


def list_print_templates(ctx: EngineContext, *, app: str, form: str | None = None
                         ) -> list[dict[str, Any]]:
    """Published templates of the app (of one form when given)."""
    storage.get_app(ctx.session, app)
    out = []
    for d in storage.list_definitions(ctx.session, app=app, kind=KIND):
        if d.latest_version == 0:
            continue
        tpl = PrintTemplate.model_validate(
            storage.get_version(ctx.session, d, d.latest_version)["body"])
        if form is None or tpl.form == form:
            out.append({"key": d.key, "label": tpl.label, "form": tpl.form,
                        "version": d.latest_version,
                        "paper": tpl.paper.model_dump(mode="json")})
    return out


def templates_for_viewer(ctx: EngineContext, *, app: str, form: str) -> list[dict[str, Any]]:
    """The form's templates when the viewer may print it (else none), for a print button."""
    try:
        ctx.policy.check_form_action(ctx.actor, app, form, "print")
    except PermissionDenied:
        return []
    return [{"key": t["key"], "label": t["label"]}
            for t in list_print_templates(ctx, app=app, form=form)]


def delete_print_template(ctx: EngineContext, *, app: str, key: str) -> None:
    d = storage.get_definition(ctx.session, app=app, kind=KIND, key=key, lock=True)
    v, t = definition_versions_table, definitions_table
    ctx.session.execute(sa.delete(v).where(v.c.definition_id == d.id))
    ctx.session.execute(sa.delete(t).where(t.c.id == d.id))


# --------------------------------------------------------------------------- printing

def _file_name(template: PrintTemplate, variables: dict[str, Any], language: str,
               extension: str) -> str:
    if template.file_name:
        name = render_text(template.file_name, variables, where="file_name")
    else:
        name = "-".join(p for p in (localize(template.label, language),
                                    str(variables["record"])) if p)
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]+", "_", name).strip(" ._") or template.key
    return name[:150] + extension


def print_record(ctx: EngineContext, *, app: str, form: str, record_id: Any, template: str,
                 fmt: str = "html", open_file: FileOpener | None = None,
                 fetched: FetchLog | None = None) -> PrintOutput:
    """One record through one template, as the viewer may see it.

    Raises PermissionDenied without the ``print`` right, NotFound for a record
    out of the viewer's scope, TemplateInvalid when the template does
    something the sandbox refuses."""
    output = PRINT_FORMATS.get(fmt)
    if output is None:
        item = ErrorItem(code="format_invalid", field="format", message=(
            f"cannot print as {fmt!r}; formats: {', '.join(PRINT_FORMATS)}"))
        raise ValidationFailed([item], item.message)
    tpl, _ = get_print_template(ctx, app=app, key=template)
    if tpl.form != form:
        raise NotFound(f"print template {template!r} prints form {tpl.form!r}, not {form!r}")
    variables = template_variables(ctx, app=app, template=tpl, record_id=record_id)
    # Everything is read: end the transaction before rendering, which may take
    # seconds (a PDF; a template up to its time budget). On SQLite every
    # transaction holds the write lock (BEGIN IMMEDIATE), so a render inside one
    # would stop every other request that writes.
    ctx.session.commit()
    html = render_html(tpl, variables, language=ctx.language)
    return PrintOutput(content=output.produce(html, open_file, fetched),
                       media_type=output.media_type,
                       file_name=_file_name(tpl, variables, ctx.language, output.extension))


def platform_file_opener(ctx: EngineContext, read: Callable[[str], bytes]) -> FileOpener:
    """Files of the platform a PDF may embed (logos, signatures): those the
    viewer may download, read by ``read(storage_key)``."""
    def open_file(file_id: uuid.UUID) -> tuple[bytes, str] | None:
        row = ctx.session.execute(sa.select(files_table).where(
            files_table.c.id == file_id)).first()
        readable = row is not None and file_readable(ctx, file_id=file_id,
                                                     uploaded_by=row.uploaded_by)
        # Called while the PDF is laid out: let go of the database at once
        # (see print_record).
        ctx.session.commit()
        if row is None or not readable:
            return None
        return read(row.storage_key), row.content_type

    return open_file
