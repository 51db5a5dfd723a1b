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
from typing import Any

from tangram.db import create_engine_from_url, session_factory
from tangram.engines.context import EngineContext
from tangram.errors import TangramError
from tangram.metamodel import storage
from tangram.platform.packages import store
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.kinds import package_kinds
from tangram.platform.packages.layer import live_bodies
from tangram.platform.packages.loader import MANIFEST, Package, load_package
from tangram.platform.packages.manifest import platform_version
from tangram.platform.packages.org_fixture import ORG_FILE
from tangram.platform.packages.rows import REF
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
                   timezone: str = "Asia/Shanghai") -> dict[str, Any]:
    """Every problem of a package, without installing it. ``deep`` also runs
    the install in a scratch in-memory database that is thrown away, so the
    engines' publishing checks (expressions, relation targets, report fields,
    flow graphs, seed rows) report too, in ``language``."""
    try:
        package = load_package(files)
    except PackageInvalid as exc:
        return {"valid": False, "errors": [e.as_dict() for e in exc.errors]}
    if deep:
        errors = _deep_check(package, language=language, timezone=timezone)
        if errors:
            return {"valid": False, "app": package.key, "version": package.manifest.version,
                    "errors": errors}
    return {"valid": True, "app": package.key, "version": package.manifest.version,
            "errors": [],
            "definitions": {k.kind: sorted(i.key for i in package.items if i.kind == k.kind)
                            for k in package_kinds()
                            if any(i.kind == k.kind for i in package.items)},
            "data": {s: {f: len(r) for f, r in d.items()} for s, d in package.data.items()}}


def _deep_check(package: Package, *, language: str, timezone: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from tangram.platform.packages.install import install_package
    from tangram.platform.schema import create_platform_tables

    engine = create_engine_from_url("sqlite://", poolclass=sa.StaticPool)
    try:
        create_platform_tables(engine)
        with session_factory(engine)() as session:
            ctx = EngineContext(session=session, language=language, timezone=timezone)
            # Dependencies are checked at install time, against what is installed.
            scratch = Package(manifest=package.manifest.model_copy(update={"dependencies": {}}),
                              items=package.items, data=package.data,
                              org=package.org, templates=package.templates)
            try:
                install_package(ctx, scratch, confirm_destructive=True)
            except TangramError as exc:
                return [e.as_dict() for e in exc.errors] or [
                    {"code": exc.code, "message": exc.message}]
            finally:
                session.rollback()
    finally:
        engine.dispose()
    return []
