"""``tangram package …`` and ``tangram app …``: thin wrappers over the
package services (see docs/packages.md).

    tangram package validate apps_catalog/crm
    tangram app install apps_catalog/crm --demo
    tangram app upgrade crm-1.1.0.zip --dry-run
    tangram app export crm -o crm.zip [--no-layer] [--data]
    tangram app uninstall crm --yes
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from tangram.engines.context import EngineContext
from tangram.errors import TangramError
from tangram.platform.packages.export import export_app, validate_files
from tangram.platform.packages.install import (
    customizations,
    install_package,
    load_demo,
    uninstall_app,
    upgrade_package,
)
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package, write_folder, write_zip

package_app = typer.Typer(help="App packages: check one before installing it.",
                          no_args_is_help=True)
apps_app = typer.Typer(help="Installed apps: install, upgrade, export, uninstall.",
                       no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="A package folder or .zip file.",
                                         exists=True)]


def _print_errors(exc: TangramError) -> None:
    typer.secho(f"error: {exc.message}", err=True, fg=typer.colors.RED)
    for e in exc.errors:
        where = ":".join(p for p in (e.file, e.path) if p)
        typer.echo(f"  {where}  {e.message}" if where else f"  {e.message}", err=True)
    if exc.details.get("forms"):
        for plan in exc.details["forms"]:
            typer.echo(f"  form {plan['key']}: destructive changes:", err=True)
            for step in plan["plan"].get("steps", []):
                if step.get("destructive"):
                    typer.echo(f"    - {step.get('description') or step}", err=True)


@contextmanager
def _context() -> Iterator[EngineContext]:
    from tangram.db import create_engine_from_url, session_factory
    from tangram.platform import migrate
    from tangram.settings import Settings

    settings = Settings()
    migrate.upgrade(settings.database_url)
    engine = create_engine_from_url(settings.database_url)
    try:
        session: Session
        with session_factory(engine).begin() as session:
            yield EngineContext(session=session, timezone=settings.timezone)
    except TangramError as exc:
        _print_errors(exc)
        raise typer.Exit(code=1) from exc
    finally:
        engine.dispose()


def _load(path: Path) -> Any:
    try:
        return load_package(read_package(path))
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
                                ] = False) -> None:
    """Check every file of a package and report every problem; installs nothing."""
    try:
        report = validate_files(read_package(path), deep=not shallow)
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


@apps_app.command("install")
def install(path: PathArg,
            demo: Annotated[bool, typer.Option("--demo", help="Also load the demo data.")
                            ] = False,
            if_missing: Annotated[bool, typer.Option(
                "--if-missing", help="Succeed without changes if the app is installed.")
                                  ] = False,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Install an app from a package (all or nothing)."""
    from tangram.platform.packages.store import find_installed

    package = _load(path)
    with _context() as ctx:
        if if_missing and find_installed(ctx.session, package.key) is not None:
            typer.echo(f"{package.key} is already installed; unchanged")
            return
        result = install_package(ctx, package, demo=demo)
    _echo(result, as_json)
    rows = sum(result["rows"].values())
    typer.echo(f"installed {result['app']} {result['version']}"
               + (f" with {rows} row(s) of data" if rows else ""))


@apps_app.command("upgrade")
def upgrade(path: PathArg,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only.")] = False,
            confirm_destructive: Annotated[bool, typer.Option(
                "--confirm-destructive", help="Apply changes that lose data.")] = False,
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Upgrade an installed app to the package's version, keeping customizations."""
    package = _load(path)
    with _context() as ctx:
        report = upgrade_package(ctx, package, dry_run=dry_run,
                                 confirm_destructive=confirm_destructive)
    _echo(report, as_json)
    if not as_json:
        verb = "would upgrade" if dry_run else "upgraded"
        typer.echo(f"{verb} {report['app']} {report['from_version']} → {report['to_version']}"
                   f"; kept {len(report['customizations'])} customization(s)")
        for c in report["conflicts"]:
            typer.echo(f"  conflict: {c.get('file')}:{c.get('path')}  {c['message']}")


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
        files = export_app(ctx, key, layer=layer, data=data)
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
def demo_data(path: PathArg) -> None:
    """Load a package's demo data into its installed app (once: refused if the
    app already has records from it)."""
    package = _load(path)
    with _context() as ctx:
        counts = load_demo(ctx, package)
    typer.echo(f"loaded {sum(counts.values())} demo row(s) into {package.key}")
