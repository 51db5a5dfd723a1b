"""From a spreadsheet cell to what the form engine's validator accepts.

One entry per field kind that needs more than the kind's own conversion
(which already reads ``"是"``, ``"2026/01/31"``, ``"a,b"`` tags and
``"广东省/深圳市"`` regions): option labels become option values, wall-clock
times are in the organization's zone, ``"1,234.50"`` loses its separators.
Adapters never fail: what they cannot read goes on to the validator, which
reports it with the field's label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tangram.engines.imports.mapping import normalize_title
from tangram.metamodel import fields as fm

Adapter = Callable[[Any], Any]
AdapterFactory = Callable[[fm.FieldBase, ZoneInfo], Adapter]

# A leading quote guards a formula-like text in exported files and error files
# (tangram.engines.exports.writers.guard_text); reading it back removes it.
_GUARDED = re.compile(r"^'(?=[=+\-@\t\r])")
LIST_SEPARATORS = re.compile(r"[,，;；、\n]")


def clean_text(cell: Any) -> Any:
    if cell.__class__ is str:
        cell = cell.strip()
        return _GUARDED.sub("", cell) if cell[:1] == "'" else cell
    if isinstance(cell, float):
        # Its shortest digits, never exponent notation: 1e-07 reads 0.0000001.
        return format(Decimal(repr(cell)), "f")
    return cell


def split_list(cell: Any) -> list[str]:
    return [p.strip() for p in LIST_SEPARATORS.split(str(cell)) if p.strip()]


def _options(f: fm.FieldBase) -> dict[str, str]:
    """Option value by its value or any of its labels (normalized)."""
    out: dict[str, str] = {}
    options = getattr(f, "options", [])

    def walk(items: list[Any]) -> None:
        for o in items:
            for title in [o.value, *o.label.values()]:
                out.setdefault(normalize_title(title), o.value)
            walk(getattr(o, "children", []))

    walk(options)
    return out


def _select(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    options = _options(f)

    def adapt(cell: Any) -> Any:
        text = clean_text(cell)
        return options.get(normalize_title(str(text)), text)

    return adapt


def _multi_select(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    options = _options(f)

    def adapt(cell: Any) -> Any:
        return [options.get(normalize_title(p), p) for p in split_list(clean_text(cell))]

    return adapt


_NUMBER_NOISE = re.compile(r"[,，\s¥￥$€]")


def _number(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    def adapt(cell: Any) -> Any:
        if isinstance(cell, str):
            return _NUMBER_NOISE.sub("", cell)
        return clean_text(cell)

    return adapt


def _percent(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    number = _number(f, zone)

    def adapt(cell: Any) -> Any:
        value = number(cell)
        return value[:-1] if isinstance(value, str) and value.endswith("%") else value

    return adapt


_CHINESE_DATE = re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?")


def _date(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    def adapt(cell: Any) -> Any:
        if isinstance(cell, (date, datetime)):
            return cell
        text = clean_text(cell)
        match = _CHINESE_DATE.match(str(text))
        if match:
            y, m, d = (int(g) for g in match.groups())
            return f"{y:04d}-{m:02d}-{d:02d}"
        return text

    return adapt


def _datetime(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    def adapt(cell: Any) -> Any:
        # A wall-clock time in a file is the organization's time.
        if isinstance(cell, datetime):
            return cell if cell.tzinfo else cell.replace(tzinfo=zone)
        if isinstance(cell, date):
            return datetime.combine(cell, time(0), tzinfo=zone)
        text = str(clean_text(cell))
        try:
            parsed = datetime.fromisoformat(text.replace("/", "-").replace("Z", "+00:00"))
        except ValueError:
            return text
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)

    return adapt


def _time(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    def adapt(cell: Any) -> Any:
        if isinstance(cell, datetime):
            return cell.time()
        return clean_text(cell)

    return adapt


_TRUE = {"√", "✓", "✔", "yes", "是", "对", "true"}
_FALSE = {"×", "✗", "✘", "no", "否", "错", "false"}


def _boolean(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    def adapt(cell: Any) -> Any:
        if isinstance(cell, str):
            low = cell.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        return clean_text(cell)

    return adapt


def _text(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    return clean_text


def _text_like(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    """Text fields take texts only; a spreadsheet stores a phone number or a
    code typed as digits as a number, which is text the user meant."""
    def adapt(cell: Any) -> Any:
        if isinstance(cell, int | Decimal) and not isinstance(cell, bool):
            return str(cell)
        return clean_text(cell)

    return adapt


CELL_ADAPTERS: dict[str, AdapterFactory] = {
    "select": _select, "tree_select": _select, "multi_select": _multi_select,
    "integer": _number, "decimal": _number, "currency": _number, "percent": _percent,
    "date": _date, "datetime": _datetime, "time": _time, "boolean": _boolean,
    **{kind: _text_like for kind in ("text", "long_text", "rich_text", "email", "phone", "url")},
}


def adapter_for(f: fm.FieldBase, zone: ZoneInfo) -> Adapter:
    factory = CELL_ADAPTERS.get(f.type, _text)  # type: ignore[attr-defined]
    return factory(f, zone)
