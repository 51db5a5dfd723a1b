"""Timestamps as the API writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tangram.clock import iso_utc


def test_timestamps_are_utc_with_z():
    assert iso_utc(datetime(2026, 11, 27, 8, 0, tzinfo=UTC)) == "2026-11-27T08:00:00Z"
    shanghai = timezone(timedelta(hours=8))
    assert iso_utc(datetime(2026, 11, 27, 16, 0, 0, 5, tzinfo=shanghai)) == \
        "2026-11-27T08:00:00.000005Z"
    assert iso_utc(datetime(2026, 11, 27, 8, 0)) == "2026-11-27T08:00:00Z"  # naive: UTC
    assert iso_utc(None) is None
