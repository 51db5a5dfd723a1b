"""What a print template reads: records as the viewer may see them.

``record.<field>`` is the field's value as people read it (an option's label,
a user's name, ``¥1,200,000.00``), with ``.raw`` holding the value itself
(``Decimal("1200000.00")``, a ``date``, an option's value) and ``.label`` the
field's label. A relation field is the linked record (printed, it shows its
title; ``record.account.industry`` reads its fields) when the viewer may read
it, else just its title. A sub-table field is a list of rows, each like a
record. A field hidden from the viewer is absent: it prints as "".

One entry per field type says how its value is shown (``DISPLAY``) and how the
records API's JSON becomes the raw value (``RAW``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import escape

from tangram.engines.exports.values import Env, formatter_for, in_zone
from tangram.engines.forms.fieldtypes import sanitize_html
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

CURRENCY_SYMBOLS = {"CNY": "¥", "JPY": "¥", "USD": "$", "HKD": "HK$", "EUR": "€",
                    "GBP": "£", "TWD": "NT$", "SGD": "S$"}


class Shown(str):
    """A field's shown text; ``.raw`` is its value, ``.label`` its field's label."""

    raw: Any
    label: str
    _html: str | None

    def __new__(cls, text: str, raw: Any = None, label: str = "", *,
                html: str | None = None) -> Shown:
        self = super().__new__(cls, text)
        self.raw = raw
        self.label = label
        self._html = html
        return self

    def __html__(self) -> str:
        # Rich text is sanitized HTML and prints as such; everything else escaped.
        return self._html if self._html is not None else str(escape(str(self)))


class PrintRecord:
    """One record (or sub-table row) for a template: ``row.<field>`` and
    ``row["field"]``; printed as a whole it shows its title. It has no public
    attribute of its own, so every field key (``title``, ``items``) reads the
    field."""

    __slots__ = ("_title", "_values")

    def __init__(self, values: dict[str, Any], title: str = "") -> None:
        self._values = values
        self._title = title

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __str__(self) -> str:
        return self._title

    def __html__(self) -> str:
        return str(escape(self._title))

    def __repr__(self) -> str:
        return f"PrintRecord({self._title!r})"


@dataclass(frozen=True)
class ShowEnv:
    language: str
    zone: ZoneInfo

    @property
    def list_join(self) -> str:
        return "、" if self.language.startswith("zh") else ", "

    @property
    def export_env(self) -> Env:
        return Env(language=self.language, zone=self.zone)


# --------------------------------------------------------------------------- raw values

def _decimal(f: fm.FieldBase, v: Any, env: ShowEnv) -> Any:
    return Decimal(str(v))


def _date(f: fm.FieldBase, v: Any, env: ShowEnv) -> Any:
    return date.fromisoformat(v) if isinstance(v, str) else v


def _datetime(f: fm.FieldBase, v: Any, env: ShowEnv) -> Any:
    if isinstance(v, str):
        v = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return in_zone(v, env.zone) if isinstance(v, datetime) else v


def _formula(f: fm.FieldBase, v: Any, env: ShowEnv) -> Any:
    result = getattr(f, "result_type", "text")
    return RAW[result](f, v, env) if result in RAW else v


def _rollup(f: fm.FieldBase, v: Any, env: ShowEnv) -> Any:
    result = getattr(f, "result_type", "number")
    if result in ("date", "datetime"):
        return RAW[result](f, v, env)
    return Decimal(v) if isinstance(v, str) else v


RawFn = Callable[[fm.FieldBase, Any, ShowEnv], Any]
RAW: dict[str, RawFn] = {
    "decimal": _decimal, "currency": _decimal, "percent": _decimal, "date": _date,
    "datetime": _datetime, "formula": _formula, "rollup": _rollup,
}


def raw_value(f: fm.FieldBase, value: Any, env: ShowEnv) -> Any:
    """The records API's JSON value of ``f`` → the Python value a template computes with."""
    if value is None:
        return None
    fn = RAW.get(f.type)  # type: ignore[attr-defined]
    return fn(f, value, env) if fn else value


# --------------------------------------------------------------------------- shown text

Titles = Mapping[tuple[str, Any], str]
ShowFn = Callable[[fm.FieldBase, Any, ShowEnv, Titles], str]


def _number(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    return f"{v:,}" if isinstance(v, Decimal) else str(v)


def _currency(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    code = getattr(f, "currency", "CNY")
    symbol = CURRENCY_SYMBOLS.get(code, f"{code} ")
    return f"-{symbol}{-v:,}" if v < 0 else f"{symbol}{v:,}"


def _percent(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    return f"{v:,}%"


def _date_text(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    return v.isoformat() if isinstance(v, date) else str(v)


def _datetime_text(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    if not isinstance(v, datetime):
        return str(v)
    # Off the calendar in the organization's zone (see in_zone): say it is UTC.
    return v.strftime("%Y-%m-%d %H:%M") + (" UTC" if v.tzinfo is UTC else "")


def _like_export(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    shown = formatter_for(f, env.export_env)(v, {})
    return "" if shown is None else str(shown)


def _multi_select(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    label = formatter_for(f, env.export_env)  # one item at a time: our own separator
    return env.list_join.join(str(label([x], {})) for x in v)


def _title_of(kind: str) -> ShowFn:
    def show(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
        ref = reference(f) or kind
        items = v if isinstance(v, list) else [v]
        return env.list_join.join(titles.get((ref, str(x)), "") for x in items)

    return show


def _files(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    return env.list_join.join(str(d.get("name", "")) for d in v if isinstance(d, dict))


def _formula_text(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    result = getattr(f, "result_type", "text")
    return DISPLAY[result](f, v, env, titles) if result in DISPLAY else str(v)


def _rollup_text(f: fm.FieldBase, v: Any, env: ShowEnv, titles: Titles) -> str:
    result = getattr(f, "result_type", "number")
    return DISPLAY[result](f, v, env, titles) if result in ("date", "datetime") else \
        _number(f, v, env, titles)


DISPLAY: dict[str, ShowFn] = {
    "integer": _number, "decimal": _number, "currency": _currency, "percent": _percent,
    "date": _date_text, "datetime": _datetime_text, "boolean": _like_export,
    "select": _like_export, "tree_select": _like_export, "region": _like_export,
    "multi_select": _multi_select, "tags": _multi_select,
    "relation": _title_of("relation"), "multi_relation": _title_of("relation"),
    "user": _title_of("user"), "department": _title_of("department"),
    "attachment": _files, "formula": _formula_text, "rollup": _rollup_text,
}


def reference(f: fm.FieldBase) -> str | None:
    """Whose titles a field's values need: ``form:<key>``, ``user`` or ``department``."""
    kind = f.type  # type: ignore[attr-defined]
    if kind in ("relation", "multi_relation"):
        return f"form:{f.target}"  # type: ignore[attr-defined]
    return kind if kind in ("user", "department") else None


def shown(f: fm.FieldBase, json_value: Any, env: ShowEnv, titles: Titles) -> Shown:
    """A field's JSON value (as the records API returns it) → its :class:`Shown`."""
    label = localize(f.label, env.language)
    raw = raw_value(f, json_value, env)
    if raw is None or raw == [] or raw == "":
        return Shown("", raw, label)
    kind = f.type  # type: ignore[attr-defined]
    if kind == "rich_text":
        # Stored rich text was sanitized on write; sanitize again, the page is HTML.
        return Shown(str(raw), raw, label, html=sanitize_html(str(raw)))
    show = DISPLAY.get(kind)
    return Shown(show(f, raw, env, titles) if show else str(raw), raw, label)
