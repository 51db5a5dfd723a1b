"""Injectable clock: engines ask a ``Clock`` for the time, so tests advance it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class Clock:
    """Real time, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self, tz: str) -> date:
        return self.now().astimezone(ZoneInfo(tz)).date()


class FrozenClock(Clock):
    """A clock that only moves when told; for tests and benchmarks."""

    def __init__(self, at: datetime | None = None) -> None:
        self._at = at or datetime(2026, 1, 5, 1, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self._at = self._at + (delta or timedelta(**kwargs))
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at


SYSTEM_CLOCK = Clock()


def iso_utc(value: datetime | None) -> str | None:
    """A timestamp as the API writes every one: ISO 8601 in UTC with ``Z``
    (``2026-11-27T08:37:16.193656Z``). A naive value is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
