"""The tenant's customization layer and the three-way merge of an upgrade.

The layer is the difference between the live definitions and the installed
package's base, matched by stable identities — list elements by ``key``
(fields, rules, nodes, widgets…) or ``value`` (options), objects by member
name — so "added field ``wechat``", "label of ``source`` changed" and "option
``web`` relabelled" are each one entry, whatever the order.

An upgrade merges three documents per definition: the old base, the live
(tenant) body and the new base. What only one side changed is taken; what
both changed the same way is taken; what both changed differently is a
conflict, as is a change to something the other side removed. Order follows
the new package, with the tenant's added elements after the element they
followed.

    merged, conflicts = merge3(old_base, live, new_base)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tangram.metamodel import storage

MISSING: Any = object()
IDENTITIES = ("key", "value")


@dataclass
class MergeConflict:
    path: str
    message: str
    mine: Any = None
    theirs: Any = None


def _identity(*lists: list[Any]) -> str | None:
    """The member that identifies the elements of these lists (present and
    unique in each), if any."""
    items = [x for lst in lists for x in lst]
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for name in IDENTITIES:
        if all(name in x for x in items) and all(
                len({repr(x[name]) for x in lst}) == len(lst) for lst in lists):
            return name
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def merge3(base: Any, mine: Any, theirs: Any, path: str = "$"
           ) -> tuple[Any, list[MergeConflict]]:
    """Merge the tenant's (``mine``) and the package's (``theirs``) changes of
    ``base``. MISSING stands for "absent". On a conflict the tenant's value is
    kept in the result; callers refuse the upgrade while conflicts remain."""
    if _same(mine, base):
        return theirs, []
    if _same(theirs, base) or _same(mine, theirs):
        return mine, []
    if mine is MISSING:
        return MISSING, [MergeConflict(path, f"you removed {path}, the new version changes "
                                       "it", theirs=theirs)]
    if theirs is MISSING:
        return mine, [MergeConflict(path, f"the new version removes {path}, which you "
                                    "changed", mine=mine)]
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return _merge_dicts(base if isinstance(base, dict) else {}, mine, theirs, path)
    if isinstance(mine, list) and isinstance(theirs, list):
        ident = _identity(base if isinstance(base, list) else [], mine, theirs)
        if ident is not None:
            return _merge_lists(base if isinstance(base, list) else [], mine, theirs, path,
                                ident)
    return mine, [MergeConflict(path, f"you changed {path} to {_show(mine)}, the new version "
                                f"to {_show(theirs)}", mine=mine, theirs=theirs)]


def _same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return bool(a == b)


def _merge_dicts(base: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any],
                 path: str) -> tuple[dict[str, Any], list[MergeConflict]]:
    out: dict[str, Any] = {}
    conflicts: list[MergeConflict] = []
    for name in list(theirs) + [n for n in mine if n not in theirs]:
        value, found = merge3(base.get(name, MISSING), mine.get(name, MISSING),
                              theirs.get(name, MISSING), f"{path}.{name}")
        conflicts.extend(found)
        if value is not MISSING:
            out[name] = value
    return out, conflicts


def _merge_lists(base: list[Any], mine: list[Any], theirs: list[Any], path: str,
                 ident: str) -> tuple[list[Any], list[MergeConflict]]:
    b = {x[ident]: x for x in base}
    m = {x[ident]: x for x in mine}
    t = {x[ident]: x for x in theirs}
    merged: dict[Any, Any] = {}
    conflicts: list[MergeConflict] = []
    for name in list(t) + [n for n in m if n not in t]:
        value, found = merge3(b.get(name, MISSING), m.get(name, MISSING), t.get(name, MISSING),
                              f"{path}[{name}]")
        conflicts.extend(found)
        if value is not MISSING:
            merged[name] = value
    # The new version's order; the tenant's own elements after their predecessor.
    order = [n for n in t if n in merged]
    mine_order = [x[ident] for x in mine]
    for i, name in enumerate(mine_order):
        if name in merged and name not in order:
            before = next((p for p in reversed(mine_order[:i]) if p in order), None)
            order.insert(order.index(before) + 1 if before is not None else 0, name)
    return [merged[n] for n in order], conflicts


# --- the live definitions and the layer ------------------------------------------------

def live_bodies(session: Session, app: str, kinds: list[str]
                ) -> dict[tuple[str, str], dict[str, Any]]:
    """Every definition of the app: its newest published body, else its draft."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in kinds:
        for d in storage.list_definitions(session, app=app, kind=kind):
            body = storage.latest_body(session, app=app, kind=kind, key=d.key) or d.draft
            if body:
                out[kind, d.key] = body
    return out


def without_ids(body: Any) -> Any:
    """A body without the field ids the platform assigns (for comparisons)."""
    if isinstance(body, dict):
        return {k: without_ids(v) for k, v in body.items()
                if not (k == "id" and "key" in body and "type" in body)}
    if isinstance(body, list):
        return [without_ids(v) for v in body]
    return body


def customization_layer(base: dict[tuple[str, str], dict[str, Any]],
                        live: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The tenant's layer: definitions added, removed, and changed (with the
    changes, by stable key)."""
    out: list[dict[str, Any]] = []
    for kind, key in sorted(set(base) | set(live)):
        if (kind, key) not in base:
            out.append({"kind": kind, "key": key, "change": "added", "body": live[kind, key]})
        elif (kind, key) not in live:
            out.append({"kind": kind, "key": key, "change": "removed"})
        else:
            diff = storage.json_diff(without_ids(base[kind, key]), without_ids(live[kind, key]))
            if diff:
                out.append({"kind": kind, "key": key, "change": "changed", "diff": diff})
    return out


# --- renames a package version declares ("renamed_from") --------------------------------

def _scope_fields(body: dict[str, Any], scope: tuple[str, ...]) -> list[dict[str, Any]] | None:
    fields = body.get("fields")
    for key in scope:
        parent = next((f for f in fields or [] if isinstance(f, dict) and f.get("key") == key),
                      None)
        fields = parent.get("fields") if parent else None
    return fields if isinstance(fields, list) else None


def field_keys(body: dict[str, Any], scope: tuple[str, ...]) -> set[str]:
    """The keys of the fields in ``scope`` (a sub-table's key path; () for the
    form's own fields)."""
    return {str(f.get("key")) for f in _scope_fields(body, scope) or []
            if isinstance(f, dict)}


def field_id(body: dict[str, Any], scope: tuple[str, ...], key: str) -> str | None:
    return next((f.get("id") for f in _scope_fields(body, scope) or []
                 if isinstance(f, dict) and f.get("key") == key), None)


def set_field_id(body: dict[str, Any], scope: tuple[str, ...], key: str, fid: str) -> None:
    for f in _scope_fields(body, scope) or []:
        if isinstance(f, dict) and f.get("key") == key:
            f["id"] = fid


def rename_field(body: dict[str, Any], scope: tuple[str, ...], old: str, new: str
                 ) -> dict[str, Any]:
    """A copy of form ``body`` with field ``old`` (in ``scope``) keyed ``new``,
    and the form's plain references to it by key renamed too (title and
    search fields, layout, sorts, views, lock) — so a three-way merge sees
    the renamed field, not a removed and an added one. Expressions are not
    rewritten: one reading the old key is reported when it is checked."""
    body = copy.deepcopy(body)
    for f in _scope_fields(body, scope) or []:
        if isinstance(f, dict) and f.get("key") == old:
            f["key"] = new
    if scope:
        return body

    def swap(value: Any) -> Any:
        if isinstance(value, str) and value.lstrip("-") == old:
            return value[: len(value) - len(old)] + new
        return value

    def swap_all(values: Any) -> Any:
        return [swap(v) for v in values] if isinstance(values, list) else values

    if body.get("title_field") == old:
        body["title_field"] = new
    for name in ("search_fields", "default_sort"):
        if name in body:
            body[name] = swap_all(body[name])
    for section in (body.get("layout") or {}).get("sections") or []:
        if isinstance(section, dict) and "fields" in section:
            section["fields"] = swap_all(section["fields"])
    for view in body.get("views") or []:
        if isinstance(view, dict):
            for name in ("columns", "sort"):
                if name in view:
                    view[name] = swap_all(view[name])
    lock = body.get("lock")
    if isinstance(lock, dict) and "editable" in lock:
        lock["editable"] = swap_all(lock["editable"])
    return body
