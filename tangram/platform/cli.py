"""The ``tangram`` command: serve, migrate, manage users.

Each command is a thin wrapper over a service function; settings come from
TANGRAM_* variables (see ``tangram/settings.py``).

    tangram db upgrade
    tangram user create admin --admin --name "Administrator"
    tangram serve --port 8000
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK
from tangram.db import create_engine_from_url, session_factory
from tangram.errors import TangramError
from tangram.platform import migrate
from tangram.platform.auth import service
from tangram.platform.cli_data import data_app
from tangram.platform.packages.cli import apps_app, package_app
from tangram.platform.permissions import audit
from tangram.settings import Settings

app = typer.Typer(help="Tangram: a no-code app builder (forms, flows, reports).",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations of the platform's own tables.",
                     no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
org_app = typer.Typer(help="The organization: departments and users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(data_app, name="data")
app.add_typer(org_app, name="org")
app.add_typer(package_app, name="package")
app.add_typer(apps_app, name="app")


def _settings() -> Settings:
    # Read afresh for every command (not the cached get_settings()), so the
    # environment of this invocation is what counts.
    return Settings()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@contextmanager
def _transaction() -> Iterator[Session]:
    engine = create_engine_from_url(_settings().database_url)
    try:
        with session_factory(engine).begin() as session:
            yield session
    except TangramError as exc:
        raise _fail(exc.message) from exc
    finally:
        engine.dispose()


# --- serve -----------------------------------------------------------------------

@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: "
                                             "TANGRAM_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: TANGRAM_PORT or 8000).")
                    ] = None,
    reload: Annotated[bool, typer.Option(help="Restart when code changes (development).")
                      ] = False,
    worker: Annotated[bool, typer.Option(help="Also run the flow worker in this "
                                         "process (--no-worker: run `tangram worker` "
                                         "separately).")] = True,
) -> None:
    """Upgrade the database, then serve the API and web app."""
    import uvicorn

    settings = _settings()
    migrate.upgrade(settings.database_url)
    # The factory runs in uvicorn (and in its reload subprocess), so the flag
    # travels as the setting's environment variable.
    os.environ["TANGRAM_IN_PROCESS_WORKER"] = "true" if worker else "false"
    bind_host, bind_port = host or settings.host, port or settings.port
    typer.echo(f"Tangram is serving on http://{bind_host}:{bind_port}/ "
               f"(API docs: http://{bind_host}:{bind_port}/api/docs)")
    uvicorn.run("tangram.platform.app:create_app", factory=True, host=bind_host,
                port=bind_port, reload=reload)


# --- worker -------------------------------------------------------------------------

@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit.")
                    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds to wait when nothing is due.")] = 1.0,
    lease: Annotated[int, typer.Option(help="Seconds a claimed timer or job stays "
                                       "reserved for this worker.")] = 120,
) -> None:
    """Run flow timers, scheduled triggers and queued jobs (any number of workers)."""
    import signal
    import threading
    from datetime import timedelta

    from tangram.clock import SYSTEM_CLOCK
    from tangram.engines.flows.worker import run_due, run_worker
    from tangram.engines.notify import webhooks
    from tangram.platform.app import make_policy_factory, owner_resolver

    settings = _settings()
    # Webhook payloads and report alerts act as their owner, under the same role
    # policy as the owner's requests (as in the API process).
    webhooks.set_owner_resolver(owner_resolver(make_policy_factory(None)))
    engine = create_engine_from_url(settings.database_url)
    try:
        if once:
            done = run_due(engine, SYSTEM_CLOCK, worker_id="cli-once",
                           timezone=settings.timezone)
            typer.echo(f"worker: {done} item(s) processed")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        typer.echo("worker: running (Ctrl+C stops)")
        run_worker(engine, SYSTEM_CLOCK, stop, poll_seconds=poll,
                   timezone=settings.timezone, lease=timedelta(seconds=lease))
    finally:
        engine.dispose()


# --- db ---------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations (alembic upgrade) up to REVISION."""
    settings = _settings()
    migrate.upgrade(settings.database_url, revision)
    typer.echo(f"database at {', '.join(migrate.current_revisions(settings.database_url))}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is up to date."""
    current = migrate.current_revisions(_settings().database_url)
    heads = migrate.head_revisions()
    shown = ", ".join(current) or "(empty database)"
    state = "up to date" if sorted(current) == sorted(heads) else (
        f"behind head {', '.join(heads)}: run 'tangram db upgrade'")
    typer.echo(f"{shown} ({state})")


# --- user -------------------------------------------------------------------------

@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name (stored in lower case).")],
    password: Annotated[str | None, typer.Option(
        help="Password; asked for (hidden) when omitted.")] = None,
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")
                    ] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")
                     ] = False,
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
    exist_ok: Annotated[bool, typer.Option(
        "--exist-ok", help="Succeed without changes if the user already exists.")] = False,
) -> None:
    """Create a user account."""
    if exist_ok and _user_exists(username):
        typer.echo(f"user {service.normalize_username(username)!r} already exists; unchanged")
        return
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _transaction() as session:
        user = service.create_user(session, username=username, password=password,
                                   display_name=name, email=email, is_admin=admin,
                                   language=language)
    role = "administrator" if user.is_admin else "user"
    typer.echo(f"created {role} {user.username!r} ({user.id})")


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Argument(help="Login name.")],
    password: Annotated[str | None, typer.Option(
        help="The new password; asked for (hidden) when omitted.")] = None,
) -> None:
    """Set a user's password (the password policy applies); their login
    sessions end."""
    with _transaction() as session:
        user = service.find_user_by_username(session, username)
        if user is None:
            raise _fail(f"no user named {service.normalize_username(username)!r}")
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _transaction() as session:
        ended = service.set_password(session, user_id=user.id, password=password)
        audit.record(session, action="user.password_set", target=str(user.id), actor_id=None,
                     at=SYSTEM_CLOCK.now(), sessions_ended=ended, by="command line")
    typer.echo(f"password of {user.username!r} set" + (f"; {ended} session(s) ended"
                                                        if ended else ""))


def _user_exists(username: str) -> bool:
    with _transaction() as session:
        return service.find_user_by_username(session, username) is not None


@user_app.command("list")
def user_list() -> None:
    """List user accounts."""
    with _transaction() as session:
        users = service.list_users(session)
    if not users:
        typer.echo("no users yet: create one with 'tangram user create USERNAME --admin'")
        return
    width = max(len(u.username) for u in users)
    for u in users:
        flags = ", ".join(f for f in ("admin" if u.is_admin else "", u.status
                                      if not u.is_active else "") if f)
        typer.echo(f"{u.username:<{width}}  {u.display_name}" + (f"  [{flags}]" if flags else ""))


# --- org --------------------------------------------------------------------------

@org_app.command("import")
def org_import(
    files: Annotated[list[Path], typer.Argument(
        help="org.json, or departments.csv and users.csv (DingTalk/WeCom shape; see "
             "docs/permissions.md).", exists=True, dir_okay=False)],
) -> None:
    """Import the org chart; running it again with the same files changes nothing."""
    from tangram.clock import SYSTEM_CLOCK
    from tangram.platform.permissions.org_import import import_org, parse_files

    try:
        chart = parse_files(files)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read the org chart: {exc}") from exc
    with _transaction() as session:
        result = import_org(session, chart, actor_id=None, now=SYSTEM_CLOCK.now())
    typer.echo(", ".join(f"{k}={v}" for k, v in result.as_dict().items()))
