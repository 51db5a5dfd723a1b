"""Install, upgrade and uninstall app packages — each all or nothing.

Everything runs in the caller's transaction (the CLI's, or the request's):
definitions are staged and published (forms evolve their tables), seed rows
go through the form engine's bulk path, and the base is recorded. Each piece
runs in a savepoint so *every* problem is collected, then one error carries
them all and the caller's rollback undoes definitions, tables and rows alike.

    report = install_package(ctx, load_package(read_package(path)))
    plan = upgrade_package(ctx, new_package, dry_run=True)   # conflicts, evolution plans
    upgrade_package(ctx, new_package, confirm_destructive=True)
    uninstall_app(ctx, "crm")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.errors import ConfirmationRequired, Conflict, ErrorItem, NotFound, TangramError
from tangram.metamodel import storage
from tangram.metamodel.forms import App
from tangram.platform.packages import store
from tangram.platform.packages.data import load_data_set
from tangram.platform.packages.errors import (
    DependencyInUse,
    DependencyMissing,
    PackageInvalid,
    UpgradeConflict,
    VersionNotNewer,
)
from tangram.platform.packages.kinds import PackageKind, package_kinds
from tangram.platform.packages.layer import (
    MISSING as _MISSING,
)
from tangram.platform.packages.layer import (
    customization_layer,
    field_id,
    field_keys,
    live_bodies,
    merge3,
    rename_field,
    set_field_id,
    without_ids,
)
from tangram.platform.packages.loader import Package, Rename
from tangram.platform.packages.org_fixture import ORG_FILE
from tangram.platform.packages.packaged_files import FileTarget, refuse_bad_files
from tangram.platform.packages.semver import Version, satisfies

Key = tuple[str, str]  # (kind, key)


@dataclass
class _Piece:
    kind: PackageKind
    key: str
    body: dict[str, Any]
    file: str
    prefix: str = "$"
    customized: bool = False


@dataclass
class _Outcome:
    errors: list[ErrorItem] = field(default_factory=list)
    destructive: list[dict[str, Any]] = field(default_factory=list)  # plans to confirm
    plans: list[dict[str, Any]] = field(default_factory=list)  # existing forms' evolution
    published: list[Key] = field(default_factory=list)


def _located(exc: TangramError, piece: _Piece) -> list[ErrorItem]:
    items = exc.errors or [ErrorItem(code=exc.code, message=exc.message)]
    return [ErrorItem(code=e.code, message=e.message, file=piece.file,
                      path=piece.prefix + (e.path or "$")[1:],
                      details={**e.details, "kind": piece.kind.kind, "key": piece.key,
                               **({"customized": True} if piece.customized else {})})
            for e in items]


def _guarded(ctx: EngineContext, piece: _Piece, outcome: _Outcome,
             step: Callable[[], Any]) -> str:
    """Run one step in a savepoint; a failure is collected, not raised.
    Returns ``"ok"``, ``"confirm"`` (the step needs confirmation: its plan is
    collected) or ``"error"``."""
    try:
        with ctx.session.begin_nested():
            result = step()
    except ConfirmationRequired as exc:
        outcome.destructive.append({"kind": piece.kind.kind, "key": piece.key,
                                    "plan": exc.details})
        return "confirm"
    except TangramError as exc:
        outcome.errors.extend(_located(exc, piece))
        return "error"
    plan = result.get("plan") if isinstance(result, dict) else None
    if isinstance(plan, dict) and plan.get("steps") and not any(
            step.get("op") == "create_table" for step in plan["steps"]):
        outcome.plans.append({"kind": piece.kind.kind, "key": piece.key, "plan": plan})
    return "ok"


def _apply(ctx: EngineContext, app: str, pieces: list[_Piece], *,
           confirm_destructive: bool, missing: Iterable[Key] = (),
           plan_through: bool = False) -> _Outcome:
    """Stage every piece, then publish each (in kind order). Errors a piece
    has only because a definition it uses failed (or is ``missing``: its
    file did not parse) are dropped — that definition's own errors say why.

    ``plan_through``: a piece that needs confirmation has its plan collected
    and is then published confirmed, so what follows — the other pieces, an
    upgrade's re-check of the tenant's definitions — sees the new version.
    The caller must then refuse (and roll back) unless the change was
    confirmed; it can report every problem first."""
    outcome = _Outcome()
    order = {k.kind: k.order for k in package_kinds()}
    pieces = sorted(pieces, key=lambda p: order[p.kind.kind])
    def stage(p: _Piece) -> Callable[[], None]:
        return lambda: p.kind.do_stage(ctx, app, p.key, p.body)

    def publish(p: _Piece, confirm: bool) -> Callable[[], Any]:
        return lambda: p.kind.do_publish(ctx, app, p.key, p.body, confirm_destructive=confirm)

    staged = [p for p in pieces if _guarded(ctx, p, outcome, stage(p)) == "ok"]
    for p in staged:
        done = _guarded(ctx, p, outcome, publish(p, confirm_destructive))
        if done == "confirm" and plan_through:
            done = _guarded(ctx, p, outcome, publish(p, True))
        if done == "ok":
            outcome.published.append((p.kind.kind, p.key))
    outcome.errors = without_knock_ons(outcome.errors, pieces, missing)
    return outcome


def without_knock_ons(errors: list[ErrorItem], pieces: list[_Piece],
                      missing: Iterable[Key] = ()) -> list[ErrorItem]:
    """``errors`` less those a piece has because a definition it uses failed
    too: at the JSON path where it names that definition, or a message
    naming it ("form 'request' is not published …"). The failed definition
    reports the root cause once."""
    failed = {(str(e.details.get("kind")), str(e.details.get("key"))) for e in errors
              if e.details.get("kind")} | set(missing)
    if not failed:
        return errors
    by_key = {(p.kind.kind, p.key): p for p in pieces}
    uses: dict[Key, list[tuple[Key, str]]] = {}
    for kk, p in by_key.items():
        try:
            model = storage.DEFINITION_KINDS[kk[0]].model_validate(p.body)
            refs = p.kind.references(model)
        except Exception:  # noqa: BLE001 - a body that does not parse has no known uses
            refs = []
        uses[kk] = [((kind, key), p.prefix + path[1:]) for kind, key, path in refs
                    if (kind, key) in failed and (kind, key) != kk]

    def knock_on(e: ErrorItem) -> bool:
        kk = (str(e.details.get("kind")), str(e.details.get("key")))
        if kk not in by_key:
            return False
        path = e.path or "$"
        named = {f"{kind} {key!r}" for kind, key in failed if (kind, key) != kk}
        return any(path == at or path.startswith((at + ".", at + "["))
                   for _, at in uses[kk]) or any(n in e.message for n in named)

    return [e for e in errors if not knock_on(e)]


# --- dependencies ------------------------------------------------------------------------

def check_dependencies(ctx: EngineContext, package: Package) -> None:
    problems = []
    for dep, wanted in sorted(package.manifest.dependencies.items()):
        installed = store.find_installed(ctx.session, dep)
        if installed is None:
            problems.append(ErrorItem(code="dependency_missing", path=f"$.dependencies.{dep}",
                                      file="app.json", message=(
                f"app {package.key!r} needs app {dep!r} ({wanted}), which is not installed; "
                "install it first")))
        elif not satisfies(Version.parse(installed.version), wanted):
            problems.append(ErrorItem(code="dependency_version", path=f"$.dependencies.{dep}",
                                      file="app.json", message=(
                f"app {package.key!r} needs app {dep!r} {wanted}, but version "
                f"{installed.version} is installed; upgrade {dep!r} first")))
    if problems:
        raise DependencyMissing(problems[0].message, errors=problems)


def dependents(ctx: EngineContext, app: str) -> list[tuple[str, str]]:
    """Installed apps that depend on ``app``: (their key, the range they need)."""
    return [(p.app, p.manifest.get("dependencies", {})[app])
            for p in store.list_installed(ctx.session)
            if app in p.manifest.get("dependencies", {})]


# --- install ----------------------------------------------------------------------------

def _app_body(package: Package) -> App:
    m = package.manifest
    return App(key=m.key, name=m.name, description=m.description, version=m.version,
               icon=m.icon)


def _pieces(package: Package, keys: Iterable[Key] | None = None,
            bodies: dict[Key, dict[str, Any]] | None = None,
            customized: set[Key] | None = None) -> list[_Piece]:
    kinds = {k.kind: k for k in package_kinds()}
    items = {(i.kind, i.key): i for i in package.items}
    bodies = bodies if bodies is not None else package.bodies()
    out = []
    for kk in (keys if keys is not None else bodies):
        item = items.get(kk)
        out.append(_Piece(kind=kinds[kk[0]], key=kk[1], body=bodies[kk],
                          file=item.file if item else f"(your {kk[0]} {kk[1]})",
                          prefix=item.prefix if item else "$",
                          customized=kk in (customized or set())))
    return out


def _raise_collected(package: Package, outcome: _Outcome, what: str) -> None:
    if outcome.errors:
        raise PackageInvalid(f"{what}: {len(outcome.errors)} problem(s), first: "
                             f"{outcome.errors[0].file}: {outcome.errors[0].message}; "
                             "nothing was changed", errors=outcome.errors)
    if outcome.destructive:
        raise ConfirmationRequired(
            f"{what} changes existing data in {len(outcome.destructive)} form(s); review the "
            "plans and confirm", details={"forms": outcome.destructive})


def install_package(ctx: EngineContext, package: Package, *, demo: bool = False,
                    confirm_destructive: bool = False,
                    files: FileTarget | None = None) -> dict[str, Any]:
    """Install a new app from ``package`` (refused when the app exists).
    ``files``: the installation's file storage and upload limit, for the
    files the data rows carry (refused when one is larger than the limit)."""
    with _files_taken_back_on_failure(package, files):
        return _install(ctx, package, demo=demo, confirm_destructive=confirm_destructive,
                        files=files)


@contextmanager
def _files_taken_back_on_failure(package: Package, files: FileTarget | None
                                 ) -> Iterator[None]:
    """Check the package's files against the upload limit first; if the
    install then fails, delete the contents it stored (the rollback undoes
    their rows, not the storage)."""
    if files is not None:
        refuse_bad_files(package.files, package.data, max_bytes=files.max_bytes)
    try:
        yield
    except BaseException:
        if files is not None:
            files.discard()
        raise


def _install(ctx: EngineContext, package: Package, *, demo: bool, confirm_destructive: bool,
             files: FileTarget | None) -> dict[str, Any]:
    if store.find_installed(ctx.session, package.key) is not None:
        raise Conflict(f"app {package.key!r} is already installed; upgrade it instead "
                       "(tangram app upgrade PATH)")
    if any(a.key == package.key for a in storage.list_apps(ctx.session)):
        raise Conflict(f"an app with key {package.key!r} already exists (not from a package); "
                       "remove it or choose another key")
    check_dependencies(ctx, package)
    storage.create_app(ctx.session, app=_app_body(package), user_id=ctx.actor.id,
                       now=ctx.now())
    outcome = _apply(ctx, package.key, _pieces(package),
                     confirm_destructive=confirm_destructive)
    _raise_collected(package, outcome, f"installing {package.key} {package.manifest.version}")
    counts = _load_data(ctx, package, "seed", files=files)
    if demo:
        for form, n in _load_data(ctx, package, "demo", files=files).items():
            counts[form] = counts.get(form, 0) + n
    store.save_installed(ctx.session, app=package.key, version=package.manifest.version,
                         manifest=storage.dump(package.manifest), files=kept_files(package),
                         bodies=package.bodies(), user_id=ctx.actor.id, now=ctx.now())
    return {"app": package.key, "version": package.manifest.version, "installed": True,
            "definitions": _summary(package.bodies()), "rows": counts}


def kept_files(package: Package) -> dict[str, str]:
    """The files kept with the installed version, for export: templates, seed
    rows and the seed org fixture."""
    seed = {f"data/seed/{form}.json": json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
            for form, rows in package.data["seed"].items()}
    if "seed" in package.org:
        seed[f"data/seed/{ORG_FILE}"] = json.dumps(package.org["seed"], ensure_ascii=False,
                                                   indent=2) + "\n"
    return {**package.templates, **seed}


def _load_data(ctx: EngineContext, package: Package, data_set: str,
               forms: set[str] | None = None, *,
               files: FileTarget | None = None) -> dict[str, int]:
    """A data set: its org fixture (unless only some ``forms`` are wanted, as
    in an upgrade — the tenant's org is theirs by then), then its files and rows."""
    rows = {form: r for form, r in package.data[data_set].items()
            if forms is None or form in forms}
    return load_data_set(ctx, app=package.key, data_set=data_set, rows_by_form=rows,
                         org=package.org.get(data_set) if forms is None else None,
                         blobs=package.files.get(data_set, {}), files=files)


def load_demo(ctx: EngineContext, package: Package, *,
              files: FileTarget | None = None) -> dict[str, int]:
    """The package's demo set: ``data/demo/_org.json``, then ``data/demo``
    files and rows."""
    with _files_taken_back_on_failure(package, files):
        return _load_data(ctx, package, "demo", files=files)


def _summary(bodies: Iterable[Key]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, key in sorted(bodies):
        out.setdefault(kind, []).append(key)
    return out


# --- upgrade ----------------------------------------------------------------------------

def upgrade_package(ctx: EngineContext, package: Package, *, dry_run: bool = False,
                    confirm_destructive: bool = False,
                    allow_downgrade: bool = False,
                    files: FileTarget | None = None) -> dict[str, Any]:
    """Apply a new version of an installed package under the tenant's layer.

    The merge first; then — in a savepoint, conflicts or not — the merged
    definitions are published (a change that needs confirmation is planned
    and applied, to be refused below unless confirmed), every other live
    definition re-checked against the result, seed rows of new forms
    loaded. The real run then refuses, in this order: conflicts (the
    merge's and the re-check's, all at once), other problems, data changes
    not confirmed. ``dry_run`` rolls the savepoint back and returns the
    report: conflicts, problems, customizations kept, evolution plans — the
    same whether or not ``confirm_destructive`` is given.

    An older version (or the same number with other content) is refused
    unless ``allow_downgrade``; the very version installed is reported
    ``unchanged``. ``files`` as for :func:`install_package` (files larger
    than the upload limit are refused, dry run included).
    """
    with _files_taken_back_on_failure(package, files):
        return _upgrade(ctx, package, dry_run=dry_run,
                        confirm_destructive=confirm_destructive,
                        allow_downgrade=allow_downgrade, files=files)


def _upgrade(ctx: EngineContext, package: Package, *, dry_run: bool,
             confirm_destructive: bool, allow_downgrade: bool,
             files: FileTarget | None) -> dict[str, Any]:
    installed = store.find_installed(ctx.session, package.key, lock=True)
    if installed is None:
        raise NotFound(f"app {package.key!r} is not installed; install it first")
    check_dependencies(ctx, package)
    new_version = package.version
    for other, wanted in dependents(ctx, package.key):
        if not satisfies(new_version, wanted):
            raise DependencyInUse(f"app {other!r} needs {package.key!r} {wanted}; upgrading "
                                  f"to {new_version} would break it — upgrade {other!r} first")
    kinds = {k.kind: k for k in package_kinds()}
    report: dict[str, Any] = {
        "app": package.key, "from_version": installed.version,
        "to_version": package.manifest.version, "dry_run": dry_run}
    direction = _direction(ctx, installed, package, allow_downgrade=allow_downgrade)
    if direction == "unchanged":
        return {**report, "unchanged": True, "customizations": [], "added": {},
                "changed": {}, "removed": {}, "kept_removed": {}, "kept_changed": {},
                "renamed": {}, "conflicts": [], "errors": [], "evolution": [],
                "needs_confirmation": False}
    report["downgrade"] = direction == "downgrade"
    # Merged without the platform's field ids: saving the result gives each
    # field back its id by key (a tenant's rename kept its id under the new key).
    live_ids = live_bodies(ctx.session, package.key, list(kinds))
    old_base = {k: without_ids(v) for k, v in store.base_bodies(ctx.session,
                                                                package.key).items()}
    live = {k: without_ids(v) for k, v in live_ids.items()}
    new_base = {k: without_ids(v) for k, v in package.bodies().items()}
    layer = customization_layer(old_base, live)
    customized = {(c["kind"], c["key"]) for c in layer}
    renames, conflicts = _renames(package, old_base, live, installed.version)
    # The installed version's and the tenant's bodies with the renames done,
    # so the merge matches each renamed field with its new self.
    base_r, live_r = dict(old_base), dict(live)
    for (form, r) in renames:
        kk = ("form", form)
        base_r[kk] = rename_field(base_r[kk], r.scope, r.old, r.new)
        if kk in live_r:
            live_r[kk] = rename_field(live_r[kk], r.scope, r.old, r.new)
    merged: dict[Key, dict[str, Any]] = {}
    removed: list[Key] = []
    kept: list[Key] = []
    kept_changed: list[Key] = []
    for kk in sorted(set(old_base) | set(live) | set(new_base)):
        if kk in base_r and kk in live_r and kk not in new_base and live_r[kk] != base_r[kk]:
            # Dropped by the package, changed by the tenant: kept as it is —
            # from now on the tenant's own definition (re-checked below).
            kept_changed.append(kk)
            continue
        body, found = merge3(base_r.get(kk, _MISSING), live_r.get(kk, _MISSING),
                             new_base.get(kk, _MISSING))
        file = package.file_of(*kk) or f"(your {kk[0]} {kk[1]})"
        conflicts.extend(ErrorItem(code="merge_conflict", message=f"{kk[0]} {kk[1]!r}: "
                                   f"{c.message}", path=c.path, file=file,
                                   details={"kind": kk[0], "key": kk[1]}) for c in found)
        if body is _MISSING:
            if kk in live:
                (kept if kinds[kk[0]].keep_on_remove else removed).append(kk)
            continue
        if kk not in live or body != live[kk]:
            merged[kk] = body
    for (form, r) in renames:  # the renamed field keeps its id: its column is renamed
        fid = field_id(live_ids.get(("form", form), {}), r.scope, r.old)
        if fid and ("form", form) in merged:
            set_field_id(merged["form", form], r.scope, r.new, fid)
    report.update({
        "customizations": layer,
        "added": _summary(k for k in merged if k not in live),
        "changed": _summary(k for k in merged if k in live),
        "removed": _summary(removed), "kept_removed": _summary(kept),
        "kept_changed": _summary(kept_changed),
        "renamed": _renamed_summary(renames),
        "conflicts": [], "errors": [], "evolution": [], "needs_confirmation": False})
    savepoint = ctx.session.begin_nested()
    try:
        outcome = _apply(ctx, package.key, _pieces(package, merged, merged, customized),
                         confirm_destructive=confirm_destructive, plan_through=True)
        for kk in removed:
            _delete_definition(ctx, package.key, *kk)
        _recheck(ctx, package, outcome, merged, customized, kinds)
        mine = [e for e in outcome.errors if (e.details.get("kind"), e.details.get("key"))
                in customized or str(e.file).startswith("(your ")]
        outcome.errors = [e for e in outcome.errors if e not in mine]
        conflicts += mine
        report["conflicts"] = [e.as_dict() for e in conflicts]
        report["errors"] = [e.as_dict() for e in outcome.errors]
        report["evolution"] = outcome.plans
        report["needs_confirmation"] = any(p["plan"].get("destructive")
                                           for p in outcome.plans)
        if not dry_run:
            if conflicts:
                raise UpgradeConflict(
                    f"upgrading {package.key} to {package.manifest.version} conflicts with "
                    f"your customizations in {len(conflicts)} place(s), first: "
                    f"{conflicts[0].message}; nothing was changed", errors=conflicts,
                    details=report)
            _raise_collected(package, outcome, f"upgrading {package.key}")
            new_forms = {k for (kind, k) in new_base if kind == "form"
                         and (kind, k) not in live}
            report["rows"] = _load_data(ctx, package, "seed", new_forms, files=files)
            app = storage.get_app(ctx.session, package.key)
            storage.update_app(ctx.session, app=app.model_copy(update={
                "version": package.manifest.version}), now=ctx.now())
            store.save_installed(ctx.session, app=package.key,
                                 version=package.manifest.version,
                                 manifest=storage.dump(package.manifest),
                                 files=kept_files(package), bodies=package.bodies(),
                                 user_id=ctx.actor.id, now=ctx.now())
    except BaseException:
        savepoint.rollback()
        raise
    if dry_run:
        savepoint.rollback()
    else:
        savepoint.commit()
    return report


def _direction(ctx: EngineContext, installed: store.InstalledPackage, package: Package, *,
               allow_downgrade: bool) -> str:
    """``"upgrade"``, ``"downgrade"`` (allowed), ``"reapply"`` (the same number,
    other content, allowed) or ``"unchanged"`` (the very version installed);
    refused without ``allow_downgrade`` when the version is not newer."""
    try:
        current = Version.parse(installed.version)
    except ValueError:  # installed before versions were checked strictly: let it move on
        return "upgrade"
    new = package.version
    if new > current:
        return "upgrade"
    flag = "--allow-downgrade (allow_downgrade=true)"
    if new < current:
        if not allow_downgrade:
            raise VersionNotNewer(
                f"{package.key} {installed.version} is installed and {new} is older: "
                "a downgrade replaces definitions of the newer version with older ones; "
                f"to do it anyway, pass {flag}",
                details={"installed": installed.version, "package": str(new)})
        return "downgrade"
    same = (installed.manifest == storage.dump(package.manifest)
            and installed.files == kept_files(package)
            and store.base_bodies(ctx.session, package.key) == package.bodies())
    if same:
        return "unchanged"
    if not allow_downgrade:
        raise VersionNotNewer(
            f"{package.key} {installed.version} is already installed, and this package's "
            f"content differs from it: give the new content a new version (e.g. "
            f"{new.major}.{new.minor}.{new.patch + 1}), or pass {flag} to apply it as "
            f"{installed.version} anyway",
            details={"installed": installed.version, "package": str(new)})
    return "reapply"


def _renames(package: Package, old_base: dict[Key, dict[str, Any]],
             live: dict[Key, dict[str, Any]], installed_version: str
             ) -> tuple[list[tuple[str, Rename]], list[ErrorItem]]:
    """The package's ``renamed_from`` hints that apply to this installation:
    the installed version has the old key. A hint whose new key is already
    installed is done (a later version may keep it) and ignored; one naming
    neither is refused. A tenant's own field under the new key conflicts."""
    active: list[tuple[str, Rename]] = []
    problems: list[ErrorItem] = []
    conflicts: list[ErrorItem] = []
    for item in package.items:
        for r in item.renames:
            base = old_base.get(("form", item.key))
            keys = field_keys(base, r.scope) if base else set()
            where = ".".join((*r.scope, r.old))
            if r.old in keys:
                active.append((item.key, r))
                mine = live.get(("form", item.key))
                if mine and r.new in field_keys(mine, r.scope):
                    conflicts.append(ErrorItem(
                        code="merge_conflict", file=item.file, path=r.path,
                        message=f"form {item.key!r}: the new version renames field "
                        f"{where!r} to {r.new!r}, and you added a field {r.new!r}; rename "
                        "or remove yours first", details={"kind": "form", "key": item.key}))
            elif r.new not in keys:
                problems.append(ErrorItem(
                    code="unknown_rename", file=item.file, path=r.path,
                    message=f"field {r.new!r} is renamed from {where!r}, but the installed "
                    f"version {installed_version} of form {item.key!r} has no field "
                    f"{where!r}" + ("" if base else " (the form is new)")))
    if problems:
        raise PackageInvalid(f"{len(problems)} renamed_from hint(s) do not fit the installed "
                             f"version: {problems[0].message}; nothing was changed",
                             errors=problems)
    return active, conflicts


def _renamed_summary(renames: list[tuple[str, Rename]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for form, r in renames:
        prefix = "".join(f"{s}." for s in r.scope)
        out.setdefault(form, []).append(f"{prefix}{r.old} → {prefix}{r.new}")
    return out


def _recheck(ctx: EngineContext, package: Package, outcome: _Outcome,
             merged: dict[Key, dict[str, Any]], customized: set[Key],
             kinds: dict[str, PackageKind]) -> None:
    """Every live definition the upgrade did not rewrite, checked against the
    result (a tenant's report reading a field the new version removes)."""
    after = live_bodies(ctx.session, package.key, list(kinds))
    for kk in sorted(after):
        check = kinds[kk[0]].check
        if kk in outcome.published or kk in merged or check is None:
            continue
        piece = _pieces(package, [kk], after, customized)[0]
        model = storage.DEFINITION_KINDS[kk[0]].model_validate(after[kk])
        for e in check(ctx, package.key, model):
            outcome.errors.append(ErrorItem(
                code=e.code, file=piece.file, path=e.path,
                message=f"{kk[0]} {kk[1]!r} no longer fits version "
                f"{package.manifest.version}: {e.message}",
                details={**e.details, "kind": kk[0], "key": kk[1]}))


def _delete_definition(ctx: EngineContext, app: str, kind: str, key: str) -> None:
    d = storage.find_definition(ctx.session, app=app, kind=kind, key=key, lock=True)
    if d is None:
        return
    v, t = storage.definition_versions_table, storage.definitions_table
    ctx.session.execute(sa.delete(v).where(v.c.definition_id == d.id))
    ctx.session.execute(sa.delete(t).where(t.c.id == d.id))


# --- uninstall --------------------------------------------------------------------------

def uninstall_app(ctx: EngineContext, app: str) -> dict[str, Any]:
    """Remove an installed app: its definitions, record tables and every
    platform row that names it. Refused while another app depends on it."""
    from tangram.db import metadata
    from tangram.engines.forms import ddl
    from tangram.engines.forms.registry import forget_session_runtimes
    from tangram.engines.forms.systables import form_tables_table
    from tangram.platform.schema import load_all_tables

    installed = store.find_installed(ctx.session, app, lock=True)
    if installed is None:
        raise NotFound(f"app {app!r} is not installed from a package")
    users = dependents(ctx, app)
    if users:
        raise DependencyInUse(
            f"app {app!r} cannot be uninstalled: {', '.join(f'{a!r} ({r})' for a, r in users)} "
            "depend(s) on it; uninstall those first")
    conn = ctx.session.connection()
    states = conn.execute(sa.select(form_tables_table).where(
        form_tables_table.c.app == app)).all()
    main = [s.table_name for s in states]
    others: set[str] = set()
    for s in states:
        others.update(_tables_named(s.layout))
        others.update(_tables_named(s.retired))
    existing = set(sa.inspect(conn).get_table_names())
    op = ddl.operations(conn)
    forget_session_runtimes(ctx.session)
    dropped = 0
    for name in [t for t in sorted(others - set(main)) if t in existing] + \
            [t for t in main if t in existing]:
        ddl.drop_table(op, name)
        dropped += 1
    # Every platform row that belongs to the app, children before parents.
    load_all_tables()
    ids = sa.select(storage.definitions_table.c.id).where(storage.definitions_table.c.app == app)
    ctx.session.execute(sa.delete(storage.definition_versions_table).where(
        storage.definition_versions_table.c.definition_id.in_(ids)))
    for table in reversed(metadata.sorted_tables):
        if "app" in table.c and table.name != "apps":
            ctx.session.execute(sa.delete(table).where(table.c.app == app))
    ctx.session.execute(sa.delete(storage.apps_table).where(storage.apps_table.c.key == app))
    return {"app": app, "uninstalled": True, "version": installed.version,
            "tables_dropped": dropped}


def _tables_named(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "table" and isinstance(v, str):
                out.add(v)
            else:
                out |= _tables_named(v)
    elif isinstance(value, list):
        for v in value:
            out |= _tables_named(v)
    return out


def customizations(ctx: EngineContext, app: str) -> list[dict[str, Any]]:
    """The tenant's layer over the installed package."""
    if store.find_installed(ctx.session, app) is None:
        raise NotFound(f"app {app!r} is not installed from a package")
    kinds = [k.kind for k in package_kinds()]
    return customization_layer(store.base_bodies(ctx.session, app),
                               live_bodies(ctx.session, app, kinds))
