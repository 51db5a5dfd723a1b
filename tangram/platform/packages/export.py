"""Export an app as a package, and validate a package without installing it.

Export writes the layout a partner would write by hand (``app.json``,
``forms/<key>.json``, …), each definition without the values its model
fills in by default. ``layer=False`` gives the package exactly as installed
(the base); ``layer=True`` the live definitions (the base with the
tenant's customizations, field ids kept so renames survive the trip).
``data=True`` adds every live record as ``data/seed/<form>.json`` rows (one
row per line): named and linked by ``$ref`` — sub-table rows' links too —,
with its ``$owner`` and user values (``{"$user": username}``; those users
and the app's role holders travel in the seed ``_org.json``),
``$created_at``, autonumbers and attachments (``{"$file": {…}}``, each
content once in ``data/seed/_files/<sha256>``, read from ``files``: the
installation's file storage). What the format does not carry — department
values, running flow instances — is counted in the export's ``warnings``.

    result = export_package(ctx, "crm", data=True, files=LocalFileStore(settings.files_path))
    write_zip(result.files); print(result.warnings)
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_origin

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from tangram.db import create_engine_from_url, session_factory
from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.forms.files import FileStore
from tangram.engines.forms.systables import files_table
from tangram.errors import ErrorItem, NotFound, TangramError
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
from tangram.platform.packages.manifest import AppManifest, platform_version
from tangram.platform.packages.org_fixture import ORG_FILE, export_org, merge_org
from tangram.platform.packages.packaged_files import DiscardingStore, FileTarget, entry_name
from tangram.platform.packages.rows import (
    CREATED_AT,
    FILE,
    OWNER,
    REF,
    USER,
    files_in,
    row_values,
    users_in,
)
from tangram.platform.packages.source import (
    DEFAULT_LIMITS,
    PackageFiles,
    PackageLimits,
    limit_problems,
)

COMPUTED = {"formula", "rollup"}  # computed again on install
NOT_PORTABLE = {"department"}  # ids of this installation's org chart
RELATIONS = {"relation", "multi_relation"}


@dataclass
class ExportResult:
    """The package's files, and what the export could not carry (one line each)."""

    files: PackageFiles
    warnings: list[str] = field(default_factory=list)


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


def _rows_json(rows: list[dict[str, Any]]) -> bytes:
    """A data file, one row per line (big sets stay diffable)."""
    lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    return f"[\n{lines}\n]\n".encode() if rows else b"[]\n"


def _compact(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the values ``model`` fills in by default, when that
    reads back as exactly the same definition (else ``body`` as it is)."""
    try:
        parsed = model.model_validate(body)
        compact = parsed.model_dump(mode="json", by_alias=True, exclude_none=True,
                                    exclude_defaults=True)
        _keep_tags(parsed, compact)
        full = storage.dump(parsed)
        if storage.dump(model.model_validate(compact)) == full:
            _drop_derived(model, compact, compact, full)
            return compact
    except ValidationError:
        pass  # a stored body its model no longer reads: exported as it is
    return body


def _drop_derived(model: type[BaseModel], body: dict[str, Any], node: Any,
                  full: dict[str, Any]) -> None:
    """Leave out of ``body`` the plain values the model derives when they are
    missing (a validator fills ``missed`` from the trigger, say): each is
    dropped when the definition reads back the same without it."""
    if isinstance(node, list):
        for item in node:
            _drop_derived(model, body, item, full)
        return
    if not isinstance(node, dict):
        return
    for key in list(node):
        value = node[key]
        if isinstance(value, dict | list) and value:
            _drop_derived(model, body, value, full)
            continue
        if key in ("key", "type", "kind"):
            continue  # names and tags: read back the same, but a reader needs them
        del node[key]
        try:
            same = storage.dump(model.model_validate(body)) == full
        except ValidationError:
            same = False
        if not same:
            node[key] = value


def _keep_tags(model: BaseModel, dumped: dict[str, Any]) -> None:
    """Put back the tags that pick a union's member (``"type": "approval"``):
    their values are their fields' defaults, but a reader needs them."""
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        if get_origin(info.annotation) is Literal and key not in dumped and value is not None:
            dumped[key] = value
        if key not in dumped:
            continue
        if isinstance(value, BaseModel) and isinstance(dumped[key], dict):
            _keep_tags(value, dumped[key])
        elif isinstance(value, list | tuple) and isinstance(dumped[key], list):
            for item, out in zip(value, dumped[key], strict=False):
                if isinstance(item, BaseModel) and isinstance(out, dict):
                    _keep_tags(item, out)
        elif isinstance(value, dict) and isinstance(dumped[key], dict):
            for k, item in value.items():
                if isinstance(item, BaseModel) and isinstance(dumped[key].get(k), dict):
                    _keep_tags(item, dumped[key][k])


def export_app(ctx: EngineContext, app: str, *, layer: bool = True,
               data: bool = False, files: FileStore | None = None) -> PackageFiles:
    """The package's files (see :func:`export_package` for its warnings)."""
    return export_package(ctx, app, layer=layer, data=data, files=files).files


def export_package(ctx: EngineContext, app: str, *, layer: bool = True,
                   data: bool = False, files: FileStore | None = None,
                   limits: PackageLimits = DEFAULT_LIMITS) -> ExportResult:
    """The app as a package; with ``data`` its records too. ``files`` is the
    installation's file storage, which the attachments are read from (needed
    when a record, or a kept seed row, has one). ``limits``: those this
    installation reads packages with (``PackageLimits.for_installation``);
    each limit the package passes is a warning — install refuses it."""
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
    out: PackageFiles = {MANIFEST: _json({"format": 1, **_compact(AppManifest, manifest)})}
    by_kind = {k.kind: k for k in kinds}
    for (kind, key), body in sorted(bodies.items()):
        out[f"{by_kind[kind].folder}/{key}.json"] = _json(_compact(by_kind[kind].model, body))
    seed_org = None
    for path, text in extra_files.items():
        # --data replaces the seed rows with the records (the seed org fixture stays).
        if data and path == f"data/seed/{ORG_FILE}":
            seed_org = json.loads(text)
        elif not (data and path.startswith("data/seed/")):
            out[path] = text.encode()
    result = ExportResult(files=out)
    if data:
        forms = [k for (kind, k) in bodies if kind == "form"]
        users = _export_records(ctx, app, forms, result, files)
        org = merge_org(seed_org, export_org(
            ctx, app=app, usernames=users, roles=[k for (kind, k) in bodies if kind == "role"]))
        if org:
            out[f"data/seed/{ORG_FILE}"] = _json(org)
            if org.get("users"):
                result.warnings.append(
                    f"{len(org['users'])} user(s) travel in data/seed/{ORG_FILE} without "
                    "passwords: on the other installation they sign in once an "
                    "administrator sets their passwords")
        result.warnings += _running_flows(ctx, app)
    else:
        _kept_rows_files(ctx, result, files)
    result.warnings += _size_warnings(result.files, limits)
    return result


def _export_records(ctx: EngineContext, app: str, forms: list[str],
                    result: ExportResult, store: FileStore | None) -> set[str]:
    """Write every live record as seed rows, and the files they have; returns
    the usernames they name (owners and user values)."""
    from tangram.engines.forms.query import ListQuery
    from tangram.engines.forms.records import list_records
    from tangram.engines.forms.registry import get_runtime

    usernames = {str(r.id): r.username for r in ctx.session.execute(
        sa.select(users_table.c.id, users_table.c.username))}
    lost: Counter[str] = Counter()  # "form.field" → values not exported
    rows_by_form: dict[str, list[dict[str, Any]]] = {}
    defs: dict[str, dict[str, Any]] = {}
    for form in sorted(forms):
        try:
            rt = get_runtime(ctx.session, app, form)
        except TangramError:
            continue  # never published: no records
        defs[form] = {f.key: f for f in rt.form.fields}
        rows: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = list_records(ctx, app=app, form=form,
                                query=ListQuery(limit=500, after=cursor, sort=["created_at"]))
            for item in page["items"]:
                owner = item.get("owner")
                row: dict[str, Any] = {REF: item["id"],
                                       OWNER: usernames.get(str(owner)) if owner else None,
                                       CREATED_AT: item["created_at"]}
                row.update(_values(item, defs[form], f"{form}.", lost, usernames))
                rows.append(row)
            cursor = page["next_cursor"]
            if not cursor:
                break
        if rows:
            rows_by_form[form] = rows
    _files_of_rows(ctx, rows_by_form, result, store)
    exported = {r[REF] for rows in rows_by_form.values() for r in rows}
    dangling: Counter[str] = Counter()
    for form, rows in rows_by_form.items():
        for row in rows:
            for key in list(row):
                if not key.startswith("$"):
                    _drop_dangling(row, key, exported, f"{form}.{key}", dangling)
        result.files[f"data/seed/{form}.json"] = _rows_json(rows)
    result.warnings += [f"{where}: {n} value(s) not exported — department values name "
                        "departments of this installation's org chart: set them again after "
                        "install" for where, n in sorted(lost.items()) if ":" not in where]
    result.warnings += [f"{where.split(':')[0]}: {n} value(s) name users that no longer "
                        "exist here: not exported" for where, n in sorted(lost.items())
                        if where.endswith(":gone")]
    result.warnings += [f"{where}: {n} link(s) to records that are not exported (deleted, or "
                        "of another app) left out" for where, n in sorted(dangling.items())]
    named = {str(r[OWNER]) for rows in rows_by_form.values() for r in rows if r[OWNER]}
    for rows in rows_by_form.values():
        for i, row in enumerate(rows):
            named |= {str(name) for where, value in row_values(row, i)
                      for _, name in users_in(value, where)}
    return named


def _values(item: dict[str, Any], fields: dict[str, Any], where: str,
            lost: Counter[str], usernames: dict[str, str]) -> dict[str, Any]:
    """A record's (or sub-table row's) field values as a data row gives them:
    links as ``{"$ref": id}``, users as ``{"$user": username}``, files as
    ``{"$file": id}`` (described by :func:`_files_of_rows`), without empty
    and computed values; department values are counted in ``lost``."""
    out: dict[str, Any] = {}
    for key, f in fields.items():
        value = item.get(key)
        if f.type in COMPUTED or value in (None, [], ""):
            continue
        if f.type in NOT_PORTABLE:
            lost[where + key] += 1
        elif f.type == "user":
            if str(value) in usernames:
                out[key] = {USER: usernames[str(value)]}
            else:
                lost[f"{where}{key}:gone"] += 1
        elif f.type == "attachment":
            # Top-level values are descriptors, sub-table rows' are ids.
            out[key] = [{FILE: str(v["id"] if isinstance(v, dict) else v)} for v in value]
        elif f.type in RELATIONS:
            out[key] = [{REF: v} for v in value] if isinstance(value, list) else {REF: value}
        elif f.type == "sub_table":
            sub = {s.key: s for s in f.fields}
            out[key] = [_values(r, sub, f"{where}{key}.", lost, usernames) for r in value]
        else:
            out[key] = value
    return out


def _read(store: FileStore, storage_key: str) -> bytes | None:
    try:
        with store.open(storage_key) as handle:
            return handle.read()
    except NotFound:
        return None


def _files_of_rows(ctx: EngineContext, rows_by_form: dict[str, list[dict[str, Any]]],
                   result: ExportResult, store: FileStore | None) -> None:
    """Describe each ``{"$file": id}`` of the rows (name, content type, size,
    SHA-256 of its content) and put each content in the package once; a file
    whose content is missing from storage is left out, and said."""
    ids: set[uuid.UUID] = set()
    for rows in rows_by_form.values():
        for i, row in enumerate(rows):
            ids |= {uuid.UUID(str(ref)) for where, value in row_values(row, i)
                    for _, ref in files_in(value, where)}
    if not ids:
        return
    if store is None:
        raise ValueError("the records have attachments: export_package needs the "
                         "installation's file storage (files=…)")
    described: dict[str, dict[str, Any]] = {}
    for r in ctx.session.execute(sa.select(files_table).where(files_table.c.id.in_(ids))):
        content = _read(store, r.storage_key)
        if content is None:
            continue
        sha = hashlib.sha256(content).hexdigest()
        result.files[entry_name("seed", sha)] = content
        described[str(r.id)] = {"sha256": sha, "name": r.name,
                                "content_type": r.content_type, "size": len(content)}
    missing: Counter[str] = Counter()

    def describe(value: Any, where: str) -> Any:
        if isinstance(value, dict) and set(value) == {FILE}:
            return {FILE: described[value[FILE]]} if value[FILE] in described else None
        if isinstance(value, list):
            kept = [describe(v, where) for v in value]
            missing[where] += sum(1 for v in kept if v is None)
            return [v for v in kept if v is not None]
        if isinstance(value, dict):
            return {k: describe(v, f"{where}.{k}") for k, v in value.items()}
        return value

    for form, rows in rows_by_form.items():
        for row in rows:
            for key in [k for k in row if not k.startswith("$")]:
                row[key] = describe(row[key], f"{form}.{key}")
                if row[key] == []:
                    del row[key]
    result.warnings += [f"{where}: {n} file(s) whose content is missing from this "
                        "installation's storage not exported" for where, n in
                        sorted(missing.items()) if n]


def _kept_rows_files(ctx: EngineContext, result: ExportResult,
                     store: FileStore | None) -> None:
    """The files the package's own rows (kept with the installed version)
    name: installed from the package, they are in the file storage by their
    content's SHA-256."""
    wanted: set[str] = set()
    for path, data in result.files.items():
        m = re.match(r"^data/seed/[^/]+\.json$", path)
        rows = json.loads(data) if m else None
        if isinstance(rows, list):
            wanted |= {d["sha256"] for i, row in enumerate(rows) if isinstance(row, dict)
                       for where, value in row_values(row, i)
                       for _, d in files_in(value, where) if isinstance(d, dict)
                       and isinstance(d.get("sha256"), str)}
    found: set[str] = set()
    if wanted and store is not None:
        for r in ctx.session.execute(sa.select(files_table.c.sha256, files_table.c.storage_key)
                                     .where(files_table.c.sha256.in_(sorted(wanted)))):
            if r.sha256 in found:
                continue
            content = _read(store, r.storage_key)
            if content is not None and hashlib.sha256(content).hexdigest() == r.sha256:
                result.files[entry_name("seed", r.sha256)] = content
                found.add(r.sha256)
    if wanted - found:
        result.warnings.append(
            f"{len(wanted - found)} file(s) the package's seed rows name are not in this "
            "installation's file storage: the exported package lacks them and is refused "
            "on install until they are added under data/seed/_files/")


def _size_warnings(files: PackageFiles, limits: PackageLimits) -> list[str]:
    """Why an install with the same limits would refuse the package (the
    checks of reading it)."""
    return [f"{problem}: an installation with these limits refuses the package"
            for problem in limit_problems(files, limits)]


def _drop_dangling(row: dict[str, Any], key: str, exported: set[str], where: str,
                   dangling: Counter[str]) -> None:
    """Leave out of ``row[key]`` the links to records not exported (they could
    not be resolved on install)."""
    value = row[key]
    if isinstance(value, dict) and set(value) == {REF}:
        if value[REF] not in exported:
            dangling[where] += 1
            del row[key]
    elif isinstance(value, list) and value and all(isinstance(v, dict) and set(v) == {REF}
                                                   for v in value):
        kept = [v for v in value if v[REF] in exported]
        dangling[where] += len(value) - len(kept)
        if kept:
            row[key] = kept
        else:
            del row[key]
    elif isinstance(value, list):  # sub-table rows
        for sub_row in value:
            if isinstance(sub_row, dict):
                for sub_key in list(sub_row):
                    _drop_dangling(sub_row, sub_key, exported, f"{where}.{sub_key}", dangling)


def _running_flows(ctx: EngineContext, app: str) -> list[str]:
    """Records in the middle of a flow: their flow state is not exported."""
    from tangram.engines.flows.tables import instances_table as i

    counts = ctx.session.execute(
        sa.select(i.c.form, i.c.flow, sa.func.count(sa.distinct(i.c.record_id)))
        .where(i.c.app == app, i.c.status == "running", i.c.record_id.is_not(None))
        .group_by(i.c.form, i.c.flow).order_by(i.c.form, i.c.flow)).all()
    return [f"{form}: {n} record(s) in a running '{flow}' flow — flow state (instances, tasks, "
            "timers) is not exported: on the other installation no flow runs for them, and "
            "fields the flow sets (a status such as 'in approval') stay as they are"
            for form, flow, n in counts]


# --- validation ----------------------------------------------------------------------------

def validate_files(files: PackageFiles, *, deep: bool = True, language: str = "zh",
                   timezone: str = "Asia/Shanghai",
                   users: UserLookup | None = None,
                   max_file_bytes: int | None = None) -> dict[str, Any]:
    """Every problem of a package, without installing it, in one report.

    First each file and the package as a whole (``check_package``; each
    ``$owner`` and ``$user`` must be a user of its set's org fixture or one
    ``users`` finds — the installation's, none without one —, each ``$file``
    in the package, intact and no larger than ``max_file_bytes``, the
    installation's upload limit). Then, with ``deep``, the
    definitions that passed are installed in a scratch in-memory database
    that is thrown away, so the engines' publishing checks (expressions,
    relation targets, report fields, flow graphs, seed rows) report too, in
    ``language`` — even when the first pass found problems elsewhere. A
    problem a definition has only because another one failed is left out:
    the failed one says why."""
    checked = check_package(files, users=users or (lambda names: set()),
                            max_file_bytes=max_file_bytes)
    package = checked.package
    errors = [e.as_dict() for e in checked.errors]
    if deep and checked.manifest_ok:
        errors += _deep_check(checked, language=language, timezone=timezone,
                              max_file_bytes=max_file_bytes)
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


def _deep_check(checked: PackageCheck, *, language: str, timezone: str,
                max_file_bytes: int | None = None) -> list[dict[str, Any]]:
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
                                          fixture_users(package, "seed"),
                                          max_file_bytes=max_file_bytes)
            except TangramError as exc:
                found += exc.errors or [ErrorItem(code=exc.code, message=exc.message)]
            finally:
                session.rollback()
    finally:
        engine.dispose()
    return [e.as_dict() for e in found
            if not any(f.file == e.file and _under(e.path, f.path or "$") for f in first)]


def _deep_check_seed(ctx: EngineContext, package: Package, first: list[ErrorItem],
                     forms: set[str], fixture: set[str], *,
                     max_file_bytes: int | None = None) -> list[ErrorItem]:
    from tangram.platform.packages.data import load_data_set
    from tangram.platform.packages.loader import named_users

    org_file = f"data/seed/{ORG_FILE}"
    org = package.org.get("seed")
    if org is not None and any(e.file == org_file for e in first):
        org, fixture = None, set()
    rows_by_form: dict[str, list[dict[str, Any]]] = {}
    index: dict[str, list[int]] = {}  # file → the package row of each row loaded
    unavailable: set[str] = set()
    installed_users: set[str] = set()
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
            kept = {k: v for k, v in row.items() if k not in drop}
            rows_by_form.setdefault(form, []).append(kept)
            index.setdefault(file, []).append(i)
            # Users the first pass found in the installation (not in the
            # fixture): the scratch database gets them as the fixture's.
            installed_users |= {normalize_username(name) for code, _, name
                                in named_users(kept, i) if code == "data_user"} - fixture
    if installed_users:
        org = merge_org(org, {"users": [{"id": name, "name": name}
                                        for name in sorted(installed_users)]})
    try:
        with ctx.session.begin_nested():
            load_data_set(ctx, app=package.key, data_set="seed", rows_by_form=rows_by_form,
                          org=org, unavailable=unavailable,
                          blobs=package.files.get("seed", {}),
                          files=FileTarget(store=DiscardingStore(),
                                           max_bytes=max_file_bytes or (1 << 62)))
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
