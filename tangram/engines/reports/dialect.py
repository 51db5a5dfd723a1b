"""The only dialect-specific SQL of the report engine.

Each construct here has one PostgreSQL and one SQLite rendering; the compiler
builds them and never asks which database it talks to. Tests assert both
renderings without a database (``tests/unit/test_report_compile.py``).

- :class:`DateBucket` — first day of the day / ISO week / month / quarter /
  year of a date or of a UTC date-time seen in the organization's time zone.
- :class:`ShiftPeriod` — a bucket's first day moved by whole periods.
- :class:`BinIndex` — ``floor((value - origin) / width)``, exact (no floats).
- :class:`AsFloat` — a number as a binary float, for ratios and shares.
- :class:`Median` — ``percentile_cont(0.5)``; PostgreSQL only (see
  :data:`CAPABILITIES`).
- :class:`ExactDivide`, :class:`RoundTo`, :class:`DaysBetween`,
  :class:`DatePart` — the arithmetic and date functions of calculated fields
  (``calculated.py``), over numbers in the stored representation (on SQLite
  an exact decimal is an integer scaled by ``10**scale``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal as _IT

# Features a dialect may lack; the compiler refuses a report needing one.
CAPABILITIES: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"median"}),
    "sqlite": frozenset(),
}


def supports(dialect_name: str, feature: str) -> bool:
    return feature in CAPABILITIES.get(dialect_name, frozenset())


class _Construct(sa.ColumnElement[Any]):
    # SQLAlchemy caches a statement's compiled SQL by its cache key: every
    # attribute a construct renders from is listed in ``_traverse_internals``
    # (values made into bound parameters at compile time included — a
    # statement with other values has another key, so never reuses them).
    inherit_cache = True
    _traverse_internals: Any = [("expr", _IT.dp_clauseelement)]

    def __init__(self, expr: sa.ColumnElement[Any]) -> None:
        self.expr = expr

    @property
    def _from_objects(self) -> list[Any]:  # type: ignore[override]
        return self.expr._from_objects

    def get_children(self, **kw: Any) -> list[Any]:  # type: ignore[override]
        return [self.expr]

    def _copy_internals(self, clone: Any = None, **kw: Any) -> None:  # type: ignore[override]
        if clone is not None:
            self.expr = clone(self.expr, **kw)


# --------------------------------------------------------------------------- date buckets

class DateBucket(_Construct):
    """First local day of the period holding ``expr``. ``timezone`` is given for
    UTC date-times (converted to local time first), None for plain dates."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("unit", _IT.dp_string),
                           ("timezone", _IT.dp_string)]

    type = sa.Date()

    def __init__(self, expr: sa.ColumnElement[Any], unit: str, timezone: str | None) -> None:
        super().__init__(expr)
        self.unit = unit
        self.timezone = timezone


@compiles(DateBucket, "postgresql")
def _bucket_pg(element: DateBucket, compiler: SQLCompiler, **kw: Any) -> str:
    value: sa.ColumnElement[Any] = element.expr
    if element.timezone is not None:
        # timezone(zone, timestamptz) is the local wall-clock time (DST-aware).
        value = sa.func.timezone(sa.literal(element.timezone, sa.Text), value)
    truncated = sa.func.date_trunc(_constant(element.unit), value)
    return compiler.process(sa.cast(truncated, sa.Date), **kw)


@compiles(DateBucket, "sqlite")
@compiles(DateBucket)
def _bucket_sqlite(element: DateBucket, compiler: SQLCompiler, **kw: Any) -> str:
    local: sa.ColumnElement[Any] = element.expr
    if element.timezone is not None:
        local = sa.func.datetime(element.expr, _sqlite_offset(element.expr, element.timezone))
    modifiers: list[Any] = {
        "day": [],
        "week": ["-6 days", "weekday 1"],  # the Monday on or before the day (ISO)
        "month": ["start of month"],
        "year": ["start of year"],
    }.get(element.unit, ["start of month"])
    args: list[Any] = [_constant(m) for m in modifiers]
    if element.unit == "quarter":
        month = sa.cast(sa.func.strftime("%m", local), sa.Integer)
        args.append(sa.func.printf("-%d months", (month - 1) % 3))
    return compiler.process(sa.func.date(local, *args), **kw)


_CONSTANTS = frozenset({"day", "week", "month", "quarter", "year", "-6 days", "weekday 1",
                        "start of month", "start of year"})


def _constant(text: str) -> sa.ColumnElement[Any]:
    """A fixed SQL string literal from the closed set above, written into the
    SQL rather than bound: the planner sees ``date_trunc('month', …)`` as one
    constant grouping expression, as in hand-written SQL."""
    if text not in _CONSTANTS:
        raise ValueError(f"not a known SQL constant: {text!r}")
    return sa.literal_column(f"'{text}'", sa.Text)


def _sqlite_offset(expr: sa.ColumnElement[Any], timezone: str) -> sa.ColumnElement[Any]:
    """SQLite modifier text ('+480 minutes') of the zone's offset at ``expr``
    (a naive UTC text); a CASE over the zone's transitions when it has DST."""
    periods = utc_offsets(timezone)
    if len(periods) == 1:
        return sa.literal(_modifier(periods[0][1]), sa.Text)
    whens = [(expr < sa.literal(start.strftime("%Y-%m-%d %H:%M:%S"), sa.Text),
              sa.literal(_modifier(before), sa.Text))
             for (start, _), (_, before) in zip(periods[1:], periods, strict=False)]
    return sa.case(*whens, else_=sa.literal(_modifier(periods[-1][1]), sa.Text))


def _modifier(minutes: int) -> str:
    return f"{minutes:+d} minutes"


@functools.lru_cache(maxsize=64)
def utc_offsets(timezone: str) -> tuple[tuple[datetime, int], ...]:
    """(UTC start, offset in minutes) of each period of constant offset from
    1970 to 2100, found day by day then hour by hour (cached per zone)."""
    zone = ZoneInfo(timezone)

    def offset(at: datetime) -> int:
        delta = at.astimezone(zone).utcoffset() or timedelta(0)
        return int(delta.total_seconds() // 60)

    start = datetime(1970, 1, 1, tzinfo=UTC)
    periods = [(start.replace(tzinfo=None), offset(start))]
    day = start
    end = datetime(2100, 1, 1, tzinfo=UTC)
    while day < end:
        nxt = day + timedelta(days=1)
        if offset(nxt) != periods[-1][1]:
            at = day
            while offset(at) == periods[-1][1]:
                at += timedelta(minutes=15)
            periods.append((at.replace(tzinfo=None), offset(at)))
        day = nxt
    # Zones without a change since 2000 (Asia/Shanghai: since 1991) render
    # as one fixed offset; older data there is shifted by the current offset.
    if not any(p[0] >= datetime(2000, 1, 1) for p in periods[1:]):
        return (periods[-1],)
    return tuple(periods)


# --------------------------------------------------------------------------- period shift

_SHIFT_PG = {"day": "1 day", "week": "7 days", "month": "1 month", "quarter": "3 months",
             "year": "1 year"}
_SHIFT_SQLITE = {"day": (1, "days"), "week": (7, "days"), "month": (1, "months"),
                 "quarter": (3, "months"), "year": (1, "years")}


class ShiftPeriod(_Construct):
    """``expr`` (a bucket's first day) moved by ``periods`` whole periods."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("unit", _IT.dp_string),
                           ("periods", _IT.dp_plain_obj)]

    type = sa.Date()

    def __init__(self, expr: sa.ColumnElement[Any], unit: str, periods: int) -> None:
        super().__init__(expr)
        self.unit = unit
        self.periods = periods


@compiles(ShiftPeriod, "postgresql")
def _shift_pg(element: ShiftPeriod, compiler: SQLCompiler, **kw: Any) -> str:
    interval = sa.cast(sa.literal(_SHIFT_PG[element.unit], sa.Text), sa.Interval)
    moved = element.expr + interval * element.periods
    return compiler.process(sa.cast(moved, sa.Date), **kw)


@compiles(ShiftPeriod, "sqlite")
@compiles(ShiftPeriod)
def _shift_sqlite(element: ShiftPeriod, compiler: SQLCompiler, **kw: Any) -> str:
    n, unit = _SHIFT_SQLITE[element.unit]
    modifier = sa.literal(f"{n * element.periods:+d} {unit}", sa.Text)
    return compiler.process(sa.func.date(element.expr, modifier), **kw)


# --------------------------------------------------------------------------- numbers

class BinIndex(_Construct):
    """``floor((value - origin) / width)`` as an integer, computed exactly.

    ``scale`` is the number of decimals of the column's exact-decimal type (0
    for integers): on SQLite such columns hold scaled integers (see
    ``tangram.db.types.ExactDecimal``), so the bin is integer arithmetic there."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("origin", _IT.dp_plain_obj),
                           ("width", _IT.dp_plain_obj), ("scale", _IT.dp_plain_obj)]

    type = sa.BigInteger()

    def __init__(self, expr: sa.ColumnElement[Any], *, origin: Decimal, width: Decimal,
                 scale: int) -> None:
        super().__init__(expr)
        self.origin = origin
        self.width = width
        self.scale = scale


@compiles(BinIndex, "postgresql")
def _bin_pg(element: BinIndex, compiler: SQLCompiler, **kw: Any) -> str:
    origin = sa.literal(element.origin, sa.Numeric())
    width = sa.literal(element.width, sa.Numeric())
    value = sa.cast(element.expr, sa.Numeric())
    return compiler.process(sa.cast(sa.func.floor((value - origin) / width), sa.BigInteger),
                            **kw)


@compiles(BinIndex, "sqlite")
@compiles(BinIndex)
def _bin_sqlite(element: BinIndex, compiler: SQLCompiler, **kw: Any) -> str:
    factor = Decimal(10) ** element.scale
    # The stored (scaled) integers, with literals typed as plain integers so
    # that no decimal scaling applies to them.
    stored = sa.type_coerce(element.expr, sa.BigInteger)
    a = (stored - sa.literal(int(element.origin * factor), sa.BigInteger)).self_group()
    b = sa.literal(int(element.width * factor), sa.BigInteger)
    one = sa.literal(1, sa.BigInteger)
    # The raw "/" of two integers is integer division in SQLite, truncating
    # toward zero: floor for negatives. (SQLAlchemy's "/" would be true
    # division, its "//" a Python function.)
    floor = sa.case((a >= 0, a.op("/")(b)),
                    else_=-((-a + b - one).self_group().op("/")(b)).self_group())
    return compiler.process(floor, **kw)


class AsFloat(_Construct):
    """A number as a binary float (``scale`` as for :class:`BinIndex`)."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("scale", _IT.dp_plain_obj)]

    type = sa.Float()

    def __init__(self, expr: sa.ColumnElement[Any], scale: int) -> None:
        super().__init__(expr)
        self.scale = scale


@compiles(AsFloat, "postgresql")
def _float_pg(element: AsFloat, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(sa.cast(element.expr, sa.Double()), **kw)


@compiles(AsFloat, "sqlite")
@compiles(AsFloat)
def _float_sqlite(element: AsFloat, compiler: SQLCompiler, **kw: Any) -> str:
    value: sa.ColumnElement[Any] = sa.cast(element.expr, sa.Float())
    if element.scale:
        value = value / sa.literal(float(10 ** element.scale), sa.Float())
    return compiler.process(value, **kw)


class Median(_Construct):
    """The continuous median (interpolated between the two middle values)."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("scale", _IT.dp_plain_obj)]

    type = sa.Float()

    def __init__(self, expr: sa.ColumnElement[Any], scale: int) -> None:
        super().__init__(expr)
        self.scale = scale


@compiles(Median, "postgresql")
def _median_pg(element: Median, compiler: SQLCompiler, **kw: Any) -> str:
    value: sa.ColumnElement[Any] = sa.cast(element.expr, sa.Double())
    return compiler.process(sa.func.percentile_cont(0.5).within_group(value), **kw)


@compiles(Median)
def _median_other(element: Median, compiler: SQLCompiler, **kw: Any) -> str:
    # The compiler refuses median where CAPABILITIES lacks it, before this.
    raise sa.exc.CompileError("median needs PostgreSQL (percentile_cont)")


# --------------------------------------------------------------------------- calculated fields

class ExactDivide(_Construct):
    """``a / b`` rounded half up to ``scale`` decimals; empty when ``b`` is 0.

    ``a`` and ``b`` are numbers with ``a_scale`` / ``b_scale`` decimals. On
    SQLite they are the stored scaled integers and the quotient is computed in
    binary floating point (exact to about 15 significant digits) and rounded;
    PostgreSQL divides NUMERICs exactly."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("b", _IT.dp_clauseelement),
                           ("a_scale", _IT.dp_plain_obj), ("b_scale", _IT.dp_plain_obj),
                           ("scale", _IT.dp_plain_obj)]

    def __init__(self, a: sa.ColumnElement[Any], b: sa.ColumnElement[Any], *, a_scale: int,
                 b_scale: int, scale: int) -> None:
        super().__init__(a)
        self.b = b
        self.a_scale, self.b_scale, self.scale = a_scale, b_scale, scale

    def get_children(self, **kw: Any) -> list[Any]:  # type: ignore[override]
        return [self.expr, self.b]

    def _copy_internals(self, clone: Any = None, **kw: Any) -> None:  # type: ignore[override]
        if clone is not None:
            self.expr = clone(self.expr, **kw)
            self.b = clone(self.b, **kw)

    @property
    def _from_objects(self) -> list[Any]:  # type: ignore[override]
        return [*self.expr._from_objects, *self.b._from_objects]


@compiles(ExactDivide, "postgresql")
def _divide_pg(element: ExactDivide, compiler: SQLCompiler, **kw: Any) -> str:
    quotient = (sa.cast(element.expr, sa.Numeric())
                / sa.func.nullif(sa.cast(element.b, sa.Numeric()), 0))
    return compiler.process(sa.func.round(quotient, element.scale), **kw)


@compiles(ExactDivide, "sqlite")
@compiles(ExactDivide)
def _divide_sqlite(element: ExactDivide, compiler: SQLCompiler, **kw: Any) -> str:
    shift = element.scale - element.a_scale + element.b_scale
    quotient = (sa.cast(element.expr, sa.Float())
                / sa.func.nullif(sa.cast(element.b, sa.Float()), 0.0))
    scaled = quotient * sa.literal(float(10 ** shift) if shift >= 0 else 10.0 ** shift, sa.Float())
    rounded = sa.func.round(scaled)
    # CAST of a float beyond the 64-bit range would clamp it silently; such a
    # quotient stays a float, which the results refuse as out of range.
    in_range = sa.func.abs(rounded) < sa.literal_column("9223372036854775808.0", sa.Float)
    return compiler.process(sa.case((in_range, sa.cast(rounded, sa.BigInteger)),
                                    else_=rounded), **kw)


class RoundTo(_Construct):
    """A number with ``scale`` decimals rounded half up (away from zero) to
    ``digits`` < ``scale`` decimals, exactly on both databases."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("scale", _IT.dp_plain_obj),
                           ("digits", _IT.dp_plain_obj)]

    def __init__(self, expr: sa.ColumnElement[Any], *, scale: int, digits: int) -> None:
        super().__init__(expr)
        self.scale, self.digits = scale, digits


@compiles(RoundTo, "postgresql")
def _round_pg(element: RoundTo, compiler: SQLCompiler, **kw: Any) -> str:
    rounded: sa.ColumnElement[Any] = sa.func.round(sa.cast(element.expr, sa.Numeric()),
                                                   element.digits)
    if element.digits == 0:
        rounded = sa.cast(rounded, sa.BigInteger)
    return compiler.process(rounded, **kw)


@compiles(RoundTo, "sqlite")
@compiles(RoundTo)
def _round_sqlite(element: RoundTo, compiler: SQLCompiler, **kw: Any) -> str:
    # Scaled integers: add half a unit away from zero, then the raw "/" of two
    # integers truncates toward zero — half up, exactly, with no float.
    factor = 10 ** (element.scale - element.digits)
    x = sa.type_coerce(element.expr, sa.BigInteger)
    half = sa.literal(factor // 2, sa.BigInteger)
    unit = sa.literal(factor, sa.BigInteger)
    rounded = sa.case((x >= 0, (x + half).self_group().op("/")(unit)),
                      else_=(x - half).self_group().op("/")(unit))
    return compiler.process(rounded, **kw)


class DaysBetween(_Construct):
    """Calendar days from the date ``start`` to the date ``end`` (an integer)."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("end", _IT.dp_clauseelement)]
    type = sa.BigInteger()

    def __init__(self, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]) -> None:
        super().__init__(start)
        self.end = end

    def get_children(self, **kw: Any) -> list[Any]:  # type: ignore[override]
        return [self.expr, self.end]

    def _copy_internals(self, clone: Any = None, **kw: Any) -> None:  # type: ignore[override]
        if clone is not None:
            self.expr = clone(self.expr, **kw)
            self.end = clone(self.end, **kw)

    @property
    def _from_objects(self) -> list[Any]:  # type: ignore[override]
        return [*self.expr._from_objects, *self.end._from_objects]


@compiles(DaysBetween, "postgresql")
def _days_pg(element: DaysBetween, compiler: SQLCompiler, **kw: Any) -> str:
    diff = sa.cast(element.end, sa.Date) - sa.cast(element.expr, sa.Date)
    return compiler.process(sa.type_coerce(diff, sa.Integer).self_group(), **kw)


@compiles(DaysBetween, "sqlite")
@compiles(DaysBetween)
def _days_sqlite(element: DaysBetween, compiler: SQLCompiler, **kw: Any) -> str:
    diff = sa.func.julianday(element.end) - sa.func.julianday(element.expr)
    return compiler.process(sa.cast(diff, sa.BigInteger), **kw)


class DatePart(_Construct):
    """year, month, day or ISO weekday (1 = Monday … 7 = Sunday) of a date."""

    inherit_cache = True
    _traverse_internals = [("expr", _IT.dp_clauseelement), ("part", _IT.dp_string)]
    type = sa.BigInteger()

    def __init__(self, expr: sa.ColumnElement[Any], part: str) -> None:
        super().__init__(expr)
        self.part = part


_PG_PARTS = {"year": "year", "month": "month", "day": "day", "weekday": "isodow"}
_SQLITE_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "weekday": "%w"}


@compiles(DatePart, "postgresql")
def _part_pg(element: DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    value = sa.extract(_PG_PARTS[element.part], sa.cast(element.expr, sa.Date))
    return compiler.process(sa.cast(value, sa.BigInteger), **kw)


@compiles(DatePart, "sqlite")
@compiles(DatePart)
def _part_sqlite(element: DatePart, compiler: SQLCompiler, **kw: Any) -> str:
    value: sa.ColumnElement[Any] = sa.cast(
        sa.func.strftime(sa.literal(_SQLITE_PARTS[element.part], sa.Text), element.expr),
        sa.BigInteger)
    if element.part == "weekday":  # %w is 0 = Sunday … 6 = Saturday
        value = (value + 6) % 7 + 1
    return compiler.process(value, **kw)
