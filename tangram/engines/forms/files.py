"""File storage for attachment fields.

``FileStore`` is the object-store-ready interface (put/open/delete by key);
``LocalFileStore`` keeps files on local disk under content-addressed keys.
Uploads are limited in size while streaming, so a huge body never fills memory
or disk past the limit.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa

from tangram.db import new_id
from tangram.engines.context import EngineContext
from tangram.engines.forms.systables import files_table
from tangram.errors import LimitExceeded, NotFound

CHUNK = 1 << 20


class FileStore(Protocol):
    def put(self, key: str, source: BinaryIO, *, max_bytes: int) -> tuple[int, str]:
        """Store the stream; return (size, sha256). Raise LimitExceeded past max_bytes."""

    def open(self, key: str) -> BinaryIO: ...

    def delete(self, key: str) -> None: ...


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{2}/[0-9a-f-]{36}", key):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    def put(self, key: str, source: BinaryIO, *, max_bytes: int) -> tuple[int, str]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        tmp = path.with_suffix(".part")
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise LimitExceeded(f"file is larger than {max_bytes // (1 << 20)} MB")
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return size, digest.hexdigest()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFound("the file's content is missing from storage") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def safe_name(name: str) -> str:
    name = os.path.basename(name.replace("\\", "/")).strip() or "file"
    name = re.sub(r"[\x00-\x1f<>:\"|?*]", "_", name)
    return name[:255]


def store_file(ctx: EngineContext, store: FileStore, *, name: str, content_type: str | None,
               source: BinaryIO, max_bytes: int) -> dict[str, object]:
    """Store an upload and register it; returns the file descriptor."""
    file_id = new_id()
    key = f"{file_id.hex[:2]}/{file_id}"
    size, sha = store.put(key, source, max_bytes=max_bytes)
    return register_file(ctx, file_id=file_id, name=name, content_type=content_type,
                         size=size, sha256=sha, storage_key=key)


def register_file(ctx: EngineContext, *, name: str, content_type: str | None, size: int,
                  sha256: str, storage_key: str, file_id: uuid.UUID | None = None
                  ) -> dict[str, object]:
    """Register a file whose content is already stored under ``storage_key``
    — another name for stored content (a package install stores a content
    once and registers each name the package gives it). Several file rows
    may so share one storage key: nothing deletes stored content by file row
    today; whatever comes to (a purge) must first check that no other row
    names the key."""
    file_id = file_id or new_id()
    name = safe_name(name)
    ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    ctx.session.execute(files_table.insert().values(
        id=file_id, name=name, content_type=ctype[:150], size=size, sha256=sha256,
        storage_key=storage_key, uploaded_by=ctx.actor.id, uploaded_at=ctx.now()))
    return {"id": str(file_id), "name": name, "size": size, "content_type": ctype}


def file_rows(ctx: EngineContext, ids: set[uuid.UUID]) -> dict[uuid.UUID, sa.Row]:
    if not ids:
        return {}
    rows = ctx.session.execute(sa.select(files_table).where(files_table.c.id.in_(ids)))
    return {r.id: r for r in rows}


def descriptor(row: sa.Row) -> dict[str, object]:
    return {"id": str(row.id), "name": row.name, "size": row.size,
            "content_type": row.content_type}


def accepts(accept: list[str], name: str, content_type: str) -> bool:
    """Whether a file matches an attachment field's ``accept`` list."""
    if not accept:
        return True
    ext = os.path.splitext(name)[1].lower()
    for entry in accept:
        entry = entry.lower()
        if entry.startswith(".") and ext == entry:
            return True
        if entry.endswith("/*") and content_type.lower().startswith(entry[:-1]):
            return True
        if entry == content_type.lower():
            return True
    return False
