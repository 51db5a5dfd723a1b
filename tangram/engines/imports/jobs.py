"""Import jobs: upload → mapping and preview → a resumable background run.

    job = create_job(ctx, store, app="crm", form="lead", file_name="leads.csv",
                     source=fh)                       # columns, mapping, preview
    configure_job(ctx, job_id=job["id"], overrides={"电话": "mobile"},
                  dedup={"fields": ["mobile"], "mode": "skip"}, mode="valid_only")
    run_job(env, job_id=job["id"], actor=actor)       # in a worker thread or the CLI

A job's state lives in ``import_jobs`` (status, counts, position, error file)
and its failed rows in ``import_job_errors``; each batch of rows is one
transaction that also moves the job's position, so a killed run resumes from
the last committed batch (``run_job`` again) with no row twice and none lost.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, BinaryIO, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tangram.clock import Clock, iso_utc
from tangram.db import new_id
from tangram.db.stats import refresh_statistics
from tangram.engines.access import AccessPolicy
from tangram.engines.context import Actor, EngineContext
from tangram.engines.forms.files import FileStore, store_file
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.forms.systables import files_table
from tangram.engines.imports.dedup import DedupRule, parse_dedup
from tangram.engines.imports.mapping import (
    apply_overrides,
    check_mapping,
    importable_fields,
    normalize_title,
    suggest_mapping,
)
from tangram.engines.imports.messages import MESSAGES, text
from tangram.engines.imports.pipeline import Pipeline, RowInput, RowResult
from tangram.engines.imports.sources import FILE_FORMATS, Sheet, cell_text, count_rows, format_for
from tangram.engines.imports.tables import import_job_errors_table, import_jobs_table
from tangram.errors import Conflict, ErrorItem, NotFound, TangramError, ValidationFailed

PREVIEW_ROWS = 20
BATCH_ROWS = 500
# A running job whose runner has not committed a batch for this long is
# presumed dead; another runner may take it over.
STALE_AFTER = timedelta(minutes=5)
FINISHED = ("succeeded", "failed")

jobs, errors_t = import_jobs_table, import_job_errors_table


@dataclass
class ImportEnvironment:
    """What a run needs besides the job: sessions (one transaction per batch),
    file storage, the clock and the access policy of a session."""

    sessions: sessionmaker[Session]
    store: FileStore
    clock: Clock
    policy_for: Callable[[Session], AccessPolicy]
    timezone: str = "Asia/Shanghai"


@dataclass
class Progress:
    position: int
    total: int
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    phase: str | None = None


ProgressCallback = Callable[[Progress], None]


# --------------------------------------------------------------------------- upload

def create_job(ctx: EngineContext, store: FileStore, *, app: str, form: str, file_name: str,
               source: BinaryIO, max_bytes: int = 200 << 20,
               preview_rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """Store the file and describe it: columns, suggested mapping, row count and
    a preview of the first rows with their errors. Nothing is imported yet."""
    rt = get_runtime(ctx.session, app, form)
    ctx.policy.check_form_action(ctx.actor, app, form, "import")
    fmt = format_for(file_name)
    stored = store_file(ctx, store, name=file_name, content_type=fmt.media_type,
                        source=source, max_bytes=max_bytes)
    file_id = uuid.UUID(str(stored["id"]))
    with _open_source(ctx, store, file_id) as fh:
        sheet = fmt.open(fh)
        header, encoding = sheet.header, sheet.encoding
        total = count_rows(fmt, fh)
    importable = importable_fields(ctx, rt)
    mapping = suggest_mapping(header, importable)
    job_id = new_id()
    ctx.session.execute(jobs.insert().values(
        id=job_id, app=app, form=form, status="uploaded", phase=None, mode="valid_only",
        file_name=str(stored["name"]), format=fmt.name, encoding=encoding,
        source_file_id=file_id, header=header, mapping=mapping, dedup=None, total_rows=total,
        language=ctx.language, created_by=ctx.actor.id, created_at=ctx.now()))
    out = job_json(ctx, _load(ctx.session, job_id))
    out["preview"] = preview(ctx, store, job_id=job_id, limit=preview_rows)
    return out


def preview(ctx: EngineContext, store: FileStore, *, job_id: uuid.UUID,
            overrides: Mapping[str, str | None] | None = None,
            dedup: Mapping[str, Any] | None = None, limit: int = PREVIEW_ROWS
            ) -> dict[str, Any]:
    """The first ``limit`` rows as they would import (nothing is written)."""
    job = _load(ctx.session, job_id)
    rt = get_runtime(ctx.session, job.app, job.form)
    ctx.policy.check_form_action(ctx.actor, job.app, job.form, "import")
    mapping, rule, warnings = _settle(ctx, rt, job, overrides, dedup)
    pipeline = Pipeline(rt, mapping, dedup=rule, timezone=ctx.timezone)
    with _open_source(ctx, store, job.source_file_id) as fh:
        sheet = FILE_FORMATS[job.format].open(fh)
        batch = [RowInput(n, c) for _, (n, c) in zip(range(limit), sheet.rows, strict=False)]
        results = pipeline.run(ctx, batch, write=False)
    keys = [k for k in mapping]
    return {
        "mapping": _mapping_json(job.header, mapping), "warnings": warnings,
        "rows": [{"row": r.number, "action": res.action,
                  "values": {k: cell_text(c) for k, c in zip(keys, r.cells, strict=False)
                             if k is not None and c not in (None, "")},
                  "errors": [e.as_dict() for e in res.errors]}
                 for r, res in zip(batch, results, strict=True)],
    }


def configure_job(ctx: EngineContext, *, job_id: uuid.UUID,
                  overrides: Mapping[str, str | None] | None = None,
                  dedup: Mapping[str, Any] | None = None, mode: str = "valid_only",
                  historical: bool = False) -> dict[str, Any]:
    """Fix the mapping, duplicate rule and mode; the job is then ready to run.
    ``historical``: the rows are past records — flows start for them only if
    they name the source ``history``."""
    job = _load(ctx.session, job_id)
    if job.status != "uploaded":
        raise Conflict(f"import {job_id} was already started (it is {job.status})")
    rt = get_runtime(ctx.session, job.app, job.form)
    if mode not in IMPORT_MODES:
        item = ErrorItem(code="mode_invalid", field="mode", message=(
            f"unknown import mode {mode!r}; modes: {', '.join(IMPORT_MODES)}"))
        raise ValidationFailed([item], item.message)
    mapping, rule, _ = _settle(ctx, rt, job, overrides, dedup)
    _check_actions(ctx, rt, rule)
    ctx.session.execute(jobs.update().where(jobs.c.id == job_id).values(
        status="queued", mapping=mapping, dedup=rule.as_dict() if rule else None, mode=mode,
        language=ctx.language, historical=historical))
    return job_json(ctx, _load(ctx.session, job_id))


def _settle(ctx: EngineContext, rt: FormRuntime, job: Any,
            overrides: Mapping[str, str | None] | None, dedup: Mapping[str, Any] | None
            ) -> tuple[list[str | None], DedupRule | None, list[str]]:
    importable = importable_fields(ctx, rt)
    mapping = list(job.mapping)
    if overrides:
        mapping = apply_overrides(job.header, mapping, overrides, importable, rt)
    warnings = check_mapping(job.header, mapping, importable, rt, ctx.language)
    rule = parse_dedup(dedup, rt, {k for k in mapping if k})
    return mapping, rule, warnings


def _check_actions(ctx: EngineContext, rt: FormRuntime, rule: DedupRule | None) -> None:
    ctx.policy.check_form_action(ctx.actor, rt.app, rt.key, "import")
    ctx.policy.check_form_action(ctx.actor, rt.app, rt.key, "create")
    if rule is not None and rule.mode.needs_update:
        ctx.policy.check_form_action(ctx.actor, rt.app, rt.key, "update")


# --------------------------------------------------------------------------- running

class Stopped(Conflict):
    """Another runner took the job over; this one stops (its batch rolled back)."""


@dataclass
class _Run:
    env: ImportEnvironment
    job_id: uuid.UUID
    actor: Actor
    runner: str
    language: str
    batch_rows: int
    on_progress: ProgressCallback | None
    progress: Progress = field(default_factory=lambda: Progress(0, 0))
    source: tuple[str, str] | None = None  # (format, storage key)
    # Rows written when the planner's statistics are next refreshed (doubling).
    next_statistics: int = 1000

    def keep_statistics(self, session: Session, job: Any) -> None:
        """Refresh the form table's planner statistics as the import grows it
        (after 1,000 written rows, then each doubling: O(n) in all). Without
        it the dedup and uniqueness lookups keep the plans made for a nearly
        empty table — full scans once it holds 100,000 rows."""
        written = self.progress.created + self.progress.updated
        if written >= self.next_statistics:
            refresh_statistics(session, get_runtime(session, job.app, job.form).table)
            self.next_statistics = 2 * written

    def context(self, session: Session) -> EngineContext:
        return EngineContext(session=session, actor=self.actor, clock=self.env.clock,
                             language=self.language, timezone=self.env.timezone,
                             policy=self.env.policy_for(session))

    def batches(self, start: int) -> Iterator[list[RowInput]]:
        """Batches of data rows after the first ``start`` (re-reads the file;
        holds no database transaction while reading)."""
        assert self.source is not None
        fmt, key = self.source
        with self.env.store.open(key) as fh:
            sheet: Sheet = FILE_FORMATS[fmt].open(fh)
            batch: list[RowInput] = []
            for i, (number, cells) in enumerate(sheet.rows):
                if i < start:
                    continue
                batch.append(RowInput(number, cells))
                if len(batch) >= self.batch_rows:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def record(self, ctx: EngineContext, batch: list[RowInput], results: list[RowResult],
               **values: Any) -> None:
        """Failed rows and the job's new position, in the batch's transaction."""
        failed = [(r, res) for r, res in zip(batch, results, strict=True)
                  if res.action == "error"]
        if failed:
            ctx.session.execute(errors_t.insert(), [
                {"job_id": self.job_id, "row_number": r.number,
                 "cells": [cell_text(c) for c in r.cells],
                 "errors": [e.as_dict() for e in res.errors],
                 "reason": "; ".join(e.message for e in res.errors)} for r, res in failed])
        counts = _counts(results)
        p = self.progress
        p.position += len(batch)
        p.errors += counts["error"]
        if values.pop("count_writes", True):
            p.created += counts["create"]
            p.updated += counts["update"]
            p.skipped += counts["skip"]
        result = ctx.session.execute(jobs.update().where(
            jobs.c.id == self.job_id, jobs.c.runner == self.runner).values(
            position=p.position, created_count=p.created, updated_count=p.updated,
            skipped_count=p.skipped, error_count=p.errors, heartbeat_at=ctx.now(), **values))
        if cast(sa.CursorResult[Any], result).rowcount != 1:
            raise Stopped(f"import {self.job_id} was taken over by another runner")

    def notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)


class ImportMode(Protocol):
    key: str
    label: dict[str, str]

    def execute(self, run: _Run, pipeline: Pipeline, job: Any) -> None:
        """Run the job from where it stands; finish it (succeeded or failed)."""


class ValidRowsOnly:
    """Import the rows that pass; the others go to the error file."""

    key = "valid_only"
    label = {"zh": "导入正确的行，错误行生成错误文件", "en": "Import valid rows, return the others"}

    def execute(self, run: _Run, pipeline: Pipeline, job: Any) -> None:
        for batch in run.batches(job.position):
            with run.env.sessions.begin() as session:
                ctx = run.context(session)
                results = pipeline.run(ctx, batch, write=True)
                run.record(ctx, batch, results)
                run.keep_statistics(session, job)
            run.notify()
        _finish(run, status="succeeded")


class _RowsFailed(Exception):
    def __init__(self, batch: list[RowInput], results: list[RowResult]) -> None:
        super().__init__("rows failed")
        self.batch, self.results = batch, results


class AllOrNothing:
    """Check every row first (nothing written, progress committed per batch);
    when all pass, import them in one transaction."""

    key = "all_or_nothing"
    label = {"zh": "全部正确才导入", "en": "Import all rows or none"}

    def execute(self, run: _Run, pipeline: Pipeline, job: Any) -> None:
        if job.phase != "writing":
            run.progress.phase = "checking"
            for batch in run.batches(job.position):
                with run.env.sessions.begin() as session:
                    ctx = run.context(session)
                    results = pipeline.run(ctx, batch, write=False)
                    run.record(ctx, batch, results, phase="checking", count_writes=False)
                run.notify()
            if run.progress.errors:
                _finish(run, status="failed", message=text_rows_failed(run))
                return
            with run.env.sessions.begin() as session:
                session.execute(jobs.update().where(jobs.c.id == run.job_id).values(
                    phase="writing", position=0))
        total = run.progress.total
        run.progress = Progress(0, total, phase="writing")
        try:
            # One transaction for every row: a crash (or a row that fails now,
            # after a concurrent change) leaves nothing behind.
            with run.env.sessions.begin() as session:
                ctx = run.context(session)
                for batch in run.batches(0):
                    results = pipeline.run(ctx, batch, write=True)
                    if any(r.action == "error" for r in results):
                        raise _RowsFailed(batch, results)
                    counts = _counts(results)
                    p = run.progress
                    p.position += len(batch)
                    p.created += counts["create"]
                    p.updated += counts["update"]
                    p.skipped += counts["skip"]
                    run.keep_statistics(session, job)
                    run.notify()
                _finish(run, status="succeeded", session=session)
        except _RowsFailed as failed:
            run.progress = Progress(0, total, phase="writing")
            with run.env.sessions.begin() as session:
                run.record(run.context(session), failed.batch, failed.results,
                           count_writes=False)
            _finish(run, status="failed", message=text_rows_failed(run))


IMPORT_MODES: dict[str, ImportMode] = {m.key: m for m in (ValidRowsOnly(), AllOrNothing())}


def text_rows_failed(run: _Run) -> str:
    if run.language.startswith("zh"):
        return f"{run.progress.errors}行有错误，未导入任何数据；请下载错误文件修正后重新导入"
    return (f"{run.progress.errors} row(s) have errors; nothing was imported. Download the "
            "error file, fix it and import it again")


def run_job(env: ImportEnvironment, *, job_id: uuid.UUID, actor: Actor,
            batch_rows: int = BATCH_ROWS, on_progress: ProgressCallback | None = None,
            take_over: bool = False) -> dict[str, Any]:
    """Run (or resume) a configured job to its end; returns the job's JSON.

    Another process's run is taken over only when it looks dead (no batch for
    ``STALE_AFTER``) or ``take_over`` says so (the CLI rerun after a crash)."""
    runner = uuid.uuid4().hex
    now = env.clock.now()
    with env.sessions.begin() as session:
        claimable = sa.or_(jobs.c.runner.is_(None), jobs.c.heartbeat_at < now - STALE_AFTER,
                           sa.true() if take_over else sa.false())
        claimed = session.execute(jobs.update().where(
            jobs.c.id == job_id, jobs.c.status.in_(("queued", "running")), claimable).values(
            status="running", runner=runner, heartbeat_at=now,
            started_at=sa.func.coalesce(jobs.c.started_at, now)))
        job = _load(session, job_id)
        if cast(sa.CursorResult[Any], claimed).rowcount != 1:
            if job.status in FINISHED:
                return job_json(EngineContext(session=session, actor=actor), job)
            raise Conflict(f"import {job_id} is {job.status}"
                           + (" in another process" if job.status == "running" else
                              "; confirm its mapping first"))
    run = _Run(env=env, job_id=job_id, actor=actor, runner=runner, language=job.language,
               batch_rows=batch_rows, on_progress=on_progress,
               progress=Progress(position=job.position, total=job.total_rows,
                                 created=job.created_count, updated=job.updated_count,
                                 skipped=job.skipped_count, errors=job.error_count,
                                 phase=job.phase))
    try:
        with env.sessions() as session:
            ctx = run.context(session)
            rt = get_runtime(session, job.app, job.form)
            mapping, rule, _ = _settle(ctx, rt, job, None, job.dedup)
            _check_actions(ctx, rt, rule)
            key = session.execute(sa.select(files_table.c.storage_key).where(
                files_table.c.id == job.source_file_id)).scalar_one_or_none()
            if key is None:
                raise NotFound(f"the file of import {job_id} is gone")
            run.source = (job.format, key)
        pipeline = Pipeline(rt, mapping, dedup=rule, timezone=env.timezone,
                            historical=bool(job.historical))
        IMPORT_MODES[job.mode].execute(run, pipeline, job)
    except Stopped:
        raise
    except TangramError as exc:
        _finish(run, status="failed", message=f"the import stopped: {exc.message}")
        raise
    except Exception as exc:
        # Unexpected (the database went away…): committed batches stay, and
        # running the job again resumes after them.
        with env.sessions.begin() as session:
            session.execute(jobs.update().where(jobs.c.id == job_id,
                                                jobs.c.runner == runner).values(
                status="queued", runner=None,
                message=f"stopped by {type(exc).__name__}: {exc}; run it again to resume"))
        raise
    with env.sessions() as session:
        return job_json(run.context(session), _load(session, job_id))


def _finish(run: _Run, *, status: str, message: str | None = None,
            session: Session | None = None) -> None:
    """Write the error file (if rows failed) and close the job."""
    if session is None:
        with run.env.sessions.begin() as own:
            _finish(run, status=status, message=message, session=own)
        return
    ctx = run.context(session)
    job = _load(session, run.job_id)
    refresh_statistics(session, get_runtime(session, job.app, job.form).table)
    error_file_id = _write_error_file(ctx, run.env.store, job) if run.progress.errors else None
    p = run.progress
    result = session.execute(jobs.update().where(jobs.c.id == run.job_id,
                                                 jobs.c.runner == run.runner).values(
        status=status, message=message, error_file_id=error_file_id, finished_at=ctx.now(),
        position=p.position, created_count=p.created, updated_count=p.updated,
        skipped_count=p.skipped, error_count=p.errors, heartbeat_at=ctx.now()))
    if cast(sa.CursorResult[Any], result).rowcount != 1:
        raise Stopped(f"import {run.job_id} was taken over by another runner")


def _counts(results: list[RowResult]) -> dict[str, int]:
    out = {"create": 0, "update": 0, "skip": 0, "error": 0}
    for r in results:
        out[r.action] += 1
    return out


# --------------------------------------------------------------------------- error file

def _reason_titles() -> set[str]:
    return {normalize_title(t) for t in MESSAGES["reason_header"].values()}


def _write_error_file(ctx: EngineContext, store: FileStore, job: Any) -> uuid.UUID:
    """The failed rows in the file's own format, a reason column last; fixed,
    it imports like the original (the reason column maps to nothing)."""
    fmt = FILE_FORMATS[job.format]
    reasons = _reason_titles()
    keep = [i for i, t in enumerate(job.header) if normalize_title(t) not in reasons]
    header = [job.header[i] for i in keep] + [text("reason_header", job.language)]

    def rows() -> Iterator[list[Any]]:
        stmt = (sa.select(errors_t.c.cells, errors_t.c.reason)
                .where(errors_t.c.job_id == job.id).order_by(errors_t.c.row_number))
        for cells, reason in ctx.session.execute(stmt.execution_options(yield_per=1000)):
            yield [cells[i] if i < len(cells) else "" for i in keep] + [reason]

    stem, ext = os.path.splitext(job.file_name)
    suffix = "-错误行" if job.language.startswith("zh") else "-errors"
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as tmp:
        fmt.write(tmp, header, rows())
        tmp.seek(0)
        stored = store_file(ctx, store, name=f"{stem}{suffix}{ext}", content_type=fmt.media_type,
                            source=cast(BinaryIO, tmp), max_bytes=1 << 40)
    return uuid.UUID(str(stored["id"]))


def open_error_file(ctx: EngineContext, store: FileStore, *, job_id: uuid.UUID
                    ) -> tuple[str, str, BinaryIO]:
    """(file name, media type, stream) of a job's error file."""
    job = _load(ctx.session, job_id)
    ctx.policy.check_form_action(ctx.actor, job.app, job.form, "import")
    if job.error_file_id is None:
        raise NotFound(f"import {job_id} has no error file"
                       + (" (it is still running)" if job.status not in FINISHED else ""))
    row = ctx.session.execute(sa.select(files_table).where(
        files_table.c.id == job.error_file_id)).one()
    return row.name, FILE_FORMATS[job.format].media_type, store.open(row.storage_key)


# --------------------------------------------------------------------------- reading jobs

def _load(session: Session, job_id: uuid.UUID) -> Any:
    row = session.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"import {job_id} does not exist")
    return row


def get_job(ctx: EngineContext, *, job_id: uuid.UUID, app: str | None = None,
            form: str | None = None) -> dict[str, Any]:
    job = _load(ctx.session, job_id)
    if (app, form) != (None, None) and (job.app, job.form) != (app, form):
        raise NotFound(f"import {job_id} does not exist in {app}.{form}")
    ctx.policy.check_form_action(ctx.actor, job.app, job.form, "import")
    return job_json(ctx, job)


def find_unfinished(session: Session, *, app: str, form: str, sha256: str,
                    created_by: uuid.UUID | None) -> uuid.UUID | None:
    """The newest unfinished job importing the same file (to resume it)."""
    return session.execute(
        sa.select(jobs.c.id).join(files_table, files_table.c.id == jobs.c.source_file_id)
        .where(jobs.c.app == app, jobs.c.form == form, files_table.c.sha256 == sha256,
               jobs.c.status.in_(("queued", "running")),
               jobs.c.created_by.is_(None) if created_by is None
               else jobs.c.created_by == created_by)
        .order_by(jobs.c.created_at.desc()).limit(1)).scalar_one_or_none()


def job_json(ctx: EngineContext, job: Any) -> dict[str, Any]:
    total = job.total_rows or 0
    return {
        "id": str(job.id), "app": job.app, "form": job.form, "status": job.status,
        "phase": job.phase, "mode": job.mode, "file_name": job.file_name,
        "format": job.format, "encoding": job.encoding,
        "columns": list(job.header), "mapping": _mapping_json(job.header, job.mapping),
        "dedup": job.dedup, "historical": bool(job.historical), "total_rows": total,
        "processed_rows": job.position,
        "progress": round(job.position / total, 4) if total else 1.0,
        "counts": {"created": job.created_count, "updated": job.updated_count,
                   "skipped": job.skipped_count, "errors": job.error_count},
        "message": job.message,
        "error_file": str(job.error_file_id) if job.error_file_id else None,
        "created_at": iso_utc(job.created_at), "started_at": iso_utc(job.started_at),
        "finished_at": iso_utc(job.finished_at),
    }


def _mapping_json(header: list[str], mapping: list[str | None]) -> list[dict[str, Any]]:
    return [{"column": t, "field": k} for t, k in zip(header, mapping, strict=True)]


class _open_source:  # noqa: N801 - used as a context manager like open()
    def __init__(self, ctx: EngineContext, store: FileStore, file_id: uuid.UUID) -> None:
        self.ctx, self.store, self.file_id = ctx, store, file_id
        self.handle: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        key = self.ctx.session.execute(sa.select(files_table.c.storage_key).where(
            files_table.c.id == self.file_id)).scalar_one_or_none()
        if key is None:
            raise NotFound(f"the uploaded file {self.file_id} is gone")
        self.handle = self.store.open(key)
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
