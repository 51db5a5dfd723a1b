"""Files a package carries for its rows' attachment values.

A data set's files are entries ``data/<set>/_files/<sha256>`` (the content,
named by its SHA-256, so a file attached to several records — or uploaded
twice — is in the package once). A row names one in an attachment field's
list with its description::

    "files": [{"$file": {"sha256": "9f86d0…", "name": "合同.pdf",
                         "content_type": "application/pdf", "size": 48213}}]

Checked without a database (``check_files``): every entry's content has the
SHA-256 its name says, every ``$file`` has its entry in the same set, of the
size it says, and (given the installation's upload limit) no larger than it.
On install each distinct file (content, name, content type) is registered
once through the form engine's file storage, so it is a file like any
upload: downloads check the reader's permissions on the records it is
attached to. Each content is stored once (``store_file``); the same content
under another name is another file row naming the same storage key
(``register_file``).

    target = FileTarget(store=LocalFileStore(settings.files_path),
                        max_bytes=settings.max_upload_mb << 20)
    install_package(ctx, package, files=target)
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.forms.files import FileStore, register_file, store_file
from tangram.engines.forms.systables import files_table
from tangram.errors import ErrorItem, LimitExceeded
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.rows import (
    FILE,
    SHA256,
    file_key,
    file_problem,
    files_in,
    row_values,
)
from tangram.platform.packages.source import FILES_FOLDER, mib


def entry_name(data_set: str, sha256: str) -> str:
    """The package path of a file's content."""
    return f"data/{data_set}/{FILES_FOLDER}/{sha256}"


@dataclass
class FileTarget:
    """Where an install puts a package's files: the installation's file
    storage and its upload limit. Remembers what it stored, so the same
    content is stored once however many names (and data sets) give it, and a
    failed install can take the contents back (``discard``)."""

    store: FileStore
    max_bytes: int
    stored: dict[str, str] = field(default_factory=dict)  # sha256 → storage key

    def discard(self) -> None:
        for key in self.stored.values():
            self.store.delete(key)
        self.stored.clear()


class DiscardingStore:
    """A file storage that keeps nothing (the scratch install of validation
    needs the files' sizes and hashes, not their contents)."""

    def put(self, key: str, source: BinaryIO, *, max_bytes: int) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > max_bytes:
                raise LimitExceeded(f"file is larger than {mib(max_bytes)}")
            digest.update(chunk)
        return size, digest.hexdigest()

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO()

    def delete(self, key: str) -> None:
        return None


def check_files(blobs: Mapping[str, Mapping[str, bytes]],
                data: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], *,
                max_bytes: int | None = None) -> list[ErrorItem]:
    """Every problem of a package's files: an entry whose content does not
    have the SHA-256 its name says, a ``$file`` whose entry is missing, whose
    size differs from the entry's, or (``max_bytes``: the installation's
    upload limit) that is larger than the installation accepts."""
    errors: list[ErrorItem] = []
    good: dict[str, dict[str, int]] = {}  # set → sha256 → size
    for data_set, entries in blobs.items():
        good[data_set] = {}
        for name, content in sorted(entries.items()):
            path = entry_name(data_set, name)
            actual = hashlib.sha256(content).hexdigest()
            if not SHA256.match(name):
                errors.append(ErrorItem(code="data_file", file=path, path="$", message=(
                    f"a file entry is named by the SHA-256 of its content (64 lowercase hex "
                    f"digits): name this one {actual}")))
            elif actual != name:
                errors.append(ErrorItem(code="data_file", file=path, path="$", message=(
                    f"the content's SHA-256 is {actual}, which does not match the entry's "
                    "name: the file is damaged or not the one the rows name")))
            else:
                good[data_set][name] = len(content)
    for data_set, by_form in data.items():
        for form, rows in by_form.items():
            file = f"data/{data_set}/{form}.json"
            for i, row in enumerate(rows):
                for where, value in row_values(row, i):
                    for path, description in files_in(value, where):
                        if file_problem(description):
                            continue  # reported by the rows' own checks
                        problem = _reference_problem(description, data_set, blobs, good,
                                                     max_bytes)
                        if problem:
                            errors.append(ErrorItem(code="data_file", file=file, path=path,
                                                    message=problem))
    return errors


def _reference_problem(description: Mapping[str, Any], data_set: str,
                       blobs: Mapping[str, Mapping[str, bytes]],
                       good: Mapping[str, Mapping[str, int]], max_bytes: int | None
                       ) -> str | None:
    sha, size, name = description["sha256"], description["size"], description["name"]
    entry = entry_name(data_set, sha)
    if sha not in blobs.get(data_set, {}):
        return (f"file {name!r} is not in the package: its content belongs in {entry}")
    if sha not in good.get(data_set, {}):
        return f"file {name!r}: its entry {entry} is damaged (the problem is reported there)"
    if good[data_set][sha] != size:
        return (f"file {name!r} has {size} bytes by its {FILE}.size, but {entry} has "
                f"{good[data_set][sha]}")
    if max_bytes is not None and size > max_bytes:
        return (f"file {name!r} has {size} bytes ({mib(size)}), more than this "
                f"installation's upload limit of {mib(max_bytes)} (max_upload_mb)")
    return None


def refuse_bad_files(blobs: Mapping[str, Mapping[str, bytes]],
                     data: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], *,
                     max_bytes: int | None) -> None:
    """Raise PackageInvalid listing every problem of :func:`check_files`."""
    errors = check_files(blobs, data, max_bytes=max_bytes)
    if errors:
        raise PackageInvalid(f"{len(errors)} problem(s) with the package's files, first: "
                             f"{errors[0].file} {errors[0].path}: {errors[0].message}; "
                             "nothing was installed", errors=errors)


def store_files(ctx: EngineContext, target: FileTarget | None, *, data_set: str,
                rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
                blobs: Mapping[str, bytes]) -> dict[tuple[str, str, str], str]:
    """Store each distinct file the rows name (once, however many rows name
    it) through the file storage, as uploaded by the installer; returns
    ``file_key`` → file id, for the rows' ``$file`` values."""
    wanted: dict[tuple[str, str, str], tuple[str, str, Mapping[str, Any]]] = {}
    for form, rows in rows_by_form.items():
        for i, row in enumerate(rows):
            for where, value in row_values(row, i):
                for path, description in files_in(value, where):
                    if isinstance(description, dict) and not file_problem(description):
                        wanted.setdefault(file_key(description),
                                          (f"data/{data_set}/{form}.json", path, description))
    if not wanted:
        return {}
    if target is None:
        raise PackageInvalid(f"data/{data_set} carries files, and this install was given no "
                             "file storage to put them in; nothing was installed")
    ids: dict[tuple[str, str, str], str] = {}
    for key, (file, path, description) in wanted.items():
        sha = description["sha256"]
        content = blobs.get(sha)
        if content is None or hashlib.sha256(content).hexdigest() != sha:
            # check_files said so first; this guards a caller that skipped it.
            problem = (f"file {description['name']!r} is missing or damaged in the package "
                       f"({entry_name(data_set, sha)})")
            raise PackageInvalid(f"{file} {path}: {problem}; nothing was installed",
                                 errors=[ErrorItem(code="data_file", message=problem,
                                                   file=file, path=path)])
        if sha in target.stored:  # stored under another name: one more name for it
            registered = register_file(ctx, name=description["name"],
                                       content_type=description.get("content_type"),
                                       size=len(content), sha256=sha,
                                       storage_key=target.stored[sha])
        else:
            registered = store_file(ctx, target.store, name=description["name"],
                                    content_type=description.get("content_type"),
                                    source=io.BytesIO(content), max_bytes=target.max_bytes)
            target.stored[sha] = ctx.session.execute(
                sa.select(files_table.c.storage_key).where(
                    files_table.c.id == uuid.UUID(str(registered["id"])))).scalar_one()
        ids[key] = str(registered["id"])
    return ids
