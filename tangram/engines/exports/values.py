"""Record values as people read them in a spreadsheet, one entry per field kind.

Options show their label, links the linked record's title, people their
names, booleans 是/否 (Yes/No), date-times the organization's wall-clock time;
decimals stay ``Decimal`` (exact in CSV and XLSX alike). Titles of linked
records, users, departments and files are fetched per page, one query per kind
(tangram.engines.forms.titles).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tangram.clock import iso_utc
from tangram.engines.forms.titles import Titles, form_reference
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

Formatter = Callable[[Any, Titles], Any]
LIST_JOIN = ", "  # what the importer splits lists on


@dataclass(frozen=True)
class Env:
    language: str
    zone: ZoneInfo


def _options(f: fm.FieldBase, env: Env) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(items: list[Any]) -> None:
        for o in items:
            out[o.value] = localize(o.label, env.language) or o.value
            walk(getattr(o, "children", []))

    walk(getattr(f, "options", []))
    return out


def _plain(f: fm.FieldBase, env: Env) -> Formatter:
    return lambda v, titles: str(v) if isinstance(v, uuid.UUID) else v


def _select(f: fm.FieldBase, env: Env) -> Formatter:
    labels = _options(f, env)
    return lambda v, titles: None if v is None else labels.get(v, v)


def _multi_select(f: fm.FieldBase, env: Env) -> Formatter:
    labels = _options(f, env)
    return lambda v, titles: None if not v else LIST_JOIN.join(labels.get(x, x) for x in v)


def _tags(f: fm.FieldBase, env: Env) -> Formatter:
    return lambda v, titles: None if not v else LIST_JOIN.join(v)


def _boolean(f: fm.FieldBase, env: Env) -> Formatter:
    yes, no = ("是", "否") if env.language.startswith("zh") else ("Yes", "No")
    return lambda v, titles: None if v is None else (yes if v else no)


def _datetime(f: fm.FieldBase, env: Env) -> Formatter:
    zone = env.zone

    def fmt(v: Any, titles: Titles) -> Any:
        # Spreadsheets have no time zones: the organization's wall clock —
        # unless that is off the calendar (see in_zone): then UTC, marked Z.
        if not isinstance(v, datetime):
            return v
        local = in_zone(v, zone)
        if local.tzinfo is UTC:
            return iso_utc(local.replace(microsecond=0))
        return local.replace(tzinfo=None, microsecond=0)

    return fmt


def in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` on ``zone``'s clock; within hours of the calendar's ends, where
    that clock would leave it (9999-12-31T23:00Z is already year 10000 in
    Shanghai), the value in UTC — ``tzinfo is datetime.UTC`` tells — so a
    stored value always shows."""
    try:
        return value.astimezone(zone)
    except OverflowError:
        return value.astimezone(UTC)


def _rollup(f: fm.FieldBase, env: Env) -> Formatter:
    # A min/max of date-times is a date-time: the wall clock too.
    return _datetime(f, env) if getattr(f, "result_type", None) == "datetime" else \
        _plain(f, env)


def _reference(kind: str) -> Callable[[fm.FieldBase, Env], Formatter]:
    def factory(f: fm.FieldBase, env: Env) -> Formatter:
        ref = reference_of(f) or kind

        def fmt(v: Any, titles: Titles) -> Any:
            if v is None or v == []:
                return None
            if isinstance(v, list):
                return LIST_JOIN.join(titles.get((ref, x), str(x)) for x in v)
            return titles.get((ref, v), str(v))

        return fmt

    return factory


def _region(f: fm.FieldBase, env: Env) -> Formatter:
    return lambda v, titles: None if not v else "/".join(
        v[k] for k in ("province", "city", "district") if v.get(k))


DISPLAY: dict[str, Callable[[fm.FieldBase, Env], Formatter]] = {
    "select": _select, "tree_select": _select, "multi_select": _multi_select, "tags": _tags,
    "boolean": _boolean, "datetime": _datetime, "relation": _reference("relation"),
    "multi_relation": _reference("relation"), "user": _reference("user"),
    "department": _reference("department"), "attachment": _reference("file"),
    "region": _region, "rollup": _rollup,
}


def formatter_for(f: fm.FieldBase, env: Env) -> Formatter:
    return DISPLAY.get(f.type, _plain)(f, env)  # type: ignore[attr-defined]


def reference_of(f: fm.FieldBase) -> str | None:
    """Which titles a field's values need: a target form key, or user/department/file."""
    kind = f.type  # type: ignore[attr-defined]
    if kind in ("relation", "multi_relation"):
        return form_reference(f.target)  # type: ignore[attr-defined]
    return {"user": "user", "department": "department", "attachment": "file"}.get(kind)


def wanted_ids(refs: dict[str, str], records: list[dict[str, Any]]
               ) -> dict[str, set[uuid.UUID]]:
    """``refs``: field key -> reference; the ids a page of records links to."""
    out: dict[str, set[uuid.UUID]] = defaultdict(set)
    for key, ref in refs.items():
        for rec in records:
            value = rec.get(key)
            if value is None:
                continue
            out[ref].update(value if isinstance(value, list) else [value])
    return out
