"""Export an app as a package, and validate a package without installing it.

Export writes the layout a partner would write by hand (``app.json``,
``forms/<key>.json``, …). ``layer=False`` gives the package exactly as
installed (the base); ``layer=True`` the live definitions (the base with
the tenant's customizations, field ids kept so renames survive the trip).
``data=True`` adds every live record as ``data/seed/<form>.json`` rows, links
between them as ``{"$ref": "<old id>"}``; system columns (owner, timestamps),
user, department and file values, and computed fields are not exported.

    files = export_app(ctx, "crm", layer=True)
    write_zip(files)
"""

from __future__ import annotations

import json
import re
from typing import Any

from tangram.db import create_engine_from_url, session_factory
from tangram.engines.context import EngineContext
from tangram.errors import ErrorItem, TangramError
from tangram.metamodel import storage
from tangram.platform.auth.service import normalize_username
from tangram.platform.packages import store
from tangram.platform.packages.kinds import package_kinds
from tangram.platform.packages.layer import live_bodies
from tangram.platform.packages.loader import (
    MANIFEST,
    Package,
    PackageCheck,
    UserLookup,
    check_package,
)
from tangram.platform.packages.manifest import platform_version
from tangram.platform.packages.org_fixture import ORG_FILE
from tangram.platform.packages.rows import OWNER, REF
from tangram.platform.packages.source import PackageFiles

COMPUTED = {"formula", "rollup", "autonumber"}
NOT_PORTABLE = {"user", "department", "attachment"}


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


def export_app(ctx: EngineContext, app: str, *, layer: bool = True,
               data: bool = False) -> PackageFiles:
    installed = store.find_installed(ctx.session, app)
    kinds = package_kinds()
    if installed is not None:
        manifest = dict(installed.manifest)
        base = store.base_bodies(ctx.session, app)
        extra_files = dict(installed.files)
    else:  # an app built in the designer: a first package of it
        a = storage.get_app(ctx.session, app)
        manifest = {"format": 1, "key": a.key, "version": a.version, "name": a.name,
                    **({"description": a.description} if a.description else {}),
                    "platform": f">={platform_version()}"}
        base, extra_files = {}, {}
    bodies = live_bodies(ctx.session, app, [k.kind for k in kinds]) if layer or \
        installed is None else base
    manifest["roles"] = []  # every role travels as roles/<key>.json
    files: PackageFiles = {MANIFEST: _json(manifest)}
    folders = {k.kind: k.folder for k in kinds}
    for (kind, key), body in sorted(bodies.items()):
        files[f"{folders[kind]}/{key}.json"] = _json(body)
    for path, text in extra_files.items():
        # --data replaces the seed rows with the records (the seed org fixture stays).
        if not (data and path.startswith("data/seed/") and not path.endswith(ORG_FILE)):
            files[path] = text.encode()
    if data:
        files.update(_export_records(ctx, app, [k for (kind, k) in bodies if kind == "form"]))
    return files


def _export_records(ctx: EngineContext, app: str, forms: list[str]) -> PackageFiles:
    from tangram.engines.forms.query import ListQuery
    from tangram.engines.forms.records import list_records
    from tangram.engines.forms.registry import get_runtime

    out: PackageFiles = {}
    for form in sorted(forms):
        try:
            rt = get_runtime(ctx.session, app, form)
        except TangramError:
            continue  # never published: no records
        kinds = {f.key: f.type for f in rt.form.fields}
        relations = {k for k, t in kinds.items() if t in ("relation", "multi_relation")}
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = list_records(ctx, app=app, form=form,
                                query=ListQuery(limit=500, after=cursor, sort=["created_at"]))
            for item in page["items"]:
                row: dict[str, Any] = {REF: item["id"]}
                for key, t in kinds.items():
                    value = item.get(key)
                    if t in COMPUTED or t in NOT_PORTABLE or value in (None, [], ""):
                        continue
                    if key in relations:
                        value = ([{REF: v} for v in value] if isinstance(value, list)
                                 else {REF: value})
                    elif t == "sub_table":
                        value = [{k: v for k, v in r.items() if k != "id" and v is not None}
                                 for r in value]
                    row[key] = value
                rows.append(row)
            cursor = page["next_cursor"]
            if not cursor:
                break
        if rows:
            out[f"data/seed/{form}.json"] = _json(rows)
    return out


# --- validation ----------------------------------------------------------------------------

def validate_files(files: PackageFiles, *, deep: bool = True, language: str = "zh",
                   timezone: str = "Asia/Shanghai",
                   users: UserLookup | None = None) -> dict[str, Any]:
    """Every problem of a package, without installing it, in one report.

    First each file and the package as a whole (``check_package``; each
    ``$owner`` must be a user of its set's org fixture or one ``users``
    finds — the installation's, none without one). Then, with ``deep``, the
    definitions that passed are installed in a scratch in-memory database
    that is thrown away, so the engines' publishing checks (expressions,
    relation targets, report fields, flow graphs, seed rows) report too, in
    ``language`` — even when the first pass found problems elsewhere. A
    problem a definition has only because another one failed is left out:
    the failed one says why."""
    checked = check_package(files, users=users or (lambda names: set()))
    package = checked.package
    errors = [e.as_dict() for e in checked.errors]
    if deep and checked.manifest_ok:
        errors += _deep_check(checked, language=language, timezone=timezone)
    about = {"app": package.key, "version": package.manifest.version} \
        if checked.manifest_ok else {}
    if errors:
        return {"valid": False, **about, "errors": errors}
    return {"valid": True, **about, "errors": [],
            "definitions": {k.kind: sorted(i.key for i in package.items if i.kind == k.kind)
                            for k in package_kinds()
                            if any(i.kind == k.kind for i in package.items)},
            "data": {s: {f: len(r) for f, r in d.items()} for s, d in package.data.items()}}


def _under(path: str | None, prefix: str) -> bool:
    path = path or "$"
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _row_problems(errors: list[ErrorItem], file: str) -> tuple[set[int], dict[int, set[str]]]:
    """Rows of a data file the first pass refused whole, and the keys it
    refused of the others."""
    whole: set[int] = set()
    keys: dict[int, set[str]] = {}
    for e in errors:
        if e.file != file:
            continue
        m = re.match(r"^\$\[(\d+)\](?:\.([^.\[]+))?", e.path or "")
        if m is None:
            continue
        if m[2] is None:
            whole.add(int(m[1]))
        else:
            keys.setdefault(int(m[1]), set()).add(m[2])
    return whole, keys


def _deep_check(checked: PackageCheck, *, language: str, timezone: str) -> list[dict[str, Any]]:
    """Install what passed the first pass into a scratch database: the
    definitions without problems, then the seed set — its org fixture and
    the rows of forms that published, less the values the first pass
    refused. Problems at a place the first pass already reported are not
    reported again."""
    import sqlalchemy as sa

    from tangram.platform.packages.install import _app_body, _apply, _pieces
    from tangram.platform.packages.loader import fixture_users
    from tangram.platform.schema import create_platform_tables

    package, first = checked.package, checked.errors
    flawed = {(i.kind, i.key) for i in package.items
              if any(e.file == i.file and _under(e.path, i.prefix) for e in first)}
    # Dependencies are checked at install time, against what is installed.
    scratch = Package(manifest=package.manifest.model_copy(update={"dependencies": {}}),
                      items=[i for i in package.items if (i.kind, i.key) not in flawed],
                      templates=package.templates)
    found: list[ErrorItem] = []
    engine = create_engine_from_url("sqlite://", poolclass=sa.StaticPool)
    try:
        create_platform_tables(engine)
        with session_factory(engine)() as session:
            ctx = EngineContext(session=session, language=language, timezone=timezone)
            try:
                storage.create_app(session, app=_app_body(scratch), user_id=None,
                                   now=ctx.now())
                outcome = _apply(ctx, scratch.key, _pieces(scratch), confirm_destructive=True,
                                 missing=flawed | checked.broken)
                found += outcome.errors
                forms = {k for kind, k in outcome.published if kind == "form"}
                found += _deep_check_seed(ctx, package, first, forms,
                                          fixture_users(package, "seed"))
            except TangramError as exc:
                found += exc.errors or [ErrorItem(code=exc.code, message=exc.message)]
            finally:
                session.rollback()
    finally:
        engine.dispose()
    return [e.as_dict() for e in found
            if not any(f.file == e.file and _under(e.path, f.path or "$") for f in first)]


def _deep_check_seed(ctx: EngineContext, package: Package, first: list[ErrorItem],
                     forms: set[str], fixture: set[str]) -> list[ErrorItem]:
    from tangram.platform.packages.data import load_data_set

    org_file = f"data/seed/{ORG_FILE}"
    org = package.org.get("seed")
    if org is not None and any(e.file == org_file for e in first):
        org, fixture = None, set()
    rows_by_form: dict[str, list[dict[str, Any]]] = {}
    index: dict[str, list[int]] = {}  # file → the package row of each row loaded
    unavailable: set[str] = set()
    for form, rows in package.data["seed"].items():
        file = f"data/seed/{form}.json"
        whole, keys = _row_problems(first, file)
        for i, row in enumerate(rows):
            if form not in forms or i in whole:
                if isinstance(row.get(REF), str):
                    unavailable.add(row[REF])
                continue
            # Owners the scratch database cannot have (the installation's
            # users) were checked by the first pass.
            drop = keys.get(i, set()) | ({OWNER} if isinstance(row.get(OWNER), str)
                                         and normalize_username(row[OWNER]) not in fixture
                                         else set())
            rows_by_form.setdefault(form, []).append(
                {k: v for k, v in row.items() if k not in drop})
            index.setdefault(file, []).append(i)
    try:
        with ctx.session.begin_nested():
            load_data_set(ctx, app=package.key, data_set="seed", rows_by_form=rows_by_form,
                          org=org, unavailable=unavailable)
    except TangramError as exc:
        return [_renumbered(e, index) for e in exc.errors] or [
            ErrorItem(code=exc.code, message=exc.message)]
    return []


def _renumbered(e: ErrorItem, index: dict[str, list[int]]) -> ErrorItem:
    """An error of a loaded row, at that row's place in the package's file."""
    m = re.match(r"^\$\[(\d+)\]", e.path or "")
    rows = index.get(str(e.file))
    if m is None or rows is None or int(m[1]) >= len(rows):
        return e
    return ErrorItem(code=e.code, message=e.message, file=e.file, details=e.details,
                     path=f"$[{rows[int(m[1])]}]" + (e.path or "")[m.end():])
