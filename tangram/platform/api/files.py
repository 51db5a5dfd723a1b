"""Uploads for attachment fields: upload first, then put the id in the record."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, UploadFile, status
from fastapi.responses import StreamingResponse

from tangram.engines.forms.files import LocalFileStore, store_file
from tangram.engines.forms.records import file_readable
from tangram.engines.forms.systables import files_table
from tangram.errors import NotFound
from tangram.platform.deps import ContextDep, SettingsDep

router = APIRouter(prefix="/api/files", tags=["files"])


def _store(request: Request) -> LocalFileStore:
    store: LocalFileStore = request.app.state.file_store
    return store


@router.post("", status_code=status.HTTP_201_CREATED)
def upload(file: UploadFile, request: Request, ctx: ContextDep,
           settings: SettingsDep) -> dict[str, Any]:
    return store_file(ctx, _store(request), name=file.filename or "file",
                      content_type=file.content_type, source=file.file,
                      max_bytes=settings.max_upload_mb * (1 << 20))


@router.get("/{file_id}")
def download(file_id: str, request: Request, ctx: ContextDep) -> StreamingResponse:
    """The file, for its uploader and for whoever may read a record it is
    attached to (and see that attachment field); 404 for anyone else."""
    try:
        ident = uuid.UUID(file_id)
    except ValueError:
        raise NotFound(f"{file_id!r} is not a file id") from None
    row = ctx.session.execute(sa.select(files_table).where(files_table.c.id == ident)).first()
    # A file you may not read is reported like one that does not exist.
    if row is None or not file_readable(ctx, file_id=ident, uploaded_by=row.uploaded_by):
        raise NotFound(f"file {file_id} does not exist")
    handle = _store(request).open(row.storage_key)
    return StreamingResponse(handle, media_type=row.content_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(row.name)}",
        "X-Content-Type-Options": "nosniff"})


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name)
