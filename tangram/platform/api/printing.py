"""Print templates: CRUD for app builders, and printing a record as HTML or PDF.
Engine logic lives in ``tangram.engines.printing``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from tangram.engines import printing
from tangram.engines.forms.files import FileStore
from tangram.engines.printing.render import MAX_FILE_BYTES
from tangram.errors import LimitExceeded
from tangram.metamodel import storage
from tangram.platform.api.body import Body
from tangram.platform.deps import BuilderActor, ContextDep, MemberContextDep

router = APIRouter(prefix="/api/apps/{app}", tags=["printing"])

# The HTML print page loads nothing but inline styles and images from this
# server or data: URLs, and runs no script.
HTML_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
               "font-src 'self' data:; base-uri 'none'; form-action 'none'")


class TemplateBody(Body):
    definition: dict[str, Any] = Field(description="The print template (see the "
                                       "print_template schema and docs/print.md).")
    note: str | None = Field(None, max_length=2000)


@router.get("/print-templates")
def list_templates(app: str, ctx: MemberContextDep,
                   form: Annotated[str | None, Query(description="only this form's")] = None
                   ) -> list[dict[str, Any]]:
    return printing.list_print_templates(ctx, app=app, form=form)


@router.get("/print-templates/{key}")
def get_template(app: str, key: str, ctx: MemberContextDep) -> dict[str, Any]:
    template, version = printing.get_print_template(ctx, app=app, key=key)
    return {"key": key, "version": version, "definition": storage.dump(template)}


@router.put("/print-templates/{key}")
def save_template(app: str, key: str, body: TemplateBody, ctx: ContextDep,
                  _builder: BuilderActor) -> dict[str, Any]:
    """Create or replace a template; checked (form, fields, sandbox) and in use at once."""
    return printing.save_print_template(ctx, app=app, key=key, body=body.definition,
                                        note=body.note)


@router.delete("/print-templates/{key}", status_code=204)
def delete_template(app: str, key: str, ctx: ContextDep, _builder: BuilderActor) -> Response:
    printing.delete_print_template(ctx, app=app, key=key)
    return Response(status_code=204)


def _reader(request: Request) -> Any:
    store: FileStore = request.app.state.file_store

    def read(storage_key: str) -> bytes:
        with store.open(storage_key) as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
        if len(content) > MAX_FILE_BYTES:
            raise LimitExceeded(f"a file in a print is larger than {MAX_FILE_BYTES >> 20} MB")
        return content

    return read


def content_disposition(disposition: str, file_name: str) -> str:
    """``filename`` (ASCII fallback) and ``filename*`` (RFC 5987, UTF-8)."""
    fallback = file_name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name)}"


@router.get("/forms/{form}/records/{record_id}/print/{template}")
def print_record(
    app: str, form: str, record_id: str, template: str, request: Request, ctx: ContextDep,
    format: Annotated[str, Query(description="html | pdf")] = "html",
    download: Annotated[bool, Query(description="attachment instead of inline")] = False,
) -> Response:
    """The record through the template, as this viewer may see it (``print`` right,
    row scope, hidden fields left out)."""
    out = printing.print_record(ctx, app=app, form=form, record_id=record_id,
                                template=template, fmt=format,
                                open_file=printing.platform_file_opener(ctx, _reader(request)))
    headers = {"Content-Disposition": content_disposition(
        "attachment" if download else "inline", out.file_name),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    if format == "html":
        headers["Content-Security-Policy"] = HTML_POLICY
    return Response(content=out.content, media_type=out.media_type, headers=headers)
