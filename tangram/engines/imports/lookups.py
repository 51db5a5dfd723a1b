"""Cells that name other things: linked records, users, departments.

A file says ``华为`` where the record needs the id of the account titled 华为.
One entry per kind of reference finds the ids of many texts in one query:
records by id, title field or any unique text field of the target form (in
the actor's read scope); users by id, username or display name; departments
by id or name. A text that finds nothing, or more than one, is a row error.
Answers are remembered for the rest of the job.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.engines.directory import departments_table, users_table
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.registry import FormRuntime, get_runtime
from tangram.engines.imports.messages import text
from tangram.errors import ErrorItem
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

CHUNK = 500
_TEXT_KINDS = frozenset({"text", "email", "phone", "url", "autonumber"})


@dataclass(frozen=True)
class Found:
    """Ids found for one text (one is good; none or several is an error)."""

    ids: tuple[uuid.UUID, ...]


class Lookup(Protocol):
    def find(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, texts: set[str]
             ) -> dict[str, set[uuid.UUID]]:
        """Ids each text names (texts naming nothing may be left out)."""

    def problem(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, value: str,
                count: int) -> ErrorItem:
        """The row error for a text that names ``count`` (0 or >1) things."""


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = list(values)
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _error(code: str, ctx: EngineContext, f: fm.FieldBase, **params: object) -> ErrorItem:
    label = localize(f.label, ctx.language)
    return ErrorItem(code=code, field=f.key, message=text(code, ctx.language, label=label,
                                                          **params))


class RecordLookup:
    def find(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, texts: set[str]
             ) -> dict[str, set[uuid.UUID]]:
        target = get_runtime(ctx.session, rt.app, f.target)  # type: ignore[attr-defined]
        t = target.table
        keys = [k for k in dict.fromkeys([target.title_field, *(
            g.key for g in target.form.fields if g.unique
            and FIELD_KINDS[g.type].name in _TEXT_KINDS)])  # type: ignore[attr-defined]
            if k is not None and k in t.c]
        scope = ctx.policy.row_predicate(ctx.actor, rt.app, target.key, t, "read")
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(texts):
            ids = [u for u in map(_as_uuid, chunk) if u is not None]
            conds = [t.c[k].in_(chunk) for k in keys] + ([t.c.id.in_(ids)] if ids else [])
            if not conds:
                continue
            stmt = sa.select(t.c.id, *(t.c[k] for k in keys)).where(
                sa.or_(*conds), t.c.deleted_at.is_(None))
            if scope is not None:
                stmt = stmt.where(scope)
            wanted = set(chunk)
            for row in ctx.session.execute(stmt):
                for value in {str(row.id), *(str(v) for v in row[1:] if v is not None)}:
                    if value in wanted:
                        found[value].add(row.id)
        return found

    def problem(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, value: str,
                count: int) -> ErrorItem:
        target = get_runtime(ctx.session, rt.app, f.target)  # type: ignore[attr-defined]
        name = localize(target.form.label, ctx.language)
        code = "relation_ambiguous" if count else "relation_not_found"
        return _error(code, ctx, f, value=value, target=name, count=count)


class UserLookup:
    def find(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, texts: set[str]
             ) -> dict[str, set[uuid.UUID]]:
        u = users_table
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(texts):
            ids = [i for i in map(_as_uuid, chunk) if i is not None]
            lowered = {c.lower(): c for c in chunk}
            stmt = sa.select(u.c.id, u.c.username, u.c.display_name).where(sa.or_(
                u.c.username.in_(list(lowered)), u.c.display_name.in_(chunk),
                *([u.c.id.in_(ids)] if ids else [])))
            by_username: dict[str, uuid.UUID] = {}
            by_name: dict[str, set[uuid.UUID]] = defaultdict(set)
            for row in ctx.session.execute(stmt):
                by_username[row.username] = row.id
                by_name[row.display_name].add(row.id)
                by_name[str(row.id)].add(row.id)
            for value in chunk:
                # A username is unique: it wins over display names.
                if value.lower() in by_username:
                    found[value] = {by_username[value.lower()]}
                elif value in by_name:
                    found[value] = by_name[value]
        return found

    def problem(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, value: str,
                count: int) -> ErrorItem:
        return _error("user_ambiguous" if count else "user_not_found", ctx, f, value=value,
                      count=count)


class DepartmentLookup:
    def find(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, texts: set[str]
             ) -> dict[str, set[uuid.UUID]]:
        d = departments_table
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(texts):
            ids = [i for i in map(_as_uuid, chunk) if i is not None]
            stmt = sa.select(d.c.id, d.c.name).where(sa.or_(
                d.c.name.in_(chunk), *([d.c.id.in_(ids)] if ids else [])))
            for row in ctx.session.execute(stmt):
                found[row.name].add(row.id)
                found[str(row.id)].add(row.id)
        return found

    def problem(self, ctx: EngineContext, rt: FormRuntime, f: fm.FieldBase, value: str,
                count: int) -> ErrorItem:
        return _error("department_ambiguous" if count else "department_not_found", ctx, f,
                      value=value, count=count)


LOOKUPS: dict[str, Lookup] = {
    "relation": RecordLookup(), "multi_relation": RecordLookup(), "user": UserLookup(),
    "department": DepartmentLookup(),
}
MULTI_VALUED = frozenset({"multi_relation"})


class Resolver:
    """Resolves texts of one field to ids, remembering answers for the job."""

    def __init__(self, rt: FormRuntime, f: fm.FieldBase, lookup: Lookup) -> None:
        self.rt, self.field, self.lookup = rt, f, lookup
        self._known: dict[str, tuple[uuid.UUID, ...]] = {}

    def resolve(self, ctx: EngineContext, texts: Iterable[str]) -> None:
        missing = {t for t in texts if t not in self._known}
        if not missing:
            return
        found = self.lookup.find(ctx, self.rt, self.field, missing)
        for value in missing:
            self._known[value] = tuple(sorted(found.get(value, ())))

    def get(self, ctx: EngineContext, value: str) -> uuid.UUID | ErrorItem:
        ids = self._known[value]
        if len(ids) == 1:
            return ids[0]
        return self.lookup.problem(ctx, self.rt, self.field, value, len(ids))
