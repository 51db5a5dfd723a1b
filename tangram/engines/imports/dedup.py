"""Duplicate rules of an import: which fields identify a record, and what a
row that matches an existing record does. One entry per mode.

A row matches when every match field has a value equal (after conversion:
``138 1234 5678`` is ``13812345678``) to a live record's. A row that repeats
an earlier row of the same file matches the record that row created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.registry import FormRuntime
from tangram.errors import ErrorItem, ValidationFailed


class DedupMode(Protocol):
    key: str
    label: dict[str, str]
    needs_update: bool

    def changes(self, data: Mapping[str, Any], existing: Mapping[str, Any]
                ) -> dict[str, Any] | None:
        """What to change on the matched record (None or empty: skip the row)."""


class Skip:
    key = "skip"
    label = {"zh": "跳过重复行", "en": "Skip the row"}
    needs_update = False

    def changes(self, data: Mapping[str, Any], existing: Mapping[str, Any]
                ) -> dict[str, Any] | None:
        return None


class Update:
    """Overwrite with every value the row has (empty cells change nothing)."""

    key = "update"
    label = {"zh": "用文件中的值更新", "en": "Update with the file's values"}
    needs_update = True

    def changes(self, data: Mapping[str, Any], existing: Mapping[str, Any]
                ) -> dict[str, Any] | None:
        return dict(data)


class MergeEmpty:
    """Fill only the fields the record has empty; keep every value it has."""

    key = "merge"
    label = {"zh": "只补充空字段", "en": "Fill empty fields only"}
    needs_update = True

    def changes(self, data: Mapping[str, Any], existing: Mapping[str, Any]
                ) -> dict[str, Any] | None:
        return {k: v for k, v in data.items() if existing.get(k) in (None, "", [], {})}


DEDUP_MODES: dict[str, DedupMode] = {m.key: m for m in (Skip(), Update(), MergeEmpty())}
_MATCHABLE_STORAGE = "column"
_UNMATCHABLE_KINDS = frozenset({"multi_select", "tags", "region", "attachment", "long_text",
                                "rich_text"})


@dataclass(frozen=True)
class DedupRule:
    fields: tuple[str, ...]
    mode: DedupMode

    def as_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "mode": self.mode.key}


def parse_dedup(spec: Mapping[str, Any] | None, rt: FormRuntime,
                mapped: set[str]) -> DedupRule | None:
    """``{"fields": ["mobile"], "mode": "skip"}`` (or None: every row is new).

    ``fields`` defaults to the form's first unique field."""
    if not spec:
        return None
    errors: list[ErrorItem] = []
    mode = DEDUP_MODES.get(str(spec.get("mode", "skip")))
    if mode is None:
        errors.append(ErrorItem(code="dedup_invalid", field="dedup.mode", message=(
            f"unknown duplicate mode {spec.get('mode')!r}; modes: {', '.join(DEDUP_MODES)}")))
    fields = spec.get("fields") or [f.key for f in rt.form.fields if f.unique][:1]
    if not fields or not isinstance(fields, list):
        errors.append(ErrorItem(code="dedup_invalid", field="dedup.fields", message=(
            "name the fields that identify a record (the form has no unique field)")))
        fields = []
    for key in fields:
        compiled = rt.fields.get(key) if isinstance(key, str) else None
        if compiled is None:
            errors.append(ErrorItem(code="dedup_invalid", field="dedup.fields",
                                    message=f"form {rt.key!r} has no field {key!r}"))
        elif compiled.kind.storage != _MATCHABLE_STORAGE or compiled.kind.name in \
                _UNMATCHABLE_KINDS or FIELD_KINDS[compiled.kind.name].computed:
            errors.append(ErrorItem(code="dedup_invalid", field="dedup.fields", message=(
                f"records cannot be matched on {key!r}, a {compiled.kind.name} field")))
        elif key not in mapped:
            errors.append(ErrorItem(code="dedup_invalid", field="dedup.fields", message=(
                f"no column of the file fills the match field {key!r}")))
    if errors:
        raise ValidationFailed(errors, f"{len(errors)} problem(s) in the duplicate rule")
    assert mode is not None
    return DedupRule(fields=tuple(fields), mode=mode)
