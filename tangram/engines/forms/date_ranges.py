"""Date ranges of the filter language (``{"op": "date_range"}``).

A range is either relative — one registry entry per range, read by the
filter compiler, the metadata endpoint and the docs (``docs/filters.md``; a
test fails when an entry is missing there) — or custom: ``[from, to]`` ISO
dates, both days included, either end null for an open range. Every range is
an interval of local calendar days in the organization's time zone; relative
ones are computed from an injected ``today`` — never from the system clock —
so tests and reports are reproducible.

>>> resolve_date_range("this_quarter", today=date(2026, 5, 20))
DayRange(start=datetime.date(2026, 4, 1), end=datetime.date(2026, 6, 30))
>>> resolve_date_range(["2026-01-01", None], today=date(2026, 5, 20))
DayRange(start=datetime.date(2026, 1, 1), end=None)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MAX_DAYS = 3660  # ten years: larger "last N days" are almost certainly typos


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant ``day`` starts in ``timezone`` (aware, in that zone; DST-safe:
    zoneinfo resolves each day's offset)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))


class DateRangeProblem(ValueError):
    """A date range value is not usable; ``at`` is the JSON path suffix of the
    wrong part (``"[1]"``: the ``to`` date), empty for the whole value."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class DayRange:
    """Local calendar days ``start`` … ``end``, both included; ``None`` is an
    open end (every day before, or after)."""

    start: date | None
    end: date | None

    def utc_bounds(self, timezone: str) -> tuple[datetime | None, datetime | None]:
        """``[start, end_exclusive)`` as UTC instants: local midnight of ``start``
        and of the day after ``end``. ``None`` where the range is open, or where
        the bound lies outside what an instant can hold (0001-01-01 east of UTC,
        9999-12-31): no stored instant is beyond it."""
        lo = hi = None
        # OverflowError: 0001-01-01 starts before 0001-01-01 UTC east of UTC.
        if self.start is not None:
            with contextlib.suppress(OverflowError):
                lo = local_midnight(self.start, timezone).astimezone(UTC)
        if self.end is not None and self.end < date.max:
            hi = local_midnight(self.end + timedelta(days=1), timezone).astimezone(UTC)
        return lo, hi

    def to_json(self) -> list[str | None]:
        """The custom-range value naming exactly these days: ``[from, to]``."""
        return [d.isoformat() if d is not None else None for d in (self.start, self.end)]


@dataclass(frozen=True)
class DateRangeKind:
    key: str
    label: dict[str, str]
    takes_n: bool  # written {"last_n_days": 7} instead of "today"
    bounds: Callable[[date, int], tuple[date, date]]
    description: dict[str, str]  # {"zh": …, "en": …}, like the label


def _month_start(d: date, months: int = 0) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month(d: date, months: int) -> tuple[date, date]:
    start = _month_start(d, months)
    return start, _month_start(start, 1) - timedelta(days=1)


def _quarter(d: date, quarters: int) -> tuple[date, date]:
    first = _month_start(d.replace(month=(d.month - 1) // 3 * 3 + 1), quarters * 3)
    return first, _month_start(first, 3) - timedelta(days=1)


def _week(d: date, weeks: int) -> tuple[date, date]:
    monday = d - timedelta(days=d.weekday()) + timedelta(weeks=weeks)  # ISO: Monday first
    return monday, monday + timedelta(days=6)


def _year(d: date, years: int) -> tuple[date, date]:
    return date(d.year + years, 1, 1), date(d.year + years, 12, 31)


def _day(d: date, days: int) -> tuple[date, date]:
    return d + timedelta(days=days), d + timedelta(days=days)


_RANGES = [
    DateRangeKind("today", {"zh": "今天", "en": "Today"}, False,
                  lambda d, n: _day(d, 0), {"zh": "当天。", "en": "The current day."}),
    DateRangeKind("yesterday", {"zh": "昨天", "en": "Yesterday"}, False,
                  lambda d, n: _day(d, -1),
                  {"zh": "今天的前一天。", "en": "The day before today."}),
    DateRangeKind("tomorrow", {"zh": "明天", "en": "Tomorrow"}, False,
                  lambda d, n: _day(d, 1),
                  {"zh": "今天的后一天。", "en": "The day after today."}),
    DateRangeKind("this_week", {"zh": "本周", "en": "This week"}, False,
                  lambda d, n: _week(d, 0),
                  {"zh": "本 ISO 周的周一至周日。",
                   "en": "Monday to Sunday of the current ISO week."}),
    DateRangeKind("last_week", {"zh": "上周", "en": "Last week"}, False,
                  lambda d, n: _week(d, -1),
                  {"zh": "上一个 ISO 周的周一至周日。",
                   "en": "Monday to Sunday of the previous ISO week."}),
    DateRangeKind("next_week", {"zh": "下周", "en": "Next week"}, False,
                  lambda d, n: _week(d, 1),
                  {"zh": "下一个 ISO 周的周一至周日。",
                   "en": "Monday to Sunday of the next ISO week."}),
    DateRangeKind("this_month", {"zh": "本月", "en": "This month"}, False,
                  lambda d, n: _month(d, 0),
                  {"zh": "本月第一天至最后一天。",
                   "en": "First to last day of the current month."}),
    DateRangeKind("last_month", {"zh": "上月", "en": "Last month"}, False,
                  lambda d, n: _month(d, -1),
                  {"zh": "上月第一天至最后一天。",
                   "en": "First to last day of the previous month."}),
    DateRangeKind("next_month", {"zh": "下月", "en": "Next month"}, False,
                  lambda d, n: _month(d, 1),
                  {"zh": "下月第一天至最后一天。",
                   "en": "First to last day of the next month."}),
    DateRangeKind("this_quarter", {"zh": "本季度", "en": "This quarter"}, False,
                  lambda d, n: _quarter(d, 0),
                  {"zh": "当前自然季度（1–3 月、4–6 月、7–9 月、10–12 月）。",
                   "en": "The current calendar quarter (Jan-Mar, Apr-Jun, Jul-Sep, Oct-Dec)."}),
    DateRangeKind("last_quarter", {"zh": "上季度", "en": "Last quarter"}, False,
                  lambda d, n: _quarter(d, -1),
                  {"zh": "上一个自然季度。", "en": "The previous calendar quarter."}),
    DateRangeKind("this_year", {"zh": "今年", "en": "This year"}, False,
                  lambda d, n: _year(d, 0),
                  {"zh": "今年 1 月 1 日至 12 月 31 日。",
                   "en": "1 January to 31 December of the current year."}),
    DateRangeKind("last_year", {"zh": "去年", "en": "Last year"}, False,
                  lambda d, n: _year(d, -1),
                  {"zh": "去年 1 月 1 日至 12 月 31 日。",
                   "en": "1 January to 31 December of the previous year."}),
    DateRangeKind("last_n_days", {"zh": "最近N天", "en": "Last N days"}, True,
                  lambda d, n: (d - timedelta(days=n - 1), d),
                  {"zh": "截至今天的 N 天（含今天）：{\"last_n_days\": 7} 即今天及之前 6 天。",
                   "en": "N days ending today, today included: {\"last_n_days\": 7} is today "
                         "and the 6 days before it."}),
    DateRangeKind("next_n_days", {"zh": "未来N天", "en": "Next N days"}, True,
                  lambda d, n: (d, d + timedelta(days=n - 1)),
                  {"zh": "从今天起的 N 天（含今天）：{\"next_n_days\": 14} 即今天及之后 13 天。",
                   "en": "N days starting today, today included: {\"next_n_days\": 14} is "
                         "today and the 13 days after it."}),
]

DATE_RANGES: dict[str, DateRangeKind] = {r.key: r for r in _RANGES}


CUSTOM_EXAMPLE = '["2026-01-01", "2026-03-31"]'


def resolve_date_range(spec: Any, *, today: date) -> DayRange:
    """``"this_month"``, ``{"last_n_days": 7}`` or ``["2026-01-01", "2026-03-31"]``
    → the local days it covers.

    Raises :class:`DateRangeProblem` (a ``ValueError``) with a message naming
    the wrong value and what is allowed.
    """
    named = ", ".join(k for k, r in DATE_RANGES.items() if not r.takes_n)
    counted = ", ".join(f'{{"{k}": N}}' for k, r in DATE_RANGES.items() if r.takes_n)
    allowed = (f"one of {named}; {counted} with N from 1 to {MAX_DAYS}; or custom dates "
               f"[from, to] such as {CUSTOM_EXAMPLE}")
    if isinstance(spec, str):
        kind = DATE_RANGES.get(spec)
        if kind is None or kind.takes_n:
            raise DateRangeProblem(f"unknown date range {spec!r}; use {allowed}")
        return DayRange(*kind.bounds(today, 0))
    if isinstance(spec, dict) and len(spec) == 1:
        (key, n), = spec.items()
        kind = DATE_RANGES.get(key)
        if kind is None or not kind.takes_n:
            raise DateRangeProblem(f"unknown date range {key!r}; use {allowed}")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_DAYS:
            raise DateRangeProblem(f"{key} needs a whole number of days from 1 to "
                                   f"{MAX_DAYS}, not {n!r}")
        return DayRange(*kind.bounds(today, n))
    if isinstance(spec, list):
        return _custom_range(spec)
    raise DateRangeProblem(f"a date range is {allowed}")


def _iso_date(value: Any) -> date | None:
    """``"2026-03-31"`` → the date; None for anything else (other date writings
    that ``fromisoformat`` takes, such as ``"20260331"``, included)."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:  # 2026-02-30
        return None


def _custom_range(spec: list[Any]) -> DayRange:
    """``[from, to]``: ISO dates, both included; null leaves that end open."""
    if len(spec) != 2:
        raise DateRangeProblem(f"custom dates are a list of two items [from, to] such as "
                               f"{CUSTOM_EXAMPLE} (null for an open end), not {len(spec)} "
                               "items")
    days: list[date | None] = []
    for i, item in enumerate(spec):
        if item is None:
            days.append(None)
            continue
        day = _iso_date(item)
        if day is None:
            shown = repr(item) if len(repr(item)) <= 40 else repr(item)[:37] + "..."
            raise DateRangeProblem(f"{shown} is not a date: {('from', 'to')[i]} is a date "
                                   "YYYY-MM-DD (e.g. \"2026-03-31\") or null for an open end",
                                   f"[{i}]")
        days.append(day)
    start, end = days
    if start is None and end is None:
        raise DateRangeProblem("[null, null] names no days: give from, to or both")
    if start is not None and end is not None and start > end:
        raise DateRangeProblem(f"the range starts {start} after it ends {end}: from must "
                               "be on or before to")
    return DayRange(start, end)


def date_range_catalog() -> list[dict[str, Any]]:
    """JSON-able entries for the metadata endpoint and the filter builder UI."""
    return [{"key": r.key, "label": r.label, "takes_n": r.takes_n,
             "description": r.description} for r in DATE_RANGES.values()]
