"""Imports of spreadsheets into a form: upload, preview, start, progress, error file.

A job belongs to the user who uploaded it: only they (and administrators)
may see it, poll it, preview, start or resume it, or download its error
file — for anyone else it does not exist (404), whatever their import right.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Request, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import Field

from tangram.engines.context import EngineContext
from tangram.engines.imports import (
    configure_job,
    create_job,
    get_job,
    open_error_file,
    preview,
)
from tangram.engines.imports.jobs import STALE_AFTER
from tangram.engines.imports.tables import import_jobs_table
from tangram.errors import Conflict, NotFound
from tangram.platform.api.body import Body
from tangram.platform.dataio import import_environment, start_in_background
from tangram.platform.deps import ContextDep, CurrentAuth, SettingsDep

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/imports", tags=["imports"])


class MappingBody(Body):
    mapping: dict[str, str | None] = Field(
        default_factory=dict, description="Overrides of the suggested mapping: column title "
        "(or \"#3\" for the third column) -> field key, or null to ignore the column.")
    dedup: dict[str, Any] | None = Field(
        None, description="{\"fields\": [\"mobile\"], \"mode\": \"skip\" | \"update\" | "
        "\"merge\"}; omit to create every row.")


class PreviewBody(MappingBody):
    limit: int = Field(20, ge=1, le=200)


class StartBody(MappingBody):
    mode: str = Field("valid_only", description="valid_only | all_or_nothing")
    historical: bool = Field(False, description=(
        "The rows are past records (follow-ups from an old system): flows start for "
        "them only if they name the source \"history\"."))


def _job_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"{job_id!r} is not an import id") from None


def _own_job(ctx: EngineContext, *, app: str, form: str, job_id: str
             ) -> tuple[uuid.UUID, dict[str, Any]]:
    """The job (id, status) if the caller may reach it: the import right on the
    form (the engine checks), and the caller uploaded it or is an administrator."""
    ident = _job_id(job_id)
    job = get_job(ctx, job_id=ident, app=app, form=form)
    t = import_jobs_table
    owner = ctx.session.execute(sa.select(t.c.created_by).where(t.c.id == ident)).scalar()
    if owner != ctx.actor.id and not ctx.actor.is_admin:
        raise NotFound(f"import {job_id} does not exist in {app}.{form}")
    return ident, job


@router.post("", status_code=status.HTTP_201_CREATED)
def upload(app: str, form: str, file: UploadFile, request: Request, ctx: ContextDep,
           settings: SettingsDep) -> dict[str, Any]:
    """Store a CSV or XLSX file; returns its columns, the suggested mapping and a
    preview of the first rows with their errors. Nothing is imported yet."""
    return create_job(ctx, request.app.state.file_store, app=app, form=form,
                      file_name=file.filename or "import.csv", source=file.file,
                      max_bytes=settings.max_upload_mb * (1 << 20))


@router.get("/{job_id}")
def job(app: str, form: str, job_id: str, ctx: ContextDep) -> dict[str, Any]:
    """The job's status and progress (poll this while it runs)."""
    return _own_job(ctx, app=app, form=form, job_id=job_id)[1]


@router.post("/{job_id}/preview")
def preview_job(app: str, form: str, job_id: str, body: PreviewBody, request: Request,
                ctx: ContextDep) -> dict[str, Any]:
    """The first rows as they would import with this mapping and duplicate rule."""
    ident, _ = _own_job(ctx, app=app, form=form, job_id=job_id)
    return preview(ctx, request.app.state.file_store, job_id=ident, overrides=body.mapping,
                   dedup=body.dedup, limit=body.limit)


@router.post("/{job_id}/start", status_code=status.HTTP_202_ACCEPTED)
def start(app: str, form: str, job_id: str, body: StartBody, request: Request,
          ctx: ContextDep, auth: CurrentAuth) -> dict[str, Any]:
    """Fix the mapping, duplicate rule and mode, and run the import in the
    background; poll ``GET …/imports/{id}`` for progress."""
    ident, _ = _own_job(ctx, app=app, form=form, job_id=job_id)
    result = configure_job(ctx, job_id=ident, overrides=body.mapping, dedup=body.dedup,
                           mode=body.mode, historical=body.historical)
    # The configuration must be committed before the runner claims the job.
    ctx.session.commit()
    start_in_background(import_environment(request.app, auth.token_scope), ident, ctx.actor)
    return result


@router.post("/{job_id}/resume", status_code=status.HTTP_202_ACCEPTED)
def resume(app: str, form: str, job_id: str, request: Request, ctx: ContextDep,
           auth: CurrentAuth) -> dict[str, Any]:
    """Resume a job whose runner died (a restarted server): it continues after
    the last committed batch."""
    ident, current = _own_job(ctx, app=app, form=form, job_id=job_id)
    if current["status"] not in ("queued", "running"):
        raise Conflict(f"import {job_id} is {current['status']}; nothing to resume")
    start_in_background(import_environment(request.app, auth.token_scope), ident, ctx.actor)
    current["resume_note"] = (f"a running job is taken over once it has made no progress for "
                              f"{int(STALE_AFTER.total_seconds() // 60)} minutes")
    return current


@router.get("/{job_id}/errors")
def error_file(app: str, form: str, job_id: str, request: Request,
               ctx: ContextDep) -> StreamingResponse:
    """The rows that failed, in the file's format, with a reason column: fix
    them and import the file again."""
    ident, _ = _own_job(ctx, app=app, form=form, job_id=job_id)
    name, media_type, handle = open_error_file(ctx, request.app.state.file_store, job_id=ident)
    return StreamingResponse(handle, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})
