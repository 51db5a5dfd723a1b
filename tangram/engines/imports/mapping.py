"""Which column of a file fills which field.

The suggestion matches each column title against every field's key and its
labels in every language, ignoring case, spaces, ``_``/``-`` and the ``*``
that templates put on required columns (``"Mobile Phone"`` finds a field
labelled ``{"en": "mobile phone"}``, ``"手机*"`` one labelled ``{"zh": "手机"}``).
The user may then override any column by its title (``{"电话": "mobile",
"备注": null}``). Only fields the actor may write are importable: computed,
read-only, hidden, sub-table and attachment fields are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tangram.engines.context import EngineContext
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.registry import FormRuntime
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize

# Kinds whose values a spreadsheet cell cannot carry.
NOT_IMPORTABLE_KINDS = frozenset({"sub_table", "attachment"})

_NOISE = re.compile(r"[\s_\-*＊:：]+")


def normalize_title(text: str) -> str:
    return _NOISE.sub("", text).casefold()


@dataclass(frozen=True)
class Importable:
    """The fields of a form an actor may import into, and why others are not."""

    fields: dict[str, fm.FieldBase]
    refused: dict[str, str]  # field key -> reason


def importable_fields(ctx: EngineContext, rt: FormRuntime) -> Importable:
    access = ctx.policy.field_access(ctx.actor, rt.app, rt.key)
    fields: dict[str, fm.FieldBase] = {}
    refused: dict[str, str] = {}
    for f in rt.form.fields:
        kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
        if kind.computed:
            refused[f.key] = "it is computed"
        elif kind.name in NOT_IMPORTABLE_KINDS:
            refused[f.key] = f"{kind.name} fields cannot be imported from a spreadsheet"
        elif f.read_only or access.get(f.key) == "read_only":
            refused[f.key] = "it is read-only"
        elif access.get(f.key) == "hidden":
            refused[f.key] = "it is hidden from you"
        else:
            fields[f.key] = f
    return Importable(fields=fields, refused=refused)


def suggest_mapping(header: list[str], importable: Importable) -> list[str | None]:
    """A field key (or None) per column; each field is filled by one column at most."""
    by_title: dict[str, str] = {}
    for f in importable.fields.values():
        # Labels first so that a label equal to another field's key wins.
        for title in [*f.label.values(), f.key]:
            by_title.setdefault(normalize_title(title), f.key)
    taken: set[str] = set()
    out: list[str | None] = []
    for title in header:
        key = by_title.get(normalize_title(title)) if title else None
        if key is not None and key in taken:
            key = None
        if key is not None:
            taken.add(key)
        out.append(key)
    return out


def apply_overrides(header: list[str], mapping: list[str | None],
                    overrides: Mapping[str, str | None], importable: Importable,
                    rt: FormRuntime) -> list[str | None]:
    """``mapping`` with columns (named by title, or ``#3`` for the third)
    redirected; ValidationFailed lists every override that cannot apply."""
    out = list(mapping)
    errors: list[ErrorItem] = []
    normalized = [normalize_title(t) for t in header]
    for column, key in overrides.items():
        positions = _columns(column, header, normalized)
        if not positions:
            errors.append(ErrorItem(code="unknown_column", field=f"mapping.{column}", message=(
                f"the file has no column {column!r}; columns: {', '.join(header)}")))
            continue
        if key is not None and key not in importable.fields:
            why = importable.refused.get(key) or _unknown_field(key, rt)
            errors.append(ErrorItem(code="not_importable", field=f"mapping.{column}",
                                    message=f"column {column!r} cannot fill field {key!r}: "
                                    f"{why}"))
            continue
        for i in positions:
            out[i] = key
    if errors:
        raise ValidationFailed(errors, f"{len(errors)} problem(s) in the column mapping")
    return out


def check_mapping(header: list[str], mapping: list[str | None], importable: Importable,
                  rt: FormRuntime, language: str) -> list[str]:
    """Refuse a field filled by two columns; return warnings (required fields
    no column fills and that have no default)."""
    if len(mapping) != len(header):
        item = ErrorItem(code="mapping_invalid", field="mapping", message=(
            f"the mapping names {len(mapping)} columns; the file has {len(header)}"))
        raise ValidationFailed([item], item.message)
    errors: list[ErrorItem] = []
    seen: dict[str, str] = {}
    for title, key in zip(header, mapping, strict=True):
        if key is None:
            continue
        if key not in importable.fields:
            why = importable.refused.get(key) or _unknown_field(key, rt)
            errors.append(ErrorItem(code="not_importable", field=f"mapping.{title}",
                                    message=f"field {key!r} cannot be imported: {why}"))
        elif key in seen:
            errors.append(ErrorItem(code="mapped_twice", field=f"mapping.{title}", message=(
                f"columns {seen[key]!r} and {title!r} both fill field {key!r}; "
                "map one of them to nothing")))
        seen.setdefault(key, title)
    if errors:
        raise ValidationFailed(errors, f"{len(errors)} problem(s) in the column mapping")
    warnings = _shadowed_columns(header, mapping)
    for f in rt.form.fields:
        if f.required and f.key not in seen and f.default is None and not f.default_expr \
                and f.key in importable.fields:
            warnings.append(f"no column fills the required field {localize(f.label, language)}"
                            f" ({f.key}): every row will fail")
    return warnings


def _shadowed_columns(header: list[str], mapping: list[str | None]) -> list[str]:
    """Warnings for columns left out because another column with the same
    title (name,competitor,competitor) already fills the field: their data
    would otherwise be dropped without a word."""
    filled: dict[str, tuple[int, str]] = {}
    for i, (title, key) in enumerate(zip(header, mapping, strict=True)):
        if key is not None and title:
            filled.setdefault(normalize_title(title), (i, key))
    out = []
    for i, (title, key) in enumerate(zip(header, mapping, strict=True)):
        other = filled.get(normalize_title(title)) if title and key is None else None
        if other is not None:
            out.append(f"column {i + 1} ({title!r}) is not imported: column {other[0] + 1} has "
                       f"the same title and fills field {other[1]!r}; rename one of them, or "
                       f"map \"#{i + 1}\" to the field instead")
    return out


def _columns(column: str, header: list[str], normalized: list[str]) -> list[int]:
    if column.startswith("#") and column[1:].isdigit():
        i = int(column[1:]) - 1
        return [i] if 0 <= i < len(header) else []
    exact = [i for i, t in enumerate(header) if t == column]
    return exact or [i for i, t in enumerate(normalized) if t == normalize_title(column)]


def _unknown_field(key: str, rt: FormRuntime) -> str:
    return f"form {rt.key!r} has no field {key!r}"
