"""Import of the whole org chart from DingTalk/WeCom-shaped JSON or CSV.

Idempotent: departments and users are matched by their external id, only
differences are written, so a second run changes nothing; a user whose
departments differ in the file is moved. Users and departments missing from
the file are left alone (and counted). All or nothing: every problem is
reported at once and nothing changes. Format: docs/permissions.md.

    result = import_org(session, parse_files([Path("org.json")]), actor_id=a, now=now)
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db import new_id
from tangram.engines.directory import departments_table, users_table
from tangram.errors import ErrorItem, ValidationFailed
from tangram.platform.auth.service import USERNAME_PATTERN, normalize_username
from tangram.platform.permissions import audit
from tangram.platform.permissions.organization import apply_memberships

# Accepted column / key names, first the canonical one (DingTalk and WeCom spellings).
DEPARTMENT_KEYS = {
    "id": ("id", "dept_id", "department_id", "deptid"),
    "parent_id": ("parent_id", "parentid", "parent"),
    "name": ("name", "dept_name"),
}
USER_KEYS = {
    "id": ("id", "userid", "user_id"),
    "name": ("name",),
    "mobile": ("mobile", "phone"),
    "department_ids": ("department_ids", "department", "dept_id_list", "departments"),
    "is_head": ("is_head", "is_leader_in_dept", "leader_in_dept", "is_leader"),
    "primary_department_id": ("primary_department_id", "main_department", "main_dept"),
}
ROOT_PARENTS = {"", "0", "none", "null"}
LIST_SEPARATORS = re.compile(r"[;|,，]")


@dataclass
class OrgChart:
    departments: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImportResult:
    departments_created: int = 0
    departments_updated: int = 0
    departments_unchanged: int = 0
    users_created: int = 0
    users_updated: int = 0
    users_unchanged: int = 0
    not_in_file: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.departments_created or self.departments_updated
                    or self.users_created or self.users_updated)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "departments_created", "departments_updated", "departments_unchanged",
            "users_created", "users_updated", "users_unchanged", "not_in_file")}


# --- parsing -------------------------------------------------------------------------

def _pick(item: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in item:
            return item[name]
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _id_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [t for v in value if (t := _text(v))]
    return [t for part in LIST_SEPARATORS.split(str(value)) if (t := _text(part))]


def _heads(value: Any, departments: list[str]) -> set[str]:
    """Is-head in any of the shapes: a boolean (head of every listed
    department), 0/1 flags aligned with the departments (WeCom), department
    ids, or ``[{"dept_id", "leader"}]`` (DingTalk)."""
    if value is None:
        return set()
    if isinstance(value, bool):
        return set(departments) if value else set()
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "是"}:
        return set(departments)
    if isinstance(value, str) and value.strip().lower() in {"", "false", "no", "0", "否"}:
        return set()
    items: list[Any] = value if isinstance(value, list) else _id_list(value)
    if items and all(isinstance(i, dict) for i in items):
        return {str(i.get("dept_id")) for i in items if i.get("leader")}
    if items and all(isinstance(i, int) and i in (0, 1) for i in items) \
            and len(items) == len(departments):
        return {d for d, flag in zip(departments, items, strict=True) if flag}
    return {t for i in items if (t := _text(i))}


def normalize(raw: Mapping[str, Any]) -> OrgChart:
    """A JSON org chart (any accepted spelling) in canonical shape."""
    chart = OrgChart()
    for d in raw.get("departments") or raw.get("department") or []:
        chart.departments.append({k: _text(_pick(d, names))
                                  for k, names in DEPARTMENT_KEYS.items()})
    for u in raw.get("users") or raw.get("userlist") or []:
        depts = _id_list(_pick(u, USER_KEYS["department_ids"]))
        chart.users.append({
            "id": _text(_pick(u, USER_KEYS["id"])), "name": _text(_pick(u, USER_KEYS["name"])),
            "mobile": _text(_pick(u, USER_KEYS["mobile"])), "department_ids": depts,
            "heads": _heads(_pick(u, USER_KEYS["is_head"]), depts),
            "primary_department_id": _text(_pick(u, USER_KEYS["primary_department_id"]))})
    return chart


def parse_csv(text: str) -> dict[str, list[dict[str, Any]]]:
    """A CSV of departments (id, parent_id, name) or of users (id, name,
    mobile, department_ids, is_head), told apart by its header."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    header = {h.strip().lower() for h in (rows[0].keys() if rows else [])}
    rows = [{k.strip().lower(): v for k, v in r.items() if k} for r in rows]
    if header & set(USER_KEYS["department_ids"]) or header & set(USER_KEYS["mobile"]):
        return {"users": rows}
    return {"departments": rows}


def parse_files(paths: Iterable[Path]) -> OrgChart:
    merged: dict[str, list[dict[str, Any]]] = {"departments": [], "users": []}
    for path in paths:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text) if path.suffix.lower() == ".json" else parse_csv(text)
        part = normalize(data)
        merged["departments"].extend(part.departments)
        merged["users"].extend(part.users)
    return OrgChart(**merged)


# --- applying --------------------------------------------------------------------------

def validate_chart(chart: OrgChart) -> list[ErrorItem]:
    errors = []
    dept_ids = [d["id"] for d in chart.departments]
    known = set(dept_ids)
    for i, d in enumerate(chart.departments):
        if not d["id"] or not d["name"]:
            errors.append(ErrorItem(code="required", field=f"departments[{i}]",
                                    message="a department needs an id and a name"))
        parent = d["parent_id"]
        if parent and parent.lower() not in ROOT_PARENTS and parent not in known:
            errors.append(ErrorItem(code="unknown_parent", field=f"departments[{i}].parent_id",
                                    message=f"parent department {parent!r} is not in the file"))
    if len(known) != len(dept_ids):
        errors.append(ErrorItem(code="duplicate", field="departments",
                                message="a department id appears twice"))
    user_ids = [u["id"] for u in chart.users]
    if len(set(user_ids)) != len(user_ids):
        errors.append(ErrorItem(code="duplicate", field="users",
                                message="a user id appears twice"))
    for i, u in enumerate(chart.users):
        if not u["id"] or not u["name"]:
            errors.append(ErrorItem(code="required", field=f"users[{i}]",
                                    message="a user needs an id and a name"))
        elif not USERNAME_PATTERN.match(normalize_username(u["id"])):
            errors.append(ErrorItem(code="pattern", field=f"users[{i}].id",
                                    message=f"{u['id']!r} cannot be a username"))
        for dept in [*u["department_ids"], *u["heads"]]:
            if dept not in known:
                errors.append(ErrorItem(code="unknown_department",
                                        field=f"users[{i}].department_ids",
                                        message=f"department {dept!r} is not in the file"))
        primary = u["primary_department_id"]
        if primary and primary not in u["department_ids"]:
            errors.append(ErrorItem(code="primary", field=f"users[{i}].primary_department_id",
                                    message="the main department must be one of the user's"))
    if not errors:
        errors.extend(_cycles(chart))
    return errors


def _cycles(chart: OrgChart) -> list[ErrorItem]:
    parent = {d["id"]: d["parent_id"] for d in chart.departments}
    for start in parent:
        seen, at = set(), start
        while at in parent:
            if at in seen:
                return [ErrorItem(code="cycle", field="departments", message=(
                    f"department {start!r} is its own ancestor"))]
            seen.add(at)
            at = parent[at]
    return []


def import_org(session: Session, chart: OrgChart, *, actor_id: uuid.UUID | None,
               now: datetime) -> ImportResult:
    errors = validate_chart(chart)
    if errors:
        raise ValidationFailed(errors, f"the org chart has {len(errors)} problem(s); "
                               "nothing was imported")
    result = ImportResult()
    dept_ids = _apply_departments(session, chart, result, now)
    _apply_users(session, chart, dept_ids, result, now)
    if result.changed:
        audit.record(session, action="org.import", target="org", actor_id=actor_id, at=now,
                     **result.as_dict())
    return result


def _apply_departments(session: Session, chart: OrgChart, result: ImportResult,
                       now: datetime) -> dict[str, uuid.UUID]:
    d = departments_table
    existing = {r.external_id: r for r in session.execute(
        sa.select(d.c.id, d.c.external_id, d.c.name, d.c.parent_id)
        .where(d.c.external_id.is_not(None)))}
    ids = {ext: r.id for ext, r in existing.items()}
    for dep in chart.departments:  # create first (parents may come later in the file)
        if dep["id"] not in ids:
            ids[dep["id"]] = new_id()
            session.execute(d.insert().values(id=ids[dep["id"]], name=dep["name"],
                                              external_id=dep["id"], parent_id=None,
                                              created_at=now))
            result.departments_created += 1
    for dep in chart.departments:
        parent_ext = dep["parent_id"]
        parent = None if not parent_ext or parent_ext.lower() in ROOT_PARENTS \
            else ids[parent_ext]
        old = existing.get(dep["id"])
        if old is None:
            if parent is not None:
                session.execute(d.update().where(d.c.id == ids[dep["id"]])
                                .values(parent_id=parent))
        elif (old.name, old.parent_id) != (dep["name"], parent):
            session.execute(d.update().where(d.c.id == old.id)
                            .values(name=dep["name"], parent_id=parent))
            result.departments_updated += 1
        else:
            result.departments_unchanged += 1
    result.not_in_file["departments"] = len(set(existing) - {x["id"] for x in
                                                             chart.departments})
    return ids


def _apply_users(session: Session, chart: OrgChart, dept_ids: dict[str, uuid.UUID],
                 result: ImportResult, now: datetime) -> None:
    u = users_table
    existing = {r.external_id: r for r in session.execute(
        sa.select(u.c.id, u.c.external_id, u.c.display_name, u.c.mobile)
        .where(u.c.external_id.is_not(None)))}
    for item in chart.users:
        old = existing.get(item["id"])
        if old is None:
            username = normalize_username(item["id"])
            adopted = session.execute(sa.select(u.c.id).where(
                u.c.username == username, u.c.external_id.is_(None))).first()
            if adopted is not None:  # an account made by hand before the first import
                user_id = adopted.id
                session.execute(u.update().where(u.c.id == user_id).values(
                    external_id=item["id"], display_name=item["name"], mobile=item["mobile"],
                    updated_at=now))
            else:
                user_id = new_id()
                session.execute(u.insert().values(
                    id=user_id, username=username, display_name=item["name"],
                    mobile=item["mobile"], external_id=item["id"], password_hash=None,
                    is_admin=False, status="active", created_at=now, updated_at=now))
            result.users_created += 1
            changed = True
        else:
            user_id = old.id
            changed = (old.display_name, old.mobile) != (item["name"], item["mobile"])
            if changed:
                session.execute(u.update().where(u.c.id == user_id).values(
                    display_name=item["name"], mobile=item["mobile"], updated_at=now))
        wanted = {dept_ids[x]: x in item["heads"] for x in item["department_ids"]}
        primary_ext = item["primary_department_id"] or (
            item["department_ids"][0] if item["department_ids"] else None)
        primary = dept_ids[primary_ext] if primary_ext else None
        moved = apply_memberships(session, user_id=user_id, wanted=wanted, primary=primary,
                                  now=now)
        if old is not None:
            if changed or moved:
                result.users_updated += 1
            else:
                result.users_unchanged += 1
    result.not_in_file["users"] = len(set(existing) - {x["id"] for x in chart.users})
