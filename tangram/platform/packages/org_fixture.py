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
