"""Due times in calendar time or in working time (a business calendar of
work hours, weekends, public holidays and make-up working days).

>>> from datetime import datetime, UTC
>>> from tangram.metamodel.flows import BusinessCalendar, Duration
>>> cal = BusinessCalendar(key="cn", label={"en": "CN"})
>>> friday_5pm = datetime(2026, 1, 9, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
>>> add_time(friday_5pm, Duration(hours=2), time="working", calendar=cal,
...          timezone="Asia/Shanghai").isoformat()  # 1 h Fri + 1 h Mon
'2026-01-12T02:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tangram.metamodel.flows import BusinessCalendar, Duration

DEFAULT_CALENDAR = BusinessCalendar(key="default", label={"zh": "默认工作日历",
                                                          "en": "Default calendar"})
MAX_DAYS_SCANNED = 3 * 366  # a calendar with no working day must not loop forever


def _parse(hhmm: str) -> time:
    if hhmm == "24:00":
        return time(23, 59, 59, 999999)
    h, m = hhmm.split(":")
    return time(int(h), int(m))


def is_working_day(cal: BusinessCalendar, day: date) -> bool:
    iso = day.isoformat()
    if iso in cal.workdays:
        return True
    if iso in cal.holidays:
        return False
    return day.weekday() not in cal.weekend


def _periods(cal: BusinessCalendar, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    return [(datetime.combine(day, _parse(p.start), zone), datetime.combine(day, _parse(p.end),
                                                                             zone))
            for p in sorted(cal.work_hours, key=lambda p: p.start)]


def add_working(start: datetime, minutes: int, cal: BusinessCalendar, zone: ZoneInfo) -> datetime:
    """``start`` plus ``minutes`` of working time."""
    local = start.astimezone(zone)
    remaining = timedelta(minutes=minutes)
    day = local.date()
    for _ in range(MAX_DAYS_SCANNED):
        if is_working_day(cal, day):
            for begin, end in _periods(cal, day, zone):
                if local >= end:
                    continue
                cursor = max(local, begin)
                available = end - cursor
                if remaining <= available:
                    return (cursor + remaining).astimezone(UTC)
                remaining -= available
                local = end
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), zone)
    raise ValueError(f"calendar {cal.key!r} has no working time within {MAX_DAYS_SCANNED} days")


def add_working_days(start: datetime, days: int, cal: BusinessCalendar,
                     zone: ZoneInfo) -> datetime:
    """The same time of day ``days`` working days later."""
    local = start.astimezone(zone)
    day = local.date()
    moved = 0
    for _ in range(MAX_DAYS_SCANNED):
        if moved == days:
            return datetime.combine(day, local.timetz().replace(tzinfo=None),
                                    zone).astimezone(UTC)
        day += timedelta(days=1)
        if is_working_day(cal, day):
            moved += 1
    raise ValueError(f"calendar {cal.key!r} has no working day within {MAX_DAYS_SCANNED} days")


def add_time(start: datetime, duration: Duration, *, time: str,
             calendar: BusinessCalendar | None, timezone: str) -> datetime:
    """When a wait of ``duration`` that begins at ``start`` ends."""
    if time == "calendar":
        return start + duration.as_timedelta()
    cal = calendar or DEFAULT_CALENDAR
    zone = ZoneInfo(cal.timezone or timezone)
    at = add_working_days(start, duration.days, cal, zone) if duration.days else start
    return add_working(at, duration.hours * 60 + duration.minutes, cal, zone)
