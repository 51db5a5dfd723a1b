"""Field definitions: one pydantic model per field type, joined in a
discriminated union on ``type``. Behaviour (columns, coercion, validation)
lives in the form engine's field-type registry; this module only describes.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tangram.metamodel.common import Definition, Expression, Key, Label

PHONE_PRESETS: dict[str, str] = {
    # Mainland China mobile: 11 digits, 1 then 3-9; an optional +86 is accepted.
    "cn_mobile": r"^(?:\+?86)?1[3-9]\d{9}$",
    # Mainland landline with area code, optional extension: 010-12345678-123
    "cn_landline": r"^0\d{2,3}-?\d{7,8}(?:-\d{1,6})?$",
    # Any international number in E.164 form.
    "e164": r"^\+[1-9]\d{6,14}$",
    # Digits, spaces, dashes, parentheses and a leading +.
    "any": r"^\+?[0-9 ()\-]{5,20}$",
}


class FieldBase(Definition):
    """Options every field type has."""

    type: str = Field(description="The field type (a key of the field-type registry).")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$", description=(
        "Stable internal id, assigned when the draft is first saved. References "
        "(and renames) follow the id, so renaming a key never breaks them."))
    key: Key
    label: Label
    help: Label | None = None
    required: bool = False
    required_when: Expression | None = Field(None, description="Required only when this "
                                             "expression is true.")
    visible_when: Expression | None = Field(None, description="Shown (and accepted) only when "
                                            "true; a hidden field's value is cleared.")
    read_only: bool = Field(False, description="Only defaults, formulas and flows set it.")
    unique: bool = False
    default: Any = Field(None, description="Constant default value.")
    default_expr: Expression | None = Field(None, description="Default computed by an "
                                            "expression when the record is created.")
    indexed: bool = Field(False, description="Create an index (filter/sort often on it).")
    fill_from: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", description=(
            "Filled from the linked record (关联带出): '<relation field>.<field of the "
            "linked form>', e.g. 'opportunity.amount'. Taken when the record is created "
            "with the link set and this field left empty, and again when the link "
            "changes and the same write does not set this field."))

    @model_validator(mode="after")
    def _one_default(self) -> FieldBase:
        if self.default is not None and self.default_expr is not None:
            raise ValueError("give either default or default_expr, not both")
        return self


class _Bounded(FieldBase):
    min: Decimal | None = None
    max: Decimal | None = None

    @model_validator(mode="after")
    def _min_le_max(self) -> _Bounded:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class _Length(FieldBase):
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _lengths(self) -> _Length:
        if self.min_length and self.max_length and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self


def _check_regex(pattern: str | None) -> None:
    if pattern is None:
        return
    if len(pattern) > 300:
        raise ValueError("pattern is longer than 300 characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc


class TextField(_Length):
    type: Literal["text"] = "text"
    max_length: int | None = Field(255, ge=1, le=4000)
    pattern: str | None = None
    pattern_message: Label | None = None

    @model_validator(mode="after")
    def _pattern_ok(self) -> TextField:
        _check_regex(self.pattern)
        return self


class LongTextField(_Length):
    type: Literal["long_text"] = "long_text"
    max_length: int | None = Field(20000, ge=1, le=1_000_000)


class RichTextField(_Length):
    """HTML from the editor; the server keeps a safe subset of tags."""

    type: Literal["rich_text"] = "rich_text"
    max_length: int | None = Field(200000, ge=1, le=2_000_000)


class IntegerField(_Bounded):
    type: Literal["integer"] = "integer"


class DecimalField(_Bounded):
    type: Literal["decimal"] = "decimal"
    precision: int = Field(18, ge=1, le=18, description="Total significant digits.")
    scale: int = Field(2, ge=0, le=10, description="Digits after the decimal point.")

    @model_validator(mode="after")
    def _scale_le_precision(self) -> DecimalField:
        if self.scale > self.precision:
            raise ValueError("scale cannot exceed precision")
        return self


class CurrencyField(DecimalField):
    type: Literal["currency"] = "currency"  # type: ignore[assignment]
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")


class PercentField(DecimalField):
    """Stored as the number shown: 12.5 means 12.5 %."""

    type: Literal["percent"] = "percent"  # type: ignore[assignment]


class BooleanField(FieldBase):
    type: Literal["boolean"] = "boolean"


class DateField(FieldBase):
    type: Literal["date"] = "date"
    min: date | None = None
    max: date | None = None


class DateTimeField(FieldBase):
    type: Literal["datetime"] = "datetime"


class TimeField(FieldBase):
    type: Literal["time"] = "time"


class Option(Definition):
    value: str = Field(min_length=1, max_length=100)
    label: Label
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")


class TreeOption(Option):
    children: list[TreeOption] = Field(default_factory=list)


def _unique_values(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} value {value!r} appears twice")
        seen.add(value)


class SelectField(FieldBase):
    type: Literal["select"] = "select"
    options: list[Option] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> SelectField:
        _unique_values([o.value for o in self.options], "option")
        return self


class MultiSelectField(SelectField):
    type: Literal["multi_select"] = "multi_select"  # type: ignore[assignment]
    min_items: int | None = Field(None, ge=0)
    max_items: int | None = Field(None, ge=1)


def tree_values(options: list[TreeOption], *, leaves_only: bool = False) -> list[str]:
    out: list[str] = []
    for option in options:
        if option.children:
            if not leaves_only:
                out.append(option.value)
            out.extend(tree_values(option.children, leaves_only=leaves_only))
        else:
            out.append(option.value)
    return out


class TreeSelectField(FieldBase):
    """Hierarchical options (industry: 制造业 › 汽车零配件). Stores one node's value."""

    type: Literal["tree_select"] = "tree_select"
    options: list[TreeOption] = Field(min_length=1)
    leaf_only: bool = Field(False, description="Only leaves may be chosen.")

    @model_validator(mode="after")
    def _distinct(self) -> TreeSelectField:
        _unique_values(tree_values(self.options), "tree option")
        return self


class TagsField(FieldBase):
    type: Literal["tags"] = "tags"
    suggestions: list[str] = Field(default_factory=list)
    max_items: int = Field(20, ge=1, le=200)
    max_tag_length: int = Field(30, ge=1, le=100)


class EmailField(FieldBase):
    type: Literal["email"] = "email"


class PhoneField(FieldBase):
    type: Literal["phone"] = "phone"
    preset: Literal["cn_mobile", "cn_landline", "e164", "any"] | None = "cn_mobile"
    pattern: str | None = Field(None, description="Custom pattern; overrides the preset.")

    @model_validator(mode="after")
    def _pattern_ok(self) -> PhoneField:
        _check_regex(self.pattern)
        return self

    @property
    def effective_pattern(self) -> str:
        return self.pattern or PHONE_PRESETS[self.preset or "any"]


class UrlField(FieldBase):
    type: Literal["url"] = "url"


LINK_OUTSIDE_SCOPE_HELP = (
    "Allow links to records of the target form the user may not read (the record must "
    "exist; the picker then offers every record, by id and title only). Default: only "
    "records in the user's read scope of the target form.")


class RelationField(FieldBase):
    """Many-to-one link to a record of another form (or the same form)."""

    type: Literal["relation"] = "relation"
    target: Key = Field(description="Key of the target form in the same app.")
    on_delete: Literal["restrict", "set_null", "cascade"] = "restrict"
    link_outside_scope: bool = Field(False, description=LINK_OUTSIDE_SCOPE_HELP)


class MultiRelationField(FieldBase):
    """Many-to-many links, stored in a join table."""

    type: Literal["multi_relation"] = "multi_relation"
    target: Key
    max_items: int | None = Field(None, ge=1)
    link_outside_scope: bool = Field(False, description=LINK_OUTSIDE_SCOPE_HELP)


class UserField(FieldBase):
    type: Literal["user"] = "user"


class DepartmentField(FieldBase):
    type: Literal["department"] = "department"


class AttachmentField(FieldBase):
    type: Literal["attachment"] = "attachment"
    max_files: int = Field(10, ge=1, le=100)
    max_size_mb: int = Field(20, ge=1, le=1024)
    accept: list[str] = Field(default_factory=list, description=(
        "Allowed extensions or MIME types, e.g. [\".pdf\", \"image/*\"]; empty = any."))


class AutonumberField(FieldBase):
    """A number assigned on creation, e.g. ``HT-{YYYY}-{seq:4}`` → HT-2026-0001.

    Placeholders: {YYYY} {YY} {MM} {DD} (organization time zone) and {seq:N}
    (zero-padded to N digits). The sequence restarts when the date part of
    the pattern changes (yearly for {YYYY}, monthly with {MM}, …).
    """

    type: Literal["autonumber"] = "autonumber"
    pattern: str = Field("{seq:6}", max_length=100)
    read_only: bool = True

    @model_validator(mode="after")
    def _pattern_has_seq(self) -> AutonumberField:
        if not re.search(r"\{seq(?::\d{1,2})?\}", self.pattern):
            raise ValueError("autonumber pattern needs a {seq} or {seq:N} placeholder")
        unknown = set(re.findall(r"\{([^}]*)\}", self.pattern)) - {"YYYY", "YY", "MM", "DD"}
        unknown = {u for u in unknown if not re.fullmatch(r"seq(?::\d{1,2})?", u)}
        if unknown:
            raise ValueError(f"unknown autonumber placeholder(s): {sorted(unknown)}; "
                             "allowed: {YYYY} {YY} {MM} {DD} {seq:N}")
        return self


class FormulaField(FieldBase):
    """Computed by an expression on every write and stored (so lists, filters and
    reports read it like any column)."""

    type: Literal["formula"] = "formula"
    expression: Expression
    result_type: Literal["text", "integer", "decimal", "boolean", "date", "datetime"] = "decimal"
    scale: int = Field(2, ge=0, le=10)
    read_only: bool = True


class RollupSource(Definition):
    sub_table: Key | None = Field(None, description="Aggregate this form's own sub-table.")
    form: Key | None = Field(None, description="Aggregate records of this form …")
    via: Key | None = Field(None, description="… that point here through this relation field.")

    @model_validator(mode="after")
    def _one_source(self) -> RollupSource:
        if bool(self.sub_table) == bool(self.form):
            raise ValueError("a rollup source is either {sub_table} or {form, via}")
        if self.form and not self.via:
            raise ValueError("a rollup over another form needs 'via': its relation field")
        return self


class RollupField(FieldBase):
    """An aggregate over child rows or related records, kept current on every
    change of those rows (e.g. the sum of an account's signed contracts, or the
    date of its latest one: ``"aggregate": "max", "field": "sign_date",
    "result_type": "date"``)."""

    type: Literal["rollup"] = "rollup"
    source: RollupSource
    aggregate: Literal["count", "sum", "avg", "min", "max"] = "count"
    field: Key | None = Field(None, description="Field aggregated (not needed for count).")
    filter: dict[str, Any] | None = Field(None, description="Only rows matching this filter "
                                          "(records filter language).")
    # Stated, not looked up: the column type must follow from this form's own
    # definition (tables are compiled per form version); publishing checks it
    # against the aggregated field.
    result_type: Literal["number", "date", "datetime"] = Field(
        "number", description="What the rollup holds: a number, or — for min/max of a "
        "date or date-time field — that field's type.")
    scale: int = Field(2, ge=0, le=10)
    read_only: bool = True

    @model_validator(mode="after")
    def _field_needed(self) -> RollupField:
        if self.aggregate != "count" and not self.field:
            raise ValueError(f"aggregate {self.aggregate!r} needs a 'field'")
        if self.result_type != "number" and self.aggregate not in ("min", "max"):
            raise ValueError(f"result_type {self.result_type!r} needs aggregate min or max; "
                             f"{self.aggregate} gives a number")
        if self.filter and self.source.sub_table:
            raise ValueError("a rollup over a sub-table cannot have a filter; use a formula "
                             "such as count_if(record.lines, \"gift\", true) or sum_of(...)")
        return self


class RegionField(FieldBase):
    """Province / city / district of mainland China. Stored as an object
    ``{"province": "广东省", "city": "深圳市", "district": "南山区"}``."""

    type: Literal["region"] = "region"
    levels: int = Field(3, ge=1, le=3, description="1 province, 2 + city, 3 + district.")


class SubTableField(FieldBase):
    """Owned child rows (quote lines) with their own fields and rules."""

    type: Literal["sub_table"] = "sub_table"
    fields: list[SubField] = Field(min_length=1)
    rules: list[FormRule] = Field(default_factory=list)
    min_rows: int | None = Field(None, ge=0)
    max_rows: int | None = Field(1000, ge=1, le=10000)

    @model_validator(mode="after")
    def _distinct(self) -> SubTableField:
        _unique_values([f.key for f in self.fields], "sub-table field key")
        for f in self.fields:
            if f.type in ("multi_relation", "rollup"):
                raise ValueError(f"sub-table field {f.key!r}: a {f.type} field cannot be "
                                 "inside a sub-table")
            if f.unique:
                raise ValueError(f"sub-table field {f.key!r} cannot be unique (rows of all "
                                 "records share one table); use a rule over the rows instead")
        return self


class FormRule(Definition):
    """A cross-field rule: ``assert`` must hold, else ``message`` is shown on ``fields``."""

    key: Key | None = None
    assert_: Expression = Field(alias="assert")
    message: Label
    fields: list[Key] = Field(default_factory=list, description="Fields the error is shown on; "
                              "empty = the whole record.")
    when: Expression | None = Field(None, description="Checked only when true.")


_SCALAR_FIELDS = (
    TextField | LongTextField | RichTextField | IntegerField | DecimalField | CurrencyField
    | PercentField | BooleanField | DateField | DateTimeField | TimeField | SelectField
    | MultiSelectField | TreeSelectField | TagsField | EmailField | PhoneField | UrlField
    | RelationField | MultiRelationField | UserField | DepartmentField | AttachmentField
    | AutonumberField | FormulaField | RollupField | RegionField
)

SubField = Annotated[_SCALAR_FIELDS, Field(discriminator="type")]
AnyField = Annotated[_SCALAR_FIELDS | SubTableField, Field(discriminator="type")]

SubTableField.model_rebuild()

FIELD_MODELS: dict[str, type[FieldBase]] = {
    model.model_fields["type"].default: model  # type: ignore[misc]
    for model in (
        TextField, LongTextField, RichTextField, IntegerField, DecimalField, CurrencyField,
        PercentField, BooleanField, DateField, DateTimeField, TimeField, SelectField,
        MultiSelectField, TreeSelectField, TagsField, EmailField, PhoneField, UrlField,
        RelationField, MultiRelationField, UserField, DepartmentField, AttachmentField,
        AutonumberField, FormulaField, RollupField, RegionField, SubTableField,
    )
}
