"""``tangram package …`` and ``tangram app …``: thin wrappers over the
package services (see docs/packages.md).

    tangram package validate apps_catalog/crm
    tangram app install apps_catalog/crm --demo [--as admin]
    tangram app upgrade crm-1.1.0.zip --dry-run
    tangram app export crm -o crm.zip [--no-layer] [--data]
    tangram app uninstall crm --yes
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from sqlalchemy.orm import Session

from tangram.engines.context import Actor, EngineContext
from tangram.errors import TangramError
from tangram.platform.packages.export import export_package, validate_files
from tangram.platform.packages.install import (
    customizations,
    install_package,
    load_demo,
    uninstall_app,
    upgrade_package,
)
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.packaged_files import FileTarget
from tangram.platform.packages.source import (
    PackageLimits,
    read_package,
    write_folder,
    write_zip,
)

package_app = typer.Typer(help="App packages: check one before installing it.",
                          no_args_is_help=True)
apps_app = typer.Typer(help="Installed apps: install, upgrade, export, uninstall.",
                       no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="A package folder or .zip file.",
                                         exists=True)]


LangOption = Annotated[str | None, typer.Option(
    "--lang", envvar="TANGRAM_LANGUAGE", metavar="zh|en",
    help="Language of plans and messages (zh or en). Default: the language of the "
    "administrator the command runs as, else the organization's default language.")]

def choose_language(requested: str | None, actor: Actor | None = None) -> str:
    """The command's language, chosen as the HTTP API chooses a request's
    (``request_language``): the one asked for (``--lang`` /
    ``TANGRAM_LANGUAGE``, as Accept-Language), else the user's own (the
    administrator of ``--as``), else the organization default."""
    from tangram.platform.auth.service import LANGUAGES, pick_language
    from tangram.settings import Settings

    if requested is not None and requested.lower() not in LANGUAGES:
        raise typer.BadParameter(f"{requested!r} is not a language: use "
                                 f"{' or '.join(LANGUAGES)}", param_hint="--lang")
    return pick_language([requested.lower()] if requested else [],
                         actor.language if actor is not None else None,
                         Settings().default_language)


def _print_errors(exc: TangramError, language: str | None = None) -> None:
    typer.secho(f"error: {exc.message}", err=True, fg=typer.colors.RED)
    for e in exc.errors:
        where = ":".join(p for p in (e.file, e.path) if p)
        typer.echo(f"  {where}  {e.message}" if where else f"  {e.message}", err=True)
    if exc.details.get("forms"):
        _print_plans(exc.details["forms"], err=True, language=language or choose_language(None))
        typer.echo("confirm with --confirm-destructive to apply these changes", err=True)


def _print_plans(plans: list[dict[str, Any]], *, err: bool, language: str) -> None:
    """Each form's evolution plan, step by step; the steps that lose data
    are marked with the number of rows they affect."""
    from tangram.metamodel.common import localize

    for entry in plans:
        typer.echo(f"  form {entry['key']}: changes existing data:", err=err)
        for step in entry["plan"].get("steps", []):
            text = localize(step.get("description"), language) or step.get("op")
            mark = (f"DESTRUCTIVE, {step.get('affected_rows', 0)} row(s) affected"
                    if step.get("destructive") else
                    f"{step['affected_rows']} row(s)" if step.get("affected_rows") else "")
            typer.echo(f"    - {text}" + (f" [{mark}]" if mark else ""), err=err)


@contextmanager
def _context(lang: str | None = None) -> Iterator[EngineContext]:
    from tangram.db import create_engine_from_url, session_factory
    from tangram.platform import migrate
    from tangram.settings import Settings

    settings = Settings()
    migrate.upgrade(settings.database_url)
    engine = create_engine_from_url(settings.database_url)
    language = choose_language(lang)
    ctx: EngineContext | None = None
    try:
        session: Session
        with session_factory(engine).begin() as session:
            ctx = EngineContext(session=session, timezone=settings.timezone, language=language)
            yield ctx
    except TangramError as exc:
        _print_errors(exc, ctx.language if ctx else language)
        raise typer.Exit(code=1) from exc
    finally:
        engine.dispose()


AsOption = Annotated[str | None, typer.Option(
    "--as", metavar="USERNAME",
    help="The administrator this runs as: rows without $owner become theirs (as over "
    "the API, where they are the caller's). Default: the only, or first, administrator.")]


def act_as(ctx: EngineContext, username: str | None, lang: str | None = None) -> Actor:
    """The administrator a command runs as (``--as``; default: the first
    active administrator, oldest account first). Refused clearly when the
    user is not an active administrator, or there is none. Messages are then
    in ``lang`` (``--lang``), else the administrator's language."""
    from tangram.engines.directory import users_table as u
    from tangram.errors import NotFound, PermissionDenied
    from tangram.platform.auth.service import find_user_by_username, get_user

    if username is not None:
        user = find_user_by_username(ctx.session, username)
        if user is None:
            raise NotFound(f"no user is named {username!r} (--as names an administrator)")
        if not user.is_admin or not user.is_active:
            raise PermissionDenied(f"user {username!r} is not an active administrator; "
                                   "installing and upgrading apps needs one (--as)")
    else:
        first = ctx.session.execute(
            sa.select(u.c.id).where(u.c.is_admin.is_(True), u.c.status == "active")
            .order_by(u.c.created_at, u.c.username).limit(1)).scalar()
        if first is None:
            raise PermissionDenied(
                "there is no administrator to run as: package rows without $owner belong "
                "to the installing administrator; create one first (tangram user create "
                "NAME --admin) or name one with --as USERNAME")
        user = get_user(ctx.session, first)
    ctx.actor = user.as_actor()
    ctx.language = choose_language(lang, ctx.actor)
    return ctx.actor


def _load(path: Path) -> Any:
    try:
        return load_package(read_package(path, _limits()))
    except TangramError as exc:
        _print_errors(exc)
        raise typer.Exit(code=1) from exc


def _echo(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))


@package_app.command("validate")
def validate(path: PathArg,
             shallow: Annotated[bool, typer.Option(
                 "--shallow", help="Only the files' own checks (no scratch install).")] = False,
             as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")
                                ] = False,
             lang: LangOption = None) -> None:
    """Check every file of a package and report every problem; installs nothing.
    Rows' ``$owner`` may name users of the configured installation, if it exists."""
    try:
        report = validate_files(read_package(path, _limits()), deep=not shallow,
                                language=choose_language(lang),
                                users=_installation_users(),
                                max_file_bytes=_file_target().max_bytes)
    except TangramError as exc:
        _print_errors(exc)
        raise typer.Exit(code=1) from exc
    if as_json:
        _echo(report, True)
    elif report["valid"]:
        counts = ", ".join(f"{len(v)} {k}(s)" for k, v in report["definitions"].items())
        typer.echo(f"{report['app']} {report['version']}: valid ({counts})")
    else:
        typer.secho(f"{len(report['errors'])} problem(s):", err=True, fg=typer.colors.RED)
        for e in report["errors"]:
            where = ":".join(p for p in (e.get("file"), e.get("path")) if p)
            typer.echo(f"  {where}  {e['message']}", err=True)
    if not report["valid"]:
        raise typer.Exit(code=1)


def _file_target() -> FileTarget:
    """The configured file storage and upload limit: where a package's files
    go, as uploads do."""
    from tangram.engines.forms.files import LocalFileStore
    from tangram.settings import Settings

    settings = Settings()
    return FileTarget(store=LocalFileStore(settings.files_path),
                      max_bytes=settings.max_upload_mb << 20)


def _limits() -> PackageLimits:
    """The configured installation's package limits (a carried file may be
    as large as an upload)."""
    from tangram.settings import Settings

    return PackageLimits.for_installation(Settings().max_upload_mb << 20)


def _installation_users() -> Callable[[set[str]], set[str]] | None:
    """A lookup of usernames in the configured database — read only, never
    created or migrated here; None when there is no installation to ask."""
    from sqlalchemy.engine import make_url

    from tangram.db import create_engine_from_url
    from tangram.engines.directory import users_table
    from tangram.settings import Settings

    url = Settings().database_url
    database = make_url(url).database if url.startswith("sqlite") else None
    if url.startswith("sqlite") and (not database or not Path(database).exists()):
        return None
    engine = create_engine_from_url(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(users_table.name):
                return None
            names = set(conn.execute(sa.select(users_table.c.username)).scalars())
    except sa.exc.SQLAlchemyError:
        return None  # no installation reachable: the package's own fixtures only
    finally:
        engine.dispose()
    return lambda wanted: wanted & names


@apps_app.command("install")
def install(path: PathArg,
            demo: Annotated[bool, typer.Option("--demo", help="Also load the demo data.")
                            ] = False,
            if_missing: Annotated[bool, typer.Option(
                "--if-missing", help="Succeed without changes if the app is installed.")
                                  ] = False,
            as_user: AsOption = None,
            as_json: Annotated[bool, typer.Option("--json")] = False,
            lang: LangOption = None) -> None:
    """Install an app from a package (all or nothing), as an administrator."""
    from tangram.platform.packages.store import find_installed

    package = _load(path)
    with _context(lang) as ctx:
        if if_missing and find_installed(ctx.session, package.key) is not None:
            typer.echo(f"{package.key} is already installed; unchanged")
            return
        act_as(ctx, as_user, lang)
        result = install_package(ctx, package, demo=demo, files=_file_target())
    _echo(result, as_json)
    rows = sum(result["rows"].values())
    typer.echo(f"installed {result['app']} {result['version']}"
               + (f" with {rows} row(s) of data" if rows else ""))


@apps_app.command("upgrade")
def upgrade(path: PathArg,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
            confirm_destructive: Annotated[bool, typer.Option(
                "--confirm-destructive", help="Apply changes that lose data.")] = False,
            allow_downgrade: Annotated[bool, typer.Option(
                "--allow-downgrade", help="Apply an older version than the installed one "
                "(or the installed version's number with other content).")] = False,
            as_user: AsOption = None,
            as_json: Annotated[bool, typer.Option("--json")] = False,
            lang: LangOption = None) -> None:
    """Upgrade an installed app to the package's version, keeping customizations.
    ``--dry-run`` lists what the real run would do: the definitions added,
    changed, removed and kept, conflicts, problems, and each form's evolution
    plan."""
    package = _load(path)
    with _context(lang) as ctx:
        act_as(ctx, as_user, lang)
        report = upgrade_package(ctx, package, dry_run=dry_run,
                                 confirm_destructive=confirm_destructive,
                                 allow_downgrade=allow_downgrade, files=_file_target())
        language = ctx.language
    _echo(report, as_json)
    if not as_json:
        _print_upgrade(report, dry_run=dry_run, confirmed=confirm_destructive,
                       language=language)


# What the text of an upgrade lists, in order: (report key, heading).
_UPGRADE_LISTS = (
    ("added", "added"), ("changed", "changed"), ("removed", "removed"),
    ("kept_removed", "kept (the new version drops them; they hold records or flows)"),
    ("kept_changed", "kept (you changed them; they are yours now)"))


def _print_upgrade(report: dict[str, Any], *, dry_run: bool, confirmed: bool,
                   language: str) -> None:
    if report.get("unchanged"):
        typer.echo(f"{report['app']} {report['to_version']} is already installed; "
                   "nothing to do")
        return
    verb = "would upgrade" if dry_run else "upgraded"
    typer.echo(f"{verb} {report['app']} {report['from_version']} → {report['to_version']}"
               + (" (a downgrade)" if report.get("downgrade") else "")
               + f"; kept {len(report['customizations'])} customization(s)")
    for key, heading in _UPGRADE_LISTS:
        names = [f"{kind} {name}" for kind, keys in sorted(report.get(key, {}).items())
                 for name in keys]
        if names:
            typer.echo(f"  {heading}: {', '.join(names)}")
    for form, renames in sorted(report.get("renamed", {}).items()):
        typer.echo(f"  renamed in form {form}: {', '.join(renames)} (data kept)")
    for c in report["conflicts"]:
        typer.echo(f"  conflict: {c.get('file')}:{c.get('path')}  {c['message']}")
    for e in report.get("errors", []):
        where = ":".join(p for p in (e.get("file"), e.get("path")) if p)
        typer.echo(f"  problem: {where}  {e['message']}")
    _print_plans(report.get("evolution", []), err=False, language=language)
    if report.get("needs_confirmation") and dry_run and not confirmed:
        typer.echo("the upgrade changes existing data: the real run needs confirmation — "
                   "run it again with --confirm-destructive")
    if dry_run and (report["conflicts"] or report.get("errors")):
        typer.echo("the real run would be refused until the problems above are resolved")


@apps_app.command("export")
def export(key: Annotated[str, typer.Argument(help="App key.")],
           output: Annotated[Path, typer.Option("-o", "--output",
                                                help="A .zip file or a folder.")],
           layer: Annotated[bool, typer.Option(help="Include the tenant's customizations.")
                            ] = True,
           data: Annotated[bool, typer.Option("--data", help="Include the records.")] = False,
           ) -> None:
    """Export an app as a package (zip or folder)."""
    with _context() as ctx:
        result = export_package(ctx, key, layer=layer, data=data,
                                files=_file_target().store, limits=_limits())
    files = result.files
    for warning in result.warnings:  # what the package does not carry
        typer.echo(f"warning: {warning}", err=True)
    if output.suffix == ".zip":
        output.write_bytes(write_zip(files))
    else:
        write_folder(files, output)
    typer.echo(f"exported {key} ({len(files)} files) to {output}")


@apps_app.command("uninstall")
def uninstall(key: Annotated[str, typer.Argument(help="App key.")],
              yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Remove an app, its definitions and ALL its records."""
    if not yes:
        typer.confirm(f"Uninstall {key} and delete all its records?", abort=True)
    with _context() as ctx:
        result = uninstall_app(ctx, key)
    typer.echo(f"uninstalled {result['app']} {result['version']}")


@apps_app.command("customizations")
def show_customizations(key: Annotated[str, typer.Argument(help="App key.")]) -> None:
    """Show the tenant's customization layer over the installed package."""
    with _context() as ctx:
        layer = customizations(ctx, key)
    _echo({"app": key, "customizations": layer}, True)


@apps_app.command("demo-data")
def demo_data(path: PathArg, as_user: AsOption = None, lang: LangOption = None) -> None:
    """Load a package's demo data into its installed app (once: refused if the
    app already has records from it)."""
    package = _load(path)
    with _context(lang) as ctx:
        act_as(ctx, as_user, lang)
        counts = load_demo(ctx, package, files=_file_target())
    typer.echo(f"loaded {sum(counts.values())} demo row(s) into {package.key}")
