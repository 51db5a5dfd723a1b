"""A data set's organization fixture, ``data/<set>/_org.json``: the
departments, users and role assignments its rows need (a demo company's
sales team, say). Loaded before the set's rows, through the platform's own
org-chart import (the DingTalk/WeCom-shaped JSON of docs/permissions.md)
and role assignment, so it is idempotent: departments and users are matched
by id, existing users keep their password, assignments are not doubled.

    {"departments": [{"id": "sales", "parent_id": null, "name": "销售部"}],
     "users": [{"id": "rep01", "name": "王伟", "mobile": "13800000001",
                "department_ids": ["sales"], "is_head": [], "password": "tangram-demo"}],
     "roles": [{"role": "sales_rep", "users": ["rep01"]},
               {"role": "viewer", "departments": ["sales"], "include_sub_departments": true}]}

A user's ``password`` (demo sets only) is set when the fixture creates the
user; users created without one cannot sign in until an administrator sets it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.directory import departments_table, users_table
from tangram.errors import ErrorItem, TangramError
from tangram.platform.auth import password_policy
from tangram.platform.auth.service import normalize_username

ORG_FILE = "_org.json"
TOP_KEYS = ("departments", "users", "roles")
ROLE_KEYS = ("role", "users", "departments", "include_sub_departments")
PASSWORD = "password"  # noqa: S105 - the key a user's password is given under
PASSWORD_SETS = ("demo",)  # seed data installs everywhere: no shared passwords there


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def check_org(file: str, data_set: str, body: Any, roles: Iterable[str]) -> list[ErrorItem]:
    """Every problem of a fixture, without a database: its shape, the org
    import's own checks (ids, parents, departments named by users, cycles),
    passwords, and the package roles it assigns."""
    from tangram.platform.permissions.org_import import normalize, validate_chart

    errors: list[ErrorItem] = []

    def add(code: str, path: str, message: str) -> None:
        errors.append(ErrorItem(code=code, file=file, path=path, message=message))

    if not isinstance(body, dict):
        add("data_shape", "$", f"an org fixture is a JSON object with {', '.join(TOP_KEYS)}")
        return errors
    for key, value in body.items():
        if key not in TOP_KEYS:
            add("data_org", f"$.{key}", f"unknown key {key!r}; an org fixture has "
                f"{', '.join(TOP_KEYS)}")
        elif not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            add("data_shape", f"$.{key}", f"{key} is a list of objects")
    if any(e.code == "data_shape" for e in errors):
        return errors  # the checks below read the lists
    users = body.get("users", [])
    for i, user in enumerate(users):
        if PASSWORD not in user:
            continue
        password, path = user[PASSWORD], f"$.users[{i}].{PASSWORD}"
        if data_set not in PASSWORD_SETS:
            add("data_password", path, f"passwords are allowed in demo data only (data/demo/"
                f"{ORG_FILE}); an administrator sets the passwords of seeded users")
        elif not isinstance(password, str):
            add("data_password", path, "a password is a string")
        else:
            for _, problem in password_policy.problems(str(user.get("id", "")), password):
                add("data_password", path, problem)
    chart = normalize(_without_passwords(body))
    for e in validate_chart(chart):
        add("data_org", f"$.{e.field}" if e.field else "$", e.message)
    known = set(roles)
    for i, entry in enumerate(body.get("roles", [])):
        path = f"$.roles[{i}]"
        for key in entry:
            if key not in ROLE_KEYS:
                add("data_org", f"{path}.{key}", f"unknown key {key!r}; a role assignment has "
                    f"{', '.join(ROLE_KEYS)}")
        role = entry.get("role")
        if role not in known:
            add("unknown_role", f"{path}.role", f"role {role!r} is not in the package (roles: "
                f"{', '.join(sorted(known)) or 'none'})")
        for key in ("users", "departments"):
            if key in entry and not _strings(entry[key]):
                add("data_shape", f"{path}.{key}", f"{key} is a list of ids")
        if not entry.get("users") and not entry.get("departments"):
            add("data_org", path, "a role assignment names users, departments or both")
        if not isinstance(entry.get("include_sub_departments", True), bool):
            add("data_shape", f"{path}.include_sub_departments", "true or false")
    return errors


def _without_passwords(body: Mapping[str, Any]) -> dict[str, Any]:
    return {**body, "users": [{k: v for k, v in u.items() if k != PASSWORD}
                              for u in body.get("users", [])]}


def load_org(ctx: EngineContext, *, app: str, file: str, body: Mapping[str, Any]
             ) -> dict[str, int]:
    """Create what is missing of the fixture; returns counts of what it holds.
    Problems (a user or department a role names that does not exist) come
    back as one PackageInvalid with file and JSON path."""
    from tangram.platform.auth.service import create_user
    from tangram.platform.packages.errors import PackageInvalid
    from tangram.platform.permissions.org_import import import_org, normalize
    from tangram.platform.permissions.roles import assign_role

    now = ctx.now()
    users = body.get("users", [])
    existing = _user_ids(ctx, [str(u.get("id", "")) for u in users])
    for i, user in enumerate(users):
        name = normalize_username(str(user.get("id", "")))
        if PASSWORD in user and name not in existing:
            try:
                create_user(ctx.session, username=name, password=str(user[PASSWORD]),
                            display_name=user.get("name"), language=ctx.language,
                            timezone=ctx.timezone, clock=ctx.clock)
            except TangramError as exc:
                raise _invalid(file, f"$.users[{i}]", exc) from exc
    try:
        # The import adopts the accounts made above (same username, no external id yet).
        import_org(ctx.session, normalize(_without_passwords(body)), actor_id=ctx.actor.id,
                   now=now)
    except TangramError as exc:
        raise _invalid(file, "$", exc) from exc
    assignments = 0
    errors: list[ErrorItem] = []
    entries = body.get("roles", [])
    user_ids = _user_ids(ctx, [u for e in entries for u in e.get("users", [])])
    dept_ids = _department_ids(ctx, [d for e in entries for d in e.get("departments", [])])
    for i, entry in enumerate(entries):
        for key, ids, holder in (("users", user_ids, "user_id"),
                                 ("departments", dept_ids, "department_id")):
            for j, ident in enumerate(entry.get(key, [])):
                found = ids.get(normalize_username(ident) if key == "users" else ident)
                if found is None:
                    errors.append(ErrorItem(
                        code="data_org", file=file, path=f"$.roles[{i}].{key}[{j}]",
                        message=f"no {key[:-1]} {ident!r} (in this fixture or installed)"))
                    continue
                assign_role(ctx.session, app=app, role=entry["role"], **{holder: found},
                            include_sub_departments=entry.get("include_sub_departments", True),
                            actor_id=ctx.actor.id, now=now)
                assignments += 1
    if errors:
        raise PackageInvalid(f"{len(errors)} problem(s) in {file}; nothing was installed",
                             errors=errors)
    return {"departments": len(body.get("departments", [])), "users": len(users),
            "role_assignments": assignments}


def _invalid(file: str, path: str, exc: TangramError) -> TangramError:
    from tangram.platform.packages.errors import PackageInvalid

    items = exc.errors or [ErrorItem(code=exc.code, message=exc.message)]
    return PackageInvalid(f"{file}: {exc.message}", errors=[
        ErrorItem(code=e.code, file=file, message=e.message,
                  path=f"{path}.{e.field}" if e.field else path)
        for e in items])


def _user_ids(ctx: EngineContext, usernames: Iterable[str]) -> dict[str, uuid.UUID]:
    names = sorted({normalize_username(n) for n in usernames if n})
    u = users_table
    return {r.username: r.id for r in ctx.session.execute(
        sa.select(u.c.username, u.c.id).where(u.c.username.in_(names)))} if names else {}


def _department_ids(ctx: EngineContext, external: Iterable[str]) -> dict[str, uuid.UUID]:
    wanted = sorted(set(external))
    d = departments_table
    return {r.external_id: r.id for r in ctx.session.execute(
        sa.select(d.c.external_id, d.c.id).where(d.c.external_id.in_(wanted)))} if wanted else {}


# --- export --------------------------------------------------------------------------------

def export_org(ctx: EngineContext, *, app: str, usernames: Iterable[str],
               roles: Iterable[str]) -> dict[str, Any]:
    """The fixture an exported data set needs on another installation: the
    users named (the records' owners), the holders of the app's ``roles``,
    the heads of their departments, those departments with their parents,
    and the role assignments. Users are named by username (a row's
    ``$owner``), departments by their org-chart id (else their id here).
    No passwords: an administrator sets them on the other installation."""
    from tangram.engines.directory import user_departments_table
    from tangram.platform.permissions.tables import role_assignments_table

    u, d, ud, ra = users_table, departments_table, user_departments_table, \
        role_assignments_table
    assignments = list(ctx.session.execute(sa.select(ra).where(
        ra.c.app == app, ra.c.role.in_(sorted(set(roles)))).order_by(ra.c.role, ra.c.created_at)))
    dept_rows = {r.id: r for r in ctx.session.execute(
        sa.select(d.c.id, d.c.parent_id, d.c.name, d.c.external_id))}
    members: dict[uuid.UUID, list[Any]] = {}
    for m in ctx.session.execute(sa.select(ud.c.user_id, ud.c.department_id, ud.c.is_head)):
        members.setdefault(m.user_id, []).append(m)
    wanted = {normalize_username(n) for n in usernames}
    user_rows = {r.id: r for r in ctx.session.execute(sa.select(
        u.c.id, u.c.username, u.c.display_name, u.c.mobile, u.c.primary_department_id))}
    chosen = {i for i, r in user_rows.items() if r.username in wanted} | \
        {a.user_id for a in assignments if a.user_id is not None}
    departments: set[uuid.UUID] = {a.department_id for a in assignments
                                   if a.department_id is not None}
    while True:  # users' departments, their parents, and their heads
        departments |= {m.department_id for i in chosen for m in members.get(i, [])}
        for dep in list(departments):
            parent = dept_rows[dep].parent_id if dep in dept_rows else None
            while parent is not None and parent not in departments:
                departments.add(parent)
                parent = dept_rows[parent].parent_id if parent in dept_rows else None
        heads = {i for i, ms in members.items() for m in ms
                 if m.is_head and m.department_id in departments} - chosen
        if not heads:
            break
        chosen |= heads

    def dept_id(ident: uuid.UUID) -> str:
        row = dept_rows[ident]
        return str(row.external_id or row.id)

    body: dict[str, Any] = {
        "departments": [{"id": dept_id(i), "parent_id": dept_id(dept_rows[i].parent_id)
                         if dept_rows[i].parent_id else None, "name": dept_rows[i].name}
                        for i in sorted(departments, key=dept_id)],
        "users": []}
    for i in sorted(chosen, key=lambda i: user_rows[i].username):
        row, ms = user_rows[i], members.get(i, [])
        user: dict[str, Any] = {"id": row.username, "name": row.display_name}
        if row.mobile:
            user["mobile"] = row.mobile
        user["department_ids"] = sorted(dept_id(m.department_id) for m in ms)
        user["is_head"] = sorted(dept_id(m.department_id) for m in ms if m.is_head)
        if row.primary_department_id in {m.department_id for m in ms}:
            user["primary_department_id"] = dept_id(row.primary_department_id)
        body["users"].append(user)
    by_role: dict[tuple[str, bool | None], list[str]] = {}
    for a in assignments:
        if a.user_id is not None:
            by_role.setdefault((a.role, None), []).append(user_rows[a.user_id].username)
        else:
            by_role.setdefault((a.role, a.include_sub_departments), []).append(
                dept_id(a.department_id))
    body["roles"] = [{"role": role, "users": sorted(names)} if sub is None else
                     {"role": role, "departments": sorted(names),
                      "include_sub_departments": sub}
                     for (role, sub), names in by_role.items()]
    return body


def merge_org(first: Mapping[str, Any] | None, then: Mapping[str, Any]) -> dict[str, Any]:
    """``first``'s fixture with what ``then`` adds: departments and users it
    lacks (by id), and every role assignment (loading them twice is harmless)."""
    out: dict[str, Any] = {k: list(v) for k, v in (first or {}).items()}
    for key in ("departments", "users"):
        known = {str(x.get("id")) for x in out.get(key, [])}
        out[key] = out.get(key, []) + [x for x in then.get(key, []) if str(x["id"]) not in known]
    out["roles"] = out.get("roles", []) + list(then.get("roles", []))
    return {k: v for k, v in out.items() if v}
