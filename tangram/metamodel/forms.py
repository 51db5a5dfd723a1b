"""Form and App definitions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tangram.metamodel.common import Definition, Expression, Key, Label
from tangram.metamodel.fields import (
    AnyField,
    FieldBase,
    FormRule,
    SubTableField,
)

# Columns every record table has; a field may not take one of these keys.
SYSTEM_FIELDS: tuple[str, ...] = (
    "id", "created_at", "created_by", "updated_at", "updated_by", "owner", "version",
    "deleted_at", "parent_id", "position",
)

TEXTUAL_TYPES = {"text", "long_text", "rich_text", "email", "phone", "url", "autonumber",
                 "select", "tree_select"}


def _invalid_at(loc: tuple[str | int, ...], value: Any, message: str) -> None:
    """Refuse the form with the error at ``loc`` (e.g. ``$.title_field``), not
    at the form as a whole: pydantic puts a model check's ValueError at the
    model, while a ValidationError raised here keeps its location."""
    raise ValidationError.from_exception_data("Form", [InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=loc, input=value)])


class LayoutSection(Definition):
    title: Label | None = None
    columns: int = Field(2, ge=1, le=4)
    fields: list[Key] = Field(default_factory=list)
    collapsed: bool = False


class Layout(Definition):
    sections: list[LayoutSection] = Field(default_factory=list)


class ListView(Definition):
    """A named list of the form's records: which columns, which records, in
    which order — "my leads", "the public pool". A client shows views as tabs
    and lists with ``?view=key``."""

    key: Key
    label: Label
    columns: list[Key] = Field(default_factory=list, description=(
        "Fields shown, in order (system fields owner, created_at, updated_at may be "
        "named); empty: the client's choice."))
    filter: dict[str, Any] | None = Field(None, description=(
        "A records filter (docs/filters.md); values may be user placeholders such as "
        "{\"$user\": \"id\"} (the viewer)."))
    sort: list[str] = Field(default_factory=list, description="e.g. [\"-created_at\"]")


class RecordLock(Definition):
    """When a record may no longer be changed by hand — a contract in
    approval or signed: users' edits and deletes are refused (409
    ``record_locked``); flows (an approval node's editable fields, update
    actions) and platform administrators still change it."""

    when: Expression = Field(description=(
        "Evaluated on the record as stored (``record.…``, ``user.…``); true = locked."))
    message: Label | None = Field(None, description="Why, shown with the refusal.")
    editable: list[Key] = Field(default_factory=list, description=(
        "Fields users may still change while the record is locked (e.g. attachments)."))


class Form(Definition):
    """A form: its fields define a record table, its rules the validation."""

    key: Key
    label: Label
    description: Label | None = None
    icon: str | None = Field(None, max_length=60)
    fields: list[AnyField] = Field(min_length=1)
    rules: list[FormRule] = Field(default_factory=list)
    title_field: Key | None = Field(None, description="Field shown as the record's title "
                                    "(relation pickers, lists). Default: the first text field.")
    search_fields: list[Key] = Field(default_factory=list, description="Fields searched by "
                                     "the list's full-text search box.")
    layout: Layout | None = None
    default_sort: list[str] = Field(default_factory=list, description="e.g. [\"-created_at\"]")
    views: list[ListView] = Field(default_factory=list, description=(
        "Named lists of the records (tabs of the list page)."))
    lock: RecordLock | None = Field(None, description=(
        "When records may no longer be edited or deleted by hand."))

    @model_validator(mode="after")
    def _consistent(self) -> Form:
        keys = [f.key for f in self.fields]
        seen: set[str] = set()
        for i, key in enumerate(keys):
            if key in SYSTEM_FIELDS:
                _invalid_at(("fields", i, "key"), key, f"field key {key!r} is reserved for a "
                            f"system column ({', '.join(SYSTEM_FIELDS)})")
            if key in seen:
                _invalid_at(("fields", i, "key"), key, f"field key {key!r} appears twice")
            seen.add(key)
        ids = [f.id for f in self.all_fields() if f.id]
        if len(ids) != len(set(ids)):
            raise ValueError("two fields share one id")
        if self.title_field and self.title_field not in seen:
            _invalid_at(("title_field",), self.title_field, f"title_field "
                        f"{self.title_field!r} is not a field of this form")
        for i, key in enumerate(self.search_fields):
            field = self.field(key)
            if field is None:
                _invalid_at(("search_fields", i), key,
                            f"search field {key!r} is not a field of this form")
            elif field.type not in TEXTUAL_TYPES:
                _invalid_at(("search_fields", i), key, f"search field {key!r} is a "
                            f"{field.type} field; only text-like fields can be searched "
                            f"({', '.join(sorted(TEXTUAL_TYPES))})")
        if self.layout:
            for i, section in enumerate(self.layout.sections):
                for j, key in enumerate(section.fields):
                    if key not in seen:
                        _invalid_at(("layout", "sections", i, "fields", j), key,
                                    f"layout names field {key!r}, which the form lacks")
        for i, sort in enumerate(self.default_sort):
            name = sort.lstrip("-")
            if name not in seen and name not in SYSTEM_FIELDS:
                _invalid_at(("default_sort", i), sort,
                            f"default_sort names unknown field {name!r}")
        for i, key in enumerate(self.lock.editable if self.lock else []):
            if key not in seen:
                _invalid_at(("lock", "editable", i), key,
                            f"lock.editable names unknown field {key!r}")
        view_keys: set[str] = set()
        for i, view in enumerate(self.views):
            if view.key in view_keys:
                _invalid_at(("views", i, "key"), view.key,
                            f"view key {view.key!r} appears twice")
            view_keys.add(view.key)
            named = [("columns", j, key) for j, key in enumerate(view.columns)] + [
                ("sort", j, s.lstrip("-")) for j, s in enumerate(view.sort)]
            for member, j, key in named:
                if key not in seen and key not in SYSTEM_FIELDS:
                    _invalid_at(("views", i, member, j), key,
                                f"view {view.key!r} names unknown field {key!r}")
        return self

    def field(self, key: str) -> FieldBase | None:
        for f in self.fields:
            if f.key == key:
                return f
        return None

    def all_fields(self) -> list[FieldBase]:
        """Fields including those of sub-tables."""
        out: list[FieldBase] = []
        for f in self.fields:
            out.append(f)
            if isinstance(f, SubTableField):
                out.extend(f.fields)
        return out

    @property
    def effective_title_field(self) -> str | None:
        if self.title_field:
            return self.title_field
        for f in self.fields:
            if f.type in ("text", "autonumber"):
                return f.key
        return None


class App(Definition):
    """An application: a named set of forms (and later flows, reports, roles, menus)."""

    key: Key
    name: Label
    description: Label | None = None
    version: str = Field("0.1.0", pattern=r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?"
                                          r"(?:\+[0-9A-Za-z.-]+)?$")
    icon: str | None = Field(None, max_length=60)
    status: Literal["active", "archived"] = "active"
