"""``tangram data``: import spreadsheets into a form, export a form's records.

    tangram data import crm lead leads.csv --dedup mobile:skip
    tangram data import crm lead leads.xlsx --mapping "电话=mobile,备注=" --mode all-or-nothing
    tangram data export crm lead --format xlsx --out leads.xlsx

An import that is interrupted (Ctrl-C, a killed process) resumes where it
stopped when the same command is run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK
from tangram.db import create_engine_from_url, session_factory
from tangram.engines.access import AccessPolicy, AllowAll
from tangram.engines.context import SYSTEM_ACTOR, Actor, EngineContext
from tangram.engines.forms.files import LocalFileStore
from tangram.engines.forms.query import ListQuery
from tangram.engines.imports import (
    ImportEnvironment,
    configure_job,
    create_job,
    find_unfinished,
    open_error_file,
    run_job,
)
from tangram.engines.imports import Progress as ImportProgress
from tangram.errors import TangramError
from tangram.settings import Settings

data_app = typer.Typer(help="Import and export form records (CSV, XLSX).",
                       no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def parse_mapping(specs: list[str]) -> dict[str, str | None]:
    """``["电话=mobile,备注="]`` -> ``{"电话": "mobile", "备注": None}``."""
    out: dict[str, str | None] = {}
    for spec in specs:
        for part in spec.split(","):
            if not part.strip():
                continue
            column, sep, key = part.partition("=")
            if not sep:
                raise _fail(f"--mapping takes COLUMN=FIELD pairs, not {part!r}")
            out[column.strip()] = key.strip() or None
    return out


def parse_dedup(spec: str | None) -> dict[str, Any] | None:
    """``"mobile:skip"`` or ``"name,company:merge"`` -> a duplicate rule."""
    if not spec:
        return None
    fields, _, mode = spec.partition(":")
    return {"fields": [f.strip() for f in fields.split(",") if f.strip()],
            "mode": mode.strip() or "skip"}


class _Setup:
    """Database, file store, actor and policy for one command."""

    def __init__(self, username: str | None) -> None:
        self.settings = Settings()
        self.engine = create_engine_from_url(self.settings.database_url)
        self.sessions = session_factory(self.engine)
        self.store = LocalFileStore(self.settings.files_path)
        self.actor: Actor = SYSTEM_ACTOR
        self.username = username
        if username:
            from tangram.platform.auth.service import find_user_by_username

            with self.sessions() as s:
                user = find_user_by_username(s, username)
                if user is None:
                    raise _fail(f"no user {username!r}")
                self.actor = user.as_actor()

    def policy_for(self, session: Session) -> AccessPolicy:
        if self.username is None:
            return AllowAll()  # the operator at the console acts as the system
        from tangram.platform.permissions.policy import RolePolicy

        return RolePolicy(session, clock=SYSTEM_CLOCK, timezone=self.settings.timezone)

    def ctx(self, session: Session) -> EngineContext:
        return EngineContext(session=session, actor=self.actor, clock=SYSTEM_CLOCK,
                             language=self.actor.language if self.username else
                             self.settings.default_language,
                             timezone=self.settings.timezone, policy=self.policy_for(session))

    def run(self, fn: Callable[[EngineContext], Any]) -> Any:
        try:
            with self.sessions.begin() as session:
                return fn(self.ctx(session))
        except TangramError as exc:
            details = "".join(f"\n  {e.field or e.path or ''}: {e.message}" for e in exc.errors)
            raise _fail(exc.message + details) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@data_app.command("import")
def import_command(
    app: Annotated[str, typer.Argument(help="App key, e.g. crm.")],
    form: Annotated[str, typer.Argument(help="Form key, e.g. lead.")],
    file: Annotated[Path, typer.Argument(help="A .csv (UTF-8, GBK/GB18030) or .xlsx file.",
                                         exists=True, dir_okay=False)],
    mapping: Annotated[list[str] | None, typer.Option(
        "--mapping", "-m", help="COLUMN=FIELD pairs overriding the automatic mapping, "
        "comma-separated; COLUMN= ignores a column.")] = None,
    dedup: Annotated[str | None, typer.Option(
        help="Duplicate rule FIELDS:MODE, e.g. mobile:skip, mobile:update, "
        "name,company:merge (fill empty fields).")] = None,
    mode: Annotated[str, typer.Option(
        help="valid-only (import good rows, write an error file) or all-or-nothing.")
                    ] = "valid-only",
    user: Annotated[str | None, typer.Option(
        help="Import as this user (their permissions apply); default: the system.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per transaction.")] = 500,
    errors_out: Annotated[Path | None, typer.Option(
        "--errors-out", help="Where to write the error file (default: next to FILE).")] = None,
) -> None:
    """Import FILE into APP's FORM, with a progress bar; rerun to resume."""
    setup = _Setup(user)
    sha = _sha256(file)
    with setup.sessions() as s:
        job_id = find_unfinished(s, app=app, form=form, sha256=sha, created_by=setup.actor.id)
    if job_id is not None:
        typer.echo(f"resuming import {job_id} of {file.name}")
    else:
        with open(file, "rb") as fh:
            job = setup.run(lambda ctx: create_job(
                ctx, setup.store, app=app, form=form, file_name=file.name, source=fh,
                max_bytes=1 << 40, preview_rows=5))
        job_id = uuid.UUID(job["id"])
        setup.run(lambda ctx: configure_job(ctx, job_id=job_id,
                                            overrides=parse_mapping(mapping or []),
                                            dedup=parse_dedup(dedup),
                                            mode=mode.replace("-", "_")))
        columns = ", ".join(f"{m['column']}→{m['field'] or '—'}" for m in job["mapping"])
        typer.echo(f"{file.name}: {job['total_rows']} rows "
                   f"({job['format']}{', ' + job['encoding'] if job['encoding'] else ''}); "
                   f"columns: {columns}")
        for warning in job["preview"]["warnings"]:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)
    env = ImportEnvironment(sessions=setup.sessions, store=setup.store, clock=SYSTEM_CLOCK,
                            policy_for=setup.policy_for, timezone=setup.settings.timezone)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("importing", total=None)

        def show(p: ImportProgress) -> None:
            bar.update(task, total=p.total, completed=p.position,
                       description=p.phase or "importing")

        try:
            result = run_job(env, job_id=job_id, actor=setup.actor, batch_rows=batch_size,
                             on_progress=show, take_over=True)
        except TangramError as exc:
            raise _fail(exc.message) from exc
    counts = result["counts"]
    typer.echo(f"import {result['id']} {result['status']}: created={counts['created']} "
               f"updated={counts['updated']} skipped={counts['skipped']} "
               f"errors={counts['errors']}")
    if result["message"]:
        typer.echo(result["message"])
    if result["error_file"]:
        target = errors_out or file.with_name(f"{file.stem}-errors{file.suffix}")

        def save(ctx: EngineContext) -> None:
            _, _, handle = open_error_file(ctx, setup.store, job_id=job_id)
            with handle:
                _write_whole(target, iter(lambda: handle.read(1 << 20), b""))

        setup.run(save)
        typer.echo(f"error file: {target} (fix the rows and import it again)")
    setup.engine.dispose()
    if result["status"] != "succeeded":
        raise typer.Exit(code=1)


def _write_whole(target: Path, chunks: Iterable[bytes]) -> None:
    """Write ``target`` whole or not at all: into a temporary file beside it,
    renamed over it at the end — an export that fails half-way leaves no file
    that looks complete (and an older one as it was)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@data_app.command("export")
def export_command(
    app: Annotated[str, typer.Argument(help="App key.")],
    form: Annotated[str, typer.Argument(help="Form key.")],
    out: Annotated[Path, typer.Option(help="File to write (.csv or .xlsx).")],
    filter: Annotated[str | None, typer.Option(help="JSON filter (docs/filters.md).")] = None,
    sort: Annotated[str | None, typer.Option(help="e.g. -amount,name")] = None,
    fields: Annotated[str | None, typer.Option(help="Comma-separated field keys.")] = None,
    user: Annotated[str | None, typer.Option(help="Export as this user.")] = None,
) -> None:
    """Export FORM's records (optionally filtered) to a CSV or XLSX file."""
    from tangram.engines.exports import plan_export, stream_export

    setup = _Setup(user)
    query = ListQuery(filter=json.loads(filter) if filter else None,
                      sort=[s for s in (sort or "").split(",") if s],
                      fields=fields.split(",") if fields else None)
    fmt = out.suffix.lstrip(".").lower() or "csv"
    plan = setup.run(lambda ctx: plan_export(ctx, app=app, form=form, query=query, format=fmt))
    with setup.sessions() as session:
        _write_whole(out, stream_export(setup.ctx(session), plan))
    typer.echo(f"wrote {out}")
    setup.engine.dispose()
