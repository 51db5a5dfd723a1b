"""Loading a package's data sets (``data/seed`` and ``data/demo``): first the
set's org fixture (``_org.json``, see ``org_fixture.py``), then its rows
through the form engine's bulk path — every row validated like any record —
then the rows' owners and creation times (``$owner``, ``$created_at``).

Rows name fields only, plus the ``$``-keys and values of ``rows.py``. A row
may carry ``"$ref": "name"``; another row (of any form of the same data set)
links to it with ``{"$ref": "name"}`` as a relation value, so packages need
no ids:

    data/seed/product_category.json  [{"$ref": "cat_hw", "name": "硬件"}]
    data/seed/product.json           [{"name": "网关", "category": {"$ref": "cat_hw"}}]

User values name users by username (``{"$user": "rep01"}``, resolved like
``$owner``); attachments name files the package carries (``{"$file": {…}}``,
stored first, see ``packaged_files.py``).

Forms load in the order their references need (a cycle is an error).
Relative dates (``{"$date": "-45d"}``) are counted from the day the data is
loaded, in the organization's time zone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.errors import ErrorItem, ValidationFailed
from tangram.platform.auth.service import normalize_username
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.org_fixture import ORG_FILE, load_org
from tangram.platform.packages.packaged_files import FileTarget, store_files
from tangram.platform.packages.rows import (
    CREATED_AT,
    OWNER,
    REF,
    BadSpec,
    Resolver,
    refs_in,
    row_values,
    users_in,
)

BATCH = 2000


def load_order(rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    owner = {str(r[REF]): form for form, rows in rows_by_form.items() for r in rows
             if REF in r}
    graph: dict[str, set[str]] = {form: set() for form in rows_by_form}
    for form, rows in rows_by_form.items():
        for row in rows:
            for name, value in row.items():
                if not name.startswith("$"):
                    graph[form].update(owner[r] for r in refs_in(value)
                                       if r in owner and owner[r] != form)
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise PackageInvalid("data rows refer to each other in a cycle", errors=[ErrorItem(
            code="data_cycle", message=f"forms {' → '.join(exc.args[1])} refer to each other "
            "in a cycle; load one side without the link")]) from exc


_ROW_FIELD = re.compile(r"^rows\[(\d+)\]\.?(.*)$")


def existing_usernames(session: Session, names: Iterable[str]) -> dict[str, uuid.UUID]:
    """The users among ``names`` (normalized usernames): username → id."""
    wanted = sorted({normalize_username(n) for n in names})
    u = users_table
    return {r.username: r.id for r in session.execute(
        sa.select(u.c.username, u.c.id).where(u.c.username.in_(wanted)))} if wanted else {}


def missing_user(name: Any) -> str:
    """The message of an ``$owner`` or ``$user`` naming no user."""
    return (f"no user is named {name!r}; create the user (or add them to the data set's "
            f"{ORG_FILE}) first")


def _users(ctx: EngineContext, rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
           file_of: Mapping[str, str]) -> dict[str, uuid.UUID]:
    """The user id of every username the rows name — each ``$owner`` and
    each user value (``{"$user": name}``, in sub-table rows too); one error
    per place naming a user that does not exist, all at once."""
    named: list[tuple[str, str, str, Any]] = []  # code, file, path, name
    for form, rows in rows_by_form.items():
        for i, row in enumerate(rows):
            if row.get(OWNER) is not None:
                named.append(("data_owner", file_of[form], f"$[{i}].{OWNER}", row[OWNER]))
            named += [("data_user", file_of[form], path, name)
                      for where, value in row_values(row, i)
                      for path, name in users_in(value, where)]
    found = existing_usernames(ctx.session, [str(n) for *_, n in named])
    errors = [ErrorItem(code=code, file=file, path=path, message=missing_user(name))
              for code, file, path, name in named
              if normalize_username(str(name)) not in found]
    if errors:
        raise PackageInvalid(f"{len(errors)} value(s) name a user who does not exist; nothing "
                             "was installed", errors=errors)
    return found


class _OwnerDefaults:
    """Defaults that read ``user`` (``default_expr: "user.department"``),
    computed as if each row's ``$owner`` created it: the form engine fills
    defaults as the caller (the installer), so these are computed first and
    given in the row like any value."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._users: dict[uuid.UUID, dict[str, object]] = {}

    def _user(self, owner: uuid.UUID) -> dict[str, object]:
        from tangram.platform.auth.service import get_user

        if owner not in self._users:
            self._users[owner] = get_user(self.ctx.session, owner).as_actor().as_variables()
        return self._users[owner]

    @staticmethod
    def _reads_user(plan: Any) -> bool:
        return plan.default_expr is not None and "user" in plan.default_expr.referenced_fields

    def fill(self, rt: Any, values: dict[str, Any], owner: uuid.UUID) -> None:
        """Add to ``values`` the user-reading defaults its owner would get."""
        from tangram.engines.expressions import EvalContext

        v = rt.validator
        top = [k for k, p in v.fields.items() if k not in values and k not in v.sub_tables
               and p.formula is None and self._reads_user(p)]
        subs = {k: [fk for fk, fp in sp.fields.items() if fp.formula is None
                    and self._reads_user(fp)]
                for k, sp in v.sub_tables.items() if isinstance(values.get(k), list)}
        subs = {k: fks for k, fks in subs.items() if fks}
        if not top and not subs:
            return
        outcome = v.validate(values, old=None, user=self._user(owner),
                             eval_context=EvalContext(now=self.ctx.now(),
                                                      timezone=self.ctx.timezone),
                             language=self.ctx.language, allow_read_only=True)
        for key in top:
            value = outcome.values.get(key)
            if value is not None:
                values[key] = v.fields[key].compiled.to_json(value)
        for key, fkeys in subs.items():
            computed = outcome.sub_rows.get(key) or []
            for given, row in zip(values[key], computed, strict=False):
                if not isinstance(given, dict):
                    continue
                for fkey in fkeys:
                    if fkey not in given and row.get(fkey) is not None:
                        given[fkey] = v.sub_tables[key].fields[fkey].compiled.to_json(
                            row[fkey])


def load_rows(ctx: EngineContext, *, app: str,
              rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
              file_of: Mapping[str, str] | None = None,
              ids: dict[str, str] | None = None,
              unavailable: Iterable[str] = (),
              files_stored: Mapping[tuple[str, str, str], str] | None = None
              ) -> dict[str, int]:
    """Create the rows; returns how many per form. Every error of every form
    is reported at once (file and JSON path), as PackageInvalid. A form whose
    rows fail does not make the rows linking to them fail too: the links to
    its rows (and to the ``unavailable`` names: rows not loaded at all) are
    left out of those rows, and their problems there are not reported.
    ``files_stored``: the ids of the stored files the rows' ``$file`` values name
    (``packaged_files.store_files``)."""
    from tangram.engines.forms.origins import Origin, set_origins
    from tangram.engines.forms.records import bulk_create
    from tangram.engines.forms.registry import get_runtime

    ids = {} if ids is None else ids
    files = {form: (file_of or {}).get(form, f"data/{form}.json") for form in rows_by_form}
    owners = _users(ctx, rows_by_form, files)
    resolver = Resolver(today=ctx.today(), timezone=ctx.timezone, ids=ids,
                        users={name: str(i) for name, i in owners.items()},
                        files=files_stored or {})
    owner_defaults = _OwnerDefaults(ctx)
    failed_names = set(unavailable)
    counts: dict[str, int] = {}
    errors: list[ErrorItem] = []
    for form in load_order(rows_by_form):
        rows = rows_by_form[form]
        file = files[form]
        # Numbers a row gives (an exported contract's) are kept, not renumbered.
        numbered = {f.key for f in get_runtime(ctx.session, app, form).form.fields
                    if f.type == "autonumber"}
        form_errors: list[ErrorItem] = []
        left_out: set[str] = set()  # paths of links to rows that failed
        failed = False
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            clean: list[dict[str, Any]] = []
            origins: list[tuple[uuid.UUID | None, Any, bool, frozenset[str]]] = []
            for i, row in enumerate(chunk, start=start):
                values: dict[str, Any] = {}
                at = None
                for name, value in row.items():
                    if not name.startswith("$") and failed_names.intersection(refs_in(value)):
                        left_out.add(f"$[{i}].{name}")
                        continue
                    try:
                        if name == CREATED_AT:
                            at = resolver.created_at(value)
                        elif not name.startswith("$"):
                            values[name] = resolver.value(value)
                    except BadSpec as exc:
                        form_errors.append(ErrorItem(code="data_date", file=file,
                                                     path=f"$[{i}].{name}", message=str(exc)))
                        continue
                    for missing in refs_in(values.get(name)):
                        form_errors.append(ErrorItem(code="data_ref", file=file,
                                                     path=f"$[{i}].{name}",
                                                     message=f"no row is named {missing!r}"))
                owner = owners[normalize_username(str(row[OWNER]))] \
                    if row.get(OWNER) is not None else None
                if owner is not None and owner != ctx.actor.id and not form_errors:
                    owner_defaults.fill(get_runtime(ctx.session, app, form), values, owner)
                clean.append(values)
                origins.append((owner, at, OWNER in row and row[OWNER] is None,
                                frozenset(k for k in numbered if values.get(k))))
            if form_errors:
                break
            try:
                created = bulk_create(ctx, app=app, form=form, rows=clean, source="package",
                                      allow_read_only=True, keep_numbers=True)
            except ValidationFailed as exc:
                for e in exc.errors:
                    m = _ROW_FIELD.match(e.field or "")
                    path = (f"$[{start + int(m[1])}]" + (f".{m[2]}" if m[2] else "")) if m \
                        else "$"
                    if not any(_under(path, p) for p in left_out):
                        form_errors.append(ErrorItem(code=e.code, message=e.message,
                                                     path=path, file=file))
                # Only the rows' links left out failed: not loaded, and the rows
                # they link to report the root cause.
                failed = True
                break
            for row, rec in zip(chunk, created, strict=True):
                if REF in row:
                    ids[str(row[REF])] = rec["id"]
            stamps = [Origin(record_id=uuid.UUID(rec["id"]), owner=owner, created_at=at,
                             no_owner=unowned, numbered=given)
                      for rec, (owner, at, unowned, given) in zip(created, origins,
                                                                   strict=True)
                      if owner is not None or at is not None or unowned]
            if stamps:
                set_origins(ctx, app=app, form=form, origins=stamps)
        if form_errors or failed:
            errors.extend(form_errors)
            failed_names.update(str(r[REF]) for r in rows if REF in r
                                and str(r[REF]) not in ids)
            continue
        counts[form] = len(rows)
    if errors:
        files_failed = sorted({str(e.file) for e in errors})
        raise PackageInvalid(f"{len(errors)} problem(s) in {', '.join(files_failed)}; nothing "
                             "was installed", errors=errors)
    return counts


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def load_data_set(ctx: EngineContext, *, app: str, data_set: str,
                  rows_by_form: Mapping[str, Sequence[Mapping[str, Any]]],
                  org: Mapping[str, Any] | None = None,
                  unavailable: Iterable[str] = (),
                  blobs: Mapping[str, bytes] | None = None,
                  files: FileTarget | None = None) -> dict[str, int]:
    """A data set of a package: its org fixture (if any), then the files its
    rows name (``blobs``: the set's ``_files`` entries, stored in ``files``),
    then its rows."""
    if org is not None:
        load_org(ctx, app=app, file=f"data/{data_set}/{ORG_FILE}", body=org)
    if not rows_by_form:
        return {}
    stored = store_files(ctx, files, data_set=data_set, rows_by_form=rows_by_form,
                         blobs=blobs or {})
    return load_rows(ctx, app=app, rows_by_form=rows_by_form,
                     file_of={f: f"data/{data_set}/{f}.json" for f in rows_by_form},
                     unavailable=unavailable, files_stored=stored)
