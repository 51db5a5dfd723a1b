"""The field-type registry: one entry per field type, declaring how it is
stored (column type, child table, join table), how JSON input converts to a
Python value, which constraints it checks and how it is written back to JSON.

Validation, table compilation, the filter language, the API's metadata
endpoint and the docs all read this registry: adding a field type is adding
one entry here (and its model in ``tangram.metamodel.fields``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar

import regex
import sqlalchemy as sa

from tangram.db.types import GUID, ExactDecimal, JSONValue, UTCDateTime
from tangram.engines.forms import regions
from tangram.metamodel import fields as fm
from tangram.metamodel.common import PaletteGroup, model_schema

Problem = tuple[str, dict[str, Any]]


class FieldProblem(Exception):
    """A value broke one rule of its field (code + message params)."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass
class CompiledField:
    """A field compiled once per form version: closures, no per-record lookups."""

    definition: fm.FieldBase
    kind: FieldKind
    convert: Callable[[Any], Any]
    checks: list[Callable[[Any], Problem | None]] = field(default_factory=list)
    # "user" | "department" | "file" | ("relation", target_form) — ids to look up
    reference: str | tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def type(self) -> str:
        return self.kind.name

    def to_json(self, value: Any) -> Any:
        return self.kind.to_json(value)


# The groups of field types in the designer's palette (a kind's ``category``).
FieldCategory = PaletteGroup


# In the palette's order: the order the field types of FIELD_KINDS first use them.
FIELD_CATEGORIES: dict[str, FieldCategory] = {c.key: c for c in (
    FieldCategory("basic", {"zh": "基础", "en": "Basic"},
                  {"zh": "文字与是否。", "en": "Text and yes/no values."}),
    FieldCategory("number", {"zh": "数字", "en": "Numbers"},
                  {"zh": "整数、小数、金额与百分比。",
                   "en": "Whole numbers, decimals, amounts of money and percentages."}),
    FieldCategory("date", {"zh": "日期时间", "en": "Dates and times"},
                  {"zh": "日期、日期时间与时刻。", "en": "Dates, date-times and times of day."}),
    FieldCategory("choice", {"zh": "选项", "en": "Choices"},
                  {"zh": "从选项中单选、多选或按层级选择，以及标签。",
                   "en": "One or several of a list of options, a choice in a tree, tags."}),
    FieldCategory("contact", {"zh": "联系与地址", "en": "Contact and address"},
                  {"zh": "邮箱、电话、网址与省市区。",
                   "en": "Email addresses, phone numbers, web addresses and regions."}),
    FieldCategory("relation", {"zh": "关联与子表", "en": "Links and sub-tables"},
                  {"zh": "关联其他表单的记录，或在记录内填写多行明细。",
                   "en": "Links to records of other forms, or rows entered within the record."}),
    FieldCategory("org", {"zh": "人员与部门", "en": "People and departments"},
                  {"zh": "选择组织中的用户或部门。",
                   "en": "A user or a department of the organization."}),
    FieldCategory("file", {"zh": "附件", "en": "Files"},
                  {"zh": "上传的文件与图片。", "en": "Uploaded files and images."}),
    FieldCategory("computed", {"zh": "自动计算", "en": "Computed"},
                  {"zh": "由系统填写：自动编号、公式与汇总。",
                   "en": "Filled in by the platform: autonumbers, formulas and rollups."}),
)}


class FieldKind:
    """Base of every field type entry."""

    name: ClassVar[str]
    label: ClassVar[dict[str, str]]
    description: ClassVar[dict[str, str]]  # {"zh": …, "en": …}: what a value is, one line
    category: ClassVar[str] = "basic"
    storage: ClassVar[str] = "column"  # column | child_table | join_table
    computed: ClassVar[bool] = False  # set by the engine, never by a client
    expected: ClassVar[str] = "a text"
    filter_ops: ClassVar[tuple[str, ...]] = ("eq", "ne", "in", "not_in", "is_empty")
    sortable: ClassVar[bool] = True
    supports_unique: ClassVar[bool] = True

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any] | None:
        return sa.Text()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if not isinstance(value, str):
            raise FieldProblem("type", expected=self.expected)
        return value

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        return []

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        """What no stored value can be, whatever the field's own rules (min,
        max, length): a select's non-options, a number too large for the
        column. Returns what is allowed for a converted value outside the
        domain, else None; None when every converted value is in it."""
        return None

    def filter_value(self, f: fm.FieldBase, value: Any) -> Any:
        """``convert()`` for a filter value: a value no record can hold (an
        unknown option, a decimal that no column can store) is refused, so a
        typo is an error rather than an empty list.

        >>> FIELD_KINDS["integer"].filter_value(fm.IntegerField(key="n", label={"en": "n"}), "7")
        7
        """
        converted = self.convert(f, value)
        domain = self.domain(f)
        allowed = None if domain is None else domain(converted)
        if allowed is not None:
            raise FieldProblem("type", expected=allowed)
        return converted

    def compile(self, f: fm.FieldBase) -> CompiledField:
        return CompiledField(definition=f, kind=self, checks=self.checks(f),
                             convert=functools.partial(self.convert, f))

    def to_json(self, value: Any) -> Any:
        return value

    def normalizer(self, f: fm.FieldBase) -> Callable[[Any], Any] | None:
        """A last step for a value that passed its checks (decimals take their
        field's scale), or None when values are stored as converted."""
        return None

    def to_db(self, value: Any) -> Any:
        """Python value -> what the column stores (JSON columns need JSON types)."""
        return value

    def from_db(self, value: Any) -> Any:
        return value

    def is_empty(self, value: Any) -> bool:
        return value is None or value == "" or value == [] or value == {}

    def describe(self) -> dict[str, Any]:
        model = fm.FIELD_MODELS[self.name]
        return {"type": self.name, "label": self.label, "description": self.description,
                "category": self.category, "storage": self.storage, "computed": self.computed,
                "filter_operators": list(self.filter_ops), "sortable": self.sortable,
                "supports_unique": self.supports_unique,
                "options_schema": model_schema(model)}


def _length_checks(f: Any) -> list[Callable[[Any], Problem | None]]:
    out: list[Callable[[Any], Problem | None]] = []
    if getattr(f, "min_length", None):
        lo = f.min_length
        out.append(lambda v: ("min_length", {"limit": lo}) if len(v) < lo else None)
    if getattr(f, "max_length", None):
        hi = f.max_length
        out.append(lambda v: ("max_length", {"limit": hi}) if len(v) > hi else None)
    return out


# A field's pattern is the form designer's, the text is any user's: the match
# is bounded so that no pattern (say "(a+)+$") can hold a worker. A text the
# pattern cannot decide in time does not match.
PATTERN_TIMEOUT = 0.1  # seconds


def _pattern_check(pattern: str, code: str, **params: Any) -> Callable[[Any], Problem | None]:
    if pattern in fm.PHONE_PRESETS.values():
        # The platform's own patterns cannot backtrack; the timeout costs ~1 µs
        # a value, which a million-row import notices.
        plain = re.compile(pattern)
        return lambda v: None if plain.fullmatch(v) else (code, params)
    compiled = regex.compile(pattern, regex.V0)

    def check(v: str) -> Problem | None:
        try:
            return None if compiled.fullmatch(v, timeout=PATTERN_TIMEOUT) else (code, params)
        except TimeoutError:
            return (code, params)

    return check


# Single-line texts: no line breaks or other control characters (a tab is
# allowed); no text at all may hold NUL, which PostgreSQL cannot store.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SINGLE_LINE = "a single-line text (no line breaks or control characters)"
NO_NUL = "a text without NUL characters"
WHOLE_CHARACTERS = "a text of whole characters (no lone UTF-16 surrogates)"


def unstorable(text: str) -> str | None:
    """What no database stores in a text, else None: NUL (PostgreSQL refuses
    it) and a lone UTF-16 surrogate (JSON's "\\ud800" or a broken file: half
    of a character, which UTF-8 cannot encode)."""
    if "\x00" in text:
        return NO_NUL
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return WHOLE_CHARACTERS
    return None


def _text_value(value: Any, expected: str) -> str:
    """Text fields take JSON strings only: a number sent for a code is refused
    rather than guessed at (imports turn number cells into text themselves)."""
    if not isinstance(value, str):
        raise FieldProblem("type", expected=expected)
    problem = unstorable(value)
    if problem is not None:
        raise FieldProblem("type", expected=problem)
    return value


class TextKind(FieldKind):
    name = "text"
    label = {"zh": "单行文本", "en": "Text"}
    description = {"zh": "一行文字，如名称、编号；首尾空格会被去掉。",
                   "en": "One line of text, such as a name or a code; surrounding spaces "
                         "are removed."}
    filter_ops = ("eq", "ne", "in", "not_in", "contains", "not_contains", "starts_with",
                  "ends_with", "is_empty")

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        text = _text_value(value, self.expected).strip()
        if _CONTROL.search(text):
            raise FieldProblem("type", expected=SINGLE_LINE)
        return text

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        out = _length_checks(f)
        pattern = getattr(f, "pattern", None)
        if pattern:
            out.append(_pattern_check(pattern, "pattern"))
        return out


class LongTextKind(TextKind):
    name = "long_text"
    label = {"zh": "多行文本", "en": "Long text"}
    description = {"zh": "可以换行的多段文字，按输入原样保存。",
                   "en": "Text with line breaks, kept exactly as typed."}
    sortable = False
    supports_unique = False

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        return _text_value(value, self.expected)


_ALLOWED_TAGS = {"p", "br", "b", "strong", "i", "em", "u", "s", "ul", "ol", "li", "h1", "h2",
                 "h3", "h4", "blockquote", "code", "pre", "a", "span", "table", "thead",
                 "tbody", "tr", "td", "th", "img", "hr", "sub", "sup"}
_TAG_RE = re.compile(r"<\s*(/?)\s*([a-zA-Z0-9]+)([^>]*)>")
_SAFE_ATTR_RE = re.compile(r"""\s(href|src|alt|title|colspan|rowspan)\s*=\s*("[^"]*"|'[^']*')""")


def sanitize_html(html: str) -> str:
    """Keep a safe subset of tags; drop every attribute but a few, and any
    javascript:/data: URL. Script/style blocks go with their content."""
    html = re.sub(r"(?is)<(script|style|iframe|object|embed)\b.*?</\1\s*>", "", html)

    def keep(match: re.Match[str]) -> str:
        closing, tag, attrs = match.group(1), match.group(2).lower(), match.group(3)
        if tag not in _ALLOWED_TAGS:
            return ""
        if closing:
            return f"</{tag}>"
        safe = []
        for name, val in _SAFE_ATTR_RE.findall(attrs):
            if re.match(r"""^["']\s*(javascript|data|vbscript):""", val, re.I):
                continue
            safe.append(f" {name}={val}")
        return f"<{tag}{''.join(safe)}>"

    return _TAG_RE.sub(keep, html)


class RichTextKind(LongTextKind):
    name = "rich_text"
    label = {"zh": "富文本", "en": "Rich text"}
    description = {"zh": "带格式的文字（HTML）；保存时去掉脚本、样式和不安全的标签或链接。",
                   "en": "Formatted text (HTML); scripts, styles and unsafe tags or links "
                         "are removed on save."}

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        return sanitize_html(super().convert(f, value))


def _bound_checks(f: Any) -> list[Callable[[Any], Problem | None]]:
    out: list[Callable[[Any], Problem | None]] = []
    if getattr(f, "min", None) is not None:
        lo = f.min
        out.append(lambda v: ("min", {"limit": lo}) if v < lo else None)
    if getattr(f, "max", None) is not None:
        hi = f.max
        out.append(lambda v: ("max", {"limit": hi}) if v > hi else None)
    return out


# Numbers written with ASCII digits only: Python would also read "١" (Arabic-
# Indic one) or "１" (full width) as 1, which no user means in a number field.
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT64_MAX = 9_223_372_036_854_775_807


def _decimal_of(value: str | float, expected: str) -> Decimal:
    text = repr(value) if isinstance(value, float) else value.strip()
    if not _NUMBER_TEXT.fullmatch(text):  # also refuses nan, inf, "١"
        raise FieldProblem("type", expected=expected)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise FieldProblem("type", expected=expected) from None


class IntegerKind(FieldKind):
    name = "integer"
    label = {"zh": "整数", "en": "Integer"}
    description = {"zh": "整数，最多 19 位。",
                   "en": "A whole number, up to 19 digits."}
    category = "number"
    expected = "an integer"
    filter_ops = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_empty")

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return sa.BigInteger()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, bool):
            raise FieldProblem("type", expected=self.expected)
        if isinstance(value, int):
            result = value
        elif isinstance(value, (str, Decimal, float)):
            dec = value if isinstance(value, Decimal) else _decimal_of(value, self.expected)
            if not dec.is_finite() or dec != dec.to_integral_value():
                raise FieldProblem("type", expected=self.expected)
            if abs(dec) > _INT64_MAX:  # before int(): "1e999999" must not become an int
                raise FieldProblem("max", limit=str(_INT64_MAX))
            result = int(dec)
        else:
            raise FieldProblem("type", expected=self.expected)
        if abs(result) > _INT64_MAX:
            raise FieldProblem("max", limit=str(_INT64_MAX))
        return result

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        return _bound_checks(f)


def _decimal_domain(precision: int, scale: int) -> Callable[[Any], str | None]:
    """Numbers a NUMERIC(precision, scale) column can hold: fewer than
    precision - scale digits before the point."""
    digits = precision - scale

    def fits(v: Any) -> str | None:
        if isinstance(v, (int, Decimal)) and v and Decimal(v).adjusted() >= digits:
            return f"a number with at most {digits} digits before the decimal point"
        return None

    return fits


class DecimalKind(FieldKind):
    name = "decimal"
    label = {"zh": "小数", "en": "Decimal"}
    description = {"zh": "精确的小数，可设定总位数和小数位数；不会有二进制运算的误差。",
                   "en": "An exact decimal number with a set number of digits and decimal "
                         "places; no binary rounding errors."}
    category = "number"
    expected = "a number"
    filter_ops = IntegerKind.filter_ops

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        assert isinstance(f, fm.DecimalField)
        return ExactDecimal(f.precision, f.scale)

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, bool):
            raise FieldProblem("type", expected=self.expected)
        if isinstance(value, Decimal):
            dec = value
        elif isinstance(value, int):
            dec = Decimal(value)
        elif isinstance(value, (str, float)):
            # Floats arrive from JSON numbers; repr() keeps 0.1 as 0.1.
            dec = _decimal_of(value, self.expected)
        else:
            raise FieldProblem("type", expected=self.expected)
        if not dec.is_finite():
            raise FieldProblem("type", expected=self.expected)
        return dec

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.DecimalField)
        scale, precision = f.scale, f.precision
        int_digits = precision - scale

        quantum = Decimal(1).scaleb(-scale)

        def digits(v: Decimal) -> Problem | None:
            try:
                if v.quantize(quantum) != v:
                    return ("scale", {"limit": scale})
            except InvalidOperation:  # more digits than the decimal context holds
                return ("precision", {"limit": precision})
            # adjusted(): the exponent of the first digit (12345.6 -> 4).
            if v and v.adjusted() >= int_digits:
                return ("precision", {"limit": precision})
            return None

        return [digits, *_bound_checks(f)]

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.DecimalField)
        return _decimal_domain(f.precision, f.scale)

    def normalizer(self, f: fm.FieldBase) -> Callable[[Any], Any] | None:
        assert isinstance(f, fm.DecimalField)
        quantum = Decimal(1).scaleb(-f.scale)
        # Exact here: the scale check has passed, so no digit is lost.
        return lambda v: v.quantize(quantum, rounding=ROUND_HALF_UP)

    def to_json(self, value: Any) -> Any:
        return None if value is None else str(value)


class CurrencyKind(DecimalKind):
    name = "currency"
    label = {"zh": "金额", "en": "Currency"}
    description = {"zh": "精确的金额，带币种（默认 CNY 人民币）。",
                   "en": "An exact amount of money in a currency (CNY by default)."}


class PercentKind(DecimalKind):
    name = "percent"
    label = {"zh": "百分比", "en": "Percent"}
    description = {"zh": "百分数，按显示的数值保存：12.5 表示 12.5%。",
                   "en": "A percentage, stored as shown: 12.5 means 12.5 %."}


class BooleanKind(FieldKind):
    name = "boolean"
    label = {"zh": "是/否", "en": "Yes/No"}
    description = {"zh": "是或否；导入时可写 是/否、yes/no、true/false、1/0。",
                   "en": "Yes or no; imports may write 是/否, yes/no, true/false, 1/0."}
    expected = "true or false"
    filter_ops = ("eq", "ne", "is_empty")
    supports_unique = False
    _TRUE = {"true", "1", "yes", "y", "是", "对"}
    _FALSE = {"false", "0", "no", "n", "否", "错"}

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return sa.Boolean()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in self._TRUE:
                return True
            if low in self._FALSE:
                return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise FieldProblem("type", expected=self.expected)


class DateKind(FieldKind):
    name = "date"
    label = {"zh": "日期", "en": "Date"}
    description = {"zh": "日历上的一天，如 2026-03-01。",
                   "en": "A calendar day, e.g. 2026-03-01."}
    category = "date"
    expected = "a date (YYYY-MM-DD)"
    filter_ops = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "is_empty",
                  "date_range")

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return sa.Date()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            text = value.strip().replace("/", "-")
            try:
                return date.fromisoformat(text[:10]) if len(text) >= 10 else \
                    datetime.strptime(text, "%Y-%m-%d").date()
            except ValueError:
                pass
        raise FieldProblem("type", expected=self.expected)

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        return _bound_checks(f)

    def to_json(self, value: Any) -> Any:
        return None if value is None else value.isoformat()


DATETIME_RANGE = "a date-time between the years 1 and 9999 in UTC"


class DateTimeKind(FieldKind):
    name = "datetime"
    label = {"zh": "日期时间", "en": "Date & time"}
    description = {"zh": "某一时刻，带时区录入，按 UTC 保存，按每位用户的时区显示。",
                   "en": "A moment in time, entered with its time zone, stored in UTC and "
                         "shown in each user's zone."}
    category = "date"
    expected = "a date-time (ISO 8601 with time zone)"
    filter_ops = DateKind.filter_ops

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return UTCDateTime()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise FieldProblem("type", expected=self.expected) from None
        else:
            raise FieldProblem("type", expected=self.expected)
        if dt.tzinfo is None:
            # A wall-clock time without zone is ambiguous between users'
            # zones; refuse rather than guess.
            raise FieldProblem("type", expected=self.expected)
        try:
            return dt.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59-12:00 is in the year 10000 in UTC
            raise FieldProblem("type", expected=DATETIME_RANGE) from None

    def to_json(self, value: Any) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat().replace(
            "+00:00", "Z")


class TimeKind(FieldKind):
    name = "time"
    label = {"zh": "时间", "en": "Time"}
    description = {"zh": "一天中的时间，如 09:30。",
                   "en": "A time of day, e.g. 09:30."}
    category = "date"
    expected = "a time (HH:MM[:SS])"
    filter_ops = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "is_empty")

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return sa.Time()

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, time):
            return value
        if isinstance(value, str):
            try:
                return time.fromisoformat(value.strip())
            except ValueError:
                pass
        raise FieldProblem("type", expected=self.expected)

    def to_json(self, value: Any) -> Any:
        return None if value is None else value.isoformat()


def _options_domain(allowed: list[str]) -> Callable[[Any], str | None]:
    allowed_set = set(allowed)
    shown = ", ".join(allowed[:20]) + (", …" if len(allowed) > 20 else "")

    def known(v: Any) -> str | None:
        values = v if isinstance(v, list) else [v]
        if all(x in allowed_set for x in values):
            return None
        return f"one of the options: {shown}"

    return known


class SelectKind(FieldKind):
    name = "select"
    label = {"zh": "单选", "en": "Select"}
    description = {"zh": "从选项中选一项。",
                   "en": "One option from a list."}
    category = "choice"

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.SelectField)
        return _options_domain([o.value for o in f.options])

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.SelectField)
        allowed = [o.value for o in f.options]
        allowed_set = set(allowed)
        shown = ", ".join(allowed[:20])
        return [lambda v: None if v in allowed_set else
                ("option", {"value": v, "allowed": shown})]


class MultiSelectKind(FieldKind):
    name = "multi_select"
    label = {"zh": "多选", "en": "Multi-select"}
    description = {"zh": "从选项中选多项。",
                   "en": "Several options from a list."}
    category = "choice"
    expected = "a list"
    filter_ops = ("contains_any", "contains_all", "is_empty")
    sortable = False
    supports_unique = False

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return JSONValue

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise FieldProblem("type", expected=self.expected)
        for index, item in enumerate(value):
            if not isinstance(item, str) or unstorable(item):
                what, what_zh = (("empty", "为空") if item is None else
                                 ("not a text", "不是文本") if not isinstance(item, str) else
                                 ("a text with characters that cannot be stored",
                                  "含有无法保存的字符"))
                raise FieldProblem("type", expected=f"a list of texts (item {index} is {what})",
                                   expected_zh=f"文本列表（第 {index} 项{what_zh}）")
        return list(dict.fromkeys(value))  # drop duplicates, keep order

    def to_json(self, value: Any) -> Any:
        return [] if value is None else value  # an empty multi-value reads as []

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.MultiSelectField)
        return _options_domain([o.value for o in f.options])

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.MultiSelectField)
        allowed = [o.value for o in f.options]
        allowed_set = set(allowed)
        shown = ", ".join(allowed[:20])

        def options(v: list[str]) -> Problem | None:
            bad = [x for x in v if x not in allowed_set]
            return ("option", {"value": bad[0], "allowed": shown}) if bad else None

        out: list[Callable[[Any], Problem | None]] = [options]
        if f.min_items:
            lo = f.min_items
            out.append(lambda v: ("min_items", {"limit": lo}) if len(v) < lo else None)
        if f.max_items:
            hi = f.max_items
            out.append(lambda v: ("max_items", {"limit": hi}) if len(v) > hi else None)
        return out


class TreeSelectKind(FieldKind):
    name = "tree_select"
    label = {"zh": "树形选择", "en": "Tree select"}
    description = {"zh": "从多级选项中选一项，如 制造业 › 汽车零配件。",
                   "en": "One option of a tree of options, e.g. Manufacturing › Auto parts."}
    category = "choice"
    filter_ops = ("eq", "ne", "in", "not_in", "under", "is_empty")

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.TreeSelectField)
        return _options_domain(fm.tree_values(f.options))

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.TreeSelectField)
        allowed = fm.tree_values(f.options, leaves_only=f.leaf_only)
        allowed_set = set(allowed)
        shown = ", ".join(allowed[:20])
        return [lambda v: None if v in allowed_set else
                ("option", {"value": v, "allowed": shown})]


class TagsKind(MultiSelectKind):
    name = "tags"
    label = {"zh": "标签", "en": "Tags"}
    description = {"zh": "自由填写的多个标签；可用逗号或分号分隔。",
                   "en": "Several free-text tags; commas or semicolons separate them."}

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        return None  # free texts

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, str):
            value = [t for t in re.split(r"[,，;；]", value)]
        tags = super().convert(f, value)
        return [t.strip() for t in tags if t.strip()]

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.TagsField)
        hi, tag_len = f.max_items, f.max_tag_length

        def check(v: list[str]) -> Problem | None:
            if len(v) > hi:
                return ("max_items", {"limit": hi})
            for tag in v:
                if len(tag) > tag_len:
                    return ("tag_length", {"value": tag, "limit": tag_len})
            return None

        return [check]


_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.I)


class EmailKind(TextKind):
    name = "email"
    label = {"zh": "邮箱", "en": "Email"}
    description = {"zh": "电子邮箱地址，统一保存为小写。",
                   "en": "An email address, stored in lower case."}
    category = "contact"

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        return super().convert(f, value).lower()

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        return [lambda v: None if len(v) <= 254 and _EMAIL_RE.match(v) else ("email", {})]


_CN_MOBILE = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})")


class PhoneKind(TextKind):
    name = "phone"
    label = {"zh": "电话", "en": "Phone"}
    description = {"zh": "电话号码，默认按中国大陆手机号校验。",
                   "en": "A phone number, checked as a mainland China mobile number by default."}
    category = "contact"

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        text = re.sub(r"[\s]", "", super().convert(f, value))
        assert isinstance(f, fm.PhoneField)
        if f.preset == "cn_mobile" and not f.pattern:
            # One stored form per mainland mobile, so unique and filters see
            # "+86 138-1234-5678", "8613812345678" and "13812345678" as one number.
            mobile = _CN_MOBILE.fullmatch(text.replace("-", ""))
            if mobile:
                return mobile.group(1)
        return text

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.PhoneField)
        return [_pattern_check(f.effective_pattern, "phone",
                               preset=f.preset if not f.pattern else "custom")]


class UrlKind(TextKind):
    name = "url"
    label = {"zh": "网址", "en": "URL"}
    description = {"zh": "以 http:// 或 https:// 开头的网址。",
                   "en": "An address starting with http:// or https://."}
    category = "contact"

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        return [lambda v: None if len(v) <= 2000 and _URL_RE.match(v) else ("url", {})]


def _uuid(value: Any, expected: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, dict) and "id" in value:  # {"id": ..., "title": ...} from the UI
        value = value["id"]
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    raise FieldProblem("type", expected=expected)


class RelationKind(FieldKind):
    name = "relation"
    label = {"zh": "关联记录", "en": "Relation"}
    description = {"zh": "关联本应用中另一表单（或本表单）的一条记录。",
                   "en": "A link to one record of another form of the app (or of the same form)."}
    category = "relation"
    expected = "a record id"
    filter_ops: ClassVar[tuple[str, ...]] = ("eq", "ne", "in", "not_in", "is_empty")

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return GUID

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        return _uuid(value, self.expected)

    def compile(self, f: fm.FieldBase) -> CompiledField:
        assert isinstance(f, fm.RelationField)
        compiled = super().compile(f)
        compiled.reference = ("relation", f.target)
        return compiled

    def to_json(self, value: Any) -> Any:
        return None if value is None else str(value)


class MultiRelationKind(FieldKind):
    name = "multi_relation"
    label = {"zh": "多对多关联", "en": "Multi-relation"}
    description = {"zh": "关联目标表单的多条记录。",
                   "en": "Links to several records of the target form."}
    category = "relation"
    storage = "join_table"
    expected = "a list"
    filter_ops = ("contains_any", "contains_all", "is_empty")
    sortable = False
    supports_unique = False

    def column_type(self, f: fm.FieldBase) -> None:
        return None

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if not isinstance(value, list):
            raise FieldProblem("type", expected=self.expected)
        return list(dict.fromkeys(_uuid(v, "a record id") for v in value))

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.MultiRelationField)
        if not f.max_items:
            return []
        hi = f.max_items
        return [lambda v: ("max_items", {"limit": hi}) if len(v) > hi else None]

    def compile(self, f: fm.FieldBase) -> CompiledField:
        assert isinstance(f, fm.MultiRelationField)
        compiled = super().compile(f)
        compiled.reference = ("relation", f.target)
        return compiled

    def to_json(self, value: Any) -> Any:
        return [] if value is None else [str(v) for v in value]


class UserKind(RelationKind):
    name = "user"
    label = {"zh": "人员", "en": "User"}
    description = {"zh": "组织中的一位人员。",
                   "en": "One user of the organization."}
    category = "org"
    expected = "a user id"
    filter_ops = (*RelationKind.filter_ops, "in_department")

    def compile(self, f: fm.FieldBase) -> CompiledField:
        compiled = FieldKind.compile(self, f)
        compiled.reference = "user"
        return compiled


class DepartmentKind(RelationKind):
    name = "department"
    label = {"zh": "部门", "en": "Department"}
    description = {"zh": "组织中的一个部门。",
                   "en": "One department of the organization."}
    category = "org"
    expected = "a department id"
    filter_ops = ("eq", "ne", "in", "not_in", "is_empty")

    def compile(self, f: fm.FieldBase) -> CompiledField:
        compiled = FieldKind.compile(self, f)
        compiled.reference = "department"
        return compiled


class AttachmentKind(FieldKind):
    """Stored as a list of file descriptors {id, name, size, content_type};
    the client uploads first (POST /api/files) and sends the ids."""

    name = "attachment"
    label = {"zh": "附件", "en": "Attachment"}
    description = {"zh": "上传的文件，可限制个数、大小和类型。",
                   "en": "Uploaded files; their number, size and type can be limited."}
    category = "file"
    expected = "a list"
    filter_ops = ("is_empty",)
    sortable = False
    supports_unique = False

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return JSONValue

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            value = [value]
        if not isinstance(value, list):
            raise FieldProblem("type", expected=self.expected)
        return [_uuid(v, "a file id") for v in value]

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.AttachmentField)
        hi = f.max_files
        return [lambda v: ("max_items", {"limit": hi}) if len(v) > hi else None]

    def compile(self, f: fm.FieldBase) -> CompiledField:
        compiled = super().compile(f)
        compiled.reference = "file"
        return compiled

    def to_db(self, value: Any) -> Any:
        return None if value is None else [str(v) for v in value]

    def from_db(self, value: Any) -> Any:
        return None if value is None else [uuid.UUID(v) for v in value]

    def to_json(self, value: Any) -> Any:
        return [] if value is None else [str(v) for v in value]


class AutonumberKind(FieldKind):
    name = "autonumber"
    label = {"zh": "自动编号", "en": "Autonumber"}
    description = {"zh": "新建记录时自动生成的编号，如 HT-2026-0001；只读。",
                   "en": "A number given when a record is created, e.g. HT-2026-0001; read-only."}
    category = "computed"
    computed = True
    filter_ops = TextKind.filter_ops


def _out_of_range(allowed: str, allowed_zh: str) -> dict[str, str]:
    """Params of a formula result that does not fit its column: the form engine
    reports it as "result … is not {expected}"."""
    return {"limit": allowed, "expected": f"within range ({allowed})",
            "expected_zh": f"在范围内（{allowed_zh}）"}


def _too_large(value: Any) -> bool:
    """An integer result beyond BIGINT (bool is not a number here)."""
    return type(value) in (int, Decimal) and abs(value) > _INT64_MAX


class FormulaKind(FieldKind):
    name = "formula"
    label = {"zh": "公式", "en": "Formula"}
    description = {"zh": "按表达式算出的值，每次保存时重新计算；只读。",
                   "en": "The value of an expression, computed on every save; read-only."}
    category = "computed"
    computed = True
    filter_ops = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "contains",
                  "is_empty")

    def result_kind(self, f: fm.FieldBase) -> FieldKind:
        assert isinstance(f, fm.FormulaField)
        return FIELD_KINDS[f.result_type]

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any] | None:
        assert isinstance(f, fm.FormulaField)
        if f.result_type == "decimal":
            return ExactDecimal(18, f.scale)
        return self.result_kind(f).column_type(f)

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        assert isinstance(f, fm.FormulaField)
        if value is None:
            return None
        kind = self.result_kind(f)
        if f.result_type == "decimal":
            dec = kind.convert(f, value)
            # Stored as NUMERIC(18, scale): a result with more digits before the
            # point cannot be stored (and would not fit quantize's context).
            if dec and dec.adjusted() >= 18 - f.scale:
                raise FieldProblem("max", **_out_of_range(
                    f"up to {18 - f.scale} digits before the decimal point",
                    f"小数点前最多 {18 - f.scale} 位"))
            return dec.quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
        if f.result_type == "text" and not isinstance(value, str):
            return str(value)
        if f.result_type == "integer" and _too_large(value):
            raise FieldProblem("max", **_out_of_range(
                f"integers from -{_INT64_MAX} to {_INT64_MAX}",
                f"整数范围 -{_INT64_MAX} 至 {_INT64_MAX}"))
        return kind.convert(f, value)

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.FormulaField)
        return _decimal_domain(18, f.scale) if f.result_type == "decimal" else None

    def to_json(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return DecimalKind().to_json(value)
        if isinstance(value, datetime):  # as date-time fields write it: UTC with "Z"
            return FIELD_KINDS["datetime"].to_json(value)
        if isinstance(value, (date, time)):
            return value.isoformat()
        return value


class RollupKind(FieldKind):
    name = "rollup"
    label = {"zh": "汇总", "en": "Rollup"}
    description = {"zh": "对子表行或关联记录计数、求和、求平均、取最小或最大值，"
                         "由平台自动更新；只读。",
                   "en": "A count, sum, average, minimum or maximum over sub-table rows or "
                         "linked records, kept current by the platform; read-only."}
    category = "computed"
    computed = True
    # Narrowed to what suits the result (operators.allowed_operators): numbers
    # take not_in, dates take date_range.
    filter_ops = (*IntegerKind.filter_ops, "date_range")

    def result_kind(self, f: fm.FieldBase) -> FieldKind:
        """The kind whose values the rollup holds: a count is an integer, other
        numbers decimals, a min/max of dates a date (or date-time)."""
        assert isinstance(f, fm.RollupField)
        if f.result_type != "number":
            return FIELD_KINDS[f.result_type]
        return FIELD_KINDS["integer" if f.aggregate == "count" else "decimal"]

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any] | None:
        assert isinstance(f, fm.RollupField)
        if f.result_type != "number":
            return self.result_kind(f).column_type(f)
        if f.aggregate == "count":
            return sa.BigInteger()
        return ExactDecimal(18, f.scale)

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        # Never sent by clients (computed), but filters compare with it.
        return self.result_kind(f).convert(f, value)

    def domain(self, f: fm.FieldBase) -> Callable[[Any], str | None] | None:
        assert isinstance(f, fm.RollupField)
        if f.result_type == "number" and f.aggregate != "count":
            return _decimal_domain(18, f.scale)
        return None

    def to_json(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return FIELD_KINDS["datetime"].to_json(value)
        if isinstance(value, date):
            return value.isoformat()
        return value


class RegionKind(FieldKind):
    name = "region"
    label = {"zh": "省市区", "en": "Region"}
    description = {"zh": "中国的省、市、区县，保存官方全称。",
                   "en": "Province, city and district of China, stored as the official full names."}
    category = "contact"
    expected = "an object"
    filter_ops = ("eq", "in", "is_empty")  # on the province part
    sortable = False
    supports_unique = False

    def column_type(self, f: fm.FieldBase) -> sa.types.TypeEngine[Any]:
        return JSONValue

    def convert(self, f: fm.FieldBase, value: Any) -> Any:
        if isinstance(value, str):  # "广东省/深圳市/南山区" from imports
            parts = [p.strip() for p in re.split(r"[/／>›\s]+", value) if p.strip()]
            value = dict(zip(("province", "city", "district"), parts, strict=False))
        if not isinstance(value, dict):
            raise FieldProblem("type", expected=self.expected)
        unknown = sorted(set(value) - {"province", "city", "district"})
        if unknown:
            raise FieldProblem(
                "type", expected=f"an object with province, city and district only (unknown "
                f"key {', '.join(unknown)})",
                expected_zh="只含 province、city、district 的对象"
                f"（未知的键 {', '.join(unknown)}）")
        for part, given in value.items():
            if not isinstance(given, (str, type(None))):
                raise FieldProblem("type", expected=f"an object whose {part} is a text",
                                   expected_zh=f"{part} 为文本的对象")
        out = {k: value[k].strip() for k in ("province", "city", "district")
               if value.get(k) and value[k].strip()}
        # Full official names: "广东/深圳" is stored as 广东省/深圳市.
        if "province" in out:
            out["province"] = regions.resolve(out["province"], regions.PROVINCES)
            cities = regions.cities(out["province"])
            if cities and "city" in out:
                out["city"] = regions.resolve(out["city"], cities)
                districts = cities.get(out["city"])
                if districts and "district" in out:
                    out["district"] = regions.resolve(out["district"], districts)
        return out

    def checks(self, f: fm.FieldBase) -> list[Callable[[Any], Problem | None]]:
        assert isinstance(f, fm.RegionField)
        needed = ("province", "city", "district")[: f.levels]
        names = {1: ("province", "省"), 2: ("province and city", "省、市"),
                 3: ("province, city and district", "省、市、区")}[f.levels]

        def check(v: dict[str, str]) -> Problem | None:
            province, city, district = v.get("province"), v.get("city"), v.get("district")
            if province:
                cities = regions.cities(province)
                if cities is None:
                    return ("region", {"value": province})
                # A city (district) is checked when the table lists the cities
                # of its province (districts of its city).
                if city and cities and city not in cities:
                    return ("region_city", {"value": city, "province": province})
                districts = cities.get(city or "")
                if district and districts and district not in districts:
                    return ("region_district", {"value": district, "city": city})
            if any(not v.get(k) for k in needed):
                return ("region_levels", {"levels": names[0], "levels_zh": names[1]})
            return None

        return [check]


class SubTableKind(FieldKind):
    name = "sub_table"
    label = {"zh": "子表", "en": "Sub-table"}
    description = {"zh": "属于本记录的多行明细，每行有自己的字段，如订单明细、报销明细。",
                   "en": "Rows that belong to the record, each with its own fields: order "
                         "lines, expense items."}
    category = "relation"
    storage = "child_table"
    expected = "a list of rows"
    filter_ops = ("is_empty",)
    sortable = False
    supports_unique = False

    def column_type(self, f: fm.FieldBase) -> None:
        return None


FIELD_KINDS: dict[str, FieldKind] = {
    kind.name: kind for kind in (
        TextKind(), LongTextKind(), RichTextKind(), IntegerKind(), DecimalKind(),
        CurrencyKind(), PercentKind(), BooleanKind(), DateKind(), DateTimeKind(), TimeKind(),
        SelectKind(), MultiSelectKind(), TreeSelectKind(), TagsKind(), EmailKind(),
        PhoneKind(), UrlKind(), RelationKind(), MultiRelationKind(), UserKind(),
        DepartmentKind(), AttachmentKind(), AutonumberKind(), FormulaKind(), RollupKind(),
        RegionKind(), SubTableKind(),
    )
}

assert set(FIELD_KINDS) == set(fm.FIELD_MODELS), "every field model needs a field kind"
# A kind says what it is itself: one inheriting its parent's words (currency
# from decimal) would be described as the parent in the designer's palette.
assert all({"label", "description"} <= vars(type(kind)).keys() for kind in FIELD_KINDS.values())

# A kind's category has a title in the palette, and the categories are listed
# in the order the palette meets them (GET /api/meta/field-type-categories).
assert list(FIELD_CATEGORIES) == list(dict.fromkeys(k.category for k in FIELD_KINDS.values())), \
    "every field category is used, in FIELD_KINDS' order, and every kind's category is declared"


def field_type_catalog() -> list[dict[str, Any]]:
    """Every field type, in the palette's order, for ``GET /api/meta/field-types``."""
    return [kind.describe() for kind in FIELD_KINDS.values()]


def field_type_categories() -> list[dict[str, Any]]:
    """The categories of :func:`field_type_catalog` (a type's ``category``), in the
    palette's order, with their titles.

    >>> field_type_categories()[1]["label"]
    {'zh': '数字', 'en': 'Numbers'}
    """
    return [c.describe() for c in FIELD_CATEGORIES.values()]
