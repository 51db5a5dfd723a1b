"""Files → a validated :class:`Package`, with every problem reported at once.

Each file is checked against its model (the published JSON Schemas are those
models' schemas), then the package as a whole: names it refers to exist,
menus and default dashboards point at real definitions, data rows name real
fields, templates parse in the sandbox. Nothing touches a database here; the
installer's dry run (``validate_package(deep=True)``) adds the engines' own
publishing checks.

    package = load_package(read_package(Path("apps_catalog/crm")))
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from tangram.engines.templates import TemplateSyntaxError, sandbox
from tangram.errors import DefinitionInvalid, ErrorItem
from tangram.metamodel import storage
from tangram.metamodel.common import KEY_PATTERN
from tangram.metamodel.forms import Form
from tangram.platform.auth.service import normalize_username
from tangram.platform.packages.data import missing_user
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.kinds import PackageKind, package_kinds
from tangram.platform.packages.manifest import AppManifest, platform_version
from tangram.platform.packages.org_fixture import ORG_FILE, check_org
from tangram.platform.packages.packaged_files import check_files
from tangram.platform.packages.rows import OWNER, check_rows, row_values, users_in
from tangram.platform.packages.semver import Version, satisfies
from tangram.platform.packages.source import FILES_FOLDER, PackageFiles

MANIFEST = "app.json"
DOC_FILES = {"README.md", "README.zh.md", "CHANGELOG.md", "LICENSE", "LICENSE.md",
             "icon.png", "icon.svg"}
TEMPLATE_SUFFIXES = {".html", ".htm", ".txt", ".md", ".j2", ".jinja"}
DATA_SETS = ("seed", "demo")
DEV_FOLDER = "tools"  # the package author's own scripts: never read, installed or exported
KEY_RE = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class Rename:
    """A form field's ``"renamed_from"`` in the package: in the sub-table
    ``scope`` (empty: the form's own fields) the field ``new`` is the field
    ``old`` of the installed version. ``path`` is where the hint is written."""

    scope: tuple[str, ...]
    old: str
    new: str
    path: str


@dataclass
class PackageItem:
    """One definition of the package, normalized (``storage.dump`` of its model)."""

    kind: str
    key: str
    body: dict[str, Any]
    file: str
    prefix: str = "$"
    renames: list[Rename] = field(default_factory=list)


@dataclass
class Package:
    manifest: AppManifest
    items: list[PackageItem] = field(default_factory=list)
    data: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: {s: {} for s in DATA_SETS})
    org: dict[str, Any] = field(default_factory=dict)  # data set → its _org.json
    # data set → sha256 → content: the files its rows' $file values name
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    docs: dict[str, bytes] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.manifest.key

    @property
    def version(self) -> Version:
        return Version.parse(self.manifest.version)

    def bodies(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(i.kind, i.key): i.body for i in self.items}

    def forms(self) -> dict[str, Form]:
        return {i.key: Form.model_validate(i.body) for i in self.items if i.kind == "form"}

    def file_of(self, kind: str, key: str) -> str | None:
        return next((i.file for i in self.items if i.kind == kind and i.key == key), None)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[ErrorItem] = []

    def add(self, file: str, message: str, *, code: str = "invalid", path: str = "$") -> None:
        self.errors.append(ErrorItem(code=code, message=message, path=path, file=file))

    def extend(self, file: str, items: list[ErrorItem], prefix: str = "$") -> None:
        for e in items:
            path = prefix + (e.path or "$")[1:]
            self.errors.append(ErrorItem(code=e.code, message=e.message, path=path,
                                         file=file, details=e.details))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def _read_json(name: str, data: bytes, errors: _Collector) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        errors.add(name, f"not UTF-8 text: {exc}", code="encoding")
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        errors.add(name, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                   code="json")
    except (ValueError, RecursionError) as exc:
        errors.add(name, f"not valid JSON: {exc}", code="json")
    return None


_SANDBOX = sandbox(html=True)


def check_template(name: str, text: str) -> str | None:
    """Parse (never render) a template in the sandbox; returns the problem."""
    try:
        _SANDBOX.parse(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error at line {exc.lineno}: {exc.message}"
    return None


UserLookup = Callable[[set[str]], set[str]]  # usernames → those that are users


@dataclass
class PackageCheck:
    """What the first pass found: the package as far as it parsed, every
    problem, and the definitions whose own file failed (``broken``)."""

    package: Package
    errors: list[ErrorItem]
    broken: set[tuple[str, str]]
    manifest_ok: bool


def load_package(files: PackageFiles) -> Package:
    """Validate every file; raise PackageInvalid listing every problem."""
    checked = check_package(files)
    if checked.errors:
        raise PackageInvalid(f"the package has {len(checked.errors)} problem(s); nothing was "
                             "installed", errors=checked.errors)
    return checked.package


def check_package(files: PackageFiles, *, users: UserLookup | None = None,
                  max_file_bytes: int | None = None) -> PackageCheck:
    """The first pass: every file against its model, then the package as a
    whole — every problem, none raised. With ``users`` (the installation's
    lookup of usernames; ``lambda names: set()`` when there is none) each
    ``$owner`` and ``$user`` must also be a user of its set's org fixture
    (the seed fixture counts for demo rows) or of the installation, as
    install requires. The files rows name (``$file``) must be in the package,
    intact, and — with ``max_file_bytes``, the installation's upload limit —
    no larger than it."""
    errors = _Collector()
    raw_manifest = _read_json(MANIFEST, files[MANIFEST], errors) if MANIFEST in files else None
    if MANIFEST not in files:
        errors.add(MANIFEST, "the package has no app.json at its root", code="missing_file")
    manifest: AppManifest | None = None
    if raw_manifest is not None:
        try:
            manifest = AppManifest.model_validate(raw_manifest)
        except ValidationError as exc:
            errors.extend(MANIFEST, storage.errors_from_pydantic(exc))
    package = Package(manifest=manifest or AppManifest.model_construct(
        key="invalid", version="0.0.0", name={"en": "invalid"}))
    kinds = {k.folder: k for k in package_kinds()}
    seen: dict[tuple[str, str], str] = {}
    for name in sorted(files):
        if name == MANIFEST:
            continue
        _load_file(name, files[name], kinds, package, seen, errors)
    if manifest is not None:
        for i, role in enumerate(manifest.roles):
            _add_item(kinds.get("roles"), "role", role, MANIFEST,
                      f"$.roles[{i}]", package, seen, errors)
    # Definitions whose file failed are not reported again as "missing".
    broken = {(kinds[PurePosixPath(e.file).parts[0]].kind, PurePosixPath(e.file).stem)
              for e in errors.errors if e.file and len(PurePosixPath(e.file).parts) == 2
              and PurePosixPath(e.file).parts[0] in kinds}
    broken -= {(i.kind, i.key) for i in package.items}
    _check_package(package, errors, broken, manifest_ok=manifest is not None)
    errors.errors.extend(check_files(package.files, package.data, max_bytes=max_file_bytes))
    if users is not None:
        _check_owners(package, users, errors)
    return PackageCheck(package=package, errors=errors.errors, broken=broken,
                        manifest_ok=manifest is not None)


def _load_file(name: str, data: bytes, kinds: dict[str, PackageKind], package: Package,
               seen: dict[tuple[str, str], str], errors: _Collector) -> None:
    path = PurePosixPath(name)
    parts = path.parts
    if len(parts) == 1 and name in DOC_FILES:
        package.docs[name] = data
        return
    if len(parts) == 2 and parts[0] in kinds and path.suffix == ".json":
        body = _read_json(name, data, errors)
        if body is not None:
            _add_item(kinds[parts[0]], kinds[parts[0]].kind, body, name, "$", package, seen,
                      errors, stem=path.stem)
        return
    if parts[0] == "templates" and len(parts) >= 2 and path.suffix in TEMPLATE_SUFFIXES:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            errors.add(name, "a template must be UTF-8 text", code="encoding")
            return
        problem = check_template(name, text)
        if problem:
            errors.add(name, problem, code="template")
        package.templates[name] = text
        return
    if parts[0] == DEV_FOLDER and len(parts) > 1:
        return
    if len(parts) == 3 and parts[0] == "data" and parts[1] in DATA_SETS \
            and parts[2] == ORG_FILE:
        body = _read_json(name, data, errors)
        if body is not None:
            package.org[parts[1]] = body
        return
    if len(parts) == 4 and parts[0] == "data" and parts[1] in DATA_SETS \
            and parts[2] == FILES_FOLDER:
        package.files.setdefault(parts[1], {})[parts[3]] = data
        return
    if len(parts) == 3 and parts[0] == "data" and parts[1] in DATA_SETS \
            and path.suffix == ".json":
        rows = _read_json(name, data, errors)
        if rows is None:
            return
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            errors.add(name, "a data file is a JSON list of row objects", code="data_shape")
            return
        package.data[parts[1]][path.stem] = rows
        return
    allowed = ", ".join([MANIFEST] + [f"{f}/*.json" for f in sorted(kinds)]
                        + ["templates/*", "data/seed/*.json", "data/demo/*.json",
                           f"data/<set>/{FILES_FOLDER}/<sha256>",
                           f"{DEV_FOLDER}/* (ignored)"])
    errors.add(name, f"unexpected file {name!r}; a package holds {allowed} and docs "
               f"({', '.join(sorted(DOC_FILES))})", code="unexpected_file")


def _add_item(kind: PackageKind | None, kind_name: str, body: Any, file: str, prefix: str,
              package: Package, seen: dict[tuple[str, str], str], errors: _Collector, *,
              stem: str | None = None) -> None:
    if kind is None:
        errors.add(file, f"definition kind {kind_name!r} is not available on this platform",
                   code="unknown_kind", path=prefix)
        return
    if not isinstance(body, dict):
        errors.add(file, f"a {kind.kind} definition is a JSON object", code="type", path=prefix)
        return
    if stem is not None:
        if "key" not in body:
            body = {"key": stem, **body}
        elif body["key"] != stem:
            errors.add(file, f"the key {body['key']!r} differs from the file name {stem!r}; "
                       f"name the file {body['key']}.json", code="key_mismatch",
                       path=f"{prefix}.key")
            return
    renames: list[Rename] = []
    if kind.kind == "form":
        body, renames = _take_renames(body, file, prefix, errors)
    try:
        model = storage.parse_definition(kind.kind, body)
    except DefinitionInvalid as exc:
        errors.extend(file, exc.errors, prefix)
        return
    key = str(getattr(model, "key", stem))
    if (kind.kind, key) in seen:
        errors.add(file, f"{kind.kind} {key!r} is defined twice (also in {seen[kind.kind, key]})",
                   code="duplicate", path=prefix)
        return
    seen[kind.kind, key] = file
    package.items.append(PackageItem(kind=kind.kind, key=key, body=storage.dump(model),
                                     file=file, prefix=prefix, renames=renames))


RENAMED_FROM = "renamed_from"


def _take_renames(body: dict[str, Any], file: str, prefix: str, errors: _Collector
                  ) -> tuple[dict[str, Any], list[Rename]]:
    """The form ``body`` without its fields' ``renamed_from`` hints, and the
    hints. A hint is package-only: the upgrade reads it (the field keeps the
    installed field's id, so its column and data are renamed) and it is never
    stored. Checked here: a key, not the field's own, not another field's."""
    renames: list[Rename] = []

    def take(fields: Any, scope: tuple[str, ...], at: str) -> Any:
        if not isinstance(fields, list):
            return fields
        keys = {f.get("key") for f in fields if isinstance(f, dict)}
        out = []
        for i, f in enumerate(fields):
            if not isinstance(f, dict):
                out.append(f)
                continue
            here = f"{at}[{i}]"
            if isinstance(f.get("fields"), list):
                f = {**f, "fields": take(f["fields"], (*scope, str(f.get("key"))),
                                         f"{here}.fields")}
            if RENAMED_FROM not in f:
                out.append(f)
                continue
            f = dict(f)
            old = f.pop(RENAMED_FROM)
            path = f"{prefix}{here[1:]}.{RENAMED_FROM}"
            problem = (
                f"renamed_from must be a field key (^[a-z][a-z0-9_]{{0,62}}$), not {old!r}"
                if not isinstance(old, str) or not KEY_RE.match(old) else
                f"field {old!r} cannot be renamed to itself" if old == f.get("key") else
                f"field {f.get('key')!r} is renamed from {old!r}, but this version still "
                f"has a field {old!r}: rename it too, or drop renamed_from"
                if old in keys else
                f"two fields are renamed from {old!r}"
                if any(r.scope == scope and r.old == old for r in renames) else None)
            if problem:
                errors.add(file, problem, code="invalid_rename", path=path)
            elif isinstance(f.get("key"), str):
                renames.append(Rename(scope=scope, old=old, new=f["key"], path=path))
            out.append(f)
        return out

    if isinstance(body.get("fields"), list):
        body = {**body, "fields": take(body["fields"], (), "$.fields")}
    return body, renames


def _check_package(package: Package, errors: _Collector, broken: set[tuple[str, str]], *,
                   manifest_ok: bool) -> None:
    """Cross-file checks that need no database."""
    m = package.manifest
    present = {(i.kind, i.key) for i in package.items} | broken
    models = {(i.kind, i.key): i for i in package.items}
    _check_references(package, present, errors)
    _check_data(package, models, broken, errors)
    if not manifest_ok:
        return
    if not satisfies(Version.parse(platform_version()), m.platform):
        errors.add(MANIFEST, f"the package needs platform {m.platform}; this platform is "
                   f"{platform_version()}", code="platform_version", path="$.platform")
    _check_menus(m, present, errors)


def _check_references(package: Package, present: set[tuple[str, str]],
                      errors: _Collector) -> None:
    kinds = {k.kind: k for k in package_kinds()}
    for item in package.items:
        model = storage.DEFINITION_KINDS[item.kind].model_validate(item.body)
        for kind, key, path in kinds[item.kind].references(model):
            if (kind, key) not in present:
                have = sorted(k for kk, k in present if kk == kind)
                errors.add(item.file, f"{item.kind} {item.key!r} refers to {kind} {key!r}, "
                           f"which the package lacks ({kind}s: {', '.join(have) or 'none'})",
                           code=f"unknown_{kind}", path=item.prefix + path[1:])


def _check_menus(m: AppManifest, present: set[tuple[str, str]], errors: _Collector) -> None:
    for menu, path in m.menu_items():
        for kind in ("form", "report", "dashboard"):
            target = getattr(menu, kind)
            if target and (kind, target) not in present:
                errors.add(MANIFEST, f"menu {menu.key!r} links to {kind} {target!r}, which the "
                           "package lacks", code=f"unknown_{kind}", path=f"{path}.{kind}")
        for role in menu.roles:
            if ("role", role) not in present:
                errors.add(MANIFEST, f"menu {menu.key!r} names role {role!r}, which the "
                           "package lacks", code="unknown_role", path=f"{path}.roles")
    for role, dashboard in m.default_dashboards.items():
        if role != "*" and ("role", role) not in present:
            errors.add(MANIFEST, f"default_dashboards names role {role!r}, which the package "
                       "lacks", code="unknown_role", path=f"$.default_dashboards.{role}")
        if ("dashboard", dashboard) not in present:
            errors.add(MANIFEST, f"default dashboard {dashboard!r} is not in the package",
                       code="unknown_dashboard", path=f"$.default_dashboards.{role}")


def _check_data(package: Package, models: dict[tuple[str, str], PackageItem],
                broken: set[tuple[str, str]], errors: _Collector) -> None:
    forms = package.forms()
    roles = {i.key for i in package.items if i.kind == "role"}
    for data_set, by_form in package.data.items():
        refs: set[str] = set()
        for form_key, rows in by_form.items():
            file = f"data/{data_set}/{form_key}.json"
            form = forms.get(form_key)
            if form is None and ("form", form_key) not in broken:
                errors.add(file, f"data for form {form_key!r}, which the package lacks",
                           code="unknown_form")
            # Rows of a broken or missing form still get every check but their
            # field names, so fixing the form brings no new round of problems.
            errors.errors.extend(check_rows(file, data_set, form, rows, refs))
        if data_set in package.org:
            errors.errors.extend(check_org(f"data/{data_set}/{ORG_FILE}", data_set,
                                           package.org[data_set], roles))


def fixture_users(package: Package, data_set: str) -> set[str]:
    """Usernames the org fixtures loaded with ``data_set`` create (the seed
    fixture is loaded before the demo set)."""
    sets = ("seed",) if data_set == "seed" else ("seed", data_set)
    out: set[str] = set()
    for s in sets:
        body = package.org.get(s)
        users = body.get("users") if isinstance(body, dict) else None
        for user in users if isinstance(users, list) else []:
            if isinstance(user, dict) and isinstance(user.get("id"), str):
                out.add(normalize_username(user["id"]))
    return out


def named_users(row: dict[str, Any], i: int) -> list[tuple[str, str, str]]:
    """(code, JSON path, username) of every user the ``i``-th row names: its
    ``$owner`` and its user values (``{"$user": name}``, sub-table rows too)."""
    out = []
    owner = row.get(OWNER)
    if isinstance(owner, str) and owner.strip():
        out.append(("data_owner", f"$[{i}].{OWNER}", owner))
    out += [("data_user", path, name) for where, value in row_values(row, i)
            for path, name in users_in(value, where) if isinstance(name, str) and name.strip()]
    return out


def _check_owners(package: Package, users: UserLookup, errors: _Collector) -> None:
    """Each ``$owner`` and ``$user`` names a user the set's fixtures create
    or the installation has."""
    wanted: list[tuple[str, str, str, str, str]] = []  # code, file, path, name, normalized
    for data_set, by_form in package.data.items():
        known = fixture_users(package, data_set)
        for form_key, rows in by_form.items():
            for i, row in enumerate(rows):
                wanted += [(code, f"data/{data_set}/{form_key}.json", path, name,
                            normalize_username(name))
                           for code, path, name in named_users(row, i)
                           if normalize_username(name) not in known]
    existing = users({n for *_, n in wanted}) if wanted else set()
    for code, file, path, name, normalized in wanted:
        if normalized not in existing:
            errors.add(file, missing_user(name), code=code, path=path)
